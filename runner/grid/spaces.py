"""Search spaces: `lr=loguniform(0.001, 1)`, `uniform(a, b)`, `intuniform(a, b)`,
`choice(a, b, ...)`, and configurations drawn from them jointly.

Draws are scrambled Halton points (scipy.stats.qmc: low-discrepancy, so a small budget still
covers the space evenly), seeded, so the same spaces, count and seed always give the same
configurations; each point's coordinates are mapped onto the spaces in the order of their keys.
The drawn values become the jobs' settings like any other value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner.grid.sweeps import SweepError, split_values

KINDS = ("loguniform", "uniform", "intuniform", "choice")
_CALL = re.compile(r"(loguniform|uniform|intuniform|choice)\((.*)\)", re.DOTALL)
MAX_SAMPLES = 100_000


@dataclass(frozen=True)
class Space:
    kind: str
    values: tuple[Any, ...]  # (low, high) for the ranges, the options for choice

    def at(self, u: float) -> Any:
        """The value at position u in [0, 1) of the space."""
        if self.kind == "choice":
            return self.values[min(int(u * len(self.values)), len(self.values) - 1)]
        low, high = self.values
        if self.kind == "uniform":
            return low + u * (high - low)
        if self.kind == "loguniform":
            return math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
        return min(int(low + u * (high - low + 1)), high)  # intuniform: each integer alike

    def __str__(self) -> str:
        return f"{self.kind}({', '.join(str(value) for value in self.values)})"


def parse_space(word: str, text: Any) -> Space | None:
    """The space `text` writes, or None when it is no space (a plain value or sweep)."""
    if not isinstance(text, str):
        return None
    match = _CALL.fullmatch(text.strip())
    if match is None:
        return None
    kind, inner = match.groups()
    parts = [part for part in split_values(inner) if part]
    if kind == "choice":
        if not parts:
            raise SweepError(f"{word}: choice() needs at least one value, e.g. choice(0, 0.9)")
        return Space(kind, tuple(parts))
    usage = f"{word}: {kind}() takes two numbers low < high, e.g. {kind}(" + (
        "1, 8)" if kind == "intuniform" else "0.001, 1)")
    if len(parts) != 2:
        raise SweepError(usage)
    try:
        low, high = ((int(p) for p in parts) if kind == "intuniform"
                     else (float(p) for p in parts))
    except ValueError:
        raise SweepError(usage) from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise SweepError(usage)
    if kind == "loguniform" and low <= 0:
        raise SweepError(f"{word}: loguniform() needs 0 < low < high (a log scale)")
    return Space(kind, (low, high))


def draw(spaces: Mapping[str, Space], count: int, seed: int = 0) -> list[dict[str, Any]]:
    """`count` configurations drawn jointly from `spaces` (one value per key each)."""
    if not 1 <= count <= MAX_SAMPLES:
        raise SweepError(f"samples: got {count}; expected a whole number from 1 to {MAX_SAMPLES}")
    from scipy.stats import qmc

    keys = sorted(spaces)
    points = qmc.Halton(d=len(keys), scramble=True, seed=seed).random(count)
    return [{key: spaces[key].at(float(u)) for key, u in zip(keys, point, strict=True)}
            for point in points]
