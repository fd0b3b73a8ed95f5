"""The strategies' declarations (name, params, options, defaults) read from the strategy modules'
source without importing them: those modules import torch (about a second), and checking a
strategy string or labelling results needs none of it.

Each `param(...)`, `Option(...)` and `options(...)` expression is evaluated with
jobs.strategies.params' own (torch-free) helpers. Tests check the result against the live
registry, so a declaration this reader cannot follow is noticed.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.strategies import params
from jobs.strategies.params import Param, StrategyError

STRATEGY_DIR = Path(__file__).parent
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


@functools.cache
def declared_params() -> Mapping[str, tuple[Param, ...]]:
    """Strategy name -> its declared parameters, for every strategy under jobs/strategies."""
    found: dict[str, tuple[Param, ...]] = {}
    for path in sorted(STRATEGY_DIR.glob("*.py")):
        namespace = _module_namespace(path.stem)
        for cls in namespace.values():
            if isinstance(cls, _Class) and cls.name is not None and cls.name not in found:
                found[cls.name] = _class_params(cls, namespace)
    return found
