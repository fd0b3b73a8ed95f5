"""Sweep values on the command line: `lr=0.1,0.5`, `seed=range(5)`, `hidden=[64,64],[128]`.

A value list is split at commas that are not inside parentheses, brackets or quotes, so
`strategy=onehot,fixed(c=0.9, nc=0.1)` is two strategies and `hidden=[64,64]` is one list.
`range(stop)`, `range(start, stop)` and `range(start, stop, step)` expand like Python's range.
"""

from __future__ import annotations

import re

from jobs.strategies.params import echo
from runner.grid.overrides import split_assignment

_RANGE = re.compile(r"range\((.*)\)", re.DOTALL)
_OPENERS = {"(": ")", "[": "]"}


class SweepError(ValueError):
    """A KEY=VALUES word that cannot be read; the message names the word and what is valid."""


def split_values(text: str) -> list[str]:
    """Split at top-level commas; commas inside (), [] or quotes belong to one value."""
    parts: list[str] = []
    closers: list[str] = []
    quote = ""
    current: list[str] = []
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in _OPENERS:
            closers.append(_OPENERS[char])
        elif closers and char == closers[-1]:
            closers.pop()
        elif char == "," and not closers:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return parts


def expand_range(word: str, text: str, limit: int | None = None) -> list[int] | None:
    """The integers of `range(...)`, or None when `text` is not a range; raises when malformed
    or when it holds more than `limit` values."""
    match = _RANGE.fullmatch(text.strip())
    if match is None:
        return None
    usage = f"{word}: range() takes 1 to 3 integers, e.g. range(5) or range(0, 10, 2)"
    items = [item.strip() for item in match.group(1).split(",")]
    if any(len(item) > 20 for item in items):  # beyond any setting, and int() is slow there
        raise SweepError(usage + " of at most 20 digits")
    try:
        numbers = [int(item) for item in items]
    except ValueError:
        raise SweepError(usage) from None
    if not 1 <= len(numbers) <= 3:
        raise SweepError(usage)
    if len(numbers) == 3 and numbers[2] == 0:
        raise SweepError(f"{word}: range() step must not be 0")
    span = range(*numbers)
    if not span:
        raise SweepError(f"{word}: {text.strip()} gives no values")
    if limit is not None and _count(span) > limit:
        raise SweepError(f"{word}: {text.strip()} gives {_count(span):,} values; a grid holds at "
                         f"most {limit:,} jobs. Split it into several grids (e.g. one per seed "
                         "range, each with its own name), or set TVO_MAX_JOBS to raise the limit")
    return list(span)


def _count(span: range) -> int:
    """len(span), also past sys.maxsize (range(10**20) is a valid range; len() overflows)."""
    step = abs(span.step)
    return (abs(span.stop - span.start) + step - 1) // step


def parse_values(word: str, text: str, limit: int | None = None) -> list[str | int]:
    """The values of one sweep: raw strings (coerced later by the setting) or range integers;
    at most `limit` of them."""
    values: list[str | int] = []
    for part in split_values(text):
        if not part:
            raise SweepError(f"{word}: empty value; write KEY=VALUE or KEY=V1,V2")
        expanded = expand_range(word, part, limit)
        values.extend(expanded if expanded is not None else [part])
        if limit is not None and len(values) > limit:
            raise SweepError(f"{word}: more than {limit:,} values; a grid holds at most "
                             f"{limit:,} jobs (TVO_MAX_JOBS raises the limit)")
    return values


def parse_sweep(word: str, limit: int | None = None) -> tuple[str, list[str | int]]:
    """`KEY=VALUES` -> (key, values); one value is an override, several are a sweep."""
    try:
        key, text = split_assignment(word)
    except ValueError as exc:
        raise SweepError(str(exc)) from None
    shown = word if len(word) <= 80 and word.isprintable() else echo(word, 80)
    return key, parse_values(shown, text, limit)
