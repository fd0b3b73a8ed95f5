"""`tvo train`: one job in the foreground with a progress bar over epochs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from jobs.engine.train import JobResult, run_job
from jobs.rundir.run_dir import RunDir
from jobs.spec import JobSpec
from runner.cli.console import console
from runner.dispatch import outdir


def train_one(spec: JobSpec, out: Path, *, tensorboard: bool = False,
              checkpoint_seconds: float | None = None) -> JobResult:
    """Train one job in this process into the output dir `out` (listed in its jobs.parquet,
    so `tvo status`, `tvo aggregate` and `tvo ui` read it like a grid's)."""
    outdir.add_jobs(out, [spec], out.name)
    RunDir(out).clear_cancel([spec.job_id])  # training it again answers an earlier cancel
    console.print(f"job {spec.job_id}: {spec.dataset} {spec.model} {spec.strategy} -> {out}",
                  markup=False, highlight=False)
    if console.is_terminal:
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[metrics]}"), TimeElapsedColumn(),
                      console=console, transient=False) as bar:
            task = bar.add_task("epochs", total=spec.epochs, metrics="")

            def progress(epoch: int, epochs: int, row: dict[str, Any]) -> None:
                bar.update(task, completed=epoch, metrics=_metrics_text(row))

            result = run_job(spec, out, grid=out.name, progress=progress,
                             tensorboard=tensorboard, checkpoint_seconds=checkpoint_seconds)
    else:
        def progress(epoch: int, epochs: int, row: dict[str, Any]) -> None:
            console.print(f"epoch {epoch}/{epochs} {_metrics_text(row)}")

        result = run_job(spec, out, grid=out.name, progress=progress,
                         tensorboard=tensorboard, checkpoint_seconds=checkpoint_seconds)
    if tensorboard:
        console.print(f"TensorBoard: tensorboard --logdir {out}", markup=False, highlight=False)
    if result.state == "done":
        console.print(f"done: test_acc {result.test_acc:.4f} after {result.epochs_done} epochs; "
                      f"results in {out}", markup=False, highlight=False)
    else:
        console.print(f"{result.state}: {result.error}; log: tvo status {out} --job "
                      f"{spec.job_id}", markup=False, highlight=False)
    return result


def _metrics_text(row: dict[str, Any]) -> str:
    train_loss = row.get("train_loss")
    loss = f"train_loss {train_loss:.4f} " if train_loss is not None else ""
    return f"{loss}test_acc {row['test_acc']:.4f}"
