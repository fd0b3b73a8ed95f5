"""The job checkpoint: everything needed to continue after the last finished epoch, bit for bit."""

from __future__ import annotations

import io
import pickle
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from jobs.results import atomic_write_bytes
from jobs.strategies import TargetStrategy

CHECKPOINT_VERSION = 2  # 2: rows pickled apart (version 1 files still load)


class CheckpointWriter:
    """Writes checkpoints on a background thread, so the file write and its fsync overlap the
    next epoch instead of stalling it (on small models they cost as much as an epoch).

    The state is serialised at once, on the caller's thread, so it is exactly the state after
    the epoch. At most one write is pending; `close` waits for it. A write lost to a kill only
    means resuming one epoch earlier, with the same result.
    """

    def __init__(self, path: Path, pool: ThreadPoolExecutor | None = None) -> None:
        self.path = path
        self._owns_pool = pool is None  # jobs trained together share one pool of writers
        self._pool = pool or ThreadPoolExecutor(max_workers=1, thread_name_prefix="tvo-checkpoint")
        self._pending: Future[None] | None = None

    def save(self, **state: Any) -> None:
        data = checkpoint_bytes(**state)
        if self._pending is not None:
            self._pending.result()  # back-pressure, and surfaces a failed write
        self._pending = self._pool.submit(atomic_write_bytes, self.path, data)

    def close(self) -> None:
        if self._pending is not None:
            self._pending.result()
        if self._owns_pool:
            self._pool.shutdown(wait=True)


def checkpoint_bytes(*, epoch: int, rows: list[dict[str, Any]], model: torch.nn.Module,
                     optimizer: torch.optim.Optimizer, scheduler: Any, strategy: TargetStrategy,
                     order: torch.Generator, torch_rng: torch.Tensor | None = None) -> bytes:
    """The checkpoint's bytes; `torch_rng` stands in for the global RNG state when the job's
    random stream lives elsewhere (a packed job draws its dropout masks from its own generator)."""
    state = {
        "version": CHECKPOINT_VERSION,
        "epoch": epoch,
        # the metric rows are many small objects: the C pickler takes them in microseconds,
        # where torch.save's pickler calls a Python hook per object (~1 ms at 20 epochs)
        "rows": pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "strategy": strategy.state_dict(),
        "order": order.get_state(),
        # dropout and any other global randomness
        "torch_rng": torch.get_rng_state() if torch_rng is None else torch_rng,
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, strategy: TargetStrategy,
                    order: torch.Generator) -> dict[str, Any]:
    """Restore every piece in place; returns the checkpoint (its "epoch" and "rows")."""
    # weights_only=False: the file is the job's own, written by save_checkpoint above
    state = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(state["rows"], bytes):
        state["rows"] = pickle.loads(state["rows"])
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    strategy.load_state_dict(state["strategy"])
    order.set_state(state["order"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return state
