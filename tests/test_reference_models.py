"""The stacked networks against the nn modules build_model makes: for every member of a stack,
the stacked forward gives the logits its own module gives, and backward the gradients its own
module's parameters get, to 1e-5 relative; the stacked evaluation (shared inputs, in chunks)
too."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from jobs.engine.stack_model import FlatParameters, stack_networks
from jobs.nn.models import build_model
from jobs.spec import JobSpec

RTOL = 1e-5
SCALE_TOL = 1e-6  # float32 cancellation: 1e-6 of the tensor's largest magnitude (see below)
ACTIVATIONS = ("sigmoid", "tanh", "lecun_tanh", "relu", "leaky_relu")
INITS = ("default", "xavier", "he")
BATCH = 9


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    """Equal to RTOL relative; an element near 0 (a sum that cancels) to SCALE_TOL of its
    tensor's scale, the absolute rounding of the terms it was summed from."""
    scale = float(expected.abs().max())
    torch.testing.assert_close(actual, expected, rtol=RTOL, atol=SCALE_TOL * scale,
                               msg=lambda message: f"{what}: {message}")


def modules(specs: list[JobSpec], input_shape: tuple[int, ...]) -> list[torch.nn.Module]:
    """Each member's module as build_model makes it from the member's seed."""
    built = []
    for spec in specs:
        torch.manual_seed(spec.seed)
        built.append(build_model(spec, input_shape, 10))
    return built


def stacked(specs: list[JobSpec], members: list[torch.nn.Module],
            input_shape: tuple[int, ...]) -> FlatParameters:
    params = [{name: p.detach().clone() for name, p in module.named_parameters()}
              for module in members]
    return stack_networks(specs, params, input_shape, torch.device("cpu"))


def member_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """A loss per member with a gradient in every logit: cross-entropy plus a square term."""
    flat = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                           reduction="none").view(labels.shape)
    return flat.mean(dim=-1) + 0.1 * logits.square().mean(dim=(-1, -2))


def assert_stack_matches_modules(specs: list[JobSpec], input_shape: tuple[int, ...]) -> None:
    members = modules(specs, input_shape)
    net = stacked(specs, members, input_shape)
    generator = torch.Generator().manual_seed(7)
    x = torch.randn(len(specs), BATCH, *input_shape, generator=generator)  # own batch each
    labels = torch.randint(0, 10, (len(specs), BATCH), generator=generator)
    net.zero_grad()
    logits = net.forward(x, None)
    member_losses(logits, labels).sum().backward()
    for index, module in enumerate(members):
        module.train()
        expected = module(x[index])
        assert_close(logits[index].detach(), expected.detach(), f"member {index} logits")
        member_losses(expected[None], labels[index][None]).sum().backward()
        grads = net.member_row(index, net.flat_grad())
        for name, parameter in module.named_parameters():
            assert parameter.grad is not None
            assert_close(grads[name], parameter.grad, f"member {index} d loss / d {name}")
    shared = torch.randn(BATCH * 3, *input_shape, generator=generator)
    evaluated = net.evaluate(shared)
    for index, module in enumerate(members):
        module.eval()
        with torch.no_grad():
            assert_close(evaluated[index], module(shared), f"member {index} evaluation")


def specs_of(count: int, **settings) -> list[JobSpec]:
    """Members of one stack: own seeds, initialisations and (unshared) settings."""
    return [JobSpec.from_dict({"seed": 3 * index + 1, "init": INITS[index % len(INITS)],
                               "lr": 0.1 * (index + 1), **settings}) for index in range(count)]


@pytest.mark.parametrize("shortcuts", [False, True], ids=["plain", "shortcuts"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_the_stacked_mlp_is_each_members_module(activation, shortcuts):
    specs = specs_of(4, dataset="mnist1d", hidden=[7, 5], activation=activation,
                     shortcuts=shortcuts)
    assert_stack_matches_modules(specs, (40,))


def test_an_mlp_without_hidden_layers_is_each_members_module():
    assert_stack_matches_modules(specs_of(3, dataset="mnist1d", hidden=[]), (40,))


@pytest.mark.parametrize(("dataset", "shape"), [("digits", (1, 8, 8)), ("mnist", (1, 28, 28)),
                                                ("cifar10", (3, 32, 32))],
                         ids=["8x8 padded", "28x28", "3 channels"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_the_stacked_cnn_is_each_members_module(dataset, shape, activation):
    specs = specs_of(3, dataset=dataset, data_root="/nowhere" if dataset != "digits" else "",
                     model="cnn", hidden=[12], activation=activation)
    assert_stack_matches_modules(specs, shape)
