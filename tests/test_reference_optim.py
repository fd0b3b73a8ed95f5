"""The stacked optimisers and learning-rate schedules against torch.optim and
torch.optim.lr_scheduler: each member of a stack, with hyperparameters of its own, moves its
parameters as its own torch optimiser moves the same parameters on the same gradients, and each
schedule gives the rates torch's scheduler gives, to 1e-5 relative."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from jobs.engine.lr_schedule import LearningRate
from jobs.engine.stack_model import FlatParameters
from jobs.engine.stack_optim import StackedOptimizer
from jobs.spec import JobSpec
from tests.torch_reference import torch_optimizer, torch_scheduler

RTOL = 1e-5
# Elements that cancel to near 0 keep float32's absolute rounding of the terms that made them:
# each element may also be off by 1e-6 of its tensor's largest magnitude (about 8 ulps).
SCALE_TOL = 1e-6
SHAPES = {"layers.0.weight": (5, 4), "layers.0.bias": (5,), "head.weight": (3, 5),
          "head.bias": (3,)}
STEPS = 12

# Each optimiser with members whose settings differ within the one stack.
MEMBERS = {
    "sgd": [{"lr": 0.1}, {"lr": 0.05, "momentum": 0.9}, {"lr": 0.2, "momentum": 0.5},
            {"lr": 0.1, "momentum": 0.9, "nesterov": True},
            {"lr": 0.3, "weight_decay": 0.01},
            {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.001}],
    "rmsprop": [{"lr": 0.01}, {"lr": 0.001, "rho": 0.99}, {"lr": 0.005, "momentum": 0.9},
                {"lr": 0.01, "rho": 0.5, "weight_decay": 0.01},
                {"lr": 0.002, "momentum": 0.5, "weight_decay": 0.001}],
    "adam": [{"lr": 0.001}, {"lr": 0.01}, {"lr": 0.003, "weight_decay": 0.01},
             {"lr": 0.0005, "weight_decay": 0.1}],
    "adamw": [{"lr": 0.001}, {"lr": 0.01, "weight_decay": 0.01},
              {"lr": 0.003, "weight_decay": 0.1}, {"lr": 0.0005, "weight_decay": 0.5}],
}


def specs_of(kind: str) -> list[JobSpec]:
    return [JobSpec.from_dict({"optimizer": kind, "seed": seed, **settings})
            for seed, settings in enumerate(MEMBERS[kind])]


def member_parameters(count: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [{name: torch.randn(shape, generator=generator) for name, shape in SHAPES.items()}
            for _ in range(count)]


class Reference:
    """The members' own parameters, each member stepped by its own torch optimiser."""

    def __init__(self, specs: list[JobSpec], start: list[dict[str, torch.Tensor]]) -> None:
        self.params = [{name: tensor.clone().requires_grad_(True)
                        for name, tensor in member.items()} for member in start]
        self.optimizers = [torch_optimizer(spec, list(params.values()))
                           for spec, params in zip(specs, self.params, strict=True)]

    def step(self, grads: list[dict[str, torch.Tensor]]) -> None:
        for params, optimizer, grad in zip(self.params, self.optimizers, grads, strict=True):
            for name, tensor in params.items():
                tensor.grad = grad[name].clone()
            optimizer.step()

    def set_learning_rates(self, rates: list[float]) -> None:
        for optimizer, rate in zip(self.optimizers, rates, strict=True):
            optimizer.param_groups[0]["lr"] = rate


# Gradients of several magnitudes, down to where eps matters against sqrt(v) (1e-8).
GRADIENT_SCALES = {"layers.0.weight": 1.0, "layers.0.bias": 1e-3, "head.weight": 10.0,
                   "head.bias": 1e-8}


def gradients(count: int, step: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1000 + step)
    return [{name: torch.randn(shape, generator=generator) * GRADIENT_SCALES[name]
             for name, shape in SHAPES.items()} for _ in range(count)]


def step_both(net: FlatParameters, stacked: StackedOptimizer, reference: Reference,
              step: int) -> None:
    grads = gradients(net.size, step)
    flat_grad = torch.stack([net.row_of(member) for member in grads])
    stacked.step(net.flat, flat_grad)
    reference.step(grads)


def assert_members_match(net: FlatParameters, reference: Reference,
                         members: range | None = None) -> None:
    for index in members or range(net.size):
        stacked = net.member_params(index)
        for name, expected in reference.params[index].items():
            assert_close(stacked[name], expected.detach(), f"member {index} {name}")


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    """Equal to RTOL relative, elements near 0 to SCALE_TOL of the tensor's scale."""
    scale = float(expected.abs().max())
    torch.testing.assert_close(actual, expected, rtol=RTOL, atol=SCALE_TOL * scale,
                               msg=lambda message: f"{what}: {message}")


@pytest.mark.parametrize("kind", list(MEMBERS))
def test_each_member_steps_as_its_own_torch_optimizer(kind):
    specs = specs_of(kind)
    start = member_parameters(len(specs))
    net = FlatParameters(start, torch.device("cpu"))
    stacked = StackedOptimizer(specs, net, torch.device("cpu"))
    reference = Reference(specs, start)
    for step in range(STEPS):
        step_both(net, stacked, reference, step)
        assert_members_match(net, reference)


@pytest.mark.parametrize("kind", list(MEMBERS))
def test_rates_changed_between_steps_apply_as_in_torch(kind):
    """Schedules set each member's rate per epoch: param_groups' lr in torch."""
    specs = specs_of(kind)
    start = member_parameters(len(specs), seed=1)
    net = FlatParameters(start, torch.device("cpu"))
    stacked = StackedOptimizer(specs, net, torch.device("cpu"))
    reference = Reference(specs, start)
    for step in range(STEPS):
        if step % 4 == 3:
            rates = [spec.lr * 0.5 ** (step // 4 + 1) * (1 + index / 10)
                     for index, spec in enumerate(specs)]
            stacked.set_learning_rates(rates)
            reference.set_learning_rates(rates)
        step_both(net, stacked, reference, step)
    assert_members_match(net, reference)


@pytest.mark.parametrize("kind", list(MEMBERS))
def test_a_member_state_carried_into_another_stack_steps_on_as_in_torch(kind):
    """A member's optimiser state handed back (checkpoint, new stack) continues its torch
    optimiser's run, whatever its new mates."""
    specs = specs_of(kind)
    start = member_parameters(len(specs), seed=2)
    net = FlatParameters(start, torch.device("cpu"))
    stacked = StackedOptimizer(specs, net, torch.device("cpu"))
    reference = Reference(specs, start)
    for step in range(5):
        step_both(net, stacked, reference, step)
    kept = list(range(len(specs)))[::-2]  # every other member, in another order
    states = [stacked.member_state(index) for index in kept]
    params = [net.member_params(index) for index in kept]
    moved = FlatParameters(params, torch.device("cpu"))
    continued = StackedOptimizer([specs[index] for index in kept], moved, torch.device("cpu"))
    for position, state in enumerate(states):
        continued.load_member(position, state)
    carried = Reference([specs[index] for index in kept], params)
    carried.params = [reference.params[index] for index in kept]
    carried.optimizers = [reference.optimizers[index] for index in kept]
    for step in range(5, STEPS):
        step_both(moved, continued, carried, step)
    assert_members_match(moved, carried)


# -- schedules ------------------------------------------------------------------------------------

SCHEDULES: dict[str, dict[str, Any]] = {
    "step": {"lr": 0.1, "step_size": 3, "gamma": 0.5},
    "exponential": {"lr": 0.2, "gamma": 0.9},
    "cosine": {"lr": 0.1, "min_lr": 0.001},
    "cosine to zero": {"lr": 0.5, "min_lr": 0.0},
    "plateau": {"lr": 0.1, "gamma": 0.5, "patience": 2, "min_lr": 0.004},
    "plateau without patience": {"lr": 0.3, "gamma": 0.3, "patience": 0, "min_lr": 0.0},
}
EPOCHS = 24


def training_losses(epochs: int) -> list[float]:
    """Losses that improve, stall (exactly, and by less than the 1e-4 threshold), improve
    again and rise: every branch of plateau."""
    losses, loss = [], 2.0
    for epoch in range(epochs):
        if epoch % 7 in (3, 4, 5):
            loss *= 1 - 5e-5 if epoch % 2 else 1.0  # not an improvement by torch's threshold
        elif epoch % 11 == 10:
            loss *= 1.5
        else:
            loss *= 0.9
        losses.append(loss)
    return losses


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_every_schedule_gives_torch_schedulers_rates(name):
    settings = dict(SCHEDULES[name])
    spec = JobSpec.from_dict({"schedule": name.split()[0], "epochs": EPOCHS, **settings})
    ours = LearningRate(spec)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=spec.lr)
    theirs = torch_scheduler(spec, optimizer)
    rates = []
    for epoch, loss in enumerate(training_losses(EPOCHS), start=1):
        assert ours.lr == pytest.approx(optimizer.param_groups[0]["lr"], rel=RTOL,
                                        abs=1e-12), f"epoch {epoch}"
        rates.append(ours.lr)
        optimizer.step()
        ours.step(loss)
        if spec.schedule == "plateau":
            theirs.step(loss)
        else:
            theirs.step()
    assert ours.lr == pytest.approx(optimizer.param_groups[0]["lr"], rel=RTOL, abs=1e-12)
    assert len(set(rates)) > 3, "the schedule should have moved the rate several times"
