"""Target tables known before training, as plain rows of floats (torch-free), and the check that
a table fits the output and loss it trains with.

Row y of a K x K table is the target of class y. Checking a strategy against a pairing needs
these tables before anything trains (and before torch is imported); the strategies that train
on them (jobs.strategies.fixed, .schedules, .matrix) make their tensors from the same rows.
"""

from __future__ import annotations

import csv
import hashlib
import math
from pathlib import Path
from typing import Any

from jobs.nn.output_ranges import output_range
from jobs.strategies.pairing import Pairing
from jobs.strategies.params import StrategyError, number_table

Rows = list[list[float]]
SHA_CHARS = 16  # of a matrix file's sha256: enough to tell two versions of one file apart


def onehot_rows(num_classes: int) -> Rows:
    return fixed_rows(num_classes, 1.0, 0.0, normalize=False)


def fixed_rows(num_classes: int, c: float, nc: float, normalize: bool) -> Rows:
    """c on the diagonal, nc elsewhere; normalize divides each row by its sum."""
    rows = [[c if i == j else nc for j in range(num_classes)] for i in range(num_classes)]
    return [[value / sum(row) for value in row] for row in rows] if normalize else rows


def smoothing_rows(num_classes: int, eps: float, variant: str) -> Rows:
    """uniform: (1-eps) y + eps/K (torch's and Keras's label_smoothing); others: 1-eps on the
    true class and eps/(K-1) on each other class."""
    if variant == "uniform":
        off, on = eps / num_classes, 1 - eps + eps / num_classes
    else:
        off, on = eps / (num_classes - 1), 1 - eps
    return fixed_rows(num_classes, on, off, normalize=False)


def second_derivative_peak(output: str) -> float:
    """The input x > 0 at which a sigmoid-shaped output's second derivative is extreme.

    sigmoid: f'' = f(1-f)(1-2f) is extreme where f''' = 0, i.e. 6f^2 - 6f + 1 = 0, so
    f = (3 +- sqrt 3)/6, at x = +-ln(2 + sqrt 3) = +-1.317.
    tanh: f'' = -2t(1-t^2) is extreme where 1 - 3t^2 = 0, i.e. t = +-1/sqrt 3, x = atanh(1/sqrt 3).
    """
    if output == "sigmoid":
        return math.log(2 + math.sqrt(3))
    if output == "tanh":
        return math.atanh(1 / math.sqrt(3))
    raise ValueError(output)


def lecun_values(output: str) -> tuple[float, float]:
    """(class, non-class) targets: the output nonlinearity at +-x of its second-derivative peak.

    lecun_tanh, 1.7159 tanh(2x/3): LeCun chose 1.7159 (= 1/tanh(2/3), rounded) so that
    f(+-1) = +-1 with the second-derivative peak at x = +-1, and names +-1 as the targets. (The
    exact peak is 1.5 atanh(1/sqrt 3) = 0.988, f = 0.9907; we keep the paper's +-1, as that
    function was made for them.) A softmax output has no per-neuron nonlinearity; it gets the
    logistic sigmoid's values, which the strategy then normalises.
    """
    if output == "lecun_tanh":
        return 1.0, -1.0
    per_neuron = "sigmoid" if output == "softmax" else output
    peak = second_derivative_peak(per_neuron)
    if per_neuron == "sigmoid":
        return 1 / (1 + math.exp(-peak)), 1 / (1 + math.exp(peak))
    return math.tanh(peak), math.tanh(-peak)


def lecun_rows(pairing: Pairing, normalize: bool) -> Rows:
    output = pairing.output
    if output == "linear":
        raise StrategyError(
            "strategy lecun needs a saturating output: output=sigmoid, tanh, lecun_tanh, "
            "or softmax with lecun(normalize=true); got output=linear"
        )
    if output == "softmax" and not normalize:
        raise StrategyError(
            "strategy lecun with output=softmax needs lecun(normalize=true): softmax "
            "outputs sum to 1, so per-neuron targets must be normalised first"
        )
    c, nc = lecun_values(output)
    return fixed_rows(pairing.num_classes, c, nc, normalize)


def read_table_file(path: str) -> tuple[Rows, str]:
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


def sized_rows(rows: Rows, pairing: Pairing) -> Rows:
    """A user's table, refused unless it is K x K for the pairing's K classes."""
    k = pairing.num_classes
    lengths = sorted({len(row) for row in rows})
    if len(rows) != k or lengths != [k]:
        shape = (f"a {len(rows)} x {lengths[0]} table" if len(lengths) == 1
                 else f"rows of different lengths {lengths}")
        raise StrategyError(
            f"strategy matrix has {shape}, but the dataset has {k} classes; "
            f"give {k} rows of {k} numbers")
    return rows


def check_rows(strategy: str, rows: Rows, pairing: Pairing) -> None:
    """Refuse targets the loss and output cannot use, instead of training into a silent NaN."""
    values = [value for row in rows for value in row]
    low, high = min(values), max(values)
    reachable = output_range(pairing.output)
    if reachable is not None and (low < reachable[0] or high > reachable[1]):
        raise StrategyError(
            f"strategy {strategy} gives targets in [{low:.4g}, {high:.4g}], but output="
            f"{pairing.output} only reaches [{reachable[0]:.4g}, {reachable[1]:.4g}]"
        )
    if pairing.loss == "ce":
        sums = [sum(row) for row in rows]
        if low < 0 or max(abs(total - 1) for total in sums) > 1e-6:
            raise StrategyError(
                f"strategy {strategy} gives targets summing to {max(sums):.4g} per row, "
                "but loss=ce needs non-negative targets that sum to 1; use normalize=true "
                "where the strategy has it, or loss=mse/bce"
            )
    if pairing.loss == "bce" and (low < 0 or high > 1):
        raise StrategyError(
            f"strategy {strategy} gives targets in [{low:.4g}, {high:.4g}], but loss=bce "
            "needs targets in [0, 1]"
        )
