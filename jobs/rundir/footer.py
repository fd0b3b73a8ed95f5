"""One value of a Parquet file's key-value metadata, read straight from the file's footer.

`tvo status` reads the commit of every results file of a grid (1,563 files at 100,000 jobs), and
pyarrow's read_metadata builds each file's schema to give it (0.5 ms a file). The footer is a
Thrift struct in the compact protocol (Parquet's format spec), followed by its length (4 bytes,
little-endian) and `PAR1`. A KeyValue in it is field 1, the key, then field 2, the value, each a
binary field: the header byte 0x18, a varint length and the bytes. The value is what follows the
key's encoding. The caller checks what it got and asks pyarrow where this finds nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

MAGIC = b"PAR1"
_BINARY_FIELD = b"\x18"  # a binary field one id after the previous one (compact protocol)


def footer_value(path: Path, key: bytes) -> bytes | None:
    """The value of `key` in the footer's key-value metadata, or None (not found, not Parquet,
    unreadable)."""
    try:
        with open(path, "rb") as file:
            size = file.seek(0, os.SEEK_END)
            if size < 12:
                return None
            file.seek(size - 8)
            tail = file.read(8)
            length = int.from_bytes(tail[:4], "little")
            if tail[4:] != MAGIC or not 0 < length <= size - 12:
                return None
            file.seek(size - 8 - length)
            footer = file.read(length)
    except OSError:
        return None
    marker = _BINARY_FIELD + _varint(len(key)) + key + _BINARY_FIELD
    start = footer.find(marker)
    if start < 0:
        return None
    value_length, at = _read_varint(footer, start + len(marker))
    if value_length is None or at + value_length > len(footer):
        return None
    return footer[at:at + value_length]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, at: int) -> tuple[int | None, int]:
    value = shift = 0
    while at < len(data) and shift < 64:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
    return None, at
