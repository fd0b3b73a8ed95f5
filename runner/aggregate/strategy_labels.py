"""Short strategy labels: a strategy is named by the parameters that differ from their defaults
or between the grid's strategies of the same name, e.g. `tvo(adapt=sigma, normalize=true)`.

The defaults are declared in jobs/strategies next to each strategy, in modules that import torch
(about a second). `tvo aggregate` must stay light, so the declarations are read here from the
source without importing it: each `param(...)`, `Option(...)` and `options(...)` expression is
evaluated with jobs.strategies.params' own (torch-free) helpers. A test checks the result
against the live registry, so a declaration this reader cannot follow is noticed; a strategy
whose defaults cannot be read is labelled by what differs between groups alone.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jobs.strategies
from jobs.strategies import params
from jobs.strategies.params import Call, Param, StrategyError, format_value, parse_call

STRATEGY_DIR = Path(jobs.strategies.__file__).parent
PACKAGE = "jobs.strategies"
# what a declaration may call: the helpers of jobs.strategies.params, nothing else
HELPERS = {name: getattr(params, name) for name in (
    "Call", "Option", "param", "number", "integer", "choice", "boolean", "auto_boolean", "text",
    "number_table", "options")}


@dataclass(frozen=True)
class Defaults:
    """One strategy's parameter defaults, bound as the strategy binds them (options as Calls
    with their own defaults filled in), and the defaults of every option of each parameter."""

    values: Mapping[str, Any]
    options: Mapping[str, Mapping[str, Mapping[str, Any]]]  # param -> option name -> defaults


@dataclass
class _Class:
    """A class body as read from the source: its `name`, `params` and base classes."""

    name: str | None
    params: tuple[Param, ...] | None
    bases: list[str]


def _evaluate(node: ast.expr, namespace: Mapping[str, Any]) -> Any:
    code = compile(ast.Expression(node), "<strategy declaration>", "eval")
    return eval(code, {"__builtins__": {"tuple": tuple, "list": list}}, dict(namespace))


@functools.cache
def _module_namespace(module: str) -> dict[str, Any]:
    """Names a strategy module defines that can be evaluated without torch."""
    path = STRATEGY_DIR / f"{module}.py"
    namespace: dict[str, Any] = dict(HELPERS)
    if not path.exists():
        return namespace
    for statement in ast.parse(path.read_text()).body:
        if isinstance(statement, ast.ImportFrom) and (statement.module or "").startswith(
                PACKAGE + "."):
            module_name = statement.module.removeprefix(PACKAGE + ".")
            # the helpers are the real ones (params is torch-free); other modules are read
            source = vars(params) if module_name == "params" else _module_namespace(module_name)
            for alias in statement.names:
                if alias.name in source:
                    namespace[alias.asname or alias.name] = source[alias.name]
        elif (target := _assigned_name(statement)) is not None:
            try:
                namespace[target] = _evaluate(statement.value, namespace)
            except Exception:  # noqa: BLE001 - a value built with torch: not a declaration
                continue
        elif isinstance(statement, ast.ClassDef):
            namespace[statement.name] = _read_class(statement, namespace)
    return namespace


def _assigned_name(statement: ast.stmt) -> str | None:
    """`NAME = value` or `NAME: type = value`: the name; anything else: None."""
    if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
        target = statement.targets[0]
    elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
        target = statement.target
    else:
        return None
    return target.id if isinstance(target, ast.Name) else None


def _read_class(node: ast.ClassDef, namespace: Mapping[str, Any]) -> _Class:
    body: dict[str, Any] = {}
    for statement in node.body:
        target = _assigned_name(statement)
        if target in ("name", "params"):
            try:
                body[target] = _evaluate(statement.value, namespace)
            except Exception:  # noqa: BLE001 - unreadable: treated as not declared
                continue
    bases = [base.id for base in node.bases if isinstance(base, ast.Name)]
    name = body.get("name") if isinstance(body.get("name"), str) else None
    return _Class(name, body.get("params"), bases)


def _class_params(cls: _Class, namespace: Mapping[str, Any]) -> tuple[Param, ...]:
    """A class's params, else those it inherits (as a class attribute is inherited)."""
    if cls.params is not None:
        return tuple(cls.params)
    for base in cls.bases:
        parent = namespace.get(base)
        if isinstance(parent, _Class):
            return _class_params(parent, namespace)
    return ()


STATIC_BASE = "StaticStrategy"  # jobs.strategies.fixed: targets known before training, never moved


def _derives_from(cls: _Class, base: str, namespace: Mapping[str, Any]) -> bool:
    for name in cls.bases:
        parent = namespace.get(name)
        if name == base or (isinstance(parent, _Class) and _derives_from(parent, base, namespace)):
            return True
    return False


@functools.cache
def static_strategies() -> frozenset[str]:
    """Names of the strategies whose targets never move during training: the plots need not
    read their target columns (a quarter of a second at 1M rows)."""
    found = set()
    for path in sorted(STRATEGY_DIR.glob("*.py")):
        namespace = _module_namespace(path.stem)
        for cls in namespace.values():
            if isinstance(cls, _Class) and cls.name and _derives_from(cls, STATIC_BASE, namespace):
                found.add(cls.name)
    return frozenset(found)


@functools.cache
def strategy_defaults() -> Mapping[str, Defaults]:
    """Strategy name -> its defaults, for every strategy declared under jobs/strategies."""
    found: dict[str, Defaults] = {}
    for path in sorted(STRATEGY_DIR.glob("*.py")):
        namespace = _module_namespace(path.stem)
        for cls in namespace.values():
            if not isinstance(cls, _Class) or cls.name is None or cls.name in found:
                continue
            declared = _class_params(cls, namespace)
            try:
                values = params.bind(cls.name, declared, {})
            except StrategyError:
                continue
            option_defaults = {
                p.name: {o.name: params.bind(o.name, o.params, {}) for o in p.options}
                for p in declared if p.options}
            found[cls.name] = Defaults(values, option_defaults)
    return found


# ---------------------------------------------------------------------------------------------
# Labels

_UNKNOWN = object()


def _shown_args(args: Mapping[str, Any], siblings: Sequence[Mapping[str, Any]],
                defaults: Mapping[str, Any] | None,
                option_defaults: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """The arguments worth showing: those that differ from their default (when known) or from
    the same argument of a sibling; an option's own arguments by the same rule, recursively."""
    shown: dict[str, Any] = {}
    for key, value in args.items():
        others = [sibling.get(key, _UNKNOWN) for sibling in siblings]
        default = _UNKNOWN if defaults is None else defaults.get(key, _UNKNOWN)
        if isinstance(value, Call):
            same = [o.args for o in others if isinstance(o, Call) and o.name == value.name]
            if isinstance(default, Call) and default.name == value.name:
                inner_defaults: Mapping[str, Any] | None = default.args
            else:
                inner_defaults = option_defaults.get(key, {}).get(value.name)
            inner = _shown_args(value.args, same, inner_defaults, {})
            varies = len(same) < len(others)
            off_default = defaults is not None and not (
                isinstance(default, Call) and default.name == value.name)
            if inner or varies or off_default:
                shown[key] = Call(value.name, inner)
        elif any(other != value for other in others) or (
                defaults is not None and default != value):
            shown[key] = value
    return shown


def strategy_labels(canonicals: Sequence[str]) -> dict[str, str]:
    """Canonical strategy string -> its short label, for the strategies of one grid."""
    calls: dict[str, Call | None] = {}
    for text in dict.fromkeys(canonicals):
        try:
            calls[text] = parse_call(text)
        except StrategyError:
            calls[text] = None  # not a strategy string tvo can read: shown as it is
    catalogue = strategy_defaults()
    labels = {}
    for text, call in calls.items():
        if call is None:
            labels[text] = text
            continue
        siblings = [other.args for other in calls.values()
                    if other is not None and other.name == call.name and other != call]
        known = catalogue.get(call.name)
        shown = _shown_args(call.args, siblings, None if known is None else known.values,
                            {} if known is None else known.options)
        labels[text] = params.format_call(call.name, shown)
    counts: dict[str, int] = {}
    for label in labels.values():
        counts[label] = counts.get(label, 0) + 1
    # two strings that only differ in spelling (never the case for canonical ones) keep theirs
    return {text: label if counts[label] == 1 else text for text, label in labels.items()}


def short_value(value: Any) -> str:
    """A setting's value as labels show it: numbers without trailing zeros, lists as [a,b]."""
    if isinstance(value, tuple | list):
        return "[" + ",".join(short_value(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, bool):
        return format_value(value)
    return str(value)
