"""What a summary's reports say, gathered once for every writer (console, report.md, report.html,
summary.tex), so each output is written once, by its one writer, from the same values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runner.report.model import Summary

if TYPE_CHECKING:
    from runner.report.load import GridData
    from runner.report.selection import ProtocolReport
    from runner.report.tasks import TaskSummary


@dataclass(frozen=True)
class Contents:
    data: GridData
    summary: Summary  # of the final runs alone in a comparison grid
    command: str
    protocol: ProtocolReport | None = None  # a comparison grid's selection, curves, verdicts
    tasks: TaskSummary | None = None  # statistics across data sets or architectures
    stages: dict[str, int] = field(default_factory=dict)  # stage -> jobs (comparison grids)
    plots: Sequence[str] = ()  # figure names drawn beside the report
    plot_notes: Sequence[str] = ()

    @property
    def title(self) -> str:
        return f"Results of grid {self.data.name}"

    def stages_text(self) -> str:
        """`64 tuning, 40 final` (comparison grids), else ""."""
        return ", ".join(f"{count} {stage}" for stage, count in self.stages.items() if count)
