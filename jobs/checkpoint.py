"""The job checkpoint: everything needed to continue after the last finished epoch, bit for bit."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from jobs.results import atomic_write_bytes
from jobs.strategies import TargetStrategy

CHECKPOINT_VERSION = 1


def save_checkpoint(path: Path, *, epoch: int, rows: list[dict[str, Any]], model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler: Any, strategy: TargetStrategy,
                    order: torch.Generator) -> None:
    state = {
        "version": CHECKPOINT_VERSION,
        "epoch": epoch,
        "rows": rows,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "strategy": strategy.state_dict(),
        "order": order.get_state(),
        "torch_rng": torch.get_rng_state(),  # dropout and any other global randomness
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, strategy: TargetStrategy,
                    order: torch.Generator) -> dict[str, Any]:
    """Restore every piece in place; returns the checkpoint (its "epoch" and "rows")."""
    # weights_only=False: the file is the job's own, written by save_checkpoint above
    state = torch.load(path, map_location="cpu", weights_only=False)
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
