"""Training losses on (soft) targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from jobs.nn.activations import log_softmax


def per_sample_loss(loss: str, logits: torch.Tensor, outputs: torch.Tensor,
                    targets: torch.Tensor, output: str,
                    log_probs: torch.Tensor | None = None) -> torch.Tensor:
    """One loss value per sample: logits and outputs [..., K] -> [...].

    ce: -(t * log_softmax(z)).sum over classes (`log_probs`, where the caller has it); with
    t = one-hot or (1-eps) y + eps/K this equals torch's CrossEntropyLoss (with
    label_smoothing=eps). Targets [...] of class indices stand for one-hot rows. mse and bce:
    mean over the K outputs, so their scale does not grow with K (torch's MSELoss/BCELoss with
    reduction="mean" agree).
    """
    if loss == "ce":
        if log_probs is None:
            log_probs = log_softmax(logits)
        if targets.dim() < logits.dim():  # class indices
            return -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        return -(targets * log_probs).sum(dim=-1)
    if loss == "mse":
        return (outputs - targets).pow(2).mean(dim=-1)
    if output == "sigmoid":  # from logits: stable where sigmoid saturates
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(dim=-1)
    clamped = outputs.clamp(1e-7, 1 - 1e-7)
    return F.binary_cross_entropy(clamped, targets, reduction="none").mean(dim=-1)


def reduce_loss(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """What a step minimises, per member: the mean of the per-sample losses [..., B], weighted
    by the strategy's sample weights [..., B] where it has any (sat) -> [...]."""
    if weights is None:
        return values.mean(dim=-1)
    return (values * weights).sum(dim=-1) / weights.sum(dim=-1).clamp_min(1e-12)
