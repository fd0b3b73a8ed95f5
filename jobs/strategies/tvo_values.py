"""The TVO study's class / non-class values: output statistics, initialisations, adaptations.

Everything works on pairs (c_j, nc_j), j = 0..K-1, as float64 tensors. What a pair's "class" and
"non-class" outputs are depends on the layout:
- class (the study): pair j belongs to class j. Its class outputs are neuron j's outputs on
  class-j samples; its non-class outputs are all other neurons' outputs on class-j samples.
- position: pair j belongs to output neuron j. Its class outputs are neuron j's outputs on
  class-j samples (as above); its non-class outputs are neuron j's outputs on all other samples.
Initialisations and adaptations are the same functions of these statistics in both layouts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from jobs.strategies.params import StrategyError

FORWARD_CHUNK = 4096  # samples per forward pass when measuring the untrained network


@dataclass(frozen=True)
class PairMoments:
    """Per pair: mean and (population) std of its class and non-class outputs."""

    class_mean: torch.Tensor
    class_std: torch.Tensor
    nonclass_mean: torch.Tensor
    nonclass_std: torch.Tensor
    seen: torch.Tensor  # bool: the pair had class and non-class outputs to measure

    @property
    def spread(self) -> torch.Tensor:
        """The study's s: std of the class outputs plus std of the non-class outputs."""
        return self.class_std + self.nonclass_std

    def member(self, g: int) -> PairMoments:
        """Member g's moments ([K]) of moments measured for stacked members ([G, K])."""
        return PairMoments(self.class_mean[g], self.class_std[g], self.nonclass_mean[g],
                           self.nonclass_std[g], self.seen[g])


class OutputStatistics:
    """Output activations summed by label (float64): enough for every pair's mean and std.

    With `members`, the statistics of that many stacked members: `add` takes outputs [G, B, K]
    and labels [G, B], and the moments are [G, K]."""

    def __init__(self, num_classes: int, device: torch.device, members: int | None = None) -> None:
        self.members = members
        g = members or 1
        self.num_classes = num_classes
        self.count = torch.zeros(g * num_classes, dtype=torch.float64, device=device)
        self.sums = torch.zeros(g * num_classes, num_classes, dtype=torch.float64, device=device)
        self.squares = torch.zeros_like(self.sums)
        self.offsets = torch.arange(g, device=device).unsqueeze(1) * num_classes  # [G, 1]

    def add(self, outputs: torch.Tensor, labels: torch.Tensor) -> None:
        if self.members is None:
            outputs, labels = outputs.unsqueeze(0), labels.unsqueeze(0)
        rows = (labels + self.offsets).reshape(-1)  # member g, class i: row g*K + i
        values = outputs.detach().reshape(-1, self.num_classes).to(torch.float64)
        self.count.index_add_(0, rows, torch.ones_like(rows, dtype=torch.float64))
        self.sums.index_add_(0, rows, values)  # row i: sum of the outputs of class-i samples
        self.squares.index_add_(0, rows, values.square())

    def reset(self) -> None:
        for tensor in (self.count, self.sums, self.squares):
            tensor.zero_()

    def moments(self, layout: str) -> PairMoments:
        k = self.num_classes
        shape = (-1, k) if self.members is not None else (k,)
        count = self.count.view(shape)
        sums, squares = self.sums.view(*shape, k), self.squares.view(*shape, k)
        own_sum = sums.diagonal(dim1=-2, dim2=-1)
        own_square = squares.diagonal(dim1=-2, dim2=-1)
        if layout == "class":  # the other neurons on class-j samples: row j off the diagonal
            other_count = count * (k - 1)
            other_sum = sums.sum(dim=-1) - own_sum
            other_square = squares.sum(dim=-1) - own_square
        else:  # neuron j on the samples of other classes: column j off the diagonal
            other_count = count.sum(dim=-1, keepdim=True) - count
            other_sum = sums.sum(dim=-2) - own_sum
            other_square = squares.sum(dim=-2) - own_square
        class_mean, class_std = _mean_std(count, own_sum, own_square)
        other_mean, other_std = _mean_std(other_count, other_sum, other_square)
        return PairMoments(class_mean, class_std, other_mean, other_std,
                           seen=(count > 0) & (other_count > 0))


def _mean_std(count: torch.Tensor, total: torch.Tensor,
              squares: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n = count.clamp_min(1)
    mean = total / n
    variance = (squares / n - mean.square()).clamp_min(0)  # E[x^2] - E[x]^2, float64
    return mean, variance.sqrt()


def measure_network(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                    y: torch.Tensor, num_classes: int,
                    members: int | None = None) -> OutputStatistics:
    """One pass of the (untrained) network over x: its outputs summed by label. With `members`,
    `forward` gives that many stacked members' outputs [G, n, K], all measured in one pass (each
    member's sums add its samples in the same order as measured alone)."""
    stats = OutputStatistics(num_classes, x.device, members=members)
    for start in range(0, x.shape[0], FORWARD_CHUNK):
        labels = y[start:start + FORWARD_CHUNK]
        if members is not None:
            labels = labels.expand(members, -1)
        stats.add(forward(x[start:start + FORWARD_CHUNK]), labels)
    return stats


# ---------------------------------------------------------------------------------------------
# Initialisations

# The options themselves (names, parameters, help) are declared in jobs.strategies.catalogue.INITS.
NEEDS_NETWORK = ("average", "average_nudge", "average_nudge_remap", "remap")


def nudge(c: torch.Tensor, nc: torch.Tensor,
          nu: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Push nc away from c by nu. Where nc reaches 0 it stays there and c becomes min(nu, 1);
    where it reaches 1 it stays there and c becomes max(1 - nu, 0) (the study's warmup code,
    which counts landing exactly on 0 or 1 as reaching it)."""
    pushed = torch.where(nc > c, nc + nu, nc - nu)
    at_zero, at_one = pushed <= 0, pushed >= 1
    c = torch.where(at_zero, torch.full_like(c, min(nu, 1.0)), c)
    c = torch.where(at_one, torch.full_like(c, max(1.0 - nu, 0.0)), c)
    return c, pushed.clamp(0, 1)


def scale_by_largest(c: torch.Tensor, nc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    largest = torch.maximum(c.max(), nc.max())
    if largest <= 0:
        raise StrategyError("tvo init average_nudge_remap: every value is 0, nothing to rescale")
    return c / largest, nc / largest


def min_max_remap(c: torch.Tensor, nc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    both = torch.cat([c, nc])
    low, high = both.min(), both.max()
    if high <= low:
        raise StrategyError("tvo init remap: the network prefers one value everywhere; "
                            "min-max remapping needs at least two different values")
    return (c - low) / (high - low), (nc - low) / (high - low)


def initial_values(init: str, args: Mapping[str, Any], num_classes: int,
                   generator: torch.Generator,
                   preferences: PairMoments | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(c, nc) before training; `preferences` are the untrained network's moments (None for
    the inits that do not look at the network)."""
    k = num_classes
    if init == "uniform":
        c = torch.rand(k, generator=generator, dtype=torch.float64)
        return c, torch.rand(k, generator=generator, dtype=torch.float64)
    if init == "soft":
        return (torch.full((k,), args["c"], dtype=torch.float64),
                torch.full((k,), args["nc"], dtype=torch.float64))
    assert preferences is not None, f"init {init} measures the network first"
    c, nc = preferences.class_mean, preferences.nonclass_mean
    if init in ("average_nudge", "average_nudge_remap"):
        c, nc = nudge(c, nc, args["nu"])
    if init == "average_nudge_remap":
        c, nc = scale_by_largest(c, nc)
    if init == "remap":
        c, nc = min_max_remap(c, nc)
    return c, nc


# ---------------------------------------------------------------------------------------------
# Adaptations

# The options themselves (names, parameters, help) are declared in jobs.strategies.catalogue.ADAPTS.
NEEDS_STATISTICS = ("sigma", "sigma_half")


def sigma(c: torch.Tensor, nc: torch.Tensor, moments: PairMoments,
          m: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The study's sigma adaptation, branch for branch (adaptations.py):

    if |c - nc| >= s*m: unchanged. Else if nc <= c: nc = max(0, (nc - s) m), and if that is below
    1e-4, c = s m. Else: nc = min(1, (nc + s) m), and if that is above 0.999, c = 1 - s m.
    One guard of ours: c is clamped to [0, 1], which only acts when s m > 1 (never at m = 1, as
    each std of values in [0, 1] is at most 0.5).
    """
    s = moments.spread
    close = moments.seen & ((c - nc).abs() < s * m)
    down, up = close & (nc <= c), close & (nc > c)
    new_nc = torch.where(down, ((nc - s) * m).clamp_min(0), nc)
    new_nc = torch.where(up, ((nc + s) * m).clamp_max(1), new_nc)
    new_c = torch.where(down & (new_nc < 1e-4), s * m, c)
    new_c = torch.where(up & (new_nc > 0.999), 1 - s * m, new_c)
    return new_c.clamp(0, 1), new_nc


def sigma_half(c: torch.Tensor, nc: torch.Tensor,
               moments: PairMoments) -> tuple[torch.Tensor, torch.Tensor]:
    """The study's unbuilt sigma/2: where |c - nc| < s, c moves up and nc down by s/2 each
    (mirrored where nc > c, so the gap always widens), clamped to [0, 1]."""
    s = moments.spread
    close = moments.seen & ((c - nc).abs() < s)
    direction = torch.where(nc > c, -1.0, 1.0).to(c.dtype)  # +1: c above nc
    shift = torch.where(close, s / 2 * direction, torch.zeros_like(c))
    return (c + shift).clamp(0, 1), (nc - shift).clamp(0, 1)


def eps_min(c: torch.Tensor, nc: torch.Tensor,
            eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The study's unbuilt eps_min: where |c - nc| < eps, nc moves eps away from c (down when
    nc <= c, up otherwise), staying inside [0, 1]; c is unchanged."""
    close = (c - nc).abs() < eps
    pushed = torch.where(nc <= c, nc - eps, nc + eps).clamp(0, 1)
    return c, torch.where(close, pushed, nc)


def d_max(c: torch.Tensor, nc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The study's unbuilt d_max: nc as far from c as [0, 1] allows."""
    return c, torch.where(c > 0.5, torch.zeros_like(nc), torch.ones_like(nc))


def adapt_values(adapt: str, args: Mapping[str, Any], c: torch.Tensor, nc: torch.Tensor,
                 moments: PairMoments | None) -> tuple[torch.Tensor, torch.Tensor]:
    if adapt in NEEDS_STATISTICS:
        assert moments is not None, f"adapt {adapt} needs the outputs' statistics"
        if adapt == "sigma":
            return sigma(c, nc, moments, args["m"])
        return sigma_half(c, nc, moments)
    if adapt == "eps_min":
        return eps_min(c, nc, args["eps"])
    if adapt == "d_max":
        return d_max(c, nc)
    return c, nc
