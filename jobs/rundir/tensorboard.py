"""TensorBoard event files for one job: its measurements per evaluated epoch, and its settings.

Events go to <grid dir>/tensorboard/<job_id>/ (jobs.rundir.layout), so `tensorboard --logdir
outputs/<grid>` shows every job of a grid as its own run (named tensorboard/<job_id>), and the
HParams tab lists the jobs with the settings the grid sweeps. Being one folder per job, it is
written only when asked for (--tensorboard): at 100,000 jobs it is 100,000 folders. Written
with torch's SummaryWriter, imported only when asked for. Which column goes under which tag
is the metric's declaration (jobs.metric_catalogue).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jobs import metric_catalogue
from jobs.spec import JobSpec


def scalar_tags() -> dict[str, str]:
    """metrics column -> scalar tag (jobs.metric_catalogue); TensorBoard groups the charts by
    the part before "/"."""
    return {metric.name: metric.tensorboard for metric in metric_catalogue.METRICS
            if metric.tensorboard and metric.is_scalar}


def list_tags() -> dict[str, str]:
    """list column -> its tag with `{index}`: one chart per class (the strategy's current c_i
    and nc_i: targets/class_<i>/c and .../nc)."""
    return {metric.name: metric.tensorboard for metric in metric_catalogue.METRICS
            if metric.tensorboard and not metric.is_scalar}


def hparam_metrics() -> tuple[str, ...]:
    """The metric columns of the HParams tab's table (their values come from the scalars)."""
    return tuple(metric.tensorboard for metric in metric_catalogue.METRICS
                 if metric.hparam and metric.tensorboard)


class TensorBoardLog:
    """Writes a job's metrics rows as scalars; the writer opens at the first row written.

    It opens with purge_step at that row's epoch: a resumed job continues after its checkpoint,
    and whatever an earlier attempt wrote from that epoch on (it trained past its last
    checkpoint before it stopped) is dropped by TensorBoard's reader instead of doubling steps.
    The settings (text) and the HParams summary are written once, when a job starts at epoch 0.
    """

    def __init__(self, log_dir: Path, spec: JobSpec, grid: str = "",
                 swept_keys: Sequence[str] = ()) -> None:
        self.log_dir = Path(log_dir)
        self.spec = spec
        self.grid = grid
        self.swept_keys = tuple(swept_keys)
        self._writer: Any = None
        self._scalars = scalar_tags()
        self._lists = list_tags()

    def write(self, row: Mapping[str, Any]) -> None:
        step = int(row["epoch"])
        if self._writer is None:
            self._open(step)
        writer = self._writer
        for column, tag in self._scalars.items():
            value = row.get(column)
            if value is not None:
                writer.add_scalar(tag, float(value), step)
        for column, tag in self._lists.items():
            for index, value in enumerate(row.get(column) or ()):
                writer.add_scalar(tag.format(index=index), float(value), step)
        writer.flush()  # a watching TensorBoard sees each epoch as it ends, not every 2 minutes

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _open(self, first_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(str(self.log_dir), purge_step=first_step)
        if first_step == 0:
            self._write_settings()

    def _write_settings(self) -> None:
        from torch.utils.tensorboard.summary import hparams

        settings = self.spec.to_dict()
        lines = ["| setting | value |", "|---|---|", f"| job_id | {self.spec.job_id} |"]
        if self.grid:
            lines.append(f"| grid | {self.grid} |")
        lines += [f"| {key} | {_hparam_value(value)} |" for key, value in settings.items()]
        self._writer.add_text("settings", "\n".join(lines), 0)
        # HParams: the swept settings when the grid says which; every setting for a lone job
        keys = [key for key in self.swept_keys if key in settings] or list(settings)
        chosen = {key: _hparam_value(settings[key]) for key in keys}
        for summary in hparams(chosen, dict.fromkeys(hparam_metrics(), 0.0)):
            self._writer.file_writer.add_summary(summary)


def _hparam_value(value: Any) -> bool | int | float | str:
    """HParams take bool, int, float and str: lists (hidden sizes) become their text."""
    if isinstance(value, bool | int | float | str):
        return value
    return str(list(value)) if isinstance(value, tuple | list) else str(value)
