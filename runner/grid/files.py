"""Finding and reading a grid file: a path or a shipped name, read as plain, bounded YAML."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import yaml

from jobs.strategies.params import echo
from runner.grid import plain_yaml

SHIPPED_DIR = Path(__file__).parents[1] / "grids"
GRID_KEYS = ("name", "description", "base", "grid", "resources", "slurm", "pack", "samples",
             "compare")
MAX_FILE_BYTES = 1_000_000  # the largest shipped grid is about 2 kB


class GridError(ValueError):
    """A grid that cannot run; the message is one line naming the file and the key."""


def shipped_grids() -> dict[str, Path]:
    """Grids that ship with tvo, by name."""
    return {path.stem: path for path in sorted(SHIPPED_DIR.glob("*.yaml"))}


def find_grid_file(ref: str) -> tuple[Path, str]:
    """The file a GRID argument means, and how messages name it."""
    path = Path(ref)
    try:
        if path.is_file():
            return path, ref
        is_dir = path.is_dir()
    except OSError as exc:  # a name too long for the filesystem, a loop of links
        raise GridError(f"grid file {echo(ref)}: {exc.strerror or exc}") from None
    if is_dir:
        raise GridError(f"grid file {echo(ref)} is a directory; give a YAML file, or the name "
                        "of a shipped grid (see `tvo grids`)")
    shipped = shipped_grids()
    if ref in shipped:
        return shipped[ref], f"{ref}.yaml"
    if "/" in ref or "\\" in ref or path.suffix in (".yaml", ".yml"):
        raise GridError(f"grid file {echo(ref)} does not exist")
    raise GridError(
        f"unknown grid {echo(ref)}: no such file, and no grid of that name ships with tvo "
        f"(shipped: {', '.join(shipped) or 'none'}; see `tvo grids`)"
    )


def read_grid_file(path: Path, label: str) -> dict[str, Any]:
    """The file's top-level mapping, read as plain data (see runner.grid.plain_yaml)."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise GridError(f"grid file {echo(label)} is larger than {MAX_FILE_BYTES:,} bytes; "
                            "grid files describe jobs, they do not list them")
        text = raw.decode()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EISDIR:
            reason = "it is a directory"
        raise GridError(f"cannot read grid file {echo(label)}: {reason}") from None
    except UnicodeDecodeError as exc:
        raise GridError(f"cannot read grid file {echo(label)}: not UTF-8 text (byte "
                        f"{exc.start})") from None
    try:
        content = plain_yaml.load(text)
    except yaml.YAMLError as exc:
        raise GridError(f"grid file {echo(label)} is not valid YAML: {yaml_problem(exc)}"
                        ) from None
    if not isinstance(content, dict):
        kind = "nothing" if content is None else f"a {type(content).__name__}"
        raise GridError(f"grid file {echo(label)} must be a mapping with keys "
                        f"{', '.join(GRID_KEYS)}; it holds {kind}")
    return content


def yaml_problem(exc: yaml.YAMLError) -> str:
    """What YAML (or plain_yaml) objected to, and where, on one line."""
    problem = getattr(exc, "problem", None) or (str(exc).splitlines() or ["unreadable"])[0]
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return " ".join(f"{problem}{where}".split())
