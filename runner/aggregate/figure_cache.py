"""Figures are drawn again only when what they show has changed.

Drawing is most of an aggregation's time (about 0.6 s per figure for PNG and SVG), and a grid
is often aggregated again with nothing new (another --format, a look at the report). The
fingerprint of what the figures show (the metrics files and groups they are drawn from, and the
code that draws them) is kept in summary.parquet's metadata; when it and every figure file are
still there, the files are kept as they are.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from runner.aggregate.model import Summary

FINGERPRINT_KEY = b"tvo.figures"
DRAWING_CODE = ("figures.py", "plots.py", "plot_data.py", "styles.py", "labels.py", "model.py")


def fingerprint(sources: Mapping[str, tuple[int, int]], summary: Summary) -> str:
    """Of what the figures are drawn from: every run's metrics file (size and modification
    time, as load fingerprints them), the groups with their labels and done jobs, and the
    drawing code. Not of the numbers drawn: polars sums in parallel, and the last bits of a
    mean vary from run to run."""
    shown = (sorted(sources.items()), summary.keys, summary.labels,
             [(group.name, group.label, group.done_ids) for group in summary.groups])
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
