"""Every metric, declared once: what the results schema, TensorBoard, the report and the app read.

A metric is a column of the metrics Parquet files (one value per job and evaluated epoch). Its
declaration holds all that the outputs need of it:
- name and type (an Arrow type, by name): jobs.rundir.results builds the schema's
  measurements from them, in order;
- description: one line saying what the value is;
- tensorboard: the scalar tag jobs.rundir.tensorboard writes it under (None: not written); a
  list column's tag has an `{index}` (one chart per class);
- better: HIGHER or LOWER is better (None: neither), for the app's best values, the report's
  bold cells and the comparison protocol's selection;
- kind: MEASURED (what the network did on a split: the report hashes these to find identical
  runs), STATE (of the training: learning rate, targets), TIMING, or INDEX (the epoch);
- split and measure: which of jobs.engine.evaluation's measures of which split fills it (None:
  the engine fills it otherwise);
- curve: the y label and title of its figure over epochs in the report (None: no figure);
- summaries: the numbers per job the report's tables summarise per group (mean, std, 95 % CI),
  each with its header, digits, the tables it is shown in, and its Definitions in the report;
- definitions: the report's Definitions of the metric itself, besides its summaries'.

A new metric is one Metric in METRICS. When the engine already computes its measure on its split
(`val_confidence`: split "val", measure "confidence"), that is all; a new measure is computed in
jobs.engine.metrics and named in jobs.engine.evaluation. Imports nothing: the runner and its
figure workers read it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

HIGHER, LOWER = "higher", "lower"
MEASURED, STATE, TIMING, INDEX = "measured", "state", "timing", "index"
# how a summary reduces one job's rows to one number (runner.report.tables computes each)
FINAL = "final"  # the value of the final epoch
AT_BEST_VAL = "at_best_val"  # the value at the epoch of the best validation accuracy
AUC = "auc"  # the area under the curve over epochs divided by the epochs
# the tables a summary is a column of: the terminal's (and the report's), or the report's only
TERMINAL, REPORT = "terminal", "report"
REPORT_SPLITS = ("test", "train", "val", None)  # the report's order (in_report_order)


@dataclasses.dataclass(frozen=True)
class Summary:
    """One number per job of a metric, summarised per group in the report's tables: its columns
    in summary.parquet are <name>_mean, _std, _ci_low and _ci_high."""

    name: str
    reduce: str  # FINAL | AT_BEST_VAL | AUC
    description: str
    header: str  # the column's header in the tables of report.md, report.html and the terminal
    digits: int = 3
    shown: str | None = TERMINAL  # TERMINAL | REPORT | None (in the files only)
    latex: bool = False  # a column of summary/results.tex
    definitions: tuple[tuple[str, str], ...] = ()  # the report's Definitions: (term, text)


@dataclasses.dataclass(frozen=True)
class Metric:
    name: str
    type: str  # INT32 | FLOAT | FLOATS | MATRIX (arrow_type gives the Arrow type)
    description: str
    tensorboard: str | None = None
    better: str | None = None
    kind: str = MEASURED
    split: str | None = None  # train | val | test
    measure: str | None = None  # loss | acc | nll | ece | confidence | margin | reliability
    hparam: bool = False  # a metric column of TensorBoard's HParams table
    curve: tuple[str, str] | None = None  # (y label, title): a report figure over epochs
    summaries: tuple[Summary, ...] = ()
    definitions: tuple[tuple[str, str], ...] = ()

    @property
    def is_scalar(self) -> bool:
        return self.type in (INT32, FLOAT)


# The types a metric may have, by name: this module imports nothing (the figure workers read
# it, and pyarrow would cost each of them most of a second), arrow_type makes them Arrow's.
INT32, FLOAT, FLOATS, MATRIX = "int32", "float64", "list<float64>", "list<list<float64>>"


@functools.cache
def arrow_type(name: str) -> Any:
    """The Arrow type of a metric's type name (pyarrow.DataType)."""
    import pyarrow as pa

    types = {INT32: pa.int32(), FLOAT: pa.float64(), FLOATS: pa.list_(pa.float64()),
             MATRIX: pa.list_(pa.list_(pa.float64()))}
    if name not in types:
        raise KeyError(f"no metric type {name!r}; valid: {', '.join(types)}")
    return types[name]

ECE_TEXTS = (
    ("ECE (softmax)", "expected calibration error of the top-class probability: with the "
     "confidence p_max = max_k p_k of each test sample in 10 equal-width bins "
     "((0, 0.1], ..., (0.9, 1]), ECE = sum_b n_b/N |acc_b - conf_b|, acc_b the fraction of the "
     "bin's samples predicted correctly and conf_b their mean p_max."),
    ("ECE (sigmoid)", "one-vs-rest: each of the K sigmoid outputs is a binary probability p_ik "
     "that sample i is of class k. All N*K of them go into the same 10 equal-width bins, against "
     "the outcome 1[y_i = k]: ECE = sum_b n_b/(N K) |freq_b - conf_b|, freq_b the fraction of "
     "the bin's pairs with y_i = k and conf_b their mean p_ik. Outputs are never divided by "
     "their sum."),
)
NLL_TEXTS = (
    ("NLL (softmax)", "test negative log-likelihood -1/N sum_i log p_{i,y_i} (probabilities "
     "clamped at 1e-12)."),
    ("NLL (sigmoid)", "one-vs-rest: mean over test samples of the sum over classes of the binary "
     "log loss, -1/N sum_i sum_k [1[y_i = k] log p_ik + (1 - 1[y_i = k]) log(1 - p_ik)]."),
)

METRICS: tuple[Metric, ...] = (
    Metric("epoch", INT32, "the evaluated epoch (0: before training)", kind=INDEX),
    Metric("learning_rate", FLOAT, "the learning rate of the job's schedule at this epoch",
           "optim/learning_rate", kind=STATE),
    Metric("train_loss", FLOAT, "training loss against the strategy's targets: the running mean "
           "over the epoch's batches (train mode); epoch 0: one pass over the training set",
           "train/loss", LOWER, split="train", measure="loss", hparam=True,
           curve=("training loss", "Training loss over epochs"), summaries=(
               Summary("final_train_loss", FINAL, "training loss of the final epoch",
                       "train loss", shown=None, definitions=(
                           ("final training loss", "the training loss of the last epoch, a "
                            "running mean over its batches, against the strategy's targets."),)),
           )),
    Metric("train_acc", FLOAT, "training accuracy, measured as train_loss", "train/acc", HIGHER,
           split="train", measure="acc"),
    Metric("test_loss", FLOAT, "test loss against the strategy's targets", "test/loss", LOWER,
           split="test", measure="loss", hparam=True),
    Metric("test_acc", FLOAT, "fraction of test samples predicted correctly", "test/acc", HIGHER,
           split="test", measure="acc", hparam=True,
           curve=("test accuracy", "Test accuracy over epochs"), summaries=(
               Summary("final_test_acc", FINAL, "test accuracy at the final epoch", "final acc",
                       digits=4, shown=None, definitions=(
                           ("final test accuracy", "fraction of test samples predicted correctly "
                            "after the last epoch. The prediction is the argmax of the outputs, "
                            "or, for strategies that learn their targets (tvo), the nearest "
                            "target template: argmin_k mean((o - T_k)^2)."),)),
               Summary("test_acc_at_best_val", AT_BEST_VAL,
                       "test accuracy at the epoch of the best validation accuracy",
                       "acc@best val", digits=4, definitions=(
                           ("test accuracy at the best validation epoch",
                            "the test accuracy of the evaluated epoch with the highest "
                            "validation accuracy (the first such epoch): tvo chooses epochs on "
                            "validation, never on test."),)),
               Summary("acc_auc", AUC, "area under the test-accuracy curve divided by the "
                       "epochs (1 = perfect at once)", "acc AUC", definitions=(
                           ("acc AUC", "area under the test-accuracy curve over epochs "
                            "(trapezoids between the evaluated epochs) divided by the number of "
                            "epochs: 1 = perfect from the start."),)),
           )),
    Metric("test_nll", FLOAT, "test negative log-likelihood (null: outputs that are no "
           "probabilities)", "test/nll", LOWER, split="test", measure="nll", summaries=(
               Summary("test_nll", FINAL, "test negative log-likelihood, final epoch", "NLL",
                       latex=True, definitions=NLL_TEXTS),)),
    Metric("confidence", FLOAT, "mean cosine to the closest target template",
           "test/confidence", HIGHER, split="test", measure="confidence", summaries=(
               Summary("confidence", FINAL, "mean cosine to the closest target template, final "
                       "epoch", "confidence", shown=REPORT, definitions=(
                           ("confidence", "mean over test samples of max_k cos(o, T_k), the "
                            "cosine between the output activations o and the closest current "
                            "target template T_k (row k of the strategy's targets). Defined for "
                            "every output activation."),)),)),
    Metric("margin", FLOAT, "mean top-1 minus top-2 output", "test/margin", HIGHER,
           split="test", measure="margin", summaries=(
               Summary("margin", FINAL, "mean top-1 minus top-2 output, final epoch", "margin",
                       shown=REPORT, definitions=(
                           ("margin", "mean over test samples of the largest minus the "
                            "second-largest output activation, in the output's own units "
                            "(probabilities for softmax and sigmoid, [-1, 1] for tanh, "
                            "[-1.7159, 1.7159] for lecun_tanh, unbounded for linear): compare "
                            "margins between groups with the same output only."),)),)),
    Metric("ece", FLOAT, "expected calibration error (10 bins) on the test split (null: outputs "
           "that are no probabilities)", "test/ece", LOWER, split="test", measure="ece",
           hparam=True, summaries=(
               Summary("ece", FINAL, "expected calibration error (10 bins), final epoch", "ECE",
                       latex=True, definitions=ECE_TEXTS),)),
    # null for outputs that are no probabilities, and on rows before the final epoch unless the
    # job may stop early (files written before that have them on every row)
    Metric("reliability", MATRIX, "the test split's 10 reliability bins, each [count, mean "
           "confidence, accuracy] (empty bin: [0, 0, 0]), from which ece is computed",
           split="test", measure="reliability", definitions=(
               ("reliability diagram", "the calibration plot: per group, the 10 ECE bins above "
                "of each seed's final epoch, pooled over the seeds (counts summed; mean "
                "confidence and accuracy weighted by the counts). Each non-empty bin is a point "
                "at its mean confidence (x) and its accuracy (y): for softmax the fraction of "
                "the bin's samples predicted correctly, for sigmoid the fraction of its (sample, "
                "class) pairs with y_i = k. On the dotted diagonal a group is perfectly "
                "calibrated; below it, overconfident. Empty bins are not drawn; groups without "
                "bins (no probabilities, or metrics written before tvo recorded them) are left "
                "out. The ECE beside each panel is the group's mean final ECE over seeds, as in "
                "the tables."),)),
    Metric("val_loss", FLOAT, "validation loss (the val_fraction of the training data held out)",
           "val/loss", LOWER, split="val", measure="loss"),
    Metric("val_acc", FLOAT, "validation accuracy", "val/acc", HIGHER, split="val",
           measure="acc", definitions=(
               ("epochs to threshold", "the first epoch at which validation accuracy (never test "
                "accuracy) reached the threshold (--threshold); the median over the seeds that "
                "reached it, with reached/seeds."),)),
    Metric("val_nll", FLOAT, "validation negative log-likelihood", "val/nll", LOWER,
           split="val", measure="nll"),
    Metric("val_ece", FLOAT, "validation expected calibration error (10 bins)", "val/ece", LOWER,
           split="val", measure="ece"),
    Metric("target_class", FLOATS, "the strategy's current c_i, one per class (where it has "
           "them)", "targets/class_{index}/c", kind=STATE),
    Metric("target_nonclass", FLOATS, "the strategy's current nc_i, one per class (where it has "
           "them)", "targets/class_{index}/nc", kind=STATE),
    Metric("target_matrix", MATRIX, "the strategy's current target templates, one row per class",
           kind=STATE),
    Metric("ts_residual", FLOAT, "target_space: how far the realised sums are from the targets",
           "target_space/residual", LOWER, kind=STATE),
    Metric("epoch_seconds", FLOAT, "seconds the epoch's training took", "speed/epoch_seconds",
           LOWER, kind=TIMING),
    Metric("samples_per_second", FLOAT, "training samples per second of the epoch",
           "speed/samples_per_second", HIGHER, kind=TIMING),
)


def metric(name: str) -> Metric:
    """The declaration of a metrics column; KeyError naming the declared ones otherwise."""
    for declared in METRICS:
        if declared.name == name:
            return declared
    raise KeyError(f"no metric {name!r} is declared; declared: "
                   f"{', '.join(m.name for m in METRICS)}")


def names(kind: str | None = None) -> tuple[str, ...]:
    """The metrics columns in schema order (of one kind, if given)."""
    return tuple(m.name for m in METRICS if kind is None or m.kind == kind)


def lower_is_better(name: str) -> bool:
    return metric(name).better == LOWER


def in_report_order() -> tuple[Metric, ...]:
    """The metrics in the order the report shows them: the test split's first (what it
    compares), then the training split's, the validation split's and the rest, each in
    catalogue order."""
    return tuple(sorted(METRICS, key=lambda m: REPORT_SPLITS.index(m.split)))


def summaries() -> tuple[tuple[Metric, Summary], ...]:
    """Every summary the report's tables hold, with its metric, in report order."""
    return tuple((m, s) for m in in_report_order() for s in m.summaries)


def definitions() -> tuple[tuple[str, str], ...]:
    """The report's Definitions: each metric's summaries', then its own, in report order."""
    return tuple(entry for m in in_report_order()
                 for entry in (*(d for s in m.summaries for d in s.definitions), *m.definitions))


def curves() -> dict[str, tuple[str, str]]:
    """metrics column -> (y label, title) of its figure over epochs, in report order."""
    return {m.name: m.curve for m in in_report_order() if m.curve is not None}


def split_metrics(split: str) -> tuple[Metric, ...]:
    """The metrics jobs.engine.evaluation fills from its measures of `split`."""
    return tuple(m for m in METRICS if m.split == split and m.measure is not None)
