"""What tables and plots call a group: only what tells it apart from the other groups.

A group is labelled by its grouping settings (the swept ones), the compared one first without
its key (`fixed`, `tvo(adapt=sigma, normalize=true)`), the others as `lr=0.5`. The compared
setting (the strategy when it is swept) is the plots' colour; the others are their facets. Full
canonical values stay in every file (columns named after the settings, and `group`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from runner.report.strategy_labels import short_value, strategy_labels

HUE_PREFERENCE = ("strategy", "strategy_name")  # coloured in plots when among the keys
GROUP_SEPARATOR = "; "


def format_value(value: Any) -> str:
    """A setting's canonical value as files spell it (CSV cells, group names, --baseline)."""
    if isinstance(value, tuple | list):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def sort_key(value: Any) -> tuple[int, Any]:
    """Orders a setting's values: numbers by size, then text; None first."""
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, int(value))
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, tuple | list):
        return (2, tuple(sort_key(v) for v in value))
    return (3, str(value))


@dataclass(frozen=True)
class Labels:
    """Labels of one summary's groups; `hue` is the key that colours plots, `facets` the rest."""

    keys: tuple[str, ...]
    hue: str | None
    facets: tuple[str, ...]
    strategies: dict[str, str] = field(default_factory=dict)  # canonical -> short
    hue_order: tuple[str, ...] = ()  # hue labels in grid order: each keeps its colour everywhere
    facet_order: tuple[str, ...] = ()  # facet labels sorted by their settings' values
    aliases: dict[str, str] = field(default_factory=dict)  # hue -> legend name (identical ones)

    @classmethod
    def of(cls, keys: Sequence[str], group_keys: Sequence[tuple[Any, ...]]) -> Labels:
        hue = next((key for key in HUE_PREFERENCE if key in keys), keys[0] if keys else None)
        strategies = {}
        if "strategy" in keys:
            index = list(keys).index("strategy")
            strategies = strategy_labels([str(key[index]) for key in group_keys])
        labels = cls(tuple(keys), hue, tuple(k for k in keys if k != hue), strategies)
        hues = tuple(dict.fromkeys(labels.hue_label(key) for key in group_keys))
        # facets by value (lr 0.2 before 1.1 before 6.3), not in the order jobs were drawn
        positions = [list(keys).index(facet) for facet in labels.facets]
        ordered = sorted(group_keys, key=lambda key: [sort_key(key[i]) for i in positions])
        facets = tuple(dict.fromkeys(labels.facet_label(key) for key in ordered))
        return dataclasses.replace(labels, hue_order=hues, facet_order=facets)

    def with_identical(self, clusters: Sequence[Sequence[tuple[Any, ...]]],
                       keys: Sequence[tuple[Any, ...]]) -> Labels:
        """Legend names for groups drawn once for several identical ones: `a = b`, where every
        group of hue b (in `keys`, all the groups' keys) is identical to one of hue a.
        `clusters`: the group keys of each cluster, the drawn one first."""
        copies: dict[str, set[str]] = {}  # copied hue -> the facets where it is a copy of `a`
        firsts: dict[str, str] = {}
        for cluster in clusters:
            first = self.hue_label(cluster[0])
            for key in cluster[1:]:
                hue = self.hue_label(key)
                if firsts.setdefault(hue, first) == first:
                    copies.setdefault(hue, set()).add(self.facet_label(key))
        aliases = dict(self.aliases)
        for hue, facets in copies.items():
            everywhere = {self.facet_label(key) for key in keys if self.hue_label(key) == hue}
            if facets == everywhere:
                first = firsts[hue]
                aliases[first] = f"{aliases.get(first, first)} = {hue}"
        return dataclasses.replace(self, aliases=aliases)

    def legend_name(self, hue: str) -> str:
        return self.aliases.get(hue, hue)

    def value(self, key: str, value: Any) -> str:
        """A grouping setting's value as tables show it in that setting's column."""
        if key == "strategy":
            return self.strategies.get(str(value), str(value))
        return short_value(value)

    def part(self, key: str, value: Any) -> str:
        """`lr=0.5`; a strategy by its label alone (it names itself)."""
        shown = self.value(key, value)
        return shown if key in HUE_PREFERENCE else f"{key}={shown}"

    def _values(self, key_values: Sequence[Any]) -> dict[str, Any]:
        return dict(zip(self.keys, key_values, strict=True))

    def group(self, key_values: Sequence[Any]) -> str:
        if not self.keys:
            return "all jobs"
        values = self._values(key_values)
        order = [self.hue, *self.facets] if self.hue else list(self.keys)
        return GROUP_SEPARATOR.join(self.part(key, values[key]) for key in order)

    def hue_label(self, key_values: Sequence[Any]) -> str:
        """What the colour of a group stands for: its hue value, or `all jobs`."""
        if self.hue is None:
            return "all jobs"
        return self.value(self.hue, self._values(key_values)[self.hue])

    def facet_label(self, key_values: Sequence[Any]) -> str:
        """The panel a group is drawn in; "" when there is one panel."""
        values = self._values(key_values)
        return GROUP_SEPARATOR.join(f"{key}={self.value(key, values[key])}"
                                    for key in self.facets)
