"""Temp dirs for unix sockets: Ray keeps its sockets in its temp dir, and a socket path holds
at most 107 bytes, so a test cannot put them under any TMPDIR (a private, long one fails)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from cluster.ray import _SESSION_SOCKET_SUFFIX, _SOCKET_PATH_MAX

_RANDOM_CHARS = 8  # mkdtemp's random part


def short_temp_dir(prefix: str) -> Path:
    """A new dir in TMPDIR when Ray's socket paths fit there, else in /tmp."""
    base = tempfile.gettempdir()
    length = len(base) + 1 + len(prefix) + _RANDOM_CHARS + _SESSION_SOCKET_SUFFIX
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base if length <= _SOCKET_PATH_MAX
                                 else "/tmp"))
