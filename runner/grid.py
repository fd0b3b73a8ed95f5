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
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cluster.base import Resources
from jobs.spec import JobSpec, SpecError, coerce, settings, unknown_key_message
from runner.sweeps import SweepError, parse_sweep, parse_values

GRID_KEYS = ("name", "description", "base", "grid", "resources", "slurm", "pack")
SHIPPED_DIR = Path(__file__).parent / "grids"
# A grid's name becomes a folder under the output root: a plain name can never leave it.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")

# resource -> (what is valid, lowest value, integer?, may be null?)
_RESOURCE_RULES: dict[str, tuple[str, float, bool, bool]] = {
    "cpus": ("an integer >= 1", 1, True, False),
    "gpus": ("an integer >= 0", 0, True, False),
    "mem_gb": ("a number > 0, or null", 0, False, True),
    "timeout_min": ("an integer >= 1", 1, True, False),
    "gpus_per_node": ("an integer >= 0", 0, True, False),
    "jobs_per_node": ("an integer >= 1", 1, True, False),
}


class GridError(ValueError):
    """A grid that cannot run; the message is one line naming the file and the key."""


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

    @property
    def swept_keys(self) -> list[str]:
        """Settings that take more than one value across the grid."""
        return [key for key, values in self.sweeps.items() if len(values) > 1]

    def to_yaml(self) -> str:
        """The resolved grid as a grid file: `tvo run` on it runs the same jobs."""
        content: dict[str, Any] = {"name": self.name}
        if self.description:
            content["description"] = self.description
        content["base"] = {key: _plain(value) for key, value in self.base.items()}
        content["grid"] = {key: [_plain(v) for v in values]
                           for key, values in self.sweeps.items()}
        content["resources"] = dataclasses.asdict(self.resources)
        if self.slurm:
            content["slurm"] = dict(self.slurm)
        if self.pack is not None:
            content["pack"] = self.pack
        header = f"# resolved from {self.source}\n"
        return header + yaml.safe_dump(content, sort_keys=False, default_flow_style=None,
                                       width=1000)


# ---------------------------------------------------------------------------------------------
# Finding and reading a grid file


def shipped_grids() -> dict[str, Path]:
    """Grids that ship with tvo, by name."""
    return {path.stem: path for path in sorted(SHIPPED_DIR.glob("*.yaml"))}


def find_grid_file(ref: str) -> tuple[Path, str]:
    """The file a GRID argument means, and how messages name it."""
    path = Path(ref)
    if path.is_file():
        return path, ref
    shipped = shipped_grids()
    if ref in shipped:
        return shipped[ref], f"{ref}.yaml"
    if "/" in ref or "\\" in ref or path.suffix in (".yaml", ".yml"):
        raise GridError(f"grid file {ref!r} does not exist")
    raise GridError(
        f"unknown grid {ref!r}: no such file, and no grid of that name ships with tvo "
        f"(shipped: {', '.join(shipped) or 'none'}; see `tvo grids`)"
    )


def read_grid_file(path: Path, label: str) -> dict[str, Any]:
    """The file's top-level mapping, read with YAML's safe loader (no object tags)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise GridError(f"cannot read grid file {label!r}: {exc}") from None
    try:
        content = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise GridError(f"grid file {label!r} is not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(content, dict):
        kind = "nothing" if content is None else f"a {type(content).__name__}"
        raise GridError(f"grid file {label!r} must be a mapping with keys "
                        f"{', '.join(GRID_KEYS)}; it holds {kind}")
    return content


def _yaml_problem(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if isinstance(exc, yaml.constructor.ConstructorError) and "tag" in problem:
        tag = problem.rsplit(" ", 1)[-1]
        problem = f"tag {tag} is not allowed (grid files are plain YAML: no object tags)"
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


# ---------------------------------------------------------------------------------------------
# Building a Grid


def load_grid(ref: str, overrides: Sequence[str] = ()) -> Grid:
    """Read grid `ref` (a path or a shipped name) and apply KEY=VALUES words from the CLI.

    A command-line word replaces that key's values in the file, in `base` or `grid`: one value
    goes to `base`, several make it a sweep.
    """
    path, label = find_grid_file(ref)
    content = read_grid_file(path, label)
    for key in content:
        if key not in GRID_KEYS:
            raise GridError(f"{label}: unknown key {key!r}{_hint(str(key), GRID_KEYS)}; "
                            f"valid keys: {', '.join(GRID_KEYS)}")
    name = content.get("name", path.stem)
    if not isinstance(name, str) or not _PLAIN_NAME.fullmatch(name) or ".." in name:
        raise GridError(f"{label}: name {name!r} must be a plain name (letters, digits, '-', "
                        "'_' and '.', starting with a letter, digit or '_', without '..')")
    description = content.get("description", "")
    if not isinstance(description, str):
        raise GridError(f"{label}: description must be text")
    base = _read_base(label, _mapping(label, content, "base", "base: {lr: 0.5}"))
    sweeps = _read_sweeps(label, _mapping(label, content, "grid", "grid: {seed: [0, 1, 2]}"))
    for key in base:
        if key in sweeps:
            raise GridError(f"{label}: {key!r} is set in both base and grid; keep it in one")
    for word in overrides:
        key, values = _read_override(word)
        base.pop(key, None)
        if len(values) == 1 and key not in sweeps:
            base[key] = values[0]
        elif len(values) == 1:
            del sweeps[key]
            base[key] = values[0]
        else:
            sweeps[key] = tuple(values)  # keeps a swept key's place in the file order
    resources = _mapping(label, content, "resources", "resources: {cpus: 1}")
    return Grid(
        name=name, source=label, description=description.strip(), base=base, sweeps=sweeps,
        resources=_read_resources(label, resources),
        slurm=_read_slurm(label, _mapping(label, content, "slurm", "slurm: {partition: debug}")),
        pack=_read_pack(label, content.get("pack")),
    )


def _read_pack(label: str, value: Any) -> int | None:
    """`pack: N` trains up to N compatible jobs as one stack; `auto` (0) sizes the stacks to the
    slots that run at once (jobs.pack_plan.auto_pack_size); `off` 1."""
    if value is None:
        return None
    if value == "auto":
        return 0
    if value is False or value == "off":
        return 1
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise GridError(f"{label}: pack: got {value!r}; expected auto, off or a whole number >= 1 "
                    "(jobs trained together in one process)")


def _mapping(label: str, content: Mapping[str, Any], key: str, example: str) -> dict[str, Any]:
    value = content.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise GridError(f"{label}: {key} must be a mapping, e.g. {example}")
    return dict(value)


def _coerce(section: str, key: Any, value: Any, *, dotted: bool = True) -> Any:
    """A setting's value in its type; errors name `section` (and `.key` for a bad value)."""
    fields = settings()
    if key not in fields:
        raise GridError(f"{section}: {unknown_key_message(str(key))}")
    try:
        return coerce(fields[key], value)
    except SpecError as exc:
        raise GridError(f"{section}.{key}: {exc}" if dotted else f"{section}: {exc}") from None


def _read_base(label: str, base: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _coerce(f"{label}: base", key, value) for key, value in base.items()}


def _read_sweeps(label: str, grid: Mapping[str, Any]) -> dict[str, tuple[Any, ...]]:
    sweeps: dict[str, tuple[Any, ...]] = {}
    for key, raw in grid.items():
        where = f"{label}: grid.{key}"
        if isinstance(raw, str):
            try:
                raw = parse_values(where, raw)
            except SweepError as exc:
                raise GridError(str(exc)) from None
        elif isinstance(raw, bool | int | float):
            raw = [raw]
        if not isinstance(raw, list):
            raise GridError(f"{where} must be a list of values, e.g. seed: [0, 1, 2]")
        if not raw:
            raise GridError(f"{where} has no values")
        sweeps[key] = tuple(_coerce(f"{label}: grid", key, value) for value in raw)
    return sweeps


def _read_override(word: str) -> tuple[str, list[Any]]:
    try:
        key, values = parse_sweep(word)
    except SweepError as exc:
        raise GridError(str(exc)) from None
    return key, [_coerce(word, key, value, dotted=False) for value in values]


def _read_slurm(label: str, section: dict[str, Any]) -> dict[str, Any]:
    """Checked whatever the backend, so a misspelt key shows before a grid reaches SLURM."""
    from cluster.slurm_settings import SlurmSettings, SlurmSettingsError

    try:
        SlurmSettings.read(section)
    except SlurmSettingsError as exc:
        raise GridError(f"{label}: {exc}") from None
    return section


def _read_resources(label: str, values: Mapping[str, Any]) -> Resources:
    checked: dict[str, Any] = {}
    for key, value in values.items():
        if key not in _RESOURCE_RULES:
            names = list(_RESOURCE_RULES)
            raise GridError(f"{label}: resources: unknown key {key!r}{_hint(str(key), names)}; "
                            f"valid keys: {', '.join(names)}")
        valid, low, integer, nullable = _RESOURCE_RULES[key]
        if value is None and nullable:
            checked[key] = None
            continue
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if not is_number or value < low or (integer and value != int(value)) or (
                not integer and value == low):  # the real-valued mem_gb must be above 0
            raise GridError(f"{label}: resources.{key} got {value!r}; expected {valid}")
        checked[key] = int(value) if integer else value
    return Resources(**checked)


def _hint(word: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# ---------------------------------------------------------------------------------------------
# Expansion


def expand(grid: Grid) -> list[JobSpec]:
    """Every job of the grid, validated; identical jobs (same job_id) collapse to one."""
    keys = list(grid.sweeps)
    jobs: dict[str, JobSpec] = {}
    for combination in itertools.product(*grid.sweeps.values()):
        swept = dict(zip(keys, combination, strict=True))
        try:
            spec = JobSpec.from_dict({**grid.base, **swept})
        except SpecError as exc:
            where = " ".join(f"{key}={_plain(value)}" for key, value in swept.items())
            raise GridError(f"{grid.source}: job {where}: {exc}" if where else
                            f"{grid.source}: {exc}") from None
        jobs.setdefault(spec.job_id, spec)
    return list(jobs.values())
