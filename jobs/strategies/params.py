"""Parameters of target strategies: declaring them, parsing `name(key=value, ...)`, printing them.

A strategy string is a small expression: `onehot`, `fixed(c=0.9, nc=0.1)`,
`tvo(init=average_nudge(nu=0.1), adapt=sigma(m=1))`, `matrix(rows=[[0.9, 0.1], [0.2, 0.8]])`.
Values are numbers, booleans, bare words, quoted strings, lists, or nested calls.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class StrategyError(ValueError):
    """A strategy string that cannot be used; the message is one line that says what is valid."""


ECHO_CHARS = 60  # how much of a user's input an error message repeats


def echo(value: Any, limit: int = ECHO_CHARS) -> str:
    """`value` as an error message repeats it: quoted and escaped (one line, no markup
    surprises), and cut to about `limit` characters with the full length said."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    return repr(text[:limit]) + f"... ({len(text):,} characters)"


MAX_STRATEGY_CHARS = 2_000  # the longest shipped strategy string has about 60
MAX_NESTING = 8  # tvo(init=average_nudge(nu=0.1)) nests 2 deep; matrix rows 2
MAX_NUMBER_CHARS = 40  # more digits than any setting can use; int() refuses > 4,300


@dataclass(frozen=True)
class Call:
    """A parsed `name(key=value, ...)`; also used for nested values like `sigma(m=1)`."""

    name: str
    args: Mapping[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return format_call(self.name, self.args)


# ---------------------------------------------------------------------------------------------
# Parsing

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
      | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
      | (?P<string>"[^"]*"|'[^']*')
      | (?P<punct>[()\[\],=])
    )""",
    re.VERBOSE,
)


def _tokenize(text: str) -> list[tuple[str, str]]:
    if len(text) > MAX_STRATEGY_CHARS:
        raise StrategyError(f"strategy {echo(text)} is too long: at most "
                            f"{MAX_STRATEGY_CHARS:,} characters")
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None:
            raise StrategyError(f"cannot read strategy {echo(text)} at "
                                f"{echo(text[pos:].strip(), 20)}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0
        self.depth = 0  # lists and calls open around the current token

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (expected is not None and token[1] != expected):
            found = "the end" if token is None else echo(token[1], 20)
            want = repr(expected) if expected else "a value"
            raise StrategyError(
                f"cannot read strategy {echo(self.text)}: expected {want}, found {found}")
        self.pos += 1
        return token

    def value(self) -> Any:
        kind, text = self.take()
        if kind == "number":
            return self.number(text)
        if kind == "string":
            return text[1:-1]
        if kind == "word":
            if text in ("true", "True"):
                return True
            if text in ("false", "False"):
                return False
            if (self.peek() or ("", ""))[1] == "(":
                return self.call_args(text)
            return text
        if text == "[":
            self.nest()
            items: list[Any] = []
            while (self.peek() or ("", ""))[1] != "]":
                items.append(self.value())
                if (self.peek() or ("", ""))[1] == ",":
                    self.take(",")
            self.take("]")
            self.depth -= 1
            return items
        raise StrategyError(f"cannot read strategy {echo(self.text)}: unexpected {echo(text, 20)}")

    def number(self, text: str) -> int | float:
        """A finite number of bounded size: every parameter wants one, and int() of a long
        digit string is slow or refused."""
        if len(text) > MAX_NUMBER_CHARS:
            raise StrategyError(f"strategy {echo(self.text)}: number {echo(text, 20)} has "
                                f"{len(text)} characters; at most {MAX_NUMBER_CHARS}")
        if re.fullmatch(r"[-+]?\d+", text):
            return int(text)
        number = float(text)
        if not math.isfinite(number):
            raise StrategyError(f"strategy {echo(self.text)}: number {text} is out of range "
                                "(beyond about 1.8e308)")
        return number

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise StrategyError(f"strategy {echo(self.text)} nests lists and parameters more "
                                f"than {MAX_NESTING} deep")

    def call_args(self, name: str) -> Call:
        self.take("(")
        self.nest()
        args: dict[str, Any] = {}
        while (self.peek() or ("", ""))[1] != ")":
            kind, key = self.take()
            if kind != "word":
                raise StrategyError(
                    f"cannot read strategy {echo(self.text)}: parameters are written key=value"
                )
            self.take("=")
            if key in args:
                raise StrategyError(f"strategy {echo(self.text)} sets {echo(key, 20)} twice")
            args[key] = self.value()
            if (self.peek() or ("", ""))[1] == ",":
                self.take(",")
        self.take(")")
        self.depth -= 1
        return Call(name, args)


def parse_call(text: str) -> Call:
    """Parse `name` or `name(key=value, ...)` into a Call (no validation of names or values)."""
    parser = _Parser(text.strip())
    kind, name = parser.take()
    if kind != "word":
        raise StrategyError(f"cannot read strategy {echo(text)}: it must start with a name")
    call = parser.call_args(name) if parser.peek() is not None else Call(name, {})
    if (token := parser.peek()) is not None:
        raise StrategyError(f"cannot read strategy {echo(text)}: unexpected {echo(token[1], 20)}")
    return call


# ---------------------------------------------------------------------------------------------
# Formatting (the canonical string of a strategy)


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(float(value))
    if isinstance(value, Call):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(format_value(item) for item in value) + "]"
    if isinstance(value, str) and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", value):
        return f'"{value}"'
    return str(value)


def format_call(name: str, args: Mapping[str, Any]) -> str:
    if not args:
        return name
    inner = ", ".join(f"{key}={format_value(value)}" for key, value in args.items())
    return f"{name}({inner})"


# ---------------------------------------------------------------------------------------------
# Declaring parameters


@dataclass(frozen=True)
class Param:
    """One parameter of a strategy: its default, what values are valid, and what it means.

    `check` turns a parsed value into the value the strategy uses, or raises ValueError whose
    text says what is expected (for example "a number in [0, 1]").
    """

    name: str
    default: Any
    help: str
    check: Callable[[Any], Any]
    valid: str  # shown in `tvo strategies`, e.g. "[0, 1]" or "uniform|others"
    options: tuple[Option, ...] = ()  # the choices of an `options` rule, for listings


def number(low: float | None = None, high: float | None = None, *, open_low: bool = False,
           open_high: bool = False) -> tuple[Callable[[Any], float], str]:
    lo = "(" if open_low or low is None else "["
    hi = ")" if open_high or high is None else "]"
    bounds = f"{'-inf' if low is None else _short(low)}, {'inf' if high is None else _short(high)}"
    shown = f"{lo}{bounds}{hi}"

    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"a number in {shown}")
        try:
            value = float(value)
        except OverflowError:  # an integer beyond a float's range
            raise ValueError(f"a number in {shown}") from None
        if not math.isfinite(value):
            raise ValueError(f"a finite number in {shown}")
        if low is not None and (value < low or (open_low and value == low)):
            raise ValueError(f"a number in {shown}")
        if high is not None and (value > high or (open_high and value == high)):
            raise ValueError(f"a number in {shown}")
        return value

    return check, shown


def integer(low: int = 0, high: int | None = None) -> tuple[Callable[[Any], int], str]:
    shown = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"

    def check(value: Any) -> int:
        if (isinstance(value, bool) or not isinstance(value, int | float)
                or (isinstance(value, float) and not value.is_integer())):
            raise ValueError(shown)
        if value < low or (high is not None and value > high):
            raise ValueError(shown)
        return int(value)

    return check, shown


def choice(*names: str) -> tuple[Callable[[Any], str], str]:
    text = "|".join(names)

    def check(value: Any) -> str:
        if not isinstance(value, str) or value not in names:
            raise ValueError(f"one of {', '.join(names)}")
        return value

    return check, text


def boolean() -> tuple[Callable[[Any], bool], str]:
    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError("true or false")
        return value

    return check, "true|false"


def auto_boolean(auto_means: str) -> tuple[Callable[[Any], str | bool], str]:
    """true, false, or auto (decided by the pairing; `auto_means` says how, for errors)."""
    def check(value: Any) -> str | bool:
        if isinstance(value, bool) or value == "auto":
            return value
        raise ValueError(f"auto ({auto_means}), true or false")

    return check, "auto|true|false"


def text() -> tuple[Callable[[Any], str], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError('text, e.g. "path/to/file.csv"')
        return value

    return check, "text"


def number_table() -> tuple[Callable[[Any], list[list[float]]], str]:
    """A list of rows of finite numbers, e.g. [[0.9, 0.1], [0.2, 0.8]]; [] means not given."""
    expected = "a list of rows of numbers like [[0.9, 0.1], [0.2, 0.8]]"

    def check(value: Any) -> list[list[float]]:
        if not isinstance(value, list) or not all(isinstance(row, list) for row in value):
            raise ValueError(expected)
        table = []
        for row in value:
            if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in row):
                raise ValueError(expected)
            if not all(math.isfinite(x) for x in row):
                raise ValueError(expected + " (finite)")
            table.append([float(x) for x in row])
        return table

    return check, "[[row], ...]"


@dataclass(frozen=True)
class Option:
    """One value of an `options` parameter, which may take parameters of its own."""

    name: str
    help: str
    params: tuple[Param, ...] = ()

    def signature(self) -> str:
        """`average_nudge(nu)`: the option as listed in errors."""
        if not self.params:
            return self.name
        return f"{self.name}({', '.join(p.name for p in self.params)})"


def options(*choices: Option) -> tuple[Callable[[Any], Call], str, tuple[Option, ...]]:
    """A choice among named options, each with its own parameters: `sigma` or `sigma(m=2)`.

    The value becomes a Call with every option parameter filled in, so `average_nudge` and
    `average_nudge(nu=0.1)` give the same canonical string.
    """
    known = {option.name: option for option in choices}
    listing = ", ".join(option.signature() for option in choices)

    def check(value: Any) -> Call:
        call = Call(value, {}) if isinstance(value, str) else value
        if not isinstance(call, Call) or call.name not in known:
            raise ValueError(f"one of {listing}")
        option = known[call.name]
        return Call(option.name, _bind(option.name, option.params, call.args))

    return check, "|".join(option.name for option in choices), choices


def param(name: str, default: Any, help: str, rule: tuple[Any, ...]) -> Param:
    """`rule` is what number(), integer(), choice(), boolean(), text(), number_table() or
    options() return: a check, the valid values in words, and for options() the choices."""
    check, valid, *choices = rule
    return Param(name=name, default=default, help=help, check=check, valid=valid,
                 options=tuple(choices[0]) if choices else ())


def bind(strategy: str, params: Sequence[Param], args: Mapping[str, Any]) -> dict[str, Any]:
    """Check `args` against `params`; return every parameter's value in declared order."""
    return _bind(f"strategy {echo(strategy, 40)}", params, args)


def _bind(owner: str, params: Sequence[Param], args: Mapping[str, Any]) -> dict[str, Any]:
    known = {p.name: p for p in params}
    for key in args:
        if key not in known:
            valid = ", ".join(known) if known else "none"
            raise StrategyError(f"{owner} has no parameter {echo(key, 30)}; its parameters: "
                                f"{valid}")
    bound: dict[str, Any] = {}
    for p in params:
        raw = args.get(p.name, p.default)
        try:
            bound[p.name] = p.check(raw)
        except StrategyError as exc:  # a nested value (an option's own parameter) was wrong
            raise StrategyError(f"{owner} parameter {p.name!r}: {exc}") from None
        except ValueError as exc:
            raise StrategyError(
                f"{owner} parameter {p.name!r} got {_cut(format_value(raw))}; expected {exc}"
            ) from None
    return bound


def _cut(text: str, limit: int = ECHO_CHARS) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _short(value: float) -> str:
    return f"{value:g}"

