"""Training losses on (soft) targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def per_sample_loss(loss: str, logits: torch.Tensor, outputs: torch.Tensor,
                    targets: torch.Tensor, output: str) -> torch.Tensor:
    """One loss value per sample (shape B).

    ce: -(t * log_softmax(z)).sum over classes; with t = one-hot or (1-eps) y + eps/K this equals
    torch's CrossEntropyLoss (with label_smoothing=eps). mse and bce: mean over the K outputs, so
    their scale does not grow with K (torch's MSELoss/BCELoss with reduction="mean" agree).
    """
    if loss == "ce":  # targets: class probabilities, or class indices for one-hot
        return F.cross_entropy(logits, targets, reduction="none")
    if loss == "mse":
        return (outputs - targets).pow(2).mean(dim=1)
    if output == "sigmoid":  # from logits: stable where sigmoid saturates
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(dim=1)
    clamped = outputs.clamp(1e-7, 1 - 1e-7)
    return F.binary_cross_entropy(clamped, targets, reduction="none").mean(dim=1)


def batch_loss(loss: str, logits: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor,
               output: str, weights: torch.Tensor | None) -> torch.Tensor:
    """The scalar a training step minimises: the (weighted) mean of the per-sample losses."""
    if loss == "ce" and weights is None:
        return F.cross_entropy(logits, targets)  # one fused kernel, forward and backward
    return reduce_loss(per_sample_loss(loss, logits, outputs, targets, output), weights)


def reduce_loss(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return values.mean()
    return (values * weights).sum() / weights.sum().clamp_min(1e-12)
