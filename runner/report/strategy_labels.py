"""Short strategy labels: a strategy is named by the parameters that differ from their defaults
or between the grid's strategies of the same name, e.g. `tvo(adapt=sigma, normalize=true)`.

The defaults come from the strategies' declarations (jobs.strategies.catalogue, plain data):
`tvo aggregate` imports no torch. A strategy whose defaults cannot be read is labelled by what
differs between groups alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jobs.strategies import params
from jobs.strategies.declared import (  # noqa: F401 (re-exported for the aggregate's modules)
    Defaults,
    static_strategies,
    strategy_defaults,
)
from jobs.strategies.params import Call, StrategyError, format_value, parse_call

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
