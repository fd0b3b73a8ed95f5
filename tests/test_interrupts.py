"""Ctrl-C and SIGTERM at each stage of `tvo run` and `tvo train`: exit 130, one line, and no
process of the command left behind (Ray's included), found by a marker in their environment."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.cli.interrupts import alive, descendants, stop_children

ROOT = Path(__file__).resolve().parents[1]
GRID = """\
name: stop
base: {dataset: digits, hidden: [64], epochs: 40, lr: 0.5, output: sigmoid, loss: mse}
grid: {seed: [0, 1, 2, 3]}
"""


def marked(mark: str) -> list[str]:
    """Live processes whose environment holds `mark`: the command and all it started."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if mark.encode() not in (entry / "environ").read_bytes():
                continue
            if alive(int(entry.name)):
                found.append(f"{entry.name} {(entry / 'comm').read_text().strip()}")
        except OSError:
            continue
    return found


def interrupt(tmp_path: Path, args: list[str], sig: int,
              ready: Callable[[subprocess.Popen[str]], bool]) -> tuple[int, str, str]:
    """Start `tvo args`, send `sig` once `ready` says so, return (code, stdout, stderr) after
    checking that nothing it started still runs and its Ray left no dir behind."""
    mark = uuid.uuid4().hex
    ray_dirs = Path(tempfile.mkdtemp(prefix="tvo-t-", dir="/tmp"))  # short, for Ray's sockets
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TVO_TEST_MARK": mark,
           "TVO_RAY_TMPDIR": str(ray_dirs)}
    process = subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    try:
        while not ready(process):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "never got ready"
            time.sleep(0.01)
        process.send_signal(sig)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    for _ in range(50):  # SIGKILLed orphans are reaped by init a moment later (longer, loaded)
        if not marked(mark):
            break
        time.sleep(0.1)
    left = sorted(path.name for path in ray_dirs.iterdir())
    shutil.rmtree(ray_dirs)
    assert marked(mark) == [], "left running"
    assert left == [], f"Ray's dir left behind: {left}"
    return process.returncode, out, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted: "), err
    return lines[0]


def catches_sigterm(process: subprocess.Popen[str]) -> bool:
    """tvo's first instruction is in: SIGTERM is caught (before it, the interpreter is still
    starting, and a signal kills it as it would any program)."""
    try:  # exec'd: before exec the child is a copy of pytest, with pytest's handlers
        if b"runner" not in Path(f"/proc/{process.pid}/cmdline").read_bytes():
            return False
        status = Path(f"/proc/{process.pid}/status").read_text()
    except OSError:
        return False
    caught = int(next(line for line in status.splitlines() if line.startswith("SigCgt:"))
                 .split()[1], 16)
    return bool(caught & (1 << (signal.SIGTERM - 1)))


def has_child(name: str) -> Callable[[subprocess.Popen[str]], bool]:
    def ready(process: subprocess.Popen[str]) -> bool:
        for pid in descendants(process.pid):
            try:
                if name in Path(f"/proc/{pid}/comm").read_text():
                    return True
            except OSError:
                continue
        return False

    return ready


def run_dir_has(grid_dir: Path, pattern: str) -> Callable[[subprocess.Popen[str]], bool]:
    def ready(process: subprocess.Popen[str]) -> bool:
        return any(grid_dir.glob(pattern))

    return ready


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupt_while_importing_says_nothing_was_started(tmp_path: Path, sig: int) -> None:
    code, out, err = interrupt(tmp_path, ["train", "epochs=1"], sig, catches_sigterm)
    assert code == 130, err
    assert one_line(err) == "interrupted: nothing was started"
    assert not (tmp_path / "outputs").exists()


def test_an_interrupted_train_keeps_its_checkpoint_and_status_reads_its_dir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TVO_CHECKPOINT_SECONDS", "0")  # a checkpoint after every epoch
    out_dir = tmp_path / "outputs" / "train"
    code, out, err = interrupt(tmp_path, ["train", "epochs=400", "hidden=[64]"],
                               signal.SIGINT, run_dir_has(out_dir, "checkpoints/*.ckpt"))
    assert code == 130
    assert "keeps its last checkpoint; the same command resumes it" in one_line(err)
    assert list(out_dir.glob("checkpoints/*.ckpt"))
    status = subprocess.run([sys.executable, "-m", "runner", "status", "outputs/train"],
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True)
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("outputs/train: 1 jobs")
    assert "pending 1 (1 interrupted" in status.stdout


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.parametrize("stage", ["ray start", "training"])
def test_sigterm_during_a_ray_run_stops_ray_and_every_worker(tmp_path: Path, stage: str) -> None:
    (tmp_path / "grid.yaml").write_text(GRID)
    grid_dir = tmp_path / "out" / "stop"
    ready = (has_child("gcs_server") if stage == "ray start"
             else run_dir_has(grid_dir, "state/*.jsonl"))
    code, out, err = interrupt(tmp_path, ["run", "grid.yaml", "--out", "out"], signal.SIGTERM,
                               ready)
    assert code == 130, (out, err)
    lines = [line for line in (out + err).splitlines() if line.startswith("interrupted: ")]
    assert lines == ["interrupted: unfinished jobs keep their last checkpoint; run the same "
                     "command again to resume, or see `tvo status out/stop`"], (out, err)
    assert "Traceback" not in err and "SIGTERM received" not in err


def test_stopping_kills_what_rays_shutdown_orphans(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process below the command whose parent goes during Ray's shutdown (as the dashboard
    agent and idle workers do when the raylet stops) is no longer below it afterwards; it is
    stopped all the same, by the PID listed before the shutdown."""
    parent = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys; child = subprocess.Popen(['sleep', '60']);"
         " print(child.pid, flush=True); child.wait()"], stdout=subprocess.PIPE, text=True)
    orphan = int(parent.stdout.readline())

    class ShutdownOrphaning:  # stands in for the ray module: its shutdown ends the parent
        @staticmethod
        def is_initialized() -> bool:
            return True

        @staticmethod
        def shutdown() -> None:
            parent.kill()
            parent.wait()

    monkeypatch.setitem(sys.modules, "ray", ShutdownOrphaning)
    try:
        stopped = stop_children(grace_s=2)
        assert stopped == [orphan]  # the parent had ended: only the orphan was left to stop
        deadline = time.monotonic() + 5  # reaped by init, a moment later
        while alive(orphan) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(orphan)
    finally:
        if alive(orphan):
            os.kill(orphan, signal.SIGKILL)
