"""Injected faults in a grid dir's files (issue 23): a results file or state file cut short, a
jobs.parquet cut short or removed, a checkpoint deleted. Each is said in one line naming the
file and what to do, nothing is corrupted, and a rerun ends with the same metrics as a clean run.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.faults import metrics, reached_epoch, start_tvo, tvo, wait_for, write_grid

SHORT = {"epochs": 2, "seeds": 3}  # done in seconds
LONG = {"epochs": 30, "seeds": 2}  # long enough to be killed mid-stack


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Each grid run once without a fault (inline, a stack per job): its dir and metrics."""
    found: dict[str, Any] = {}
    for name, shape in (("short", SHORT), ("long", LONG)):
        folder = tmp_path_factory.mktemp(f"clean-{name}")
        grid = write_grid(folder, name, **shape)
        code, out, err = tvo("run", str(grid), "--backend", "inline", "--pack", "off", "--out",
                             "out", cwd=folder)
        assert code == 0, out + err
        found[name] = (folder / "out" / name, metrics(folder / "out" / name))
    return found


def copy_of(clean: dict[str, Any], name: str, tmp_path: Path) -> Path:
    """A copy of the clean run's dir to damage, with its grid file beside it."""
    write_grid(tmp_path, name, **(SHORT if name == "short" else LONG))
    grid_dir = tmp_path / "out" / name
    shutil.copytree(clean[name][0], grid_dir)
    return grid_dir


def rerun(tmp_path: Path, name: str) -> tuple[int, str, str]:
    return tvo("run", f"{name}.yaml", "--backend", "inline", "--pack", "off", "--out", "out",
               cwd=tmp_path)


def killed_mid_run(tmp_path: Path, name: str = "long") -> Path:
    """A run SIGKILLed once a stack has saved a checkpoint after epoch 3: its dir."""
    write_grid(tmp_path, name, **LONG)
    grid_dir = tmp_path / "out" / name
    process = start_tvo("run", f"{name}.yaml", "--backend", "inline", "--pack", "off", "--out",
                        "out", cwd=tmp_path, TVO_CHECKPOINT_SECONDS="0")
    try:
        wait_for(reached_epoch(grid_dir, 3), process)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
    return grid_dir


def test_a_results_file_cut_short_is_set_aside_and_its_jobs_trained_again(
        clean: dict[str, Any], tmp_path: Path) -> None:
    grid_dir = copy_of(clean, "short", tmp_path)
    damaged = sorted((grid_dir / "results").glob("*.parquet"))[1]
    damaged.write_bytes(damaged.read_bytes()[:600])

    code, out, err = tvo("status", str(grid_dir), cwd=tmp_path)
    assert (code, err) == (0, "")
    assert "done 2 · " in out and "pending 1" in out
    assert (f"warning: {damaged} is no readable results file (cut short or damaged): its jobs "
            "count as not run; `tvo run` of the grid sets it aside and trains them again") in out

    code, out, err = rerun(tmp_path, "short")
    assert (code, err) == (0, ""), out + err
    assert (f"warning: out/short/results/{damaged.name} was no readable results file (cut short "
            f"or damaged): set aside as {damaged.name}.broken, its jobs were trained again") in out
    assert "3 jobs: done 3" in out
    assert (damaged.parent / f"{damaged.name}.broken").exists()
    assert metrics(grid_dir) == clean["short"][1]


def test_a_state_file_cut_short_mid_line_is_read_up_to_its_last_whole_line(
        clean: dict[str, Any], tmp_path: Path) -> None:
    grid_dir = killed_mid_run(tmp_path)
    [state] = (grid_dir / "state").glob("*.jsonl")
    content = state.read_bytes()
    state.write_bytes(content[:len(content) - 7])  # the last event loses its end

    code, out, err = tvo("status", str(grid_dir), cwd=tmp_path)
    assert (code, err) == (0, "")
    assert "pending 2 (1 interrupted" in out  # the other job had not started

    code, out, err = rerun(tmp_path, "long")
    assert (code, err) == (0, ""), out + err
    assert "2 jobs: done 2" in out
    assert metrics(grid_dir) == clean["long"][1]


def test_a_jobs_file_cut_short_is_set_aside_and_written_again(
        clean: dict[str, Any], tmp_path: Path) -> None:
    grid_dir = copy_of(clean, "short", tmp_path)
    jobs = grid_dir / "jobs.parquet"
    jobs.write_bytes(jobs.read_bytes()[:300])

    code, out, err = tvo("status", str(grid_dir), cwd=tmp_path)
    assert (code, err) == (0, ""), out + err
    assert "3 jobs" in out and "done 3 · " in out
    assert f"warning: {jobs} cannot be read (" in out
    assert ("`tvo run` of the grid sets it aside and writes it again; listed here: the 3 jobs "
            "the dir's other files mention") in out

    code, out, err = rerun(tmp_path, "short")
    assert (code, err) == (0, ""), out + err
    assert ("warning: out/short/jobs.parquet was no readable Parquet file (cut short or "
            "damaged): set aside as jobs.parquet.broken; it is written again with this grid's "
            "jobs") in out
    assert "3 already done before this run" in out
    assert sorted(pq.read_table(jobs)["job_id"].to_pylist()) == sorted(clean["short"][1])
    assert (grid_dir / "jobs.parquet.broken").exists()
    assert metrics(grid_dir) == clean["short"][1]
    code, out, _ = tvo("status", str(grid_dir), cwd=tmp_path)
    assert code == 0 and "warning" not in out


def test_a_removed_jobs_file_is_listed_from_the_other_files_and_written_again(
        clean: dict[str, Any], tmp_path: Path) -> None:
    grid_dir = copy_of(clean, "short", tmp_path)
    (grid_dir / "jobs.parquet").unlink()

    code, out, err = tvo("status", str(grid_dir), cwd=tmp_path)
    assert (code, err) == (0, "")
    assert "done 3 · " in out
    assert (f"warning: {grid_dir / 'jobs.parquet'} is missing; `tvo run` of the grid writes it "
            "again; listed here: the 3 jobs the dir's other files mention") in out

    code, out, err = rerun(tmp_path, "short")
    assert (code, err) == (0, ""), out + err
    assert "3 already done before this run" in out
    assert sorted(pq.read_table(grid_dir / "jobs.parquet")["job_id"].to_pylist()) == sorted(
        clean["short"][1])
    assert metrics(grid_dir) == clean["short"][1]


def test_a_deleted_checkpoint_is_said_and_its_jobs_train_from_their_first_epoch(
        clean: dict[str, Any], tmp_path: Path) -> None:
    grid_dir = killed_mid_run(tmp_path)
    [checkpoint] = (grid_dir / "checkpoints").glob("*.ckpt")
    checkpoint.unlink()

    code, out, err = tvo("status", str(grid_dir), cwd=tmp_path)
    assert (code, err) == (0, "")
    assert (f"warning: 1 unfinished jobs saved a checkpoint that is gone from "
            f"{grid_dir / 'checkpoints'} (deleted?): `tvo run` trains them again from their "
            "first epoch, to the same results") in out

    code, out, err = rerun(tmp_path, "long")
    assert (code, err) == (0, ""), out + err
    assert "2 jobs: done 2" in out
    assert "was gone from out/long/checkpoints (deleted?): they trained again from their " \
           "first epoch, to the same results" in out
    assert "resumed after epoch" not in "".join(
        path.read_text() for path in (grid_dir / "logs").glob("*.log"))
    assert metrics(grid_dir) == clean["long"][1]


def test_a_checkpoint_kept_resumes_to_the_same_metrics(clean: dict[str, Any],
                                                       tmp_path: Path) -> None:
    """The control for the deleted checkpoint: kept, the job resumes, and no warning."""
    grid_dir = killed_mid_run(tmp_path)
    code, out, err = rerun(tmp_path, "long")
    assert (code, err) == (0, ""), out + err
    assert "warning" not in out
    assert "resumed after epoch" in "".join(
        path.read_text() for path in (grid_dir / "logs").glob("*.log"))
    assert metrics(grid_dir) == clean["long"][1]
