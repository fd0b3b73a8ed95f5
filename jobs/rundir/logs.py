"""The grid dir's log files (logs/<writer>.log): this process's log records routed to the
file of the grid dir they are about, each tagged with its stack or job, and a job's lines read
back from every file. RunDir (jobs.rundir.run_dir) opens and closes them around its writes."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jobs.rundir.layout import LOG_SUFFIX

log = logging.getLogger("tvo.job")


def tagged_logger(path: Path, **context: str) -> logging.LoggerAdapter:
    """A logger whose lines go to the log file `path` while it is attached, each tagged with
    `context` (stack=..., job=...)."""
    prefix = " ".join(f"[{key} {value}]" for key, value in context.items())
    return _Tagged(log, {"log_file": str(path), "prefix": prefix})


def tagged_lines(folder: Path, tags: Sequence[str], before: str = "") -> str:
    """The records of every log file in `folder` whose first line carries one of `tags`, file
    by file, after `before` (the lines of an older layout)."""
    lines = [before.rstrip("\n")] if before else []
    try:
        names = sorted(name for name in os.listdir(folder) if name.endswith(LOG_SUFFIX))
    except FileNotFoundError:
        names = []
    for name in names:
        try:
            text = (folder / name).read_text(errors="replace")
        except OSError:
            continue
        lines.extend(record for record in _records(text)
                     if any(tag in record.split("\n", 1)[0] for tag in tags))
    return "\n".join(lines) + ("\n" if lines else "")


_RECORD_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")


def _records(text: str) -> list[str]:
    """A log file's records: a line that starts with a time, and the lines that continue it (a
    traceback)."""
    found: list[str] = []
    for line in text.splitlines():
        if _RECORD_START.match(line) or not found:
            found.append(line)
        else:
            found[-1] += "\n" + line
    return found


class _Tagged(logging.LoggerAdapter):
    """Puts the stack/job tag in front of each message, and routes it to its grid's log file."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = self.extra or {}
        kwargs["extra"] = {**kwargs.get("extra", {}), "log_file": extra.get("log_file", "")}
        prefix = extra.get("prefix", "")
        return (f"{prefix} {msg}" if prefix else msg), kwargs


class _LogFiles(logging.Handler):
    """Sends each record to the log file its logger adapter names: one handler for every grid
    dir this process writes into, each file open while a stack (or a record) uses it."""

    def __init__(self) -> None:
        super().__init__()
        self.files: dict[str, tuple[logging.Handler, int]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        found = self.files.get(getattr(record, "log_file", ""))
        if found is not None:
            found[0].handle(record)


class _LogFile(logging.FileHandler):
    """A process's log file. A line it cannot write (a full disk) is lost without a traceback
    on the terminal: what happened to the jobs is in their results and state events."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        pass


_log_files = _LogFiles()


def attach(path: Path) -> None:
    """Open the log file `path` for this process's tagged records (counted: each attach
    wants its detach)."""
    key = str(path)
    found = _log_files.files.get(key)
    if found is not None:
        _log_files.files[key] = (found[0], found[1] + 1)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = _LogFile(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    _log_files.files[key] = (handler, 1)
    if _log_files not in log.handlers:
        log.addHandler(_log_files)
    log.setLevel(logging.INFO)


def detach(path: Path) -> None:
    """Close the log file `path` once its last user detaches."""
    key = str(path)
    found = _log_files.files.get(key)
    if found is None:
        return
    if found[1] > 1:
        _log_files.files[key] = (found[0], found[1] - 1)
        return
    del _log_files.files[key]
    found[0].close()
    if not _log_files.files and _log_files in log.handlers:
        log.removeHandler(_log_files)
