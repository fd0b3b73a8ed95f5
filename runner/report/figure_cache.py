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
import json
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from runner.report.labels import Labels
from runner.report.model import Group

FINGERPRINT_KEY = b"tvo.figures"
FILES_KEY = b"tvo.figure_files"  # the files drawn with that fingerprint
DRAWING_CODE = ("figures.py", "figure_layout.py", "calibration_figure.py", "tuning_figures.py",
                "plots.py", "plot_data.py", "styles.py", "labels.py", "model.py")


def fingerprint(sources: Mapping[str, tuple[int, int]], keys: Sequence[str], labels: Labels,
                groups: Sequence[Group]) -> str:
    """Of what the figures are drawn from: every run's metrics file (size and modification
    time, as load fingerprints them), the groups with their labels and done jobs, and the
    drawing code. Not of the numbers drawn: polars sums in parallel, and the last bits of a
    mean vary from run to run. Known before the metrics are read, so no figure worker is
    started for figures that are kept."""
    shown = (sorted(sources.items()), list(keys), labels,
             sorted((group.name, group.label, group.done_ids) for group in groups))
    digest = hashlib.sha256(pickle.dumps(shown))
    folder = Path(__file__).parent
    for name in DRAWING_CODE:
        digest.update((folder / name).read_bytes())
    digest.update(importlib.metadata.version("matplotlib").encode())
    return digest.hexdigest()


def metadata(print_: str, files: Sequence[str]) -> dict[str, str]:
    """What summary.parquet keeps of the figures drawn (or kept) with it."""
    return {FINGERPRINT_KEY.decode(): print_, FILES_KEY.decode(): json.dumps(list(files))}


def stored(summary_parquet: Path) -> dict[str, str]:
    """What summary_parquet keeps of its figures ({} if nothing): a run without plots keeps
    it, since it leaves the figures as they are."""
    try:
        kept = pq.ParquetFile(summary_parquet).metadata.metadata or {}
    except (OSError, pa.ArrowException):
        return {}
    return {key.decode(): kept[key].decode() for key in (FINGERPRINT_KEY, FILES_KEY)
            if key in kept}


def unchanged(summary_parquet: Path, print_: str) -> bool:
    """Whether the figures beside summary_parquet were drawn from the same inputs and are all
    still there."""
    try:
        stored = pq.ParquetFile(summary_parquet).metadata.metadata or {}
        files = json.loads(stored.get(FILES_KEY, b"[]"))
    except (OSError, ValueError, pa.ArrowException):
        return False
    return (stored.get(FINGERPRINT_KEY) == print_.encode() and bool(files)
            and all((summary_parquet.parent / name).is_file() for name in files))
