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

from jobs.rundir.claims import ClaimBook
from jobs.rundir.run_dir import RunDir
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


def events(grid_dir: Path, job_id: str) -> EventAccumulator:
    accumulator = EventAccumulator(str(grid_dir / "tensorboard" / job_id))
    accumulator.Reload()
    return accumulator


def hparams(accumulator: EventAccumulator) -> dict[str, object]:
    content = accumulator.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    values = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    return {key: value.string_value or value.number_value for key, value in values.items()}


# -- --tensorboard ---------------------------------------------------------------------------------
def test_run_with_tensorboard_writes_every_job_as_a_run_of_its_own(in_tmp: Path) -> None:
    (in_tmp / "tiny.yaml").write_text(TINY_GRID)
    code, out, err = invoke("run", "tiny.yaml", "--backend", "inline", "--out", "out",
                            "--tensorboard")
    assert code == 0, out + err
    assert out.splitlines()[0] == "TensorBoard: tensorboard --logdir out/tiny"
    specs = expand(load_grid("tiny.yaml"))  # the job ids do not depend on the option
    for spec in specs:
        board = events(in_tmp / "out" / "tiny", spec.job_id)
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
    [run] = (in_tmp / "solo" / "tensorboard").iterdir()
    board = events(in_tmp / "solo", run.name)
    assert [event.step for event in board.Scalars("train/loss")] == [0, 1]
    assert len(hparams(board)) == len(JobSpec.from_dict({}).to_dict())  # a lone job: all


def test_train_clears_a_cancel_request_and_resumes(in_tmp: Path) -> None:
    spec = JobSpec.from_dict({"epochs": 2, "hidden": [8]})
    RunDir(in_tmp / "solo").request_cancel([spec.job_id], "test")
    code, out, err = invoke("train", "epochs=2", "hidden=[8]", "--out", "solo")
    assert code == 0, out + err
    assert not RunDir(in_tmp / "solo").cancel_requested(spec.job_id)


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


def running_grid(in_tmp: Path, started: bool = True) -> tuple[Path, JobSpec]:
    """A grid of one job whose stack started in this process and reached epoch 3 of 10."""
    spec = JobSpec.from_dict({"epochs": 10, "hidden": [8]})
    grid_dir = in_tmp / "out" / "live"
    prepare(grid_dir, "name: live\n", [spec], "live")
    if started:
        files = RunDir(grid_dir).stack_files("live-stack", [spec])
        files.begin("cpu")
        files.epoch(3, 10, 1)
        files.close()
    return grid_dir, spec


def end_after(book: ClaimBook, grid_dir: Path, spec: JobSpec,
              seconds: float) -> threading.Thread:
    def end() -> None:
        time.sleep(seconds)
        RunDir(grid_dir).record_crash([spec.job_id], "RuntimeError: boom")
        book.release([spec.job_id])

    thread = threading.Thread(target=end)
    thread.start()
    return thread


def test_watch_follows_a_running_grid_until_it_ends(in_tmp: Path) -> None:
    grid_dir, spec = running_grid(in_tmp)
    with ClaimBook(grid_dir) as book:
        assert book.take([spec.job_id]).taken == [spec.job_id]
        thread = end_after(book, grid_dir, spec, 0.6)
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
                          f"failed {spec.job_id}: RuntimeError: boom"]


def test_watch_on_a_terminal_redraws_with_the_running_jobs_epoch(in_tmp: Path) -> None:
    grid_dir, spec = running_grid(in_tmp)
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120, color_system=None)
    with ClaimBook(grid_dir) as book:
        book.take([spec.job_id])
        thread = end_after(book, grid_dir, spec, 0.5)
        final = watch_status(grid_dir, 0.1, console)
        thread.join()
    assert final.counts["failed"] == 1
    shown = screen.getvalue()
    assert re.search(rf"{spec.job_id}\s+live-stack\s+{socket.gethostname()}\s+3/10", shown)
    assert "refreshed every 0.1s until no job runs · Ctrl-C stops watching" in shown
    assert "failed 1 · diverged 0" in shown


def test_watch_of_pending_jobs_that_nobody_runs_ends_after_a_second_look(in_tmp: Path) -> None:
    running_grid(in_tmp, started=False)  # pending, and no runner holds it
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
                              "`tvo status out/tiny --jobs`\n")
    assert not (in_tmp / "out" / "tiny" / "cancel.json").exists()


def test_cancel_of_a_finished_grid_has_nothing_to_stop(in_tmp: Path) -> None:
    (in_tmp / "tiny.yaml").write_text(TINY_GRID)
    assert invoke("run", "tiny.yaml", "--backend", "inline", "--out", "out")[0] == 0
    code, out, err = invoke("cancel", "out/tiny")
    assert (code, out) == (0, "out/tiny: nothing to cancel, the jobs asked for are finished\n")
    # the grid's own request stays until the next run, which clears it
    assert RunDir(in_tmp / "out" / "tiny").cancel_requested()
    assert invoke("run", "tiny.yaml", "--backend", "inline", "--out", "out")[0] == 0
    assert not RunDir(in_tmp / "out" / "tiny").cancel_requested()


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
    assert RunDir(grid_dir).cancel_requested(specs[1].job_id)
    assert not RunDir(grid_dir).cancel_requested(specs[0].job_id)
    assert not RunDir(grid_dir).cancel_requested()
