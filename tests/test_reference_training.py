"""A stack of members trained by the engine equals each member trained as plain torch would: an
nn.Module from build_model, a torch.optim optimiser, a torch.optim.lr_scheduler schedule and a
loop over the same data order (the member's seeded randperm), for one-hot targets on
cross-entropy and on MSE. Per epoch, each member's training loss, and at the end its
parameters, to 1e-5 relative."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from jobs.engine.stack import Stack
from jobs.engine.train import shared_dataset
from jobs.nn.models import build_model
from jobs.spec import JobSpec
from tests.engine_members import fresh_members
from tests.torch_reference import torch_optimizer, torch_scheduler

RTOL = 1e-5
SCALE_TOL = 1e-6  # elements near 0: 1e-6 of the tensor's largest magnitude (float32 rounding)
EPOCHS = 3

CASES: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {
    "ce, sgd": (
        {"dataset": "digits", "hidden": [16], "activation": "relu", "output": "softmax",
         "loss": "ce", "optimizer": "sgd", "batch_size": 64},
        [{"seed": 0, "lr": 0.1, "momentum": 0.9},
         {"seed": 1, "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3},
         {"seed": 2, "lr": 0.2, "schedule": "step", "step_size": 1, "gamma": 0.5},
         {"seed": 3, "lr": 0.1, "init": "he", "schedule": "cosine", "min_lr": 0.01}]),
    "mse, adam": (
        {"dataset": "digits", "hidden": [12, 8], "activation": "sigmoid", "output": "sigmoid",
         "loss": "mse", "optimizer": "adam", "batch_size": 50},
        [{"seed": 4, "lr": 0.01},
         {"seed": 5, "lr": 0.003, "weight_decay": 0.01, "init": "xavier"},
         {"seed": 6, "lr": 0.02, "schedule": "exponential", "gamma": 0.7}]),
    # SGD: the rounding of grouped against single convolutions stays as small in the weights;
    # RMSprop's and Adam's steps blow it up where a gradient is near 0 (a max-pool tie)
    "ce, cnn, sgd": (
        {"dataset": "digits", "model": "cnn", "hidden": [16], "activation": "relu",
         "output": "softmax", "loss": "ce", "optimizer": "sgd", "batch_size": 128},
        [{"seed": 7, "lr": 0.05, "momentum": 0.9}, {"seed": 8, "lr": 0.1}]),
}


def plain_torch(spec: JobSpec, x: torch.Tensor, y: torch.Tensor,
                shape: tuple[int, ...]) -> tuple[list[float], dict[str, torch.Tensor]]:
    """The loop a user writes for one job; per epoch its mean training loss, and the final
    parameters."""
    torch.manual_seed(spec.seed)
    model = build_model(spec, shape, 10)
    optimizer = torch_optimizer(spec, list(model.parameters()))
    scheduler = None if spec.schedule == "none" else torch_scheduler(spec, optimizer)
    order = torch.Generator().manual_seed(spec.seed)
    n = x.shape[0]
    losses = []
    for _ in range(spec.epochs):
        total = 0.0
        for batch in torch.randperm(n, generator=order).split(spec.batch_size):
            logits = model(x[batch])
            if spec.loss == "ce":
                loss = F.cross_entropy(logits, y[batch])
            else:
                loss = F.mse_loss(torch.sigmoid(logits), F.one_hot(y[batch], 10).float())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        losses.append(total / n)
        if scheduler is not None:
            scheduler.step()
    return losses, {name: p.detach() for name, p in model.named_parameters()}


@pytest.mark.parametrize("case", list(CASES))
def test_a_stack_trains_each_member_as_plain_torch_does(case):
    shared, variants = CASES[case]
    specs = [JobSpec.from_dict({**shared, **variant, "epochs": EPOCHS}) for variant in variants]
    data = shared_dataset(specs[0], torch.device("cpu"))
    stack = Stack(fresh_members(specs, data), data, torch.device("cpu"))
    stacked_losses = []
    for epoch in range(1, EPOCHS + 1):
        losses, _, _ = stack.train_epoch(epoch)
        stack.end_epoch(epoch, losses)
        stacked_losses.append(losses)
    for index, member in enumerate(stack.members):
        expected_losses, expected_params = plain_torch(member.spec, data.x_train, data.y_train,
                                                       data.input_shape)
        got = [epoch_losses[index] for epoch_losses in stacked_losses]
        assert got == pytest.approx(expected_losses, rel=RTOL), f"member {index} losses"
        params = stack.net.member_params(index)
        for name, expected in expected_params.items():
            torch.testing.assert_close(
                params[name], expected, rtol=RTOL, atol=SCALE_TOL * float(expected.abs().max()),
                msg=lambda message, i=index, n=name: f"member {i} {n}: {message}")
