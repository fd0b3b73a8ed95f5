"""`--tensorboard` on run and train, `tvo status --watch`, and `tvo cancel`'s own answers."""

from __future__ import annotations

import io
import re
import socket
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2
from typer.testing import CliRunner

from jobs.rundir import results
from jobs.rundir.claims import ClaimBook
from jobs.spec import JobSpec
from runner.cli.app import app
from runner.cli.watch import watch_status
from runner.dispatch.outdir import prepare
from runner.grid.expand import expand, load_grid

TINY_GRID = """\
name: tiny
base: {dataset: digits, hidden: [16], epochs: 2, lr: 0.5, output: sigmoid, loss: mse}
grid: {seed: [0, 1]}
"""
COUNTS = r"\d\d:\d\d:\d\d done {} · running {} · failed {} · diverged 0 · cancelled 0 · pending {}"


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def events(run_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(run_dir / "tensorboard"))
    accumulator.Reload()
    return accumulator


def hparams(accumulator: EventAccumulator) -> dict[str, object]:
    content = accumulator.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    values = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    return {key: value.string_value or value.number_value for key, value in values.items()}


# -- --tensorboard ---------------------------------------------------------------------------------
def test_run_with_tensorboard_writes_every_job_under_its_run_dir(in_tmp: Path) -> None:
    (in_tmp / "tiny.yaml").write_text(TINY_GRID)
    code, out, err = invoke("run", "tiny.yaml", "--backend", "inline", "--out", "out",
                            "--tensorboard")
    assert code == 0, out + err
    assert out.splitlines()[0] == "TensorBoard: tensorboard --logdir out/tiny"
    specs = expand(load_grid("tiny.yaml"))  # the job ids do not depend on the option
    for spec in specs:
        board = events(in_tmp / "out" / "tiny" / "runs" / spec.job_id)
        assert [event.step for event in board.Scalars("test/acc")] == [0, 1, 2]
        assert "targets/class_9/nc" in board.Tags()["scalars"]
        assert hparams(board) == {"seed": float(spec.seed)}  # what tells the jobs apart


def test_run_without_the_option_writes_no_events(in_tmp: Path) -> None:
    (in_tmp / "tiny.yaml").write_text(TINY_GRID)
    code, out, err = invoke("run", "tiny.yaml", "seed=0", "--backend", "inline", "--out", "out")
    assert code == 0 and "TensorBoard" not in out
    assert not list((in_tmp / "out").rglob("tensorboard"))


def test_train_with_tensorboard(in_tmp: Path) -> None:
    code, out, err = invoke("train", "epochs=1", "hidden=[8]", "--out", "solo", "--tensorboard")
    assert code == 0, out + err
    assert "TensorBoard: tensorboard --logdir solo" in out
    [run_dir] = (in_tmp / "solo" / "runs").iterdir()
    board = events(run_dir)
    assert [event.step for event in board.Scalars("train/loss")] == [0, 1]
    assert len(hparams(board)) == len(JobSpec.from_dict({}).to_dict())  # a lone job: all


def test_train_clears_a_cancel_request_and_resumes(in_tmp: Path) -> None:
    spec = JobSpec.from_dict({"epochs": 2, "hidden": [8]})
    run_dir = in_tmp / "solo" / "runs" / spec.job_id
    run_dir.mkdir(parents=True)
    results.request_cancel(run_dir, "test")
    code, out, err = invoke("train", "epochs=2", "hidden=[8]", "--out", "solo")
    assert code == 0, out + err
    assert not results.cancel_requested(run_dir)


# -- status --watch --------------------------------------------------------------------------------
def test_watch_on_a_finished_grid_exits_at_once_like_status(in_tmp: Path) -> None:
    (in_tmp / "tiny.yaml").write_text(TINY_GRID)
    assert invoke("run", "tiny.yaml", "--backend", "inline", "--out", "out")[0] == 0
    started = time.monotonic()
    code, out, err = invoke("status", "out/tiny", "--watch", "--interval", "30")
    assert time.monotonic() - started < 5
    status_code, status_out, _ = invoke("status", "out/tiny")
    assert code == status_code == 0
    lines = out.splitlines()
    assert re.fullmatch(COUNTS.format(2, 0, 0, 0), lines[0])
    assert "\n".join(lines[1:]) + "\n" == status_out


def test_status_answers_without_importing_torch(in_tmp: Path) -> None:
    """torch's import costs about a second; reading a grid's status files needs none of it."""
    import subprocess
    import sys

    (in_tmp / "tiny.yaml").write_text(TINY_GRID)
    assert invoke("run", "tiny.yaml", "--backend", "inline", "--out", "out")[0] == 0
    script = ("import sys; from typer.testing import CliRunner; from runner.cli.app import app; "
              "result = CliRunner().invoke(app, ['status', 'out/tiny']); "
              "assert result.exit_code == 0, result.output; "
              "print(sorted({'torch', 'pandas'} & set(sys.modules)))")
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           check=True, cwd=in_tmp).stdout
    assert shown.strip() == "[]"


def test_watch_of_a_dir_that_is_not_a_grid_is_bad_input(in_tmp: Path) -> None:
    code, out, err = invoke("status", "nowhere", "--watch")
    assert (code, err) == (2, "Error: grid output dir 'nowhere' does not exist\n")


def running_grid(in_tmp: Path) -> tuple[Path, Path]:
    """A grid of one job that this process holds (a live claim) and that logged epoch 3."""
    spec = JobSpec.from_dict({"epochs": 10, "hidden": [8]})
    grid_dir = in_tmp / "out" / "live"
    prepare(grid_dir, "name: live\n", [spec], "live")
    run_dir = grid_dir / "runs" / spec.job_id
    run_dir.mkdir(parents=True)
    results.write_status(run_dir, {"state": "running", "host": socket.gethostname()})
    (run_dir / results.LOG_FILE).write_text(
        "2026-01-01 00:00:00,000 INFO epoch 3/10 train_loss 0.1000 train_acc 0.5000 "
        "test_acc 0.6250\n")
    return grid_dir, run_dir


def end_after(book: ClaimBook, run_dir: Path, seconds: float) -> threading.Thread:
    def end() -> None:
        time.sleep(seconds)
        results.write_status(run_dir, {"state": "failed", "error": "RuntimeError: boom"})
        book.release(run_dir)

    thread = threading.Thread(target=end)
    thread.start()
    return thread


def test_watch_follows_a_running_grid_until_it_ends(in_tmp: Path) -> None:
    grid_dir, run_dir = running_grid(in_tmp)
    with ClaimBook() as book:
        assert book.acquire(run_dir) is None
        thread = end_after(book, run_dir, 0.6)
        started = time.monotonic()
        code, out, err = invoke("status", "out/live", "--watch", "--interval", "0.1")
        thread.join()
    assert 0.6 <= time.monotonic() - started < 10
    assert code == 0
    lines = out.splitlines()
    assert re.fullmatch(COUNTS.format(0, 1, 0, 0), lines[0])
    assert re.fullmatch(COUNTS.format(0, 0, 1, 0), lines[1])  # printed when the counts change
    assert lines[2:5] == ["out/live: 1 jobs",
                          "done 0 · running 0 · failed 1 · diverged 0 · cancelled 0 · pending 0",
                          f"failed {run_dir.name}: RuntimeError: boom"]


def test_watch_on_a_terminal_redraws_with_the_running_jobs_epoch(in_tmp: Path) -> None:
    grid_dir, run_dir = running_grid(in_tmp)
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120, color_system=None)
    with ClaimBook() as book:
        assert book.acquire(run_dir) is None
        thread = end_after(book, run_dir, 0.5)
        final = watch_status(grid_dir, 0.1, console)
        thread.join()
    assert final.counts["failed"] == 1
    shown = screen.getvalue()
    assert re.search(rf"{run_dir.name}\s+{socket.gethostname()}\s+3/10\s+0\.6250", shown)
    assert "refreshed every 0.1s until no job runs · Ctrl-C stops watching" in shown
    assert "failed 1 · diverged 0" in shown


def test_watch_of_pending_jobs_that_nobody_runs_ends_after_a_second_look(in_tmp: Path) -> None:
    grid_dir, run_dir = running_grid(in_tmp)
    (run_dir / results.STATUS_FILE).unlink()  # pending, and no runner holds it
    started = time.monotonic()
    code, out, err = invoke("status", "out/live", "--watch", "--interval", "0.5")
    assert 0.5 <= time.monotonic() - started < 5
    assert code == 0
    assert re.fullmatch(COUNTS.format(0, 0, 0, 1), out.splitlines()[0])


# -- cancel ----------------------------------------------------------------------------------------
def test_cancel_of_a_dir_that_is_not_a_grid_or_of_an_unknown_job_is_bad_input(
        in_tmp: Path) -> None:
    code, out, err = invoke("cancel", "nowhere")
    assert (code, err) == (2, "Error: grid output dir 'nowhere' does not exist\n")
    (in_tmp / "tiny.yaml").write_text(TINY_GRID)
    assert invoke("run", "tiny.yaml", "seed=0", "--backend", "inline", "--out", "out")[0] == 0
    code, out, err = invoke("cancel", "out/tiny", "--job", "abc")
    assert (code, err) == (2, "Error: 'out/tiny' has no job 'abc'; its job ids are listed by "
                              "`tvo status out/tiny` and in out/tiny/runs\n")
    assert not (in_tmp / "out" / "tiny" / "cancel").exists()


def test_cancel_of_a_finished_grid_has_nothing_to_stop(in_tmp: Path) -> None:
    (in_tmp / "tiny.yaml").write_text(TINY_GRID)
    assert invoke("run", "tiny.yaml", "--backend", "inline", "--out", "out")[0] == 0
    code, out, err = invoke("cancel", "out/tiny")
    assert (code, out) == (0, "out/tiny: nothing to cancel, the jobs asked for are finished\n")
    # the grid's own request stays until the next run, which clears it
    assert results.cancel_requested(in_tmp / "out" / "tiny")
    assert invoke("run", "tiny.yaml", "--backend", "inline", "--out", "out")[0] == 0
    assert not results.cancel_requested(in_tmp / "out" / "tiny")


def test_cancel_of_pending_jobs_marks_them_so_that_none_starts(in_tmp: Path) -> None:
    (in_tmp / "tiny.yaml").write_text(TINY_GRID)
    specs = expand(load_grid("tiny.yaml"))
    grid_dir = in_tmp / "out" / "tiny"
    prepare(grid_dir, TINY_GRID, specs, "tiny")
    code, out, err = invoke("cancel", "out/tiny", "--job", specs[1].job_id)
    assert code == 0, out + err
    assert out.splitlines() == [
        f"cancel requested for 1 unfinished jobs of out/tiny ({specs[1].job_id}); 0 running",
        "done 0 · running 0 · failed 0 · diverged 0 · cancelled 0 · pending 2 (0.0s)",
        "`tvo run` on the same grid resumes the cancelled jobs from their checkpoints"]
    assert results.cancel_requested(grid_dir / "runs" / specs[1].job_id)
    assert not results.cancel_requested(grid_dir / "runs" / specs[0].job_id)
    assert not results.cancel_requested(grid_dir)
