"""Members' initial parameters drawn without a module (jobs.nn.initial) are exactly what
build_model gives under torch.manual_seed(seed), for every initialisation, activation, model
and shortcut setting, names and order included."""

from __future__ import annotations

import pytest
import torch

from jobs.nn.initial import initial_parameters
from jobs.nn.models import build_model
from jobs.spec import JobSpec

INITS = ("default", "xavier", "he")
ACTIVATIONS = ("sigmoid", "tanh", "lecun_tanh", "relu", "leaky_relu")
NETWORKS = {
    "mlp": ({"dataset": "mnist1d", "hidden": [7, 5]}, (40,)),
    "mlp without hidden layers": ({"dataset": "mnist1d", "hidden": []}, (40,)),
    "mlp with shortcuts": ({"dataset": "mnist1d", "hidden": [6, 4, 3], "shortcuts": True},
                           (40,)),
    "mlp on images": ({"dataset": "digits", "hidden": [9]}, (1, 8, 8)),
    "cnn, padded 8x8": ({"dataset": "digits", "model": "cnn", "hidden": [11]}, (1, 8, 8)),
    "cnn, 28x28": ({"dataset": "mnist", "data_root": "/nowhere", "model": "cnn",
                    "hidden": [8, 6]}, (1, 28, 28)),
    "cnn, 3 channels": ({"dataset": "cifar10", "data_root": "/nowhere", "model": "cnn",
                         "hidden": [5]}, (3, 32, 32)),
}


def module_parameters(spec: JobSpec, shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    torch.manual_seed(spec.seed)
    module = build_model(spec, shape, 10)
    return {name: p.detach() for name, p in module.named_parameters()}


def assert_identical(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert list(got) == list(expected)
    for name, tensor in expected.items():
        assert got[name].shape == tensor.shape, name
        assert torch.equal(got[name], tensor), name


@pytest.mark.parametrize("network", list(NETWORKS))
@pytest.mark.parametrize("init", INITS)
def test_every_network_starts_as_build_model_makes_it(network, init):
    settings, shape = NETWORKS[network]
    specs = [JobSpec.from_dict({**settings, "init": init, "activation": activation,
                                "seed": seed, "dropout": dropout})
             for seed, activation, dropout in [(0, "relu", 0.0), (1, "leaky_relu", 0.2),
                                               (12345, "tanh", 0.5)]]
    drawn = initial_parameters(specs, shape, 10)
    for spec, got in zip(specs, drawn, strict=True):
        assert_identical(got, module_parameters(spec, shape))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_he_initialisation_follows_the_activation(activation):
    spec = JobSpec.from_dict({"dataset": "mnist1d", "hidden": [6], "init": "he",
                              "activation": activation, "seed": 3})
    assert_identical(initial_parameters([spec], (40,), 10)[0], module_parameters(spec, (40,)))


def test_drawing_leaves_the_global_rng_alone_and_members_apart():
    """No member's values depend on the global RNG or on the members drawn before it."""
    specs = [JobSpec.from_dict({"dataset": "mnist1d", "hidden": [4], "seed": seed})
             for seed in (5, 6)]
    torch.manual_seed(99)
    before = torch.get_rng_state()
    together = initial_parameters(specs, (40,), 10)
    assert torch.equal(torch.get_rng_state(), before)
    alone = initial_parameters(specs[1:], (40,), 10)
    assert_identical(together[1], alone[0])
