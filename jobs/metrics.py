"""Per-epoch measurements of a classifier against its target strategy's templates.

Pure functions of outputs, labels and templates, so they are easy to check by hand.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from jobs.losses import class_probabilities, per_sample_loss
from jobs.strategies.base import TargetStrategy

ECE_BINS = 10
EVAL_CHUNK = 4096  # samples per forward pass in evaluation: bounds memory on large test sets


def confidence(outputs: torch.Tensor, templates: torch.Tensor) -> torch.Tensor:
    """Mean over samples of max_k cos(p, T_k): cosine to the closest target template."""
    cos = F.cosine_similarity(outputs.unsqueeze(1), templates.unsqueeze(0), dim=2)
    return cos.max(dim=1).values.mean()


def margin(outputs: torch.Tensor) -> torch.Tensor:
    """Mean of the top-1 minus the top-2 output."""
    if outputs.shape[1] < 2:
        return outputs.new_zeros(())
    top = outputs.topk(2, dim=1).values
    return (top[:, 0] - top[:, 1]).mean()


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor,
                               bins: int = ECE_BINS) -> torch.Tensor:
    """ECE with equal-width confidence bins: sum_b n_b/N |acc_b - conf_b|."""
    conf, predicted = probs.max(dim=1)
    correct = (predicted == labels).to(probs.dtype)
    # a confidence of exactly 1 belongs to the last bin, (0.9, 1.0]
    index = (conf * bins).ceil().long().clamp(1, bins) - 1
    count = torch.zeros(bins, dtype=probs.dtype, device=probs.device).index_add_(
        0, index, torch.ones_like(conf))
    conf_sum = torch.zeros_like(count).index_add_(0, index, conf)
    acc_sum = torch.zeros_like(count).index_add_(0, index, correct)
    return (acc_sum - conf_sum).abs().sum() / conf.numel()


def nll(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return -probs.gather(1, labels.unsqueeze(1)).clamp_min(1e-12).log().mean()


@torch.no_grad()
def evaluate(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
             strategy: TargetStrategy, loss: str, output: str) -> dict[str, float]:
    """Loss against the class templates, accuracy by the strategy's decision rule, NLL,
    confidence, margin and ECE over a whole split. `forward` maps inputs to logits."""
    from jobs.models import activate

    logits = torch.cat([forward(x[i:i + EVAL_CHUNK]) for i in range(0, len(x), EVAL_CHUNK)])
    outputs = activate(logits, output)
    templates = strategy.templates()
    probs = class_probabilities(logits, outputs, output)
    values = {
        "loss": per_sample_loss(loss, logits, outputs, templates[y], output).mean(),
        "acc": (strategy.predict(outputs) == y).float().mean(),
        "nll": nll(probs, y),
        "confidence": confidence(outputs, templates),
        "margin": margin(outputs),
        "ece": expected_calibration_error(probs, y),
    }
    return {name: float(value) for name, value in values.items()}  # one sync per split
