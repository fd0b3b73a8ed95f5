"""State events: one append-only JSON-lines file per process that records state in a grid dir.

Workers record that a stack started, the epochs it reaches and the jobs that end before it does
(a failure, a cancel, a divergence); runners record crashes and cancels they see from outside;
`tvo cancel` records jobs it stopped. Each process appends to its own file only, one whole line
per write() on a file opened for appending, so readers on any host see whole lines (a line a
kill cut short has no newline yet and is not read). Nothing is fsynced: `done` and `diverged`
come from the results files, which are; an event lost in an OS crash at worst makes a job look
pending, and the next run resumes it.
"""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.rundir.disk import naming
from jobs.rundir.layout import STATE_SUFFIX, OutputDir

START, EPOCH, END, INTERRUPTED = "start", "epoch", "end", "interrupted"


def process_start(pid: int) -> str | None:
    """A process's start time (clock ticks since boot), or None when it does not exist.

    Start time tells a live process from an unrelated one that reused its pid. Where there is
    no /proc, existence alone counts ("").
    """
    if pid <= 0:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[19]  # field 22 of stat(5); the two before it were cut off with ")"
    except FileNotFoundError:
        return None
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return ""


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def writer_name(pid: int | None = None) -> str:
    """This process's name among the writers of a grid dir: host, pid and the process's start,
    so that a reused pid never appends to another process's files."""
    return _writer_name(os.getpid() if pid is None else pid)


@functools.lru_cache(maxsize=16)  # a fork is another pid, so another name
def _writer_name(pid: int) -> str:
    host = _UNSAFE.sub("_", socket.gethostname())[:64] or "host"
    return f"{host}-{pid}-{process_start(pid) or 0}"


def append_event(grid_dir: Path, kind: str, **fields: Any) -> None:
    """Append one event to this process's state file in `grid_dir` (opened for the write: a
    process may write into many grid dirs, and events come per stack and epoch, not per job)."""
    line = json.dumps({"t": time.time(), "event": kind, **fields}, separators=(",", ":")) + "\n"
    path = OutputDir(grid_dir).state_file(writer_name())
    with naming(path):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


@dataclass
class _Tail:
    offset: int = 0
    inode: int = 0


@dataclass
class JournalReader:
    """Reads the events of every state file of a grid dir, each byte once: later calls return
    only what was appended since (files are append-only; one rewritten from scratch is read
    again from its start)."""

    grid_dir: Path
    _tails: dict[str, _Tail] = field(default_factory=dict)

    def new_events(self) -> list[dict[str, Any]]:
        folder = OutputDir(self.grid_dir).state
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return []
        events: list[dict[str, Any]] = []
        for entry in entries:
            if not entry.name.endswith(STATE_SUFFIX):
                continue
            try:
                stat = entry.stat()
            except FileNotFoundError:
                continue
            tail = self._tails.setdefault(entry.name, _Tail())
            if stat.st_ino != tail.inode or stat.st_size < tail.offset:
                tail.offset, tail.inode = 0, stat.st_ino
            if stat.st_size == tail.offset:
                continue
            try:
                with open(entry.path, "rb") as handle:
                    handle.seek(tail.offset)
                    data = handle.read(stat.st_size - tail.offset)
            except FileNotFoundError:
                continue
            end = data.rfind(b"\n") + 1  # a line still being written waits for the next call
            tail.offset += end
            for line in data[:end].splitlines():
                try:
                    event = json.loads(line)
                except ValueError:  # a line cut by a crash and then appended to: skipped
                    continue
                if isinstance(event, dict):
                    events.append(event)
        events.sort(key=lambda event: event.get("t", 0.0))
        return events
