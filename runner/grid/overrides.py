"""KEY=VALUE settings from the command line."""

from __future__ import annotations

from jobs.spec import JobSpec, SpecError
from jobs.strategies.params import echo


def split_assignment(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise SpecError(f"cannot read {echo(text)}: settings are written KEY=VALUE, e.g. lr=0.5")
    return key.strip(), value.strip()


def parse_assignments(items: list[str]) -> JobSpec:
    """One job's settings from KEY=VALUE words; later words win over earlier ones."""
    values: dict[str, str] = {}
    for item in items:
        key, value = split_assignment(item)
        values[key] = value
    return JobSpec.from_dict(values)
