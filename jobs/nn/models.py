"""Networks a job trains: an MLP (optionally with shortcut connections) and the study's small CNN.

Models return logits (the output layer's pre-activations); `activate` applies the output
activation, so losses can use the numerically stable form where there is one.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from jobs.nn.activations import hidden_activation
from jobs.nn.target_space import build_target_space_model

if TYPE_CHECKING:
    from jobs.spec import JobSpec

class MLP(nn.Module):
    """Dense layers; with shortcuts, each layer sees the input and every earlier layer's output."""

    def __init__(self, in_features: int, hidden: tuple[int, ...], num_classes: int,
                 activation: str, dropout: float, shortcuts: bool) -> None:
        super().__init__()
        self.shortcuts = shortcuts
        self.layers = nn.ModuleList()
        width_in = in_features
        seen = in_features
        for width in hidden:
            self.layers.append(nn.Linear(seen if shortcuts else width_in, width))
            width_in = width
            seen += width
        self.head = nn.Linear(seen if shortcuts else width_in, num_classes)
        self.act = hidden_activation(activation)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        if not self.shortcuts:
            for layer in self.layers:
                x = self.drop(self.act(layer(x)))
            return self.head(x)
        features = [x]
        for layer in self.layers:
            features.append(self.drop(self.act(layer(torch.cat(features, dim=1)))))
        return self.head(torch.cat(features, dim=1))


class CNN(nn.Module):
    """The study's MNIST net: conv 10 k5, pool, act; conv 20 k5, dropout, pool, act; dense; out.

    Sized from the input: 5x5 convolutions without padding on inputs of 16 pixels and more (as
    the study on 28x28 MNIST: 320 features after the convolutions), padded to keep the size on
    smaller inputs such as the 8x8 digits.
    """

    def __init__(self, input_shape: tuple[int, ...], hidden: tuple[int, ...], num_classes: int,
                 activation: str, dropout: float) -> None:
        super().__init__()
        channels = input_shape[0]
        padding = self.padding_for(input_shape)
        self.features = nn.Sequential(
            nn.Conv2d(channels, 10, kernel_size=5, padding=padding),
            nn.MaxPool2d(2),
            hidden_activation(activation),
            nn.Conv2d(10, 20, kernel_size=5, padding=padding),
            nn.Dropout2d(dropout) if dropout > 0 else nn.Identity(),
            nn.MaxPool2d(2),
            hidden_activation(activation),
            nn.Flatten(),
        )
        # the size after the convolutions, measured in eval mode: a probe in training mode would
        # draw a Dropout2d mask from the global RNG, so the dense layers' initial weights would
        # depend on whether the net has dropout
        self.features.eval()
        with torch.no_grad():
            flat = self.features(torch.zeros(1, *input_shape)).shape[1]
        self.features.train()
        self.dense = MLP(flat, hidden, num_classes, activation, dropout, shortcuts=False)

    @staticmethod
    def padding_for(input_shape: tuple[int, ...]) -> int:
        return 0 if input_shape[1] >= 16 else 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.features(x))


def build_model(spec: JobSpec, input_shape: tuple[int, ...], num_classes: int,
                train_inputs: torch.Tensor | None = None) -> nn.Module:
    """The network for `spec`, initialised from the global torch RNG (seed it first).

    method=target_space chooses its fixed batch from `train_inputs` and is built on the CPU.
    """
    if spec.method == "target_space":
        if train_inputs is None:
            raise ValueError("method=target_space needs train_inputs to choose its fixed batch")
        return build_target_space_model(spec, input_shape, num_classes, train_inputs)
    model = network(spec, input_shape, num_classes)
    initialise(model, spec.init, spec.activation)
    return model


def network(spec: JobSpec, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The weights-method network for `spec` with torch's default initialisation of each layer
    (drawn as it is built), before `initialise` applies the spec's scheme."""
    if spec.model == "cnn":
        shape = input_shape if len(input_shape) == 3 else (1, *input_shape)
        return CNN(shape, spec.hidden, num_classes, spec.activation, spec.dropout)
    return MLP(math.prod(input_shape), spec.hidden, num_classes, spec.activation, spec.dropout,
               spec.shortcuts)


def initialise(model: nn.Module, scheme: str, activation: str) -> None:
    """xavier (Glorot) suits sigmoid/tanh, he (Kaiming) suits relu; biases start at zero."""
    if scheme == "default":
        return
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Conv2d):
            apply_scheme(module.weight, module.bias, scheme, activation)


def apply_scheme(weight: torch.Tensor, bias: torch.Tensor, scheme: str, activation: str,
                 generator: torch.Generator | None = None) -> None:
    """One layer's weights drawn anew by `scheme` (xavier or he), its biases zero."""
    if scheme == "xavier":
        nn.init.xavier_uniform_(weight, generator=generator)
    else:
        nonlinearity = "leaky_relu" if activation == "leaky_relu" else "relu"
        nn.init.kaiming_normal_(weight, nonlinearity=nonlinearity, generator=generator)
    nn.init.zeros_(bias)


def weight_parameters(model: nn.Module) -> list[torch.Tensor]:
    """Weights only (no biases): what the L1 penalty applies to."""
    return [p for name, p in model.named_parameters() if name.endswith("weight")]
