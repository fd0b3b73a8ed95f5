"""A stack's checkpoint: everything its members need to continue after their last checkpointed
epoch, bit for bit, in one file per stack (checkpoints/<stack>.ckpt), kept while the stack runs.

Each save holds every member's state, and an index (job id -> epoch) ahead of it, so a later
stack finds the jobs it resumes without unpickling tensors. On small models an epoch takes
milliseconds, so a checkpoint must cost next to nothing, before and after:
- The state is pickled by the C pickler, tensors as their raw bytes (`_Pickler`): 50 us for the
  digits MLP where torch.save takes 170 us.
- The file holds two slots and each save overwrites the older one in place, with one pwrite:
  no new file, inode or rename per epoch (a new file per epoch slowed the next epoch's training
  by 6 %; see tests/bench/bench_train_throughput.py). Each slot starts with a header that carries
  a sequence number and the CRC32 of its payload, so a write cut short by a kill, or a slot an OS
  crash left half on disk, fails its check and the other slot, one epoch older, is used.
- Nothing is fsynced per epoch: a killed process loses nothing the kernel already has, and after
  an OS crash the worst case is resuming from an older epoch, which gives the same results.
When a checkpoint outgrows its slots (the metrics rows grow each epoch) the file is rewritten
with slots twice the size, atomically (temp file, rename).

Per-job checkpoints of the layout before results by the stack (runs/<job_id>/checkpoint.pt,
formats 1-4) still read with `read_checkpoint`; a job resumes from format 4, never from 1-3 (its
engine's state had another shape).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.rundir.disk import naming
from jobs.rundir.results import atomic_write_with

if TYPE_CHECKING:  # imported where tensors are read or written: `tvo status` needs no torch
    import torch

CHECKPOINT_VERSION = 5  # 5: a stack's members' states with an index; 4: one member's state;
# 3: torch module and optimizer state; 3-5: two CRC-checked slots of C-pickled state; 1, 2:
# torch.save archives

_MAGIC = b"TVOCKPT5"  # payload: index length (4 bytes), index (JSON), pickled states
_MAGIC_PICKLE_ONLY = b"TVOCKPT3"  # formats 3 and 4: payload is the pickled state
_INDEX_LENGTH = struct.Struct("<I")
_HEADER = struct.Struct("<8sQQI4x")  # magic, sequence, payload length, CRC32 of the payload
_MIN_SLOT = 64 * 1024
_TORCH_ZIP = b"PK\x03\x04"  # how a torch.save file (zip archive) begins


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read back; the message names the file."""


class CheckpointWriter:
    """Saves a job's checkpoints into one file, alternating between its two slots."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._slot_size = 0
        self._sequence = 0  # of the newest slot written

    def save(self, states: dict[str, dict[str, Any]]) -> None:
        """Save members' states (job id -> jobs.engine.member.Member.state) after an epoch."""
        index = json.dumps({job_id: state["epoch"] for job_id, state in states.items()}).encode()
        payload = (_INDEX_LENGTH.pack(len(index)) + index
                   + encode_state({"version": CHECKPOINT_VERSION, "jobs": states}))
        with naming(self.path):
            if self._fd is None:
                self._open_existing()
            if self._fd is None or _HEADER.size + len(payload) > self._slot_size:
                self._rewrite(payload)
                return
            self._sequence += 1
            _write_at(self._fd, _slot(self._sequence, payload),
                      (self._sequence % 2) * self._slot_size)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open_existing(self) -> None:
        """Continue the file a previous attempt left: its slot size and newest sequence."""
        try:
            content = self.path.read_bytes()
        except FileNotFoundError:
            return
        newest = _newest_slot(content)
        if newest is None:  # an old format, or nothing readable: start the file anew
            return
        self._slot_size, self._sequence = len(content) // 2, newest[0]
        self._fd = os.open(self.path, os.O_WRONLY)

    def _rewrite(self, payload: bytes) -> None:
        """A new file, with slots large enough for this payload and twice over."""
        self.close()
        self._slot_size = max(_MIN_SLOT, 1 << (2 * (_HEADER.size + len(payload)) - 1).bit_length())
        self._sequence += 1
        slot = _slot(self._sequence, payload)
        slots = bytearray(2 * self._slot_size)
        start = (self._sequence % 2) * self._slot_size
        slots[start:start + len(slot)] = slot
        atomic_write_with(self.path, lambda tmp: Path(tmp).write_bytes(slots))
        self._fd = os.open(self.path, os.O_WRONLY)


def encode_state(state: Any) -> bytes:
    """Pickle `state` (tensors anywhere inside) the way checkpoints hold it."""
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(state)
    return buffer.getvalue()


def decode_state(payload: bytes) -> Any:
    """What `encode_state` was given; tensors come back on the CPU."""
    return pickle.loads(payload)


def read_checkpoint_index(path: Path) -> dict[str, int]:
    """Job id -> the epoch its state in a stack's checkpoint file continues after; {} for a file
    with no intact slot. Reads no tensors (torch is not needed)."""
    try:
        content = path.read_bytes()
    except OSError:
        return {}
    newest = _newest_slot(content)
    if newest is None or newest[2] != _MAGIC:
        return {}
    payload = newest[1]
    (length,) = _INDEX_LENGTH.unpack_from(payload)
    try:
        index = json.loads(payload[_INDEX_LENGTH.size:_INDEX_LENGTH.size + length])
    except ValueError:
        return {}
    return {str(job_id): int(epoch) for job_id, epoch in index.items()}


def read_stack_checkpoint(path: Path) -> dict[str, dict[str, Any]]:
    """Job id -> member state, from a stack's checkpoint file (tensors on the CPU)."""
    state = read_checkpoint(path)
    if state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} is not a stack checkpoint (format "
                              f"{state.get('version', 1)})")
    return state["jobs"]


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The state a checkpoint file holds (its newest readable slot), tensors on the CPU: a
    stack's {"version": 5, "jobs": {...}}, or one job's state (formats 1-4, runs/<job_id>/)."""
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    if content.startswith(_TORCH_ZIP):  # format 1 or 2; weights_only=False: the job's own file
        import torch

        state = torch.load(io.BytesIO(content), map_location="cpu", weights_only=False)
        if isinstance(state["rows"], bytes):  # format 2 pickled the rows apart
            state["rows"] = pickle.loads(state["rows"])
        return state
    newest = _newest_slot(content)
    if newest is None:
        raise CheckpointError(f"checkpoint {path} has no intact slot (cut short, damaged, or "
                              "not written by tvo)")
    _, payload, magic = newest
    if magic == _MAGIC:
        (length,) = _INDEX_LENGTH.unpack_from(payload)
        payload = payload[_INDEX_LENGTH.size + length:]
    return decode_state(payload)


def _slot(sequence: int, payload: bytes) -> bytes:
    return _HEADER.pack(_MAGIC, sequence, len(payload), zlib.crc32(payload)) + payload


def _write_at(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:  # a regular file takes it in one call, short of a signal
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _newest_slot(content: bytes) -> tuple[int, bytes, bytes] | None:
    """(sequence, payload, magic) of the newest slot whose payload matches its CRC, if any."""
    slot_size = len(content) // 2
    if len(content) % 2 or slot_size < _HEADER.size:
        return None
    newest = None
    for start in (0, slot_size):
        magic, sequence, length, crc = _HEADER.unpack_from(content, start)
        payload = content[start + _HEADER.size:start + _HEADER.size + length]
        if (magic in (_MAGIC, _MAGIC_PICKLE_ONLY) and len(payload) == length
                and zlib.crc32(payload) == crc and (newest is None or sequence > newest[0])):
            newest = (sequence, payload, magic)
    return newest


class _Pickler(pickle.Pickler):
    """The C pickler, with tensors reduced to (dtype, shape, raw bytes).

    torch's own tensor pickling goes through Python hooks per storage; this costs one copy. The
    C pickler calls `reducer_override` only for objects that are not plain builtins.
    """

    def reducer_override(self, obj: Any) -> Any:
        import torch  # already imported wherever tensors are pickled: a dict lookup

        if isinstance(obj, torch.Tensor):
            return _tensor_from_bytes, _tensor_parts(obj)
        return NotImplemented


def _tensor_parts(tensor: torch.Tensor) -> tuple[torch.dtype, tuple[int, ...], bytes]:
    import torch

    if tensor.layout != torch.strided:
        raise TypeError(f"a checkpoint holds dense tensors only, not {tensor.layout}")
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return tensor.dtype, tuple(tensor.shape), flat.view(torch.uint8).numpy().tobytes()


def _tensor_from_bytes(dtype: torch.dtype, shape: tuple[int, ...], raw: bytes) -> torch.Tensor:
    import torch

    if not raw:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype).reshape(shape)
