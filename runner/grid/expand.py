"""Grid files: read one (a YAML path or a shipped name), apply command-line sweeps, expand to jobs.

A grid is `name`, `description`, `base` (settings every job shares), `grid` (settings swept as a
cartesian product), `resources` (per unit of work), `slurm` (passed to submitit) and `pack`
(passed through for packing several jobs into one process). Every value is checked before any
job runs; every error is one line naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from cluster.base import Resources
from jobs.spec import (
    JobSpec,
    SpecError,
    coerce,
    grid_job_settings,
    settings,
    unknown_key_message,
)
from jobs.strategies import StrategyError
from jobs.strategies.params import echo, parse_call
from runner.grid.files import (  # noqa: F401 (re-exported: the grid's public names)
    GRID_KEYS,
    SHIPPED_DIR,
    GridError,
    find_grid_file,
    read_grid_file,
    shipped_grids,
)
from runner.grid.protocol import (
    Compare,
    CompareError,
    check_stages,
    grid_datasets,
    read_compare,
    stage_one,
)
from runner.grid.search import override_space, read_samples, take_spaces
from runner.grid.spaces import Space, draw
from runner.grid.sweeps import SweepError, parse_sweep, parse_values

# A grid's name becomes a folder under the output root: a plain name can never leave it.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")
DEFAULT_MAX_JOBS = 100_000


def max_jobs() -> int:
    """The most jobs one grid may expand to (TVO_MAX_JOBS raises it)."""
    try:
        return max(1, int(os.environ.get("TVO_MAX_JOBS", DEFAULT_MAX_JOBS)))
    except ValueError:
        return DEFAULT_MAX_JOBS

# resource -> (what is valid, lowest value, integer?, may be null?)
_RESOURCE_RULES: dict[str, tuple[str, float, bool, bool]] = {
    "cpus": ("an integer >= 1", 1, True, False),
    "gpus": ("an integer >= 0", 0, True, False),
    "mem_gb": ("a number > 0, or null", 0, False, True),
    "timeout_min": ("an integer >= 1", 1, True, False),
    "gpus_per_node": ("an integer >= 0", 0, True, False),
    "jobs_per_node": ("an integer >= 1", 1, True, False),
}


@dataclass(frozen=True)
class Grid:
    """A grid as resolved: file values and command-line sweeps applied, every value coerced."""

    name: str
    source: str  # how errors and listings name it: the path given, or the shipped file name
    description: str = ""
    base: Mapping[str, Any] = field(default_factory=dict)
    sweeps: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)  # in file order
    resources: Resources = field(default_factory=Resources)
    slurm: Mapping[str, Any] = field(default_factory=dict)
    pack: int | None = None  # jobs per stack, 0: auto; None: not set in the file (auto)
    spaces: Mapping[str, Space] = field(default_factory=dict)  # settings drawn from a space
    samples: int | None = None  # configurations drawn from `spaces`
    compare: Compare | None = None  # the comparison protocol (runner.grid.protocol)

    @property
    def swept_keys(self) -> list[str]:
        """Settings that take more than one value across the grid (drawn ones included)."""
        drawn = sorted(self.spaces) if (self.samples or 0) > 1 else []
        tuned = sorted(self.compare.tune) if self.compare is not None else []
        return [key for key, values in self.sweeps.items() if len(values) > 1] + drawn + tuned

    def to_yaml(self) -> str:
        """The resolved grid as a grid file: `tvo run` on it runs the same jobs."""
        content: dict[str, Any] = {"name": self.name}
        if self.description:
            content["description"] = self.description
        content["base"] = {key: _plain(value) for key, value in self.base.items()}
        content["grid"] = {key: _as_range(values) or [_plain(v) for v in values]
                           for key, values in self.sweeps.items()}
        content["resources"] = dataclasses.asdict(self.resources)
        if self.slurm:
            content["slurm"] = dict(self.slurm)
        if self.pack is not None:
            content["pack"] = self.pack
        if self.spaces:
            content["grid"].update({key: str(space) for key, space in self.spaces.items()})
            content["samples"] = self.samples
        if self.compare is not None:
            content["compare"] = self.compare.to_plain()
        header = f"# resolved from {self.source}\n"
        return header + yaml.safe_dump(content, sort_keys=False, default_flow_style=None,
                                       width=1000)


# ---------------------------------------------------------------------------------------------
# Building a Grid


def load_grid(ref: str, overrides: Sequence[str] = (), samples: int | None = None) -> Grid:
    """Read grid `ref` (a path or a shipped name) and apply KEY=VALUES words from the CLI.

    A command-line word replaces that key's values in the file, in `base` or `grid`: one value
    goes to `base`, several make it a sweep, a search space (`lr=loguniform(0.01, 1)`) is drawn
    from `samples` times (`--samples`, else the file's `samples:`).
    """
    path, label = find_grid_file(ref)
    content = read_grid_file(path, label)
    if len(label) > 500 or not label.isprintable():  # a path is shown whole, unless absurd
        label = echo(label, 200)
    for key in content:
        if key not in GRID_KEYS:
            raise GridError(f"{label}: unknown key {echo(key, 40)}{_hint(str(key), GRID_KEYS)}; "
                            f"valid keys: {', '.join(GRID_KEYS)}")
    name = content.get("name", path.stem)
    if not isinstance(name, str) or not _PLAIN_NAME.fullmatch(name) or ".." in name:
        raise GridError(f"{label}: name {_yaml_echo(name)} must be a plain name (1 to 100 "
                        "letters, digits, '-', '_' and '.', starting with a letter, digit or "
                        "'_', without '..')")
    description = content.get("description", "")
    if not isinstance(description, str):
        raise GridError(f"{label}: description must be text")
    raw_base = _mapping(label, content, "base", "base: {lr: 0.5}")
    raw_grid = _mapping(label, content, "grid", "grid: {seed: [0, 1, 2]}")
    spaces = take_spaces(f"{label}: base", raw_base) | take_spaces(f"{label}: grid", raw_grid)
    base = _read_base(label, raw_base)
    sweeps = _read_sweeps(label, raw_grid)
    for key in base:
        if key in sweeps:
            raise GridError(f"{label}: {key!r} is set in both base and grid; keep it in one")
    for word in overrides:
        space = override_space(word)
        if space is not None:
            key = space[0]
            base.pop(key, None)
            sweeps.pop(key, None)
            spaces[key] = space[1]
            continue
        key, values = _read_override(word)
        base.pop(key, None)
        spaces.pop(key, None)
        if len(values) == 1 and key not in sweeps:
            base[key] = values[0]
        elif len(values) == 1:
            del sweeps[key]
            base[key] = values[0]
        else:
            sweeps[key] = tuple(values)  # keeps a swept key's place in the file order
    _check_size(label, sweeps)
    resources = _read_resources(label, _mapping(label, content, "resources",
                                                "resources: {cpus: 1}"))
    slurm = _read_slurm(label, _mapping(label, content, "slurm", "slurm: {partition: debug}"))
    pack = _read_pack(label, content.get("pack"))
    samples = read_samples(label, content.get("samples") if samples is None else samples,
                            spaces)
    compare = None
    if "compare" in content:
        try:
            compare = read_compare(label, content["compare"])
        except CompareError as exc:
            raise GridError(str(exc)) from None
        if spaces:
            raise GridError(f"{label}: compare draws its own configurations from compare.tune; "
                            f"remove the search spaces of {', '.join(sorted(spaces))} or compare")
        _check_size(label, sweeps, compare.budget + len(compare.final_seeds))
    _check_size(label, sweeps, samples or 1)
    _check_strategies(base, sweeps)
    return Grid(name=name, source=label, description=description.strip(), base=base,
                sweeps=sweeps, resources=resources, slurm=slurm, pack=pack, spaces=spaces,
                samples=samples, compare=compare)


def _read_pack(label: str, value: Any) -> int | None:
    """`pack: N` trains up to N compatible jobs as one stack; `auto` (0) sizes the stacks to the
    slots that run at once (jobs.engine.packing.auto_pack_size); `off` 1."""
    if value is None:
        return None
    if value == "auto":
        return 0
    if value is False or value == "off":
        return 1
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= max_jobs():
        return value
    raise GridError(f"{label}: pack: got {_yaml_echo(value)}; expected auto, off or a whole "
                    f"number >= 1 (jobs trained together in one process, at most "
                    f"{max_jobs():,})")


def _check_size(label: str, sweeps: Mapping[str, tuple[Any, ...]], draws: int = 1) -> None:
    """Refuse a grid too large to expand, before it is expanded (`draws`: configurations
    drawn per combination of the sweeps)."""
    count = math.prod(len(values) for values in sweeps.values()) * draws
    limit = max_jobs()
    if count > limit:
        sizes = " x ".join([f"{key} ({len(values)})" for key, values in sweeps.items()
                            if len(values) > 1] + ([f"{draws} draws"] if draws > 1 else []))
        raise GridError(f"{label}: {sizes} makes {count:,} jobs; a grid holds at most "
                        f"{limit:,}. Split it into several grids (e.g. one per seed range or "
                        "dataset, each with its own name), or set TVO_MAX_JOBS to raise the limit")


def _yaml_echo(value: Any) -> str:
    """A YAML value as errors repeat it: text as written, anything else as YAML would, cut."""
    if isinstance(value, str):
        return echo(value)
    try:
        text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    except (yaml.YAMLError, RecursionError):
        text = type(value).__name__
    text = " ".join(text.removesuffix("\n...").split())
    return text if len(text) <= 60 else f"{text[:60]}... ({len(text):,} characters)"


def _mapping(label: str, content: Mapping[str, Any], key: str, example: str) -> dict[str, Any]:
    value = content.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise GridError(f"{label}: {key} must be a mapping, e.g. {example}; got "
                        f"{_yaml_echo(value)}")
    return dict(value)


def _coerce(section: str, key: Any, value: Any, *, dotted: bool = True) -> Any:
    """A setting's value in its type; errors name `section` (and `.key` for a bad value).

    A strategy is only parsed here (no torch): its full check needs the strategy catalogue,
    which imports torch (about a second), so it runs last, in _check_strategies, and every
    other mistake is reported without that wait.
    """
    fields = settings()
    if not isinstance(key, str) or key not in fields:
        raise GridError(f"{section}: {unknown_key_message(str(key))}")
    where = f"{section}.{key}" if dotted else section
    try:
        if key == "strategy" and isinstance(value, str):
            parse_call(value)
            return _Unchecked(value.strip(), where)
        return coerce(fields[key], value)
    except (SpecError, StrategyError) as exc:
        raise GridError(f"{where}: {exc}") from None


class _Unchecked(str):
    """A strategy string that parses, and where it came from, until _check_strategies."""

    where: str

    def __new__(cls, text: str, where: str) -> _Unchecked:
        made = super().__new__(cls, text)
        made.where = where
        return made


def _check_strategies(base: dict[str, Any], sweeps: dict[str, tuple[Any, ...]]) -> None:
    """Replace the parsed strategy strings with their canonical form, in place."""
    field_ = settings()["strategy"]

    def checked(value: Any) -> Any:
        if not isinstance(value, _Unchecked):
            return value
        try:
            return coerce(field_, str(value))
        except SpecError as exc:
            raise GridError(f"{value.where}: {exc}") from None

    if "strategy" in base:
        base["strategy"] = checked(base["strategy"])
    if "strategy" in sweeps:
        sweeps["strategy"] = tuple(checked(value) for value in sweeps["strategy"])


def _word(word: str) -> str:
    """An override word as errors name it: whole when short, else its key and a cut value."""
    return word if len(word) <= 80 and word.isprintable() else echo(word, 80)


def _read_base(label: str, base: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _coerce(f"{label}: base", key, value) for key, value in base.items()}


def _read_sweeps(label: str, grid: Mapping[str, Any]) -> dict[str, tuple[Any, ...]]:
    sweeps: dict[str, tuple[Any, ...]] = {}
    for key, raw in grid.items():
        if not isinstance(key, str) or key not in settings():
            raise GridError(f"{label}: grid: {unknown_key_message(str(key))}")
        where = f"{label}: grid.{key}"
        if isinstance(raw, str):
            try:
                raw = parse_values(where, raw, max_jobs())
            except SweepError as exc:
                raise GridError(str(exc)) from None
        elif isinstance(raw, bool | int | float):
            raw = [raw]
        if not isinstance(raw, list):
            raise GridError(f"{where} must be a list of values, e.g. seed: [0, 1, 2]; got "
                            f"{_yaml_echo(raw)}")
        if len(raw) > max_jobs():
            raise GridError(f"{where} lists {len(raw):,} values; a grid holds at most "
                            f"{max_jobs():,} jobs (TVO_MAX_JOBS raises the limit)")
        if not raw:
            raise GridError(f"{where} has no values")
        sweeps[key] = tuple(_coerce(f"{label}: grid", key, value) for value in raw)
    return sweeps


def _read_override(word: str) -> tuple[str, list[Any]]:
    try:
        key, values = parse_sweep(word, max_jobs())
    except SweepError as exc:
        raise GridError(str(exc)) from None
    return key, [_coerce(_word(word), key, value, dotted=False) for value in values]


def _read_slurm(label: str, section: dict[str, Any]) -> dict[str, Any]:
    """Checked whatever the backend, so a misspelt key shows before a grid reaches SLURM."""
    from cluster.slurm.settings import SlurmSettings, SlurmSettingsError

    for key, value in _leaves(section, "slurm"):
        if isinstance(value, float) and not math.isfinite(value):
            raise GridError(f"{label}: {key} got {value}; expected a finite number")
    try:
        SlurmSettings.read(section)
    except SlurmSettingsError as exc:
        raise GridError(f"{label}: {exc}") from None
    return section


def _leaves(value: Any, where: str) -> list[tuple[str, Any]]:
    """Every scalar in nested mappings and lists, with its dotted place (plain_yaml bounds the
    depth and size)."""
    if isinstance(value, dict):
        return [leaf for key, item in value.items() for leaf in _leaves(item, f"{where}.{key}")]
    if isinstance(value, list):
        return [leaf for index, item in enumerate(value)
                for leaf in _leaves(item, f"{where}[{index}]")]
    return [(where, value)]


def _read_resources(label: str, values: Mapping[str, Any]) -> Resources:
    checked: dict[str, Any] = {}
    for key, value in values.items():
        if key not in _RESOURCE_RULES:
            names = list(_RESOURCE_RULES)
            raise GridError(f"{label}: resources: unknown key {echo(key, 40)}"
                            f"{_hint(str(key), names)}; valid keys: {', '.join(names)}")
        valid, low, integer, nullable = _RESOURCE_RULES[key]
        if value is None and nullable:
            checked[key] = None
            continue
        is_number = (isinstance(value, int | float) and not isinstance(value, bool)
                     and math.isfinite(value) and abs(value) <= 2**31)
        if not is_number or value < low or (integer and value != int(value)) or (
                not integer and value == low):  # the real-valued mem_gb must be above 0
            raise GridError(f"{label}: resources.{key} got {_yaml_echo(value)}; expected {valid}")
        checked[key] = int(value) if integer else value
    return Resources(**checked)


def _hint(word: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(word[:100], names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _as_range(values: Sequence[Any]) -> str | None:
    """`range(a, b, step)` for three or more evenly spaced integers (20,000 seeds are one short
    line, quick to read back), else None."""
    if len(values) < 3 or not all(type(v) is int for v in values):
        return None
    step = values[1] - values[0]
    if step == 0 or list(range(values[0], values[-1] + step, step)) != list(values):
        return None
    return f"range({values[0]}, {values[-1] + step}, {step})" if step != 1 else \
        f"range({values[0]}, {values[-1] + 1})"


# ---------------------------------------------------------------------------------------------
# Expansion


def expand(grid: Grid) -> list[JobSpec]:
    """Every job of the grid, validated; identical jobs (same job_id) collapse to one.

    Drawn configurations (`samples` from the `spaces`) are crossed with the sweeps; a grid
    with `compare` expands to its tuning stage (runner.grid.protocol)."""
    if grid.compare is not None:
        try:
            check_stages(grid.source, grid.base, grid.sweeps, grid.compare)
            return stage_one(grid.base, grid.sweeps, grid.compare)
        except CompareError as exc:
            raise GridError(str(exc)) from None
        except (SpecError, SweepError) as exc:
            raise GridError(f"{grid.source}: compare: {exc}") from None
    # Seeds are the bulk of a large grid and never change what is valid: each other
    # combination is validated once, then given its seeds (JobSpec.with_seeds).
    seeds = grid.sweeps.get("seed")
    sweeps = {key: values for key, values in grid.sweeps.items() if key != "seed"}
    keys = list(sweeps)
    drawn = draw(grid.spaces, grid.samples, seed=0) if grid.spaces and grid.samples else [{}]
    datasets = grid_datasets(grid.base, grid.sweeps)
    jobs: dict[str, JobSpec] = {}
    for combination, configuration in itertools.product(
            itertools.product(*sweeps.values()), drawn):
        swept = {**dict(zip(keys, combination, strict=True)), **configuration}
        first = {"seed": seeds[0]} if seeds else {}
        where = {**swept, **first}
        try:
            spec = JobSpec.from_dict(grid_job_settings({**grid.base, **swept, **first},
                                                       datasets))
            where = swept  # a seed's own error names the seed
            seeded = spec.with_seeds(seeds) if seeds else [spec]
        except SpecError as exc:
            said = " ".join(f"{key}={_plain(value)}" for key, value in where.items())
            raise GridError(f"{grid.source}: job {said}: {exc}" if said else
                            f"{grid.source}: {exc}") from None
        for each in seeded:
            jobs.setdefault(each.job_id, each)
    return list(jobs.values())
