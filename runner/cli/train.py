"""`tvo train`: one job in the foreground with a progress bar over epochs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from jobs.engine.train import JobResult, run_job
from jobs.rundir import results
from jobs.spec import JobSpec
from runner.cli.console import console


def train_one(spec: JobSpec, out: Path, *, tensorboard: bool = False) -> JobResult:
    run_dir = out / "runs" / spec.job_id
    results.clear_cancel(run_dir)  # training it again is the answer to an earlier cancel
    console.print(f"job {spec.job_id}: {spec.dataset} {spec.model} {spec.strategy} "
                  f"-> {run_dir}")
    if console.is_terminal:
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[metrics]}"), TimeElapsedColumn(),
                      console=console, transient=False) as bar:
            task = bar.add_task("epochs", total=spec.epochs, metrics="")

            def progress(epoch: int, epochs: int, row: dict[str, Any]) -> None:
                bar.update(task, completed=epoch, metrics=_metrics_text(row))

            result = run_job(spec, run_dir, grid=out.name, progress=progress,
                             tensorboard=tensorboard)
    else:
        def progress(epoch: int, epochs: int, row: dict[str, Any]) -> None:
            console.print(f"epoch {epoch}/{epochs} {_metrics_text(row)}")

        result = run_job(spec, run_dir, grid=out.name, progress=progress,
                         tensorboard=tensorboard)
    if tensorboard:
        console.print(f"TensorBoard: tensorboard --logdir {out}", markup=False, highlight=False)
    if result.state == "done":
        console.print(f"done: test_acc {result.test_acc:.4f} after {result.epochs_done} epochs; "
                      f"results in {run_dir}")
    else:
        console.print(f"{result.state}: {result.error}; log: {run_dir / 'log.txt'}")
    return result


def _metrics_text(row: dict[str, Any]) -> str:
    train_loss = row.get("train_loss")
    loss = f"train_loss {train_loss:.4f} " if train_loss is not None else ""
    return f"{loss}test_acc {row['test_acc']:.4f}"
