"""matrix: a user-given K x K target table, inline or from a CSV/YAML file."""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from jobs.strategies.base import Pairing, register
from jobs.strategies.fixed import StaticStrategy
from jobs.strategies.params import StrategyError, number_table, param, text

SHA_CHARS = 16  # of the file's sha256: enough to tell two versions of one file apart


def read_table_file(path: str) -> tuple[list[list[float]], str]:
    """The rows of a .csv (one row per line, numbers separated by commas; # starts a comment)
    or .yaml/.yml (a list of lists) file, and the sha256 prefix of its bytes."""
    import yaml

    try:
        data = Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise StrategyError(f"strategy matrix cannot read file {path!r}: {exc.strerror}") from None
    suffix = Path(path).suffix.lower()
    if suffix not in (".csv", ".yaml", ".yml"):
        raise StrategyError(f"strategy matrix file {path!r} must end in .csv, .yaml or .yml")
    try:
        if suffix == ".csv":
            lines = [line for line in data.decode().splitlines()
                     if line.strip() and not line.lstrip().startswith("#")]
            raw: Any = [[float(cell) for cell in row] for row in csv.reader(lines)]
        else:
            raw = yaml.safe_load(data)
        rows = number_table()[0](raw)
    except (ValueError, yaml.YAMLError):
        raise StrategyError(
            f"strategy matrix file {path!r} does not hold a table of finite numbers like "
            "[[0.9, 0.1], [0.2, 0.8]] (CSV: one row per line)") from None
    return rows, hashlib.sha256(data).hexdigest()[:SHA_CHARS]


@register
class Matrix(StaticStrategy):
    """Row y of the table is the target of class y.

    A file is read when the strategy is made (so when a spec is validated, and again in the job)
    and its content hash is kept in the canonical string as sha=...: editing the file makes a new
    job id, and a job whose file changed after it was made fails instead of training on other
    targets than its id says.
    """

    name = "matrix"
    summary = "a K x K table of per-class targets (row y = target for class y), inline or a file"
    source = "user-given; e.g. soft targets for uncertain classes"
    params = (
        param("rows", [], "the table inline, e.g. [[0.9, 0.1], [0.2, 0.8]]", number_table()),
        param("file", "", "a .csv or .yaml file holding the table instead", text()),
        param("sha", "", "sha256 prefix of the file's content (filled in from the file)", text()),
    )

    def __init__(self, args: Mapping[str, Any]) -> None:
        super().__init__(args)
        rows, path, sha = self.args["rows"], self.args["file"], self.args["sha"]
        if rows and path:
            raise StrategyError("strategy matrix takes rows= or file=, not both")
        if not rows and not path:
            raise StrategyError(
                "strategy matrix needs its table: rows=[[...], ...] or file=PATH (.csv or .yaml)")
        if not path:
            if sha:
                raise StrategyError("strategy matrix: sha= belongs to file=, not to rows=")
            self._rows = rows
            return
        self._rows, actual = read_table_file(path)
        if sha and sha != actual:
            raise StrategyError(
                f"strategy matrix file {path!r} changed since this job was made (sha {actual}, "
                f"the job says {sha}); restore the file or make a new job")
        self.args["sha"] = actual

    def table(self, pairing: Pairing) -> torch.Tensor:
        k = pairing.num_classes
        rows = self._rows
        lengths = sorted({len(row) for row in rows})
        if len(rows) != k or lengths != [k]:
            shape = (f"a {len(rows)} x {lengths[0]} table" if len(lengths) == 1
                     else f"rows of different lengths {lengths}")
            raise StrategyError(
                f"strategy matrix has {shape}, but the dataset has {k} classes; "
                f"give {k} rows of {k} numbers")
        return torch.tensor(rows, dtype=torch.float32)
