"""Injected disk faults (issue 23): a disk that fills up mid-run (a real tmpfs as --out, and
ENOSPC raised by the writers themselves, so the path is tested wherever mount is refused), and a
grid dir that is or becomes read-only. Each ends in one line naming the file and what to do,
leaves no damaged file, and the rerun's metrics equal a clean run's."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from jobs.rundir import results
from jobs.rundir.disk import naming
from jobs.rundir.index import StateIndex
from runner.cli.app import app
from tests import rundir_view
from tests.faults import metrics, one_error_line, tvo, write_grid

RUN = ("--backend", "inline", "--pack", "off")
REAL_WRITE = results.atomic_write_bytes


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The grid run once without a fault, in its own process like the runs under test."""
    folder = tmp_path_factory.mktemp("clean")
    grid = write_grid(folder)
    code, out, err = tvo("run", str(grid), *RUN, "--out", "out", cwd=folder)
    assert code == 0, out + err
    return metrics(folder / "out" / "faulty")


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


def test_a_disk_that_fills_up_mid_run(small_disk: Path, tmp_path: Path,
                                      clean: dict[str, Any]) -> None:
    write_grid(tmp_path)
    code, out, err = tvo("run", "faulty.yaml", *RUN, "--out", str(small_disk), cwd=tmp_path)
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
    code, out, err = tvo("status", str(grid_dir), cwd=tmp_path)
    assert (code, err) == (0, "")

    assert mount("-o", "remount,size=8m", str(small_disk)).returncode == 0  # space freed
    code, out, err = tvo("run", "faulty.yaml", *RUN, "--out", str(small_disk), cwd=tmp_path)
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


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_worker_whose_results_write_is_refused_fails_its_jobs_alone(
        code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_grid(tmp_path)
    assert cli("run", "faulty.yaml", *RUN, "--out", "clean")[0] == 0
    reference = metrics(tmp_path / "clean" / "faulty")

    calls: list[int] = []
    monkeypatch.setattr(results, "atomic_write_bytes", refused(code, "results", calls))
    status, out, err = cli("run", "faulty.yaml", *RUN, "--out", "out")
    assert (status, err) == (1, ""), out + err
    grid_dir = tmp_path / "out" / "faulty"
    assert "3 jobs: done 0 · running 0 · failed 3" in out
    assert f"[Errno {code}] {os.strerror(code)}: '{grid_dir.resolve()}/results/" in out
    what = ("free space on that disk" if code == errno.ENOSPC
            else "make the grid dir writable again")
    assert (f"3 jobs failed writing to the grid dir: {what} (or choose another --out), then run "
            "the same command again; finished jobs are kept and these resume from their last "
            "checkpoint") in out
    assert not (grid_dir / "results").exists() or not list((grid_dir / "results").iterdir())
    assert {rundir_view.state(grid_dir, job_id) for job_id in reference} == {"failed"}

    monkeypatch.setattr(results, "atomic_write_bytes", REAL_WRITE)  # space again
    status, out, err = cli("run", "faulty.yaml", *RUN, "--out", "out")
    assert (status, err) == (0, ""), out + err
    assert metrics(grid_dir) == reference


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_runner_whose_write_is_refused_stops_in_one_line(
        code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_grid(tmp_path)
    calls: list[int] = []
    monkeypatch.setattr(results, "atomic_write_bytes", refused(code, "jobs.parquet", calls))
    status, out, err = cli("run", "faulty.yaml", *RUN, "--out", "out")
    grid_dir = tmp_path / "out" / "faulty"
    assert status == 1 and calls, out + err
    what = ("free space on that disk" if code == errno.ENOSPC
            else "make the grid dir writable again")
    assert one_error_line(err) == (
        f"Error: cannot write {grid_dir.relative_to(tmp_path)}/jobs.parquet: "
        f"{os.strerror(code)}; {what} (or choose another --out), then run the same command "
        "again: finished jobs are kept and the others resume from their last checkpoint")
    assert sorted(p.name for p in grid_dir.iterdir()) == [".tvo.lock", "grid.yaml"]

    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    status, out, err = cli("run", "faulty.yaml", *RUN, "--out", "out")
    assert (status, err) == (0, ""), out + err
    assert cli("run", "faulty.yaml", *RUN, "--out", "clean")[0] == 0
    assert metrics(grid_dir) == metrics(tmp_path / "clean" / "faulty")


def test_a_read_only_grid_dir(read_only: Any, tmp_path: Path, clean: dict[str, Any]) -> None:
    """Two of three jobs ran; then the dir turned read-only: the run refuses before writing a
    byte, status still reads it, and once writable again the third job runs."""
    grid = write_grid(tmp_path)
    code, out, err = tvo("run", str(grid), "seed=0,1", *RUN, "--out", "out", cwd=tmp_path)
    assert code == 0, out + err
    grid_dir = tmp_path / "out" / "faulty"
    before = {path: path.stat().st_mtime_ns for path in grid_dir.rglob("*")}
    writable = read_only(grid_dir)

    code, out, err = tvo("run", str(grid), *RUN, "--out", "out", cwd=tmp_path)
    assert code == 2, out + err
    line = one_error_line(err)
    if os.geteuid() == 0:
        assert line == ("Error: output dir 'out/faulty': out/faulty is on a read-only file "
                        "system; remount it read-write (its finished jobs are kept), or choose "
                        "another --out"), line
    else:
        assert "is not writable by this user; make it writable" in line, line
    assert {path: path.stat().st_mtime_ns for path in grid_dir.rglob("*")} == before
    code, out, err = tvo("status", str(grid_dir), cwd=tmp_path)
    assert (code, err) == (0, "") and "2 jobs" in out and "done 2" in out

    writable()
    code, out, err = tvo("run", str(grid), *RUN, "--out", "out", cwd=tmp_path)
    assert (code, err) == (0, ""), out + err
    assert "2 already done before this run" in out
    assert metrics(grid_dir) == clean


def test_a_read_only_folder_inside_the_grid_dir(read_only: Any, tmp_path: Path) -> None:
    grid = write_grid(tmp_path, seeds=1)
    assert tvo("run", str(grid), *RUN, "--out", "out", cwd=tmp_path)[0] == 0
    grid_dir = tmp_path / "out" / "faulty"
    read_only(grid_dir / "results")
    before = {path: path.stat().st_mtime_ns for path in grid_dir.rglob("*")}
    code, out, err = tvo("run", str(grid), "seed=0,1", *RUN, "--out", "out", cwd=tmp_path)
    assert code == 2, out + err
    assert "out/faulty/results is " in one_error_line(err)
    assert {path: path.stat().st_mtime_ns for path in grid_dir.rglob("*")} == before


def test_a_checkpoint_write_refused_mid_training_fails_its_job_and_the_rerun_resumes_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jobs.rundir.checkpoint import CheckpointWriter

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TVO_CHECKPOINT_SECONDS", "0")  # a checkpoint after every epoch
    write_grid(tmp_path, epochs=6, seeds=2)
    assert cli("run", "faulty.yaml", *RUN, "--out", "clean")[0] == 0
    real, saves = CheckpointWriter.save, []

    def save(self: CheckpointWriter, states: dict[str, Any]) -> None:
        saves.append(self.path)
        if len(saves) == 3:  # the first job's third epoch: the disk is full for a moment
            with naming(self.path):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(self, states)

    monkeypatch.setattr(CheckpointWriter, "save", save)
    status, out, err = cli("run", "faulty.yaml", *RUN, "--out", "out")
    assert (status, err) == (1, ""), out + err
    grid_dir = tmp_path / "out" / "faulty"
    assert "2 jobs: done 1 · running 0 · failed 1" in out
    assert f"No space left on device: '{saves[2].resolve()}'" in out
    assert "1 jobs failed writing to the grid dir: free space on that disk" in out
    assert StateIndex(grid_dir).refresh().broken_files() == []

    monkeypatch.setattr(CheckpointWriter, "save", real)
    status, out, err = cli("run", "faulty.yaml", *RUN, "--out", "out")
    assert (status, err) == (0, ""), out + err
    assert "resumed after epoch" in rundir_view.all_logs(grid_dir)
    assert metrics(grid_dir) == metrics(tmp_path / "clean" / "faulty")
