"""What a user writes in plain torch for a tvo job's optimiser and schedule settings: the
references the engine's stacked optimisers and schedules are tested against."""

from __future__ import annotations

from typing import Any

import torch

from jobs.spec import JobSpec


def torch_optimizer(spec: JobSpec, params: list[torch.Tensor]) -> torch.optim.Optimizer:
    """What a user writes for the same settings (torch's defaults for everything tvo does not
    expose: dampening 0, eps 1e-8, Adam's betas)."""
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum,
                               nesterov=spec.nesterov, weight_decay=spec.weight_decay)
    if spec.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=spec.lr, alpha=spec.rho, eps=1e-8,
                                   momentum=spec.momentum, weight_decay=spec.weight_decay)
    if spec.optimizer == "adam":
        return torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)
    return torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)


def torch_scheduler(spec: JobSpec, optimizer: torch.optim.Optimizer) -> Any:
    scheduler = torch.optim.lr_scheduler
    if spec.schedule == "step":
        return scheduler.StepLR(optimizer, step_size=spec.step_size, gamma=spec.gamma)
    if spec.schedule == "exponential":
        return scheduler.ExponentialLR(optimizer, gamma=spec.gamma)
    if spec.schedule == "cosine":
        return scheduler.CosineAnnealingLR(optimizer, T_max=spec.epochs, eta_min=spec.min_lr)
    return scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=spec.gamma,
                                       patience=spec.patience, min_lr=spec.min_lr)
