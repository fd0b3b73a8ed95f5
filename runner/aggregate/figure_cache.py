"""Figures are drawn again only when what they show has changed.

Drawing is most of an aggregation's time (about 0.6 s per figure for PNG and SVG), and a grid
is often aggregated again with nothing new (another --format, a look at the report). The
fingerprint of what the figures show (the summary and plot data they are drawn from, and the
code that draws them) is kept in summary.parquet's metadata; when it and every figure file are
still there, the files are kept as they are.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from runner.aggregate.model import PlotData, Summary

FINGERPRINT_KEY = b"tvo.figures"
DRAWING_CODE = ("figures.py", "plots.py", "styles.py", "labels.py", "model.py")


SIGNIFICANT_DIGITS = 10  # polars sums in parallel: the last bits of a mean vary run to run


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.{SIGNIFICANT_DIGITS}g}")
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        with np.errstate(all="ignore"):  # vectorised: 60,000 numbers on the benchmark grid
            magnitude = np.floor(np.log10(np.abs(value)))
            scale = 10.0 ** (SIGNIFICANT_DIGITS - 1 - np.where(np.isfinite(magnitude),
                                                                magnitude, 0))
            return (np.round(value * scale) / scale).tobytes()
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(item) for item in value]
    return value


def fingerprint(summary: Summary, plot_data: PlotData) -> str:
    """Of what the figures are drawn from (numbers to 10 significant digits), and of the
    drawing code."""
    shown = (summary.labels, [(g.name, g.done_ids) for g in summary.groups],
             _rounded(summary.rows),
             {column: [(c.group.name, c.epochs.tolist(), _rounded(c.mean), _rounded(c.low),
                        _rounded(c.high)) for c in curves]
              for column, curves in plot_data.curves.items()},
             [(t.group.name, t.epochs.tolist(), _rounded(t.target_class),
               _rounded(t.target_nonclass)) for t in plot_data.trajectories])
    digest = hashlib.sha256(pickle.dumps(shown))
    folder = Path(__file__).parent
    for name in DRAWING_CODE:
        digest.update((folder / name).read_bytes())
    digest.update(importlib.metadata.version("matplotlib").encode())
    return digest.hexdigest()


def unchanged(summary_dir: Path, summary_file: str, print_: str, files: Sequence[str]) -> bool:
    """Whether the figures in summary_dir were drawn from the same inputs and are all there."""
    try:
        metadata = pq.ParquetFile(summary_dir / summary_file).metadata.metadata or {}
    except (OSError, pa.ArrowException):
        return False
    return (metadata.get(FINGERPRINT_KEY) == print_.encode()
            and all((summary_dir / name).is_file() for name in files))
