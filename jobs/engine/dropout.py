"""Dropout masks for every member of a stack at once, on the stack's device, each member's from a
counter-based stream of its own.

Element e of the mask that member m draws as its d-th draw of epoch t is kept when
h = mix32(e * G  ^  key) >= threshold_m, with key = seed_m ^ counter(t, d), where mix32 is an
integer hash (Wellons' lowbias32, a bijection of 32-bit words with strong avalanche), seed_m a
hash of the member's dropout seed and counter(t, d) a hash of the epoch and the draw's place in
it; threshold_m puts P(keep) at 1 - p_m to within 2^-32. A kept element is scaled by
1 / (1 - p_m). The whole draw is a dozen int32 tensor operations over [N, elements]: no Python
loop over members and no host-to-device copy (a mask per member from its own torch.Generator,
drawn on the CPU and copied, took 279 -> 430 ms an epoch for 64 members with dropout 0.1).

A member's masks depend on its seed, the epoch and the draw's place in the epoch only, never on
its mates or their number; and nothing of them needs to be kept in a checkpoint (which is
written between epochs): a job resumed after epoch t draws what it would have drawn
uninterrupted. Masks differ from those of tvo before this stream (DROPOUT_MASKS names it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

DROPOUT_MASKS = "lowbias32-v1"  # the stream's name: a checkpoint records the masks it trained on
WORD = (1 << 32) - 1
GOLDEN = 0x9E3779B9  # odd: e -> e * GOLDEN is a bijection of 32-bit words that spreads indices
MIX_ROUNDS = ((16, 0x7FEB352D), (15, 0x846CA68B), (16, None))  # lowbias32: xorshift, multiply


def mix32(value: int) -> int:
    """lowbias32 of a Python int's low 32 bits, as an unsigned 32-bit int."""
    value &= WORD
    for shift, multiplier in MIX_ROUNDS:
        value ^= value >> shift
        if multiplier is not None:
            value = (value * multiplier) & WORD
    return value


def signed32(value: int) -> int:
    """An unsigned 32-bit int as the int32 with the same bits."""
    return value - (1 << 32) if value >= 1 << 31 else value


def mix32_(words: torch.Tensor) -> torch.Tensor:
    """lowbias32 of every int32 in place (bits as unsigned words): shifts masked to be logical,
    multiplications wrapping as 32-bit words do."""
    scratch = torch.empty_like(words)
    for shift, multiplier in MIX_ROUNDS:
        torch.bitwise_right_shift(words, shift, out=scratch)
        words.bitwise_xor_(scratch.bitwise_and_((1 << (32 - shift)) - 1))
        if multiplier is not None:
            words.mul_(signed32(multiplier))
    return words


def member_seed(seed: int) -> int:
    """A member's dropout seed (any non-negative int) as a mixed 32-bit word."""
    return mix32((seed & WORD) ^ mix32(seed >> 32))


class MemberDropout:
    """Dropout with each member's own probability and its own stream (see the module's text).
    `start_epoch` before an epoch's first draw; then each `masks` call is the next draw."""

    def __init__(self, probabilities: Sequence[float], seeds: Sequence[int],
                 device: torch.device) -> None:
        self.size = len(probabilities)
        self.device = device
        self.active = any(p > 0 for p in probabilities)
        self.keys = torch.tensor([signed32(member_seed(seed)) for seed in seeds],
                                 dtype=torch.int32, device=device).unsqueeze(1)  # [N, 1]
        # kept where the hash, read as a signed int32, is >= -2^31 + p * 2^32
        self.thresholds = torch.tensor(
            [min(-(1 << 31) + round(p * (1 << 32)), (1 << 31) - 1) for p in probabilities],
            dtype=torch.int32, device=device).unsqueeze(1)
        self.scales = torch.tensor([1 / (1 - p) for p in probabilities],
                                   device=device).unsqueeze(1)
        self.epoch = 0
        self.draws = 0
        self._indices: dict[int, torch.Tensor] = {}

    def start_epoch(self, epoch: int) -> None:
        self.epoch, self.draws = epoch, 0

    def masks(self, shape: Sequence[int]) -> torch.Tensor:
        """[N, *shape]: each member's next mask, 0 or 1 / (1 - p) per element."""
        counter = mix32(mix32(self.epoch) ^ self.draws)
        self.draws += 1
        words = self._element_words(math.prod(shape)) ^ (self.keys ^ signed32(counter))
        kept = mix32_(words) >= self.thresholds
        return torch.where(kept, self.scales, 0.0).view(self.size, *shape)

    def _element_words(self, count: int) -> torch.Tensor:
        """e * GOLDEN for the elements of a mask, [1, count] int32 (cached per size)."""
        if count not in self._indices:
            spread = (torch.arange(count, dtype=torch.int64, device=self.device) * GOLDEN) & WORD
            self._indices[count] = torch.where(spread >= 1 << 31, spread - (1 << 32),
                                               spread).to(torch.int32).unsqueeze(0)
        return self._indices[count]
