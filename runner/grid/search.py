"""Search spaces in a grid: taken out of the file's sections and the command-line words before
the values are coerced (a space is drawn, not coerced), and the number of draws."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobs.spec import settings, unknown_key_message
from jobs.strategies.params import echo
from runner.grid.files import GridError
from runner.grid.spaces import MAX_SAMPLES, Space, parse_space
from runner.grid.sweeps import SweepError


def take_spaces(where: str, section: dict[str, Any]) -> dict[str, Space]:
    """Remove the search-space values from a file's section; they are drawn, not coerced."""
    spaces = {}
    for key in list(section):
        try:
            space = parse_space(f"{where}.{key}", section[key])
        except SweepError as exc:
            raise GridError(str(exc)) from None
        if space is not None:
            if key not in settings():
                raise GridError(f"{where}: {unknown_key_message(str(key))}")
            spaces[key] = space
            del section[key]
    return spaces


def override_space(word: str) -> tuple[str, Space] | None:
    key, _, text = word.partition("=")
    key = key.strip()
    try:
        space = parse_space(_named(word), text)
    except SweepError as exc:
        raise GridError(str(exc)) from None
    if space is None:
        return None
    if key not in settings():
        raise GridError(f"{_named(word)}: {unknown_key_message(key)}")
    return key, space


def read_samples(label: str, value: Any, spaces: Mapping[str, Space]) -> int | None:
    if value is None:
        if spaces:
            raise GridError(f"{label}: {', '.join(sorted(spaces))} is a search space: say how "
                            "many configurations to draw with --samples N (or samples: N in "
                            "the grid)")
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_SAMPLES:
        raise GridError(f"{label}: samples: got {echo(str(value), 60)}; expected a whole number "
                        f"from 1 to {MAX_SAMPLES:,} (configurations drawn from the spaces)")
    if not spaces:
        raise GridError(f"{label}: samples: {value} needs search spaces to draw from, e.g. "
                        "'lr=loguniform(0.01, 1)'")
    return value


def _named(word: str) -> str:
    """An override word as errors name it: whole when short, else its key and a cut value."""
    return word if len(word) <= 80 and word.isprintable() else echo(word, 80)
