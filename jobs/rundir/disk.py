"""When writing a grid dir fails (a full disk, a read-only dir): which file, and what to do.

Every write into a grid dir goes through `naming`, so the OSError that reaches a message names
the file it could not write (a full disk's write error names none by itself); `advice` turns it
into the one line a user acts on.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FULL = (errno.ENOSPC, errno.EDQUOT)
READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


@contextmanager
def naming(path: Path | str) -> Iterator[None]:
    """An OSError raised inside names `path`, unless it names another file already (a temp
    file beside `path` counts as `path`)."""
    try:
        yield
    except OSError as exc:
        named = exc.filename is not None and not str(exc.filename).endswith(".tmp")
        if named or exc.errno is None:
            raise
        raise type(exc)(exc.errno, exc.strerror, str(path)) from exc


def is_disk_error(exc: BaseException) -> bool:
    """A write the disk refused: full, or not writable (the run can go on once that changes)."""
    return isinstance(exc, OSError) and exc.errno in (*FULL, *READ_ONLY)


def advice(exc: OSError) -> str:
    """What the user does about `exc`: free space, or make the dir writable."""
    if exc.errno in FULL:
        return "free space on that disk (or choose another --out)"
    if exc.errno in READ_ONLY:
        return "make the grid dir writable again (or choose another --out)"
    return "check that disk (or choose another --out)"


def describe(exc: OSError) -> str:
    """`cannot write FILE: REASON`, or the error as it is when it names no file."""
    reason = exc.strerror or str(exc)
    if exc.filename:
        return f"cannot write {exc.filename}: {reason}"
    return reason


def advice_for_message(error: str) -> str | None:
    """The advice for a job's recorded error when it was a write the disk refused (the error
    as a worker recorded it: `OSError: [Errno 28] No space left on device: '...'`)."""
    for code in (*FULL, *READ_ONLY):
        if f"[Errno {code}]" in error:
            return advice(OSError(code, os.strerror(code)))
    return None
