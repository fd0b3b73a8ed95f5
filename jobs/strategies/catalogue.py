"""Every target strategy's declaration, as plain data read directly (torch-free): its name, what it
does and where it comes from, its parameters (types, ranges, defaults, nested options), and what
it needs of the pairing (outputs, loss, epochs).

A strategy string is checked, bound and spelled canonically from these alone, so expanding a
grid never imports torch. The torch classes that train each strategy register against its
declaration (jobs.strategies.base.register) and take name, parameters and checks from it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jobs.strategies import tables
from jobs.strategies.pairing import Pairing
from jobs.strategies.params import (
    Option,
    Param,
    StrategyError,
    auto_boolean,
    bind,
    boolean,
    choice,
    format_call,
    integer,
    number,
    number_table,
    options,
    param,
    text,
)

Args = Mapping[str, Any]


@dataclass(frozen=True)
class Declaration:
    """One strategy as data. `table` gives its targets when they are known before training (the
    static strategies), `needs` refuse pairings it cannot train with, and `prepare` completes
    bound arguments that depend on more than the string (a matrix file's content hash)."""

    name: str
    summary: str
    source: str
    params: tuple[Param, ...] = ()
    table: Callable[[Args, Pairing], tables.Rows] | None = None
    needs: tuple[Callable[[Declaration, Args, Pairing], None], ...] = ()
    prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    @property
    def static(self) -> bool:
        """Its targets never move during training."""
        return self.table is not None

    def bind(self, args: Args) -> dict[str, Any]:
        """Every parameter's value from a string's arguments (StrategyError when one is bad)."""
        bound = bind(self.name, self.params, args)
        return self.prepare(bound) if self.prepare is not None else bound

    def canonical(self, bound: Args) -> str:
        return format_call(self.name, bound)

    def check(self, bound: Args, pairing: Pairing) -> None:
        """Refuse a pairing these arguments cannot train with (StrategyError, one line)."""
        if self.table is not None:
            tables.check_rows(self.canonical(bound), self.table(bound, pairing), pairing)
        for need in self.needs:
            need(self, bound, pairing)


# -- what strategies need of the pairing ----------------------------------------------------------

def softmax_output(declaration: Declaration, bound: Args, pairing: Pairing) -> None:
    if pairing.output != "softmax":
        raise StrategyError(
            f"strategy {declaration.name} mixes labels with softmax predictions and needs "
            f"output=softmax; got output={pairing.output}")


def adapts_before_the_last_epoch(declaration: Declaration, bound: Args, pairing: Pairing) -> None:
    if bound["start_epoch"] >= pairing.epochs:
        raise StrategyError(
            f"strategy {declaration.canonical(bound)} adapts only after epoch "
            f"{bound['start_epoch']}, but the job trains {pairing.epochs} epochs; "
            "use start_epoch < epochs")


def both_stages_fit(declaration: Declaration, bound: Args, pairing: Pairing) -> None:
    canonical = declaration.canonical(bound)
    smoothed = tables.smoothing_rows(pairing.num_classes, bound["eps"], "uniform")
    tables.check_rows(canonical, smoothed, pairing)
    tables.check_rows(canonical, tables.onehot_rows(pairing.num_classes), pairing)
    if bound["switch_epoch"] > pairing.epochs:
        raise StrategyError(
            f"strategy {canonical} switches to one-hot at epoch {bound['switch_epoch']}, but "
            f"the job trains {pairing.epochs} epochs; use switch_epoch <= epochs, or "
            "label_smoothing")


PROBABILITY_OUTPUTS = ("softmax", "sigmoid")


def probability_output(declaration: Declaration, bound: Args, pairing: Pairing) -> None:
    # No table check: tvo's values stay in [0, 1] by construction, and unnormalised targets
    # with loss=ce are the study's replay, allowed on purpose (see jobs.strategies.tvo).
    if pairing.output not in PROBABILITY_OUTPUTS:
        raise StrategyError(
            f"strategy tvo learns targets in [0, 1] and needs output=softmax or sigmoid; "
            f"got output={pairing.output}")


def matrix_arguments(bound: dict[str, Any]) -> dict[str, Any]:
    """rows= or file=; a file is read here and its content hash joins the arguments as sha=,
    so editing the file makes a new job id, and a job whose file changed since fails."""
    rows, path, sha = bound["rows"], bound["file"], bound["sha"]
    if rows and path:
        raise StrategyError("strategy matrix takes rows= or file=, not both")
    if not rows and not path:
        raise StrategyError(
            "strategy matrix needs its table: rows=[[...], ...] or file=PATH (.csv or .yaml)")
    if not path:
        if sha:
            raise StrategyError("strategy matrix: sha= belongs to file=, not to rows=")
        return bound
    _, actual = tables.read_table_file(path)
    if sha and sha != actual:
        raise _file_changed(path, actual, sha)
    return {**bound, "sha": actual}


def matrix_rows(bound: Args) -> tables.Rows:
    """The table a matrix strategy's (prepared) arguments hold, read from its file if given."""
    if not bound["file"]:
        return bound["rows"]
    rows, actual = tables.read_table_file(bound["file"])
    if actual != bound["sha"]:
        raise _file_changed(bound["file"], actual, bound["sha"])
    return rows


def _file_changed(path: str, actual: str, sha: str) -> StrategyError:
    return StrategyError(
        f"strategy matrix file {path!r} changed since this job was made (sha {actual}, the "
        f"job says {sha}); restore the file or make a new job")


# -- the declarations -----------------------------------------------------------------------------

ONEHOT = Declaration(
    "onehot", "class 1, non-class 0: the usual one-hot target", "standard practice",
    table=lambda bound, pairing: tables.onehot_rows(pairing.num_classes))

FIXED = Declaration(
    "fixed", "class value c, non-class value nc for every class (LeCun's 0.9/0.1 advice)",
    "LeCun et al. 1998, Efficient BackProp, sec. 4.5",
    params=(
        param("c", 0.9, "target for the true class", number()),
        param("nc", 0.1, "target for every other class", number()),
        param("normalize", False, "divide each target row by its sum (for loss=ce)", boolean()),
    ),
    table=lambda bound, pairing: tables.fixed_rows(pairing.num_classes, bound["c"], bound["nc"],
                                                   bound["normalize"]))

LECUN = Declaration(
    "lecun", "targets where the output nonlinearity's second derivative peaks: "
    "sigmoid 0.7887/0.2113, tanh +-0.5774, lecun_tanh +-1",
    "LeCun et al. 1998, Efficient BackProp, sec. 4.5",
    params=(param("normalize", False,
                  "divide each target row by its sum (needed for output=softmax)", boolean()),),
    table=lambda bound, pairing: tables.lecun_rows(pairing, bound["normalize"]))

LABEL_SMOOTHING = Declaration(
    "label_smoothing", "mix the one-hot target with the uniform distribution: (1-eps) y + eps/K",
    "Szegedy et al. 2016 (Inception v3); torch CrossEntropyLoss(label_smoothing)",
    params=(
        param("eps", 0.1, "probability mass moved off the true class", number(0, 1)),
        param("variant", "uniform",
              "uniform: eps/K on every class; others: eps/(K-1) on the other classes only",
              choice("uniform", "others")),
    ),
    table=lambda bound, pairing: tables.smoothing_rows(pairing.num_classes, bound["eps"],
                                                       bound["variant"]))

MATRIX = Declaration(
    "matrix", "a K x K table of per-class targets (row y = target for class y), inline or a file",
    "user-given; e.g. soft targets for uncertain classes",
    params=(
        param("rows", [], "the table inline, e.g. [[0.9, 0.1], [0.2, 0.8]]", number_table()),
        param("file", "", "a .csv or .yaml file holding the table instead", text()),
        param("sha", "", "sha256 prefix of the file's content (filled in from the file)", text()),
    ),
    prepare=matrix_arguments,
    table=lambda bound, pairing: tables.sized_rows(matrix_rows(bound), pairing))

TWO_STAGE = Declaration(
    "two_stage", "label smoothing (1-eps) y + eps/K before epoch switch_epoch, one-hot from it on",
    "Xu et al. 2020, Towards Understanding Label Smoothing (TSLA)",
    params=(
        param("eps", 0.1, "label smoothing of the first stage", number(0, 1)),
        param("switch_epoch", 10, "first epoch (1-based) trained on one-hot targets", integer(2)),
    ),
    needs=(both_stages_fit,))

OLS = Declaration(
    "ols", "online label smoothing: alpha y + (1-alpha) S[y], S[y] = mean softmax of last "
    "epoch's correct class-y samples",
    "Zhang et al. 2021, Delving Deep into Label Smoothing (IEEE TIP)",
    params=(param("alpha", 0.5, "weight of the one-hot label", number(0, 1)),),
    needs=(softmax_output,))

PSKD = Declaration(
    "pskd", "progressive self-knowledge distillation: (1-a_t) y + a_t p_i(last epoch), "
    "a_t = alpha_T t/E",
    "Kim et al. 2021, Self-Knowledge Distillation with Progressive Refinement (ICCV)",
    params=(param("alpha_T", 0.8, "weight of the previous predictions in the last epoch",
                  number(0, 1)),),
    needs=(softmax_output,))

SAT = Declaration(
    "sat", "self-adaptive training: t_i <- m t_i + (1-m) p_i after start_epoch, "
    "loss weighted by max_k t_ik",
    "Huang et al. 2020, Self-Adaptive Training (NeurIPS)",
    params=(
        param("m", 0.9, "momentum of the running target", number(0, 1, open_high=True)),
        param("start_epoch", 60, "epochs of plain one-hot training before targets adapt "
              "(the source's E_s)", integer(0)),
    ),
    needs=(softmax_output, adapts_before_the_last_epoch))

BOOTSTRAP_SOURCE = ("Reed et al. 2015, Training Deep Neural Networks on Noisy Labels with "
                    "Bootstrapping")

BOOTSTRAP_SOFT = Declaration(
    "bootstrap_soft", "soft bootstrapping: beta y + (1-beta) p, p the current softmax",
    BOOTSTRAP_SOURCE,
    params=(param("beta", 0.95, "weight of the given label", number(0, 1)),),
    needs=(softmax_output,))

BOOTSTRAP_HARD = Declaration(
    "bootstrap_hard", "hard bootstrapping: beta y + (1-beta) onehot(argmax p), p the current "
    "softmax", BOOTSTRAP_SOURCE,
    params=(param("beta", 0.8, "weight of the given label", number(0, 1)),),
    needs=(softmax_output,))

# tvo: how its (c_j, nc_j) start and how they change (jobs.strategies.tvo_values does the math)
NU = param("nu", 0.1, "how far nc starts from c", number(0, 1))
INITS = (
    Option("uniform", "c_j and nc_j each drawn from U(0, 1)"),
    Option("average", "the untrained network's preference: mean class / non-class outputs"),
    Option("average_nudge", "average, then nc pushed nu away from c (clamped to [0, 1])", (NU,)),
    Option("average_nudge_remap", "average_nudge, then every value divided by the largest "
           "(the study's rescale)", (NU,)),
    Option("remap", "average, then min-max mapped onto [0, 1] (lowest value 0, highest 1)"),
    Option("soft", "fixed start values", (
        param("c", 0.8, "class value", number(0, 1)),
        param("nc", 0.2, "non-class value", number(0, 1)),
    )),
)
ADAPTS = (
    Option("none", "keep the initial values"),
    Option("sigma", "the study's rule: where |c - nc| < s*m, nc becomes (nc -+ s)*m within "
           "[0, 1], and c is reset when nc reaches 0 or 1 (s = std of the class outputs + std "
           "of the non-class outputs)",
           (param("m", 1.0, "the study's multiplier (scales threshold and new values)",
                  number(0, open_low=True)),)),
    Option("sigma_half", "if |c - nc| < s, move c and nc apart by s/2 each, within [0, 1]"),
    Option("eps_min", "if |c - nc| < eps, push nc away from c by eps, within [0, 1]",
           (param("eps", 0.1, "the smallest gap kept between c and nc", number(0, 1)),)),
    Option("d_max", "nc at the far end of [0, 1] from c: 0 if c > 0.5, else 1"),
)

TVO = Declaration(
    "tvo", "learned class / non-class targets: start from init, adapt after each epoch "
    "or batch, predict by the nearest target template",
    "TVO study (Zitronekoma30/nc-target-values, 2025)",
    params=(
        param("init", "average_nudge", "how c and nc start", options(*INITS)),
        param("adapt", "sigma", "how c and nc change during training", options(*ADAPTS)),
        param("cadence", "epoch", "adapt after each epoch (the study) or after each batch",
              choice("epoch", "batch")),
        param("layout", "class", "one (c, nc) pair per class (the study), or per output neuron",
              choice("class", "position")),
        param("normalize", "auto", "divide each target row by its sum; auto: when "
              "output=softmax. false with softmax replays the study",
              auto_boolean("true when output=softmax")),
    ),
    needs=(probability_output,))

DECLARATIONS: dict[str, Declaration] = {declaration.name: declaration for declaration in (
    ONEHOT, FIXED, LECUN, LABEL_SMOOTHING, MATRIX, TWO_STAGE, OLS, PSKD, SAT, BOOTSTRAP_SOFT,
    BOOTSTRAP_HARD, TVO)}
