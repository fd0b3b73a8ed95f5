"""A stack's evaluation: every member's measures over a split, and its metrics row per epoch.

Members are measured in chunks that lie inside one strategy stack: each chunk's forward pass and
every measure over its [members, samples, classes] outputs, then one table of all members and
one sync per split. On the CPU a chunk's outputs stay a few MB (a stack-wide [1000, 1211, 10]
tensor is 48 MB: every operation on one faults fresh pages in and runs out of cache); on a GPU
chunks are large, so that the few kernels of a split stay few. A member's measures are the same
whatever the chunk (each is computed over its own rows only).

Each split measures what its rows keep: the measures the metrics declared on it name
(jobs.metric_catalogue: test everything, validation loss, accuracy, NLL and ECE, and before
training, epoch 0, the training split's loss and accuracy).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Collection, Iterator
from typing import Any, Protocol

import torch

from jobs import metric_catalogue
from jobs.engine.member import Member
from jobs.engine.metrics import ECE_BINS, calibration, confidence, margin
from jobs.engine.stack_model import FlatParameters
from jobs.nn.activations import activate, log_softmax
from jobs.nn.losses import per_sample_loss
from jobs.strategies.base import StrategyStack

MEASURES = ("loss", "acc", "nll", "ece", "confidence", "margin")  # the table's column order
TEST_MEASURES = (*MEASURES, "reliability")  # every measure this module computes
NOT_APPLICABLE = ("nll", "ece")  # NaN where the outputs are no probabilities: stored as null
CHUNK_FLOATS = {"cpu": 1 << 20}  # output floats per chunk: 4 MB on the CPU
DEVICE_CHUNK_FLOATS = 1 << 26  # elsewhere (a GPU): 256 MB


class Stack(Protocol):
    """What evaluation reads of a jobs.engine.stack.Stack."""

    members: list[Member]
    groups: list[tuple[slice, StrategyStack]]  # the strategy stacks, by slice of members
    net: FlatParameters
    device: torch.device
    num_classes: int
    loss: str
    output: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    x_val: torch.Tensor | None
    y_val: torch.Tensor | None


def measure(stack: Stack, x: torch.Tensor, y: torch.Tensor,
            wanted: Collection[str] = TEST_MEASURES) -> dict[str, list[Any]]:
    """The `wanted` measures of every member over a split, per name one value per member: loss
    against its class templates, accuracy by its decision rule, NLL, ECE, confidence, margin and
    reliability bins (10 [count, mean confidence, accuracy] triples; None where the outputs are
    no probabilities, or any bin is NaN)."""
    names = [name for name in MEASURES if name in wanted]
    bins = "reliability" in wanted
    table = torch.cat([_measure_chunk(stack, x, y, names, bins, members, group, local)
                       for members, group, local in _chunks(stack, x.shape[0])])
    member_rows = table.tolist()  # the split's one sync
    measured: dict[str, list[Any]] = {
        name: [row[k] for row in member_rows] for k, name in enumerate(names)}
    if bins:
        measured["reliability"] = [_triples(row[len(names):]) for row in member_rows]
    return measured


def _chunks(stack: Stack, samples: int) -> Iterator[tuple[slice, StrategyStack, slice]]:
    """(members of the stack, their strategy stack, the same members within it) per chunk."""
    budget = CHUNK_FLOATS.get(stack.device.type, DEVICE_CHUNK_FLOATS)
    per_chunk = max(1, budget // max(1, samples * stack.num_classes))
    for part, group in stack.groups:
        for start in range(0, group.size, per_chunk):
            local = slice(start, min(start + per_chunk, group.size))
            yield slice(part.start + local.start, part.start + local.stop), group, local


def _measure_chunk(stack: Stack, x: torch.Tensor, y: torch.Tensor, names: list[str],
                   bins: bool, members: slice, group: StrategyStack,
                   local: slice) -> torch.Tensor:
    """The chunk's table [members, len(names) (+ the bins' 3 * ECE_BINS values)]."""
    logits = stack.net.evaluate(x, members)  # [C, T, K]
    log_probs = log_softmax(logits) if stack.output == "softmax" else None
    outputs = activate(logits, stack.output) if log_probs is None else log_probs.exp()
    templates = group.templates()[local]  # [C, K, K]
    by_argmax = group.members[0].decision == "argmax"
    # one max serves argmax decisions, the margin and softmax calibration
    top = outputs.max(dim=-1) if by_argmax or "margin" in names else None
    values: dict[str, torch.Tensor] = {}
    if "loss" in names:
        targets = templates.index_select(1, y)  # [C, T, K]: templates[:, y], copied faster
        values["loss"] = per_sample_loss(stack.loss, logits, outputs, targets, stack.output,
                                         log_probs).mean(dim=1)
    if "acc" in names:  # max and argmax both take the first of tied values
        predicted = top.indices if by_argmax and top is not None else group.predict(outputs,
                                                                                    local)
        values["acc"] = (predicted == y).float().mean(dim=1)
    calibrated = None
    if bins or "nll" in names or "ece" in names:
        calibrated = calibration(logits, outputs, y, stack.output, top)
        values.update(nll=calibrated.nll, ece=calibrated.ece)
    if "confidence" in names:
        values["confidence"] = confidence(outputs, templates)
    if "margin" in names:
        values["margin"] = margin(outputs, top)
    columns = [values[name] for name in names]
    table = torch.stack(columns, dim=1)
    if bins:
        flat_bins = (calibrated.bins.flatten(1) if calibrated is not None
                     and calibrated.bins is not None
                     else table.new_full((table.shape[0], 3 * ECE_BINS), float("nan")))
        table = torch.cat([table, flat_bins], dim=1)
    return table


def evaluation_rows(stack: Stack, epoch: int) -> list[dict[str, Any]]:
    """Each member's metrics row of an evaluated epoch (the training columns are the epoch's;
    before training, epoch 0, one pass over the training set)."""
    with _collection_paused():
        return _rows(stack, epoch)


@contextlib.contextmanager
def _collection_paused() -> Iterator[None]:
    """The garbage collector held off while the rows are made: they are thousands of small
    acyclic lists and dicts (a 10 x 10 target matrix alone is 11 lists a member), whose
    allocation would set off collections that each re-scan every live object of the process
    (0.11 of 0.13 ms a job on 1,000 small jobs). Nothing cyclic is made here."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def split_measures(split: str) -> tuple[str, ...]:
    """The measures the metrics declared on `split` are filled from."""
    return tuple(dict.fromkeys(metric.measure for metric in metric_catalogue.split_metrics(split)
                               if metric.measure is not None))


def _rows(stack: Stack, epoch: int) -> list[dict[str, Any]]:
    keeps_bins = [_may_be_final(member.spec, epoch) for member in stack.members]
    splits = {"test": (stack.x_test, stack.y_test)}
    if stack.x_val is not None:
        splits["val"] = (stack.x_val, stack.y_val)
    if epoch == 0:
        splits["train"] = (stack.x_train, stack.y_train)
    residual = stack.net.residual()
    rows: list[dict[str, Any]] = [
        {"epoch": epoch, "learning_rate": member.schedule.lr, "epoch_seconds": 0.0,
         "samples_per_second": None, "ts_residual": residual} for member in stack.members]
    for split, (x, y) in splits.items():
        declared = metric_catalogue.split_metrics(split)
        wanted = {metric.measure for metric in declared}
        if not any(keeps_bins):
            wanted.discard("reliability")
        if not wanted:
            continue
        measured = measure(stack, x, y, wanted)
        for metric in declared:
            values = measured.get(metric.measure)
            if values is None:
                continue
            if metric.measure in NOT_APPLICABLE:
                values = [_number(value) for value in values]
            elif metric.measure == "reliability":
                values = [bins if keep else None for bins, keep in zip(values, keeps_bins,
                                                                       strict=True)]
            for row, value in zip(rows, values, strict=True):
                row[metric.name] = value
    for part, group in stack.groups:
        for row, values in zip(rows[part], group.all_values(), strict=True):
            row.update(target_class=values.target_class, target_nonclass=values.target_nonclass,
                       target_matrix=values.target_matrix)
    return rows


def _number(value: float) -> float | None:
    """A measurement, or None (null in Parquet) where it does not apply (NaN)."""
    return None if value != value else value


def _may_be_final(spec: Any, epoch: int) -> bool:
    """Whether `epoch` may be the job's last row, the one whose reliability bins the report
    draws: the final epoch, or any evaluated epoch of a job that may stop early. Other rows
    keep their ECE but not its bins (two thirds of a metrics file's bytes otherwise)."""
    return epoch == spec.epochs or spec.stop_patience > 0


def _triples(values: list[float]) -> list[list[float]] | None:
    """Flat reliability bins as [count, mean confidence, accuracy] per bin; None if any is NaN
    (a member whose outputs diverged, or outputs that are no probabilities)."""
    if any(v != v for v in values):
        return None
    return [values[k:k + 3] for k in range(0, len(values), 3)]
