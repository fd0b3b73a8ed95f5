"""Ctrl-C and SIGTERM: at any moment of a command, one line, exit code 130, nothing left running.

SIGTERM is turned into KeyboardInterrupt as the process starts (before the heavy imports), so
`kill` and Ctrl-C take the same path. Whatever was interrupted (imports, Ray's start, dispatch,
training, writing), the command's guard stops every process this one started, by PID (Ray's
GCS, raylet and workers are children of the process that started them), prints one line and
exits 130.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

INTERRUPTED = 130  # the shell's code for a command stopped by Ctrl-C (128 + SIGINT)
STOP_GRACE_S = 3.0  # SIGTERM first, then SIGKILL for what is still alive


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def sigterm_interrupts() -> None:
    """Make SIGTERM raise KeyboardInterrupt in the main thread, as Ctrl-C does."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)


_said = False


def announced() -> None:
    """The command said it was interrupted in its own words: say nothing more."""
    global _said
    _said = True


def say_interrupted(message: str) -> None:
    """The one line an interrupted command prints (stderr, plain text); once per process."""
    global _said
    if _said:
        return
    _said = True
    print(f"\ninterrupted: {message}" if sys.stderr.isatty() else f"interrupted: {message}",
          file=sys.stderr, flush=True)


@contextmanager
def interrupt_guard(message: str) -> Iterator[None]:
    """Around a command's work: on Ctrl-C or SIGTERM, stop this process's children, print
    `interrupted: message`, exit 130. Further signals while it cleans up are ignored."""
    try:
        yield
    except (KeyboardInterrupt, SystemExit) as stop:
        # ray.init puts in a SIGTERM handler of its own (sys.exit(15)) until it returns
        if isinstance(stop, SystemExit) and stop.code != signal.SIGTERM:
            raise
        with _ignoring_signals():
            stop_children()
            say_interrupted(message)
        raise SystemExit(INTERRUPTED) from None


@contextmanager
def _ignoring_signals() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT,
                                                                     signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_children(grace_s: float = STOP_GRACE_S) -> list[int]:
    """Stop every live descendant of this process (SIGTERM, then SIGKILL); returns their PIDs.

    Ray is shut down first when it runs here, so it stops its own processes in order; what is
    left (a start that was cut short, a worker that hangs) is signalled by PID. The processes
    below are listed before the shutdown too: those Ray's own daemons started (the dashboard
    agent, idle workers) are orphaned when their parent stops, so after it they are no longer
    below this process, yet may take seconds to go by themselves on a loaded machine.
    """
    before = _with_start_times(descendants(os.getpid()))
    ray = sys.modules.get("ray")
    if ray is not None:
        try:
            if ray.is_initialized():
                ray.shutdown()
        except Exception:  # a half-started Ray may fail to shut down: its PIDs are next
            pass
    # orphaned: the same process still, not a new one that reused the PID of one that ended
    orphaned = [pid for pid, start in before.items() if _start_time(pid) == start]
    pids = sorted(set(descendants(os.getpid())) | set(orphaned))
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while (running := [pid for pid in pids if alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in running:
        _signal(pid, signal.SIGKILL)
    for pid in pids:  # reap our own children, so none stays a zombie while we exit
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
    return pids


def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, ...; field 3 of
    proc(5) first), or None where the process has ended."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields or None


def _start_time(pid: int) -> str | None:
    """When the process started (clock ticks since boot), or None where it has ended."""
    fields = _stat(pid)
    return fields[19] if fields else None


def _with_start_times(pids: list[int]) -> dict[int, str]:
    return {pid: start for pid in pids if (start := _start_time(pid)) is not None}


def descendants(pid: int) -> list[int]:
    """Live (non-zombie) processes below `pid`, read from /proc; [] where there is none."""
    children: dict[int, list[int]] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    for entry in proc.iterdir():
        if entry.name.isdigit() and (fields := _stat(entry.name)) and fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def alive(pid: int) -> bool:
    """The process runs (exists and is not a zombie)."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass
