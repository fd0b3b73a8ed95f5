"""Members' initial parameters drawn straight into tensors, without building an nn.Module each.

The values are exactly those `build_model` gives under `torch.manual_seed(seed)`: a
`torch.Generator` seeded alike draws the global RNG's sequence, and each layer is drawn by the
same torch.nn.init call, in the same order, on a tensor of the same shape: first every layer's
default initialisation as its module is built (kaiming_uniform(a=sqrt 5) weights, biases
uniform within 1/sqrt(fan_in)), then, for xavier and he, every layer again by the scheme. The
layers come from the module built once per network shape on the meta device (no values, no
draws), so this follows jobs.nn.models wherever its layers change. A stack of 1,000 small
jobs built its members in 0.32 ms a job with a module each (torch.manual_seed alone calls into
every device's RNG), 0.09 ms this way (tests/bench/bench_fixed_cost.py).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from jobs.nn.models import apply_scheme, network
from jobs.spec import JobSpec


@dataclass(frozen=True)
class Layer:
    """One Linear or Conv2d of a network: its parameters' names and shapes."""

    weight: str
    bias: str
    weight_shape: tuple[int, ...]
    bias_shape: tuple[int, ...]

    @property
    def fan_in(self) -> int:
        return math.prod(self.weight_shape[1:])

    @functools.cached_property
    def bounds(self) -> tuple[float, float]:
        """The uniform bounds of torch's default initialisation: kaiming_uniform(a=sqrt 5) for
        the weights (its formula, step for step, so the same float), 1/sqrt(fan_in) for the
        biases. Drawn with them directly, a layer costs one uniform_ call per tensor, not
        nn.init's checks around it."""
        gain = nn.init.calculate_gain("leaky_relu", math.sqrt(5))
        weight = math.sqrt(3.0) * (gain / math.sqrt(self.fan_in))
        return weight, 1 / math.sqrt(self.fan_in) if self.fan_in > 0 else 0


_LAYERS: dict[tuple[object, ...], tuple[Layer, ...]] = {}


def layers(spec: JobSpec, input_shape: tuple[int, ...], num_classes: int) -> tuple[Layer, ...]:
    """The network's layers in the order they are built (and initialised), once per shape."""
    key = (spec.model, spec.hidden, spec.shortcuts, tuple(input_shape), num_classes)
    if key not in _LAYERS:
        with torch.device("meta"):
            module = network(spec, input_shape, num_classes)
        found = []
        for name, layer in module.named_modules():
            if isinstance(layer, nn.Linear | nn.Conv2d):
                if layer.bias is None:
                    raise ValueError(f"layer {name} has no bias: initial_parameters expects one")
                found.append(Layer(f"{name}.weight", f"{name}.bias", tuple(layer.weight.shape),
                                   tuple(layer.bias.shape)))
        _LAYERS[key] = tuple(found)
    return _LAYERS[key]


def initial_parameters(specs: Sequence[JobSpec], input_shape: tuple[int, ...],
                       num_classes: int) -> list[dict[str, torch.Tensor]]:
    """Each spec's initial parameters by name (as the module names them), on the CPU.

    For networks of method=weights; method=target_space builds its module (build_model)."""
    return [_member(spec, layers(spec, input_shape, num_classes)) for spec in specs]


def _member(spec: JobSpec, network_layers: tuple[Layer, ...]) -> dict[str, torch.Tensor]:
    if spec.method != "weights":
        raise ValueError(f"method={spec.method} builds its own module: use build_model")
    generator = torch.Generator().manual_seed(spec.seed)
    sizes = [size for layer in network_layers
             for size in (math.prod(layer.weight_shape), math.prod(layer.bias_shape))]
    row = torch.empty(sum(sizes))  # one allocation; each parameter a view of its part
    parts = iter(row.split(sizes))
    params: dict[str, torch.Tensor] = {}
    for layer in network_layers:
        weight = next(parts).view(layer.weight_shape)
        bias = next(parts).view(layer.bias_shape)
        weight_bound, bias_bound = layer.bounds
        weight.uniform_(-weight_bound, weight_bound, generator=generator)
        bias.uniform_(-bias_bound, bias_bound, generator=generator)
        params[layer.weight], params[layer.bias] = weight, bias
    if spec.init != "default":
        for layer in network_layers:
            apply_scheme(params[layer.weight], params[layer.bias], spec.init, spec.activation,
                         generator)
    return params
