"""JobSpec: every setting of one training job, validated up front, with a stable job id."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jobs.data.catalogue import DATASETS
from jobs.strategies import Pairing, StrategyError, declared
from jobs.strategies.params import echo

# classes per dataset, known without loading, so pairings are checked up front
DATASET_CLASSES = {name: info.num_classes for name, info in DATASETS.items()}
IMAGE_DATASETS = tuple(name for name, info in DATASETS.items() if info.image)
FILE_DATASETS = tuple(name for name, info in DATASETS.items() if info.needs_root)
NOISY_DATASETS = ("spirals", "moons")  # the datasets whose `noise` means something
MAX_INT = 2**31 - 1  # integer settings fit every index and counter type torch uses
MAX_SEED = 2**32 - 1  # what every RNG takes (jobs derive seeds as seed + a small offset)
_SEED_MARK = -7_777_777_777  # stands for the seed in a canonical text (no seed is negative)
MAX_WIDTH = 2**20  # a wider layer cannot be trained on any machine tvo runs on
MAX_LAYERS = 100
MAX_NUMBER_CHARS = 40  # 2**64 has 20 digits; a float needs about 25 characters


class SpecError(ValueError):
    """A setting that cannot be used; the message is one line naming the key and what is valid."""


def setting(default: Any, help: str, *, choices: tuple[str, ...] | None = None,
            low: float | None = None, high: float | None = None, open_low: bool = False,
            open_high: bool = False, identity: bool = True) -> Any:
    """A JobSpec field with its validation rule and help text kept next to its default.

    identity=False marks settings that say where things are, not what is computed (data_root):
    they are left out of the job id, so moving the data does not make a new job.
    """
    meta = dict(help=help, choices=choices, low=low, high=high, open_low=open_low,
                open_high=open_high, identity=identity)
    if isinstance(default, list):
        return field(default_factory=lambda: tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class JobSpec:
    # data
    dataset: str = setting("digits", "which data set", choices=tuple(DATASET_CLASSES))
    data_root: str = setting("", "folder holding mnist/fashion_mnist/cifar10 files",
                             identity=False)
    normalize: str = setting("zscore", "input scaling, statistics from the training part only",
                             choices=("none", "minmax", "zscore"))
    noise: float = setting(0.0, "noise std added to spirals/moons training points", low=0)
    val_fraction: float = setting(0.1, "part of the training data held out for validation "
                                  "(stratified); what tvo chooses, it chooses on it", low=0,
                                  high=0.5)
    val_seed: int = setting(0, "seed of the validation split (jobs that share it share the "
                            "split)", low=0, high=MAX_SEED)
    # model
    model: str = setting("mlp", "network type", choices=("mlp", "cnn"))
    hidden: tuple[int, ...] = setting([128], "widths of the hidden dense layers, e.g. [64,64]")
    activation: str = setting("relu", "hidden activation (lecun_tanh = 1.7159 tanh(2x/3))",
                              choices=("sigmoid", "tanh", "lecun_tanh", "relu", "leaky_relu"))
    output: str = setting("softmax", "output activation",
                          choices=("softmax", "sigmoid", "tanh", "lecun_tanh", "linear"))
    dropout: float = setting(0.0, "dropout probability after each hidden layer", low=0, high=1,
                             open_high=True)
    init: str = setting("default", "weight initialisation (xavier for sigmoid/tanh, he for relu); "
                        "method=target_space starts from targets instead",
                        choices=("default", "xavier", "he"))
    shortcuts: bool = setting(False, "mlp: every layer also sees the input and all earlier layers")
    # targets and loss
    loss: str = setting("ce", "training loss (ce takes soft targets)", choices=("ce", "mse", "bce"))
    strategy: str = setting("onehot", "target strategy, e.g. fixed(c=0.9, nc=0.1); "
                            "see `tvo strategies`")
    # optimisation
    optimizer: str = setting("sgd", "optimiser", choices=("sgd", "rmsprop", "adam", "adamw"))
    lr: float = setting(0.1, "learning rate", low=0, open_low=True)
    momentum: float = setting(0.0, "sgd momentum", low=0, high=1, open_high=True)
    nesterov: bool = setting(False, "sgd: Nesterov momentum (needs momentum > 0)")
    rho: float = setting(0.9, "rmsprop: decay of the squared-gradient average", low=0, high=1,
                         open_high=True)
    weight_decay: float = setting(0.0, "L2 penalty (decoupled for adamw)", low=0)
    l1: float = setting(0.0, "L1 penalty on weights (not biases), added to the loss", low=0)
    schedule: str = setting("none", "learning-rate schedule",
                            choices=("none", "step", "exponential", "plateau", "cosine"))
    step_size: int = setting(10, "step: epochs between decays", low=1)
    gamma: float = setting(0.5, "step/exponential/plateau: decay factor", low=0, high=1,
                           open_low=True)
    patience: int = setting(5, "plateau: epochs without improvement before decaying", low=0)
    min_lr: float = setting(0.0, "cosine/plateau: lowest learning rate", low=0)
    batch_size: int = setting(64, "mini-batch size; 0 = the whole training set in one batch",
                              low=0)
    epochs: int = setting(20, "training epochs", low=0)
    eval_every: int = setting(1, "evaluate and checkpoint every N epochs (and at the end)", low=1)
    stop_patience: int = setting(0, "early stopping: end after N evaluated epochs without a "
                                 "better val_acc (0: never; needs val_fraction > 0)", low=0)
    seed: int = setting(0, "seed for initialisation, data order, dropout and the strategy", low=0,
                        high=MAX_SEED)
    device: str = setting("auto", "where the job trains (auto = cuda when available)",
                          choices=("auto", "cpu", "cuda"))
    # deep learning in target space (Fairbank et al. 2022)
    method: str = setting("weights", "parameterise by weights, or by layer targets",
                          choices=("weights", "target_space"))
    ts_lambda: float = setting(0.001, "target space: ridge regulariser of the weight solve "
                               "(paper: 0.001 two-spirals, 0.1 CNNs)", low=0, open_low=True)
    ts_rows: int = setting(100, "target space: rows of the fixed input batch", low=1)
    ts_batch: str = setting("first", "target space: how the fixed batch is chosen",
                            choices=("first", "random", "noise"))
    ts_cascade: str = setting("scu", "target space: realised sums (scu) or targets (ocu) feed on",
                              choices=("scu", "ocu"))
    ts_projection: bool = setting(True, "target space: start targets at the realised sums")
    ts_init_std: float = setting(1.0, "target space: std of the initial dense-layer targets",
                                 low=0, open_low=True)
    ts_conv_init_std: float = setting(0.1, "target space: std of the initial conv-layer targets",
                                      low=0, open_low=True)

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> JobSpec:
        """Build and validate a spec from settings (raw CLI strings or YAML values)."""
        fields = settings()
        for key in values:
            if key not in fields:
                raise SpecError(unknown_key_message(str(key)))
        coerced = {key: coerce(fields[key], value) for key, value in values.items()}
        spec = cls(**coerced)
        spec.validate()
        return spec

    def replace(self, **changes: Any) -> JobSpec:
        return JobSpec.from_dict({**self.to_dict(), **changes})

    def with_seeds(self, seeds: Sequence[Any]) -> list[JobSpec]:
        """This job with each of these seeds: what `replace(seed=s)` gives for each, without
        validating each again (a seed changes nothing another setting is checked against) and
        with every job id hashed from one canonical text, about 20x faster. A grid of 100,000
        jobs is mostly seeds."""
        field_ = settings()["seed"]
        coerced = [coerce(field_, seed) for seed in seeds]
        canonical = self.canonical()
        template = None
        if "seed" in canonical:
            canonical["seed"] = _SEED_MARK
            template = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
        made = []
        for seed in coerced:
            spec = dataclasses.replace(self, seed=seed)
            if template is not None:  # job_id's cache, as cached_property keeps it
                text = template.replace(f'"seed":{_SEED_MARK}', f'"seed":{seed}', 1)
                spec.__dict__["job_id"] = hashlib.sha256(text.encode()).hexdigest()[:12]
            made.append(spec)
        return made

    # -- identity -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every setting as plain JSON values (lists for tuples)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def canonical(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)
                if f.metadata["identity"]}

    @functools.cached_property
    def job_id(self) -> str:
        """Short stable hash of the canonical settings: same settings, same id and folder
        (computed once: a runner asks for it about ten times a job)."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def strategy_name(self) -> str:
        return self.strategy.split("(", 1)[0]

    @property
    def num_classes(self) -> int:
        return DATASET_CLASSES[self.dataset]

    def pairing(self) -> Pairing:
        return Pairing(num_classes=self.num_classes, output=self.output, loss=self.loss,
                       epochs=self.epochs)

    def data_key(self) -> tuple[Any, ...]:
        """The settings that make the job's data: jobs with one key share one loaded copy per
        process and device (jobs.engine.train.shared_dataset)."""
        return (self.dataset, self.data_root, self.normalize, self.noise, self.val_fraction,
                self.val_seed)

    # -- validation across settings ---------------------------------------------------------------
    def validate(self) -> None:
        if self.loss == "ce" and self.output != "softmax":
            raise SpecError(
                f"loss=ce needs output=softmax (got output={self.output}); "
                "use loss=mse or loss=bce with other outputs"
            )
        if self.loss == "bce" and self.output not in ("sigmoid", "softmax"):
            raise SpecError(
                f"loss=bce needs outputs in (0, 1): output=sigmoid or softmax "
                f"(got output={self.output})"
            )
        if self.model == "cnn" and self.dataset not in IMAGE_DATASETS:
            raise SpecError(
                f"model=cnn needs an image dataset ({', '.join(IMAGE_DATASETS)}); "
                f"got dataset={self.dataset}"
            )
        if self.shortcuts and self.model != "mlp":
            raise SpecError("shortcuts=true is for model=mlp only")
        if self.dataset in FILE_DATASETS and not self.data_root:
            raise SpecError(
                f"dataset={self.dataset} reads its files from disk; pass data_root=DIR "
                "(nothing is downloaded)"
            )
        if self.data_root and self.dataset not in FILE_DATASETS:
            raise SpecError(
                f"data_root={echo(self.data_root)} applies to {', '.join(FILE_DATASETS)} only "
                f"(got dataset={self.dataset}, which is built in); leave data_root unset"
            )
        if self.noise > 0 and self.dataset not in NOISY_DATASETS:
            raise SpecError(
                f"noise={self.noise:g} applies to {', '.join(NOISY_DATASETS)} only "
                f"(got dataset={self.dataset}); leave noise at 0"
            )
        if self.nesterov and self.momentum == 0:
            raise SpecError("nesterov=true needs momentum > 0 (e.g. momentum=0.9)")
        if self.stop_patience > 0 and self.val_fraction == 0:
            raise SpecError("stop_patience stops on the validation accuracy: it needs "
                            "val_fraction > 0 (e.g. val_fraction=0.1)")
        if self.method == "target_space" and (self.l1 > 0 or self.weight_decay > 0):
            raise SpecError(
                "l1 and weight_decay penalise weights; with method=target_space the weights are "
                "solved by ridge least squares: use ts_lambda"
            )
        if any(width < 1 for width in self.hidden):
            raise SpecError(f"setting 'hidden' got {list(self.hidden)}; widths must be >= 1")
        _check_strategy(self.strategy, self.pairing())


# ---------------------------------------------------------------------------------------------
# Settings table and value coercion


def settings() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(JobSpec)}


def unknown_key_message(key: str) -> str:
    names = sorted(settings())
    hint = difflib.get_close_matches(key[:100], names, n=1)
    suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
    return f"unknown setting {echo(key, 40)}{suggestion}; valid settings: {', '.join(names)}"


def describe(f: dataclasses.Field) -> str:
    """What values a setting takes, in words, for errors and help."""
    meta = f.metadata
    if meta["choices"]:
        return "one of " + ", ".join(meta["choices"])
    if f.type in ("bool", bool):
        return "true or false"
    if f.name == "hidden":
        return f"a list of positive integers like [128] or [64,64] (each at most {MAX_WIDTH})"
    if f.name == "strategy":
        return "a strategy like onehot or fixed(c=0.9, nc=0.1)"
    kind = "an integer" if f.type in ("int", int) else "a number"
    low, high = meta["low"], meta["high"]
    if low is not None and high is not None:
        lo = "(" if meta["open_low"] else "["
        hi = ")" if meta["open_high"] else "]"
        return f"{kind} in {lo}{_bound(low)}, {_bound(high)}{hi}"
    if low is not None:
        return f"{kind} {'>' if meta['open_low'] else '>='} {_bound(low)}"
    return "text" if f.type in ("str", str) else kind


def _bound(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e16 else f"{value:g}"


def coerce(f: dataclasses.Field, value: Any) -> Any:
    """Turn a raw value (CLI string or YAML value) into the setting's type, or raise SpecError."""
    def bad() -> SpecError:
        return SpecError(f"setting {f.name!r} got {_shown(value)}; expected {describe(f)}")

    kind = f.type
    meta = f.metadata
    if kind in ("str", str):
        if not isinstance(value, str) and f.name != "data_root":
            raise bad()
        value = str(value).strip()
        if meta["choices"] and value not in meta["choices"]:
            raise bad()
        if f.name == "strategy":
            if "file" in value:  # matrix(file=...): its canonical form hashes the file, read anew
                return _canonical_strategy.__wrapped__(value)
            return _canonical_strategy(value)
        return value
    if kind in ("bool", bool):
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "on"):
            return True
        if isinstance(value, str) and value.strip().lower() in ("false", "no", "0", "off"):
            return False
        if isinstance(value, bool):
            return value
        raise bad()
    if f.name == "hidden":
        return _coerce_int_list(value, bad)
    number = _to_number(value)
    if number is None:
        raise bad()
    if kind in ("int", int):
        if isinstance(number, float) and not number.is_integer():
            raise bad()  # also nan and inf
        number = int(number)
        if abs(number) > MAX_INT and meta["high"] is None:
            raise SpecError(f"setting {f.name!r} got {_shown(value)}; expected {describe(f)} "
                            f"and at most {MAX_INT}")
    else:
        try:
            number = float(number)
        except OverflowError:  # an integer beyond a float's range
            raise bad() from None
        if not math.isfinite(number):
            raise bad()
    low, high = meta["low"], meta["high"]
    if low is not None and (number < low or (meta["open_low"] and number == low)):
        raise bad()
    if high is not None and (number > high or (meta["open_high"] and number == high)):
        raise bad()
    return number


def _to_number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        if len(value) > MAX_NUMBER_CHARS:  # int() of a long digit string is slow, or refused
            return None
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return None
    return None


def _coerce_int_list(value: Any, bad: Any) -> tuple[int, ...]:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        parts = [p.strip() for p in text.split(",") if p.strip()]
        value = [_to_number(p) for p in parts]
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list | tuple):
        raise bad()
    widths = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise bad()
        if isinstance(item, float) and not item.is_integer():
            raise bad()  # also nan and inf
        if not 1 <= item <= MAX_WIDTH:
            raise bad()
        widths.append(int(item))
    if len(widths) > MAX_LAYERS:
        raise bad()
    return tuple(widths)


def grid_job_settings(settings: Mapping[str, Any],
                      grid_datasets: Sequence[str]) -> dict[str, Any]:
    """One job's settings in a grid that trains `grid_datasets`: a data_root meant for the
    grid's datasets read from files is not given to its jobs of built-in datasets, which read
    none. Where no dataset of the grid reads files, data_root stays, and the job refuses it."""
    dataset = settings.get("dataset", JobSpec.dataset)
    if (settings.get("data_root") and dataset not in FILE_DATASETS
            and any(name in FILE_DATASETS for name in grid_datasets)):
        return {key: value for key, value in settings.items() if key != "data_root"}
    return dict(settings)


@functools.lru_cache(maxsize=4096)  # a grid repeats a few strategies over thousands of jobs
def _canonical_strategy(text: str) -> str:
    try:
        return declared.canonical(text)  # from the declarations alone: no torch
    except StrategyError as exc:
        raise SpecError(str(exc)) from None


@functools.lru_cache(maxsize=4096)
def _check_strategy(strategy: str, pairing: Pairing) -> None:
    try:
        declared.check_pairing(strategy, pairing)
    except StrategyError as exc:
        raise SpecError(str(exc)) from None


def _shown(value: Any) -> str:
    """A raw value as an error repeats it: what was typed, or the YAML value as JSON, cut."""
    if isinstance(value, str):
        return echo(value)
    try:
        text = json.dumps(_plain(value))
    except (TypeError, ValueError):  # nan, or a structure json cannot write
        text = str(value)
    return echo(text)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
