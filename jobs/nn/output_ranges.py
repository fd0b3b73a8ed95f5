"""What each output activation can reach, known without torch (strategies check targets by it)."""

from __future__ import annotations

LECUN_TANH_SCALE = 1.7159  # LeCun 1998: f(x) = 1.7159 tanh(2x/3) has f(+-1) = +-1

# The closed range each bounded output approaches; linear is unbounded.
OUTPUT_RANGES: dict[str, tuple[float, float]] = {
    "sigmoid": (0.0, 1.0), "softmax": (0.0, 1.0), "tanh": (-1.0, 1.0),
    "lecun_tanh": (-LECUN_TANH_SCALE, LECUN_TANH_SCALE),
}


def output_range(output: str) -> tuple[float, float] | None:
    """The closed range an output activation can approach; None when unbounded (linear)."""
    return OUTPUT_RANGES.get(output)
