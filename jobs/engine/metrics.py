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
ECE comes from reliability bins (count, mean confidence, mean outcome per equal-width bin of
confidence), which are also stored: the data of a reliability diagram.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

ECE_BINS = 10
# outputs.max(dim=-1), (values, indices): measuring a split takes it once for the decisions, the
# margin and the calibration (a max over few classes is slow on the CPU: 1 ms for 64 x 360 x 10)
Top = tuple[torch.Tensor, torch.Tensor]
PROBABILITY_OUTPUTS = ("softmax", "sigmoid")


def confidence(outputs: torch.Tensor, templates: torch.Tensor) -> torch.Tensor:
    """Mean over samples of max_k cos(p, T_k): cosine to the closest target template.
    outputs [..., T, K], templates [..., K, K] -> [...]."""
    unit_outputs = outputs / outputs.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    unit_templates = templates / templates.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    cos = unit_outputs @ unit_templates.transpose(-1, -2)  # [..., T, K]
    return cos.amax(dim=-1).mean(dim=-1)  # amax: twice as fast as max's values on the CPU


def margin(outputs: torch.Tensor, top: Top | None = None) -> torch.Tensor:
    """Mean of the top-1 minus the top-2 output (`top`: outputs.max(dim=-1), if at hand)."""
    if outputs.shape[-1] < 2:
        return outputs.new_zeros(outputs.shape[:-2])
    top = outputs.max(dim=-1) if top is None else top  # topk(2) is twice as slow on the CPU
    second = outputs.scatter(-1, top.indices.unsqueeze(-1), float("-inf")).amax(dim=-1)
    return (top.values - second).mean(dim=-1)


def calibration_bins(confidences: torch.Tensor, outcomes: torch.Tensor,
                     bins: int = ECE_BINS) -> torch.Tensor:
    """Equal-width bins of confidence ((0, 1/bins], ..., (1 - 1/bins, 1]), each as [count, mean
    confidence, mean outcome]; confidences and outcomes [..., n] -> [..., bins, 3]. An empty bin
    is [0, 0, 0]; a confidence of exactly 1 is in the last bin (NaN: the first)."""
    index = _bin_index(confidences, bins)
    return _bin_table(index, confidences, confidences.shape[:-1], bins,
                      outcome_weights=outcomes.reshape(-1).to(confidences.dtype))


def _bin_index(confidences: torch.Tensor, bins: int) -> torch.Tensor:
    """Each confidence's (member, bin) as one flat int32 index, member-major: [prod(...) * n].
    Ceil, clamp and NaN (to the first bin) in float, then one conversion to int32 (4x faster
    than to int64 on 4.5M confidences, and index_add takes either)."""
    n = confidences.shape[-1]
    flat_conf = confidences.reshape(-1, n)
    members = flat_conf.shape[0]
    scaled = torch.mul(flat_conf, bins).ceil_().clamp_(1, bins).nan_to_num_(nan=1.0)
    offsets = torch.arange(members, device=scaled.device, dtype=torch.int32) * bins - 1
    return scaled.to(torch.int32).add_(offsets.unsqueeze(1)).reshape(-1)


def _bin_table(index: torch.Tensor, confidences: torch.Tensor, lead: torch.Size, bins: int, *,
               outcome_weights: torch.Tensor | None = None,
               outcome_index: torch.Tensor | None = None) -> torch.Tensor:
    """The bins' table from the flat bin index of every confidence: counts, confidence sums and
    outcome sums, one index_add each (single columns add faster than one stacked [n, 3] source,
    which also costs its copy; and no host sync, unlike bincount on a GPU). Outcomes come as one
    weight per confidence, or (0/1 outcomes) as the bin index of each confidence whose outcome
    is 1."""
    size = math.prod(lead) * bins
    flat_conf = confidences.reshape(-1)
    one = flat_conf.new_ones(1)
    counts = flat_conf.new_zeros(size).index_add_(0, index, one.expand(index.shape[0]))
    conf_sums = flat_conf.new_zeros(size).index_add_(0, index, flat_conf)
    if outcome_index is not None:
        outcome_sums = flat_conf.new_zeros(size).index_add_(
            0, outcome_index, one.expand(outcome_index.shape[0]))
    else:
        assert outcome_weights is not None
        outcome_sums = flat_conf.new_zeros(size).index_add_(0, index, outcome_weights)
    means = torch.stack([conf_sums, outcome_sums], dim=1) / counts.clamp_min(1).unsqueeze(1)
    return torch.cat([counts.unsqueeze(1), means], dim=1).reshape(*lead, bins, 3)


def calibration_error(table: torch.Tensor) -> torch.Tensor:
    """ECE from calibration_bins' table [..., bins, 3]: sum_b n_b/N |acc_b - conf_b| -> [...]."""
    counts, conf, outcome = table.unbind(dim=-1)
    return (counts * (outcome - conf).abs()).sum(dim=-1) / counts.sum(dim=-1)


def top_label_bins(probs: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS,
                   top: Top | None = None) -> torch.Tensor:
    """Reliability bins of class distributions [..., T, K]: top-1 confidence against whether
    the top class is the label -> [..., bins, 3] (`top`: probs.max(dim=-1), if at hand)."""
    conf, predicted = probs.max(dim=-1) if top is None else top
    return calibration_bins(conf, (predicted == labels).expand_as(conf), bins)


def one_vs_rest_bins(probs: torch.Tensor, labels: torch.Tensor,
                     bins: int = ECE_BINS) -> torch.Tensor:
    """Reliability bins of K independent probabilities [..., T, K], each against 1[label = k]
    -> [..., bins, 3]. Labels [..., T], or [T] shared by every member."""
    lead, (t, k) = probs.shape[:-2], probs.shape[-2:]
    flat = probs.reshape(-1, t * k)
    index = _bin_index(flat, bins)
    # the outcome is 1 at each sample's label only: the bins of those T entries per member
    labels = labels.expand(*lead, t).reshape(-1, t, 1)
    outcome_index = index.view(-1, t, k).gather(-1, labels).reshape(-1)
    return _bin_table(index, flat, lead, bins, outcome_index=outcome_index)


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor,
                               bins: int = ECE_BINS) -> torch.Tensor:
    """Top-label ECE of class distributions [..., T, K]: sum_b n_b/N |acc_b - conf_b|."""
    return calibration_error(top_label_bins(probs, labels, bins))


def nll(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """-log p_y of class distributions [..., T, K], averaged over samples."""
    labels = labels.expand(probs.shape[:-1]).unsqueeze(-1)
    return -probs.gather(-1, labels).clamp_min(1e-12).log().squeeze(-1).mean(dim=-1)


def one_vs_rest_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum over classes of the binary log loss of sigmoid(logits) against 1[label = k],
    averaged over samples (from the logits: stable where the sigmoid saturates)."""
    outcomes = F.one_hot(labels, logits.shape[-1]).to(logits.dtype).expand_as(logits)
    losses = F.binary_cross_entropy_with_logits(logits, outcomes, reduction="none")
    return losses.sum(dim=-1).mean(dim=-1)


class Calibration(NamedTuple):
    """Per member: NLL, ECE (NaN where not applicable) and the reliability bins ECE is computed
    from ([..., bins, 3], see calibration_bins; None where not applicable)."""

    nll: torch.Tensor
    ece: torch.Tensor
    bins: torch.Tensor | None


def calibration(logits: torch.Tensor, outputs: torch.Tensor, labels: torch.Tensor,
                output: str, top: Top | None = None) -> Calibration:
    """NLL, ECE and reliability bins per member as the output activation defines them (see the
    module's text); ECE and the bins come from one binning. Labels [..., T], or [T] shared by
    every member; `top`: outputs.max(dim=-1), if at hand."""
    if output == "softmax":
        bins = top_label_bins(outputs, labels, top=top)
        return Calibration(nll(outputs, labels), calibration_error(bins), bins)
    if output == "sigmoid":
        bins = one_vs_rest_bins(outputs, labels)
        return Calibration(one_vs_rest_nll(logits, labels), calibration_error(bins), bins)
    missing = logits.new_full(logits.shape[:-2], float("nan"))
    return Calibration(missing, missing, None)
