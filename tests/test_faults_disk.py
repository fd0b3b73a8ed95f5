"""Injected disk faults (issue 23): a disk that fills up mid-run (a real tmpfs as --out, and
ENOSPC raised by the writers themselves, so the path is tested wherever mount is refused), and a
grid dir that is or becomes read-only. Each ends in one line naming the file and what to do,
leaves no damaged file, and the rerun's metrics equal a clean run's. `tvo` runs in this process
(inline): the faults are in the disk, not in the process."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobs.rundir import results
from jobs.rundir.disk import naming
from jobs.rundir.index import StateIndex
from tests import rundir_view
from tests.faults import INLINE as RUN
from tests.faults import clean_metrics, cli, metrics, one_error_line, write_grid

REAL_WRITE = results.atomic_write_bytes


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return clean_metrics(tmp_path_factory)


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test's own folder, as the current dir, with the grid file (faulty.yaml) in it."""
    monkeypatch.chdir(tmp_path)
    write_grid(tmp_path)
    return tmp_path


def mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs: room for a grid's first files and a results file or two, no more."""
    point = tmp_path / "disk"
    point.mkdir()
    made = mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(point))
    if made.returncode != 0:
        pytest.skip(f"mount -t tmpfs is not permitted here ({made.stderr.strip()}); the "
                    "injected ENOSPC tests cover the same path")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], capture_output=True, timeout=30)


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Any]:
    """make(dir): the dir turns read-only (a read-only bind mount as root, else chmod), undone
    by the returned call and at teardown."""
    undo: list[Any] = []

    def make(folder: Path) -> Any:
        if os.geteuid() == 0:
            if mount("--bind", str(folder), str(folder)).returncode != 0:
                pytest.skip("mount --bind is not permitted here; a read-only dir cannot be made "
                            "for root (chmod does not bind it)")
            mount("-o", "remount,ro,bind", str(folder))

            def back() -> None:
                subprocess.run(["umount", str(folder)], capture_output=True, timeout=30)
        else:
            modes = {path: path.stat().st_mode for path in [folder, *folder.rglob("*")]
                     if path.is_dir()}
            for path in modes:
                path.chmod(0o555)

            def back() -> None:
                for path, mode in modes.items():
                    path.chmod(mode)
        undo.append(back)
        return back

    yield make
    for back in undo:
        back()


def test_a_disk_that_fills_up_mid_run(small_disk: Path, here: Path,
                                      clean: dict[str, Any]) -> None:
    code, out, err = cli("run", "faulty.yaml", *RUN, "--out", str(small_disk))
    grid_dir = small_disk / "faulty"
    assert code == 1, out + err
    if err:  # the runner's own write was refused: the run stops, in one line
        line = one_error_line(err)
        assert line.startswith(f"Error: cannot write {grid_dir}/") and (
            ": No space left on device; free space on that disk (or choose another --out), then "
            "run the same command again: finished jobs are kept and the others resume from "
            "their last checkpoint") in line, line
    else:  # a worker's write was refused: its jobs failed, the others went on
        assert "jobs failed writing to the grid dir: free space on that disk" in out, out
    index = StateIndex(grid_dir).refresh()
    assert index.broken_files() == []  # no results file half-written
    assert len(index.finished_ids()) < 3
    assert not [p for p in grid_dir.rglob("*.tmp")]
    code, out, err = cli("status", str(grid_dir))
    assert (code, err) == (0, "")

    assert mount("-o", "remount,size=8m", str(small_disk)).returncode == 0  # space freed
    code, out, err = cli("run", "faulty.yaml", *RUN, "--out", str(small_disk))
    assert (code, err) == (0, ""), out + err
    assert metrics(grid_dir) == clean


def refused(code: int, where: str, count: list[int]) -> Any:
    """An atomic write that the disk refuses (`code`) for files in folder `where`, named as
    the real one names them."""
    real = REAL_WRITE

    def write(path: Path, data: bytes, *, durable: bool = True) -> None:
        if path.parent.name != where and path.name != where:
            return real(path, data, durable=durable)
        count.append(1)
        with naming(path):
            raise OSError(code, os.strerror(code))
    return write


def remedy(code: int) -> str:
    """What tvo tells the user to do about a write refused with `code`."""
    return ("free space on that disk" if code == errno.ENOSPC
            else "make the grid dir writable again")


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_worker_whose_results_write_is_refused_fails_its_jobs_alone(
        code: int, here: Path, clean: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(results, "atomic_write_bytes", refused(code, "results", calls))
    status, out, err = cli("run", "faulty.yaml", *RUN, "--out", "out")
    assert (status, err) == (1, ""), out + err
    grid_dir = here / "out" / "faulty"
    assert "3 jobs: done 0 · running 0 · failed 3" in out
    assert f"[Errno {code}] {os.strerror(code)}: '{grid_dir.resolve()}/results/" in out
    what = remedy(code)
    assert (f"3 jobs failed writing to the grid dir: {what} (or choose another --out), then run "
            "the same command again; finished jobs are kept and these resume from their last "
            "checkpoint") in out
    assert not (grid_dir / "results").exists() or not list((grid_dir / "results").iterdir())
    assert {rundir_view.state(grid_dir, job_id) for job_id in clean} == {"failed"}

    monkeypatch.setattr(results, "atomic_write_bytes", REAL_WRITE)  # space again
    status, out, err = cli("run", "faulty.yaml", *RUN, "--out", "out")
    assert (status, err) == (0, ""), out + err
    assert metrics(grid_dir) == clean


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_runner_whose_write_is_refused_stops_in_one_line(
        code: int, here: Path, clean: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(results, "atomic_write_bytes", refused(code, "jobs.parquet", calls))
    status, out, err = cli("run", "faulty.yaml", *RUN, "--out", "out")
    grid_dir = here / "out" / "faulty"
    assert status == 1 and calls, out + err
    what = remedy(code)
    assert one_error_line(err) == (
        f"Error: cannot write out/faulty/jobs.parquet: {os.strerror(code)}; {what} (or choose "
        "another --out), then run the same command again: finished jobs are kept and the "
        "others resume from their last checkpoint")
    assert sorted(p.name for p in grid_dir.iterdir()) == [".tvo.lock", "grid.yaml"]

    monkeypatch.setattr(results, "atomic_write_bytes", REAL_WRITE)
    status, out, err = cli("run", "faulty.yaml", *RUN, "--out", "out")
    assert (status, err) == (0, ""), out + err
    assert metrics(grid_dir) == clean


def test_a_read_only_grid_dir(read_only: Any, here: Path, clean: dict[str, Any]) -> None:
    """Two of three jobs ran; then the dir turned read-only: the run refuses before writing a
    byte, status still reads it, and once writable again the third job runs."""
    code, out, err = cli("run", "faulty.yaml", "seed=0,1", *RUN, "--out", "out")
    assert code == 0, out + err
    grid_dir = here / "out" / "faulty"
    before = {path: path.stat().st_mtime_ns for path in grid_dir.rglob("*")}
    writable = read_only(grid_dir)

    code, out, err = cli("run", "faulty.yaml", *RUN, "--out", "out")
    assert code == 2, out + err
    line = one_error_line(err)
    if os.geteuid() == 0:
        assert line == ("Error: output dir 'out/faulty': out/faulty is on a read-only file "
                        "system; remount it read-write (its finished jobs are kept), or choose "
                        "another --out"), line
    else:
        assert "is not writable by this user; make it writable" in line, line
    assert {path: path.stat().st_mtime_ns for path in grid_dir.rglob("*")} == before
    code, out, err = cli("status", str(grid_dir))
    assert (code, err) == (0, "") and "2 jobs" in out and "done 2" in out

    writable()
    code, out, err = cli("run", "faulty.yaml", *RUN, "--out", "out")
    assert (code, err) == (0, ""), out + err
    assert "2 already done before this run" in out
    assert metrics(grid_dir) == clean


def test_a_read_only_folder_inside_the_grid_dir(read_only: Any, here: Path) -> None:
    assert cli("run", "faulty.yaml", "seed=0", *RUN, "--out", "out")[0] == 0
    grid_dir = here / "out" / "faulty"
    read_only(grid_dir / "results")
    before = {path: path.stat().st_mtime_ns for path in grid_dir.rglob("*")}
    code, out, err = cli("run", "faulty.yaml", "seed=0,1", *RUN, "--out", "out")
    assert code == 2, out + err
    assert "out/faulty/results is " in one_error_line(err)
    assert {path: path.stat().st_mtime_ns for path in grid_dir.rglob("*")} == before


def test_a_checkpoint_write_refused_mid_training_fails_its_job_and_the_rerun_resumes_it(
        here: Path, clean: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from jobs.rundir.checkpoint import CheckpointWriter

    monkeypatch.setenv("TVO_CHECKPOINT_SECONDS", "0")  # each job saves after epochs 1 and 2
    real, saves = CheckpointWriter.save, []

    def save(self: CheckpointWriter, states: dict[str, Any]) -> None:
        saves.append(self.path)
        if len(saves) == 4:  # the second job's second epoch: the disk is full for a moment
            with naming(self.path):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(self, states)

    monkeypatch.setattr(CheckpointWriter, "save", save)
    status, out, err = cli("run", "faulty.yaml", *RUN, "--out", "out")
    assert (status, err) == (1, ""), out + err
    grid_dir = here / "out" / "faulty"
    assert "3 jobs: done 2 · running 0 · failed 1" in out
    assert f"No space left on device: '{saves[3].resolve()}'" in out
    assert "1 jobs failed writing to the grid dir: free space on that disk" in out
    assert StateIndex(grid_dir).refresh().broken_files() == []

    monkeypatch.setattr(CheckpointWriter, "save", real)
    status, out, err = cli("run", "faulty.yaml", *RUN, "--out", "out")
    assert (status, err) == (0, ""), out + err
    # the state of epoch 2 that the disk refused was kept by the stack's commit, for this rerun
    assert "resumed after epoch 2" in rundir_view.all_logs(grid_dir)
    assert metrics(grid_dir) == clean
