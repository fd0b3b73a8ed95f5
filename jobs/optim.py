"""Optimisers and learning-rate schedules named by a JobSpec."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from jobs.spec import JobSpec


def build_optimizer(spec: JobSpec, params: Iterable[torch.Tensor]) -> torch.optim.Optimizer:
    params = list(params)
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum,
                               nesterov=spec.nesterov, weight_decay=spec.weight_decay)
    if spec.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=spec.lr, alpha=spec.rho, momentum=spec.momentum,
                                   weight_decay=spec.weight_decay)
    if spec.optimizer == "adam":
        return torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)
    return torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)


def build_scheduler(spec: JobSpec, optimizer: torch.optim.Optimizer):
    """The schedule, stepped once per epoch (plateau with the epoch's training loss), or None."""
    sched = torch.optim.lr_scheduler
    if spec.schedule == "step":
        return sched.StepLR(optimizer, step_size=spec.step_size, gamma=spec.gamma)
    if spec.schedule == "exponential":
        return sched.ExponentialLR(optimizer, gamma=spec.gamma)
    if spec.schedule == "plateau":
        return sched.ReduceLROnPlateau(optimizer, factor=spec.gamma, patience=spec.patience,
                                       min_lr=spec.min_lr)
    if spec.schedule == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=max(spec.epochs, 1), eta_min=spec.min_lr)
    return None


def step_scheduler(scheduler, train_loss: float) -> None:
    if scheduler is None:
        return
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(train_loss)
    else:
        scheduler.step()


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])
