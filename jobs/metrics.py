"""Per-epoch measurements of classifiers against their target strategies' templates.

Pure functions of outputs, labels and templates, so they are easy to check by hand. Every
function takes any number of leading member dimensions ([..., T, K] outputs of T samples and K
classes) and returns one value per member ([...]): a stack's members are measured at once.

Calibration is measured where the outputs are probabilities, and only as what they are:
- softmax: one distribution per sample. NLL = -log p_y; ECE over the top-1 confidences.
- sigmoid: K independent probabilities per sample, read one-vs-rest (is the sample of class k?).
  NLL = sum over k of the binary log loss, averaged over samples; ECE over all T*K binary
  probabilities p_ik against the outcomes 1[y_i = k] (classwise calibration pooled over classes).
- tanh, lecun_tanh, linear: not probabilities; NLL and ECE are not applicable (NaN, stored null).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

ECE_BINS = 10
PROBABILITY_OUTPUTS = ("softmax", "sigmoid")


def confidence(outputs: torch.Tensor, templates: torch.Tensor) -> torch.Tensor:
    """Mean over samples of max_k cos(p, T_k): cosine to the closest target template.
    outputs [..., T, K], templates [..., K, K] -> [...]."""
    unit_outputs = outputs / outputs.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    unit_templates = templates / templates.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    cos = unit_outputs @ unit_templates.transpose(-1, -2)  # [..., T, K]
    return cos.max(dim=-1).values.mean(dim=-1)


def margin(outputs: torch.Tensor) -> torch.Tensor:
    """Mean of the top-1 minus the top-2 output."""
    if outputs.shape[-1] < 2:
        return outputs.new_zeros(outputs.shape[:-2])
    top = outputs.topk(2, dim=-1).values
    return (top[..., 0] - top[..., 1]).mean(dim=-1)


def binned_calibration_error(confidences: torch.Tensor, outcomes: torch.Tensor,
                             bins: int = ECE_BINS) -> torch.Tensor:
    """sum_b n_b/n |mean outcome_b - mean confidence_b| over equal-width bins of confidence;
    confidences and outcomes [..., n] -> [...]. A confidence of exactly 1 is in the last bin."""
    lead = confidences.shape[:-1]
    flat_conf = confidences.reshape(-1, confidences.shape[-1])
    members = flat_conf.shape[0]
    index = (flat_conf * bins).ceil().long().clamp(1, bins) - 1
    index = (index + torch.arange(members, device=index.device).unsqueeze(1) * bins).reshape(-1)
    size = members * bins
    conf_sum = flat_conf.new_zeros(size).index_add_(0, index, flat_conf.reshape(-1))
    outcome_sum = flat_conf.new_zeros(size).index_add_(
        0, index, outcomes.reshape(-1).to(flat_conf.dtype))
    gaps = (outcome_sum - conf_sum).abs().view(members, bins).sum(dim=1)
    return (gaps / confidences.shape[-1]).reshape(lead)


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor,
                               bins: int = ECE_BINS) -> torch.Tensor:
    """Top-label ECE of class distributions [..., T, K]: sum_b n_b/N |acc_b - conf_b|."""
    conf, predicted = probs.max(dim=-1)
    return binned_calibration_error(conf, predicted == labels, bins)


def one_vs_rest_calibration_error(probs: torch.Tensor, labels: torch.Tensor,
                                  bins: int = ECE_BINS) -> torch.Tensor:
    """ECE of K independent probabilities [..., T, K], each against 1[label = k]."""
    outcomes = F.one_hot(labels, probs.shape[-1])
    return binned_calibration_error(probs.flatten(-2), outcomes.flatten(-2), bins)


def nll(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """-log p_y of class distributions [..., T, K], averaged over samples."""
    return -probs.gather(-1, labels.unsqueeze(-1)).clamp_min(1e-12).log().squeeze(-1).mean(dim=-1)


def one_vs_rest_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum over classes of the binary log loss of sigmoid(logits) against 1[label = k],
    averaged over samples (from the logits: stable where the sigmoid saturates)."""
    outcomes = F.one_hot(labels, logits.shape[-1]).to(logits.dtype)
    losses = F.binary_cross_entropy_with_logits(logits, outcomes, reduction="none")
    return losses.sum(dim=-1).mean(dim=-1)


def calibration(logits: torch.Tensor, outputs: torch.Tensor, labels: torch.Tensor,
                output: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(NLL, ECE) per member as the output activation defines them (see the module's text)."""
    if output == "softmax":
        return nll(outputs, labels), expected_calibration_error(outputs, labels)
    if output == "sigmoid":
        return one_vs_rest_nll(logits, labels), one_vs_rest_calibration_error(outputs, labels)
    missing = logits.new_full(logits.shape[:-2], float("nan"))
    return missing, missing
