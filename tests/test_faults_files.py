"""Injected faults in a grid dir's files (issue 23): a results file or state file cut short, a
jobs.parquet cut short or removed, a checkpoint deleted. Each is said in one line naming the
file and what to do, nothing is corrupted, and a rerun ends with the same metrics as a clean run.

Each test damages a copy of one of two dirs made once: the grid run to the end, and the grid's
run SIGKILLed in its last stack (2 jobs done, the third's checkpoint after epoch 2 saved).
`tvo status` and the rerun run in this process: the faults are in the files."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests import rundir_view
from tests.faults import (
    INLINE,
    STALL_EPOCH,
    clean_metrics,
    cli,
    metrics,
    stalled,
    start_stalled_tvo,
    write_grid,
)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return clean_metrics(tmp_path_factory)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The grid dir of a run without a fault (a results file per job)."""
    folder = tmp_path_factory.mktemp("finished")
    code, out, err = cli("run", str(write_grid(folder)), *INLINE, "--out", str(folder / "out"))
    assert code == 0, out + err
    return folder / "out" / "faulty"


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The grid dir of a `tvo run` process SIGKILLed in its last stack's third epoch, that
    stack's checkpoint after epoch 2 saved: 2 jobs done, 1 interrupted. (Its own process: one
    that is gone, as the pid its starts record.)"""
    folder = tmp_path_factory.mktemp("killed")
    write_grid(folder)
    process = start_stalled_tvo("run", "faulty.yaml", *INLINE, "--out", "out", cwd=folder,
                                marker=folder / "stall", skip=2)
    try:
        stalled(folder / "stall", process)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
    return folder / "out" / "faulty"


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test's own folder, as the current dir, with the grid file in it."""
    monkeypatch.chdir(tmp_path)
    write_grid(tmp_path)
    return tmp_path


def copy_of(grid_dir: Path, here: Path) -> Path:
    """A copy of a grid dir to damage, at out/faulty beside the grid file."""
    copy = here / "out" / "faulty"
    shutil.copytree(grid_dir, copy)
    return copy


def rerun() -> tuple[int, str, str]:
    return cli("run", "faulty.yaml", *INLINE, "--out", "out")


def status(grid_dir: Path) -> tuple[int, str, str]:
    return cli("status", str(grid_dir))


def test_a_results_file_cut_short_is_set_aside_and_its_jobs_trained_again(
        killed: Path, here: Path, clean: dict[str, Any]) -> None:
    """In the killed run's dir: a job whose results file is damaged counts as not run (its
    process is gone: interrupted), the checkpoint its commit removed is not taken for a deleted
    one, and the rerun trains it again beside the interrupted job."""
    grid_dir = copy_of(killed, here)
    damaged = sorted((grid_dir / "results").glob("*.parquet"))[1]
    damaged.write_bytes(damaged.read_bytes()[:600])

    code, out, err = status(grid_dir)
    assert (code, err) == (0, "")
    assert "done 1 · " in out and "pending 2 (2 interrupted" in out
    assert (f"warning: {damaged} is no readable results file (cut short or damaged): its jobs "
            "count as not run; `tvo run` of the grid sets it aside and trains them again") in out
    assert "(deleted?)" not in out

    code, out, err = rerun()
    assert (code, err) == (0, ""), out + err
    assert (f"warning: out/faulty/results/{damaged.name} was no readable results file (cut "
            f"short or damaged): set aside as {damaged.name}.broken, its jobs were trained "
            "again") in out
    assert "3 jobs: done 3" in out and "1 already done before this run" in out
    assert "(deleted?)" not in out
    assert (damaged.parent / f"{damaged.name}.broken").exists()
    assert metrics(grid_dir) == clean


def test_a_state_file_cut_short_mid_line_is_read_up_to_its_last_whole_line(
        killed: Path, here: Path, clean: dict[str, Any]) -> None:
    grid_dir = copy_of(killed, here)
    [state] = (grid_dir / "state").glob("*.jsonl")
    content = state.read_bytes()
    state.write_bytes(content[:len(content) - 7])  # the last event loses its end

    code, out, err = status(grid_dir)
    assert (code, err) == (0, "")
    assert "done 2 · " in out and "pending 1 (1 interrupted" in out

    code, out, err = rerun()
    assert (code, err) == (0, ""), out + err
    assert "3 jobs: done 3" in out and "2 already done before this run" in out
    assert metrics(grid_dir) == clean


def test_a_jobs_file_cut_short_is_set_aside_and_written_again(
        finished: Path, here: Path, clean: dict[str, Any]) -> None:
    grid_dir = copy_of(finished, here)
    jobs = grid_dir / "jobs.parquet"
    jobs.write_bytes(jobs.read_bytes()[:300])

    code, out, err = status(grid_dir)
    assert (code, err) == (0, ""), out + err
    assert "3 jobs" in out and "done 3 · " in out
    assert f"warning: {jobs} cannot be read (" in out
    assert ("`tvo run` of the grid sets it aside and writes it again; listed here: the 3 jobs "
            "the dir's other files mention") in out

    code, out, err = rerun()
    assert (code, err) == (0, ""), out + err
    assert ("warning: out/faulty/jobs.parquet was no readable Parquet file (cut short or "
            "damaged): set aside as jobs.parquet.broken; it is written again with this grid's "
            "jobs") in out
    assert "3 already done before this run" in out
    assert sorted(pq.read_table(jobs)["job_id"].to_pylist()) == sorted(clean)
    assert (grid_dir / "jobs.parquet.broken").exists()
    assert metrics(grid_dir) == clean
    code, out, _ = status(grid_dir)
    assert code == 0 and "warning" not in out


def test_a_removed_jobs_file_is_listed_from_the_other_files_and_written_again(
        finished: Path, here: Path, clean: dict[str, Any]) -> None:
    grid_dir = copy_of(finished, here)
    (grid_dir / "jobs.parquet").unlink()

    code, out, err = status(grid_dir)
    assert (code, err) == (0, "")
    assert "done 3 · " in out
    assert (f"warning: {grid_dir / 'jobs.parquet'} is missing; `tvo run` of the grid writes it "
            "again; listed here: the 3 jobs the dir's other files mention") in out

    code, out, err = rerun()
    assert (code, err) == (0, ""), out + err
    assert "3 already done before this run" in out
    assert sorted(pq.read_table(grid_dir / "jobs.parquet")["job_id"].to_pylist()) == sorted(
        clean)
    assert metrics(grid_dir) == clean


def test_a_deleted_checkpoint_is_said_and_its_jobs_train_from_their_first_epoch(
        killed: Path, here: Path, clean: dict[str, Any]) -> None:
    grid_dir = copy_of(killed, here)
    [checkpoint] = (grid_dir / "checkpoints").glob("*.ckpt")
    checkpoint.unlink()

    code, out, err = status(grid_dir)
    assert (code, err) == (0, "")
    assert (f"warning: 1 unfinished jobs saved a checkpoint that is gone from "
            f"{grid_dir / 'checkpoints'} (deleted?): `tvo run` trains them again from their "
            "first epoch, to the same results") in out

    code, out, err = rerun()
    assert (code, err) == (0, ""), out + err
    assert "3 jobs: done 3" in out
    assert "was gone from out/faulty/checkpoints (deleted?): they trained again from their " \
           "first epoch, to the same results" in out
    assert "resumed after epoch" not in rundir_view.all_logs(grid_dir)
    assert metrics(grid_dir) == clean


def test_a_checkpoint_kept_resumes_to_the_same_metrics(
        killed: Path, here: Path, clean: dict[str, Any]) -> None:
    """The control for the deleted checkpoint: kept, the job resumes, and no warning."""
    grid_dir = copy_of(killed, here)
    code, out, err = rerun()
    assert (code, err) == (0, ""), out + err
    assert "warning" not in out
    assert f"resumed after epoch {STALL_EPOCH}" in rundir_view.all_logs(grid_dir)
    assert metrics(grid_dir) == clean
