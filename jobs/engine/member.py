"""Member: one job of a stack, with everything it owns between stacks (and in its checkpoint).

While a member trains in a stack, the stack holds its live parameters, optimiser buffers and
strategy state; the member holds them again whenever the stack hands them back (before a
checkpoint, and when the stack is rebuilt because its membership changed). A job alone is a
stack of one member, so this is also what a single job is made of.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from jobs.data.datasets import Dataset
from jobs.engine.dropout import DROPOUT_MASKS
from jobs.engine.lr_schedule import LearningRate
from jobs.nn.initial import initial_parameters
from jobs.nn.models import build_model
from jobs.rundir.checkpoint import CheckpointError
from jobs.rundir.run_dir import Saved
from jobs.rundir.tensorboard import TensorBoardLog
from jobs.spec import JobSpec
from jobs.strategies import TargetStrategy, make_strategy

STATE_VERSION = 4  # the shape of a member's state; per-job checkpoints of format 4 hold it too
STRATEGY_SEED_OFFSET = 7919  # the strategy's randomness, apart from the data order (seed)
DROPOUT_SEED_OFFSET = 15485863  # the member's dropout masks, apart from both


@dataclass(eq=False)  # one object per job attempt: compared and hashed by identity
class Member:
    spec: JobSpec
    strategy: TargetStrategy  # the definition; its training state lives in a StrategyStack
    params: dict[str, torch.Tensor]  # by parameter name, as the job's nn.Module names them
    order: torch.Generator  # data order
    dropout: torch.Generator  # dropout masks of a module of its own (stacks: jobs.engine.dropout)
    schedule: LearningRate
    module: nn.Module | None = None  # the job's own network where it cannot be stacked
    optimizer: dict[str, Any] | None = None  # None: not stepped yet
    strategy_state: dict[str, Any] | None = None  # None: set the strategy up from scratch
    rows: list[dict[str, Any]] = field(default_factory=list)
    next_epoch: int = 1
    best_val_acc: float = float("-inf")  # early stopping (stop_patience)
    epochs_since_best: int = 0  # evaluated epochs since the best validation accuracy
    board: TensorBoardLog | None = None

    @property
    def job_id(self) -> str:
        return self.spec.job_id

    @property
    def dropout_seed(self) -> int:
        return self.spec.seed + DROPOUT_SEED_OFFSET

    @property
    def strategy_generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.spec.seed + STRATEGY_SEED_OFFSET)

    @classmethod
    def build(cls, spec: JobSpec, data: Dataset, device: torch.device,
              saved: Saved | None = None) -> Member:
        """The job's member: from its checkpointed state `saved` when it has one, else from its
        seed (the network's initial values as build_model draws them after
        torch.manual_seed(seed))."""
        module = None
        if spec.method == "target_space":  # a module of its own, which the stack runs as is
            torch.manual_seed(spec.seed)
            module = build_model(spec, data.input_shape, data.num_classes,
                                 train_inputs=data.x_train)
            params = {name: p.detach() for name, p in module.named_parameters()}
            module = module.to(device)
        else:
            params = initial_parameters([spec], data.input_shape, data.num_classes)[0]
        member = cls(spec, _strategy(spec.strategy), params,
                     torch.Generator().manual_seed(spec.seed),
                     torch.Generator().manual_seed(spec.seed + DROPOUT_SEED_OFFSET),
                     LearningRate(spec), module=module)
        if saved is not None:
            if saved.state.get("version") != STATE_VERSION:
                raise CheckpointError(
                    f"checkpoint {saved.path} was written by an earlier tvo (format "
                    f"{saved.state.get('version', 1)}); delete it to train the job from its "
                    "first epoch")
            if member._masks_changed(saved.state):
                raise CheckpointError(
                    f"checkpoint {saved.path} was trained with the dropout masks of an earlier "
                    "tvo, which this one no longer draws; delete it to train the job from its "
                    "first epoch")
            member.restore(saved.state)
        return member

    def restore(self, saved: dict[str, Any]) -> None:
        self.params = saved["model"]
        self.optimizer = saved["optimizer"]
        self.strategy_state = saved["strategy"]
        self.schedule.load_state_dict(saved["schedule"])
        self.order.set_state(saved["order"])
        self.dropout.set_state(saved["dropout"])
        self.rows = list(saved["rows"])
        self.next_epoch = saved["epoch"] + 1
        self.best_val_acc, self.epochs_since_best = saved["early_stopping"]

    def _masks_changed(self, saved: dict[str, Any]) -> bool:
        """Whether a stacked job with dropout resumes from masks of another stream (a resumed
        job must match an uninterrupted one)."""
        return (self.spec.dropout > 0 and self.spec.method == "weights"
                and saved.get("dropout_masks") != DROPOUT_MASKS)

    def stops_early(self, row: dict[str, Any]) -> bool:
        """Early stopping: whether `stop_patience` evaluated epochs have passed without a better
        validation accuracy (chosen on validation, never on test)."""
        patience = self.spec.stop_patience
        if patience == 0 or row.get("val_acc") is None:
            return False
        if row["val_acc"] > self.best_val_acc:
            self.best_val_acc, self.epochs_since_best = row["val_acc"], 0
        else:
            self.epochs_since_best += 1
        return self.epochs_since_best >= patience

    def state(self, epoch: int) -> dict[str, Any]:
        """Everything needed to continue after `epoch` (the stack has handed its state back)."""
        return {"version": STATE_VERSION, "epoch": epoch, "rows": list(self.rows),
                "model": self.params,
                "optimizer": self.optimizer, "strategy": self.strategy_state,
                "schedule": self.schedule.state_dict(), "order": self.order.get_state(),
                "dropout": self.dropout.get_state(), "dropout_masks": DROPOUT_MASKS,
                "early_stopping": (self.best_val_acc, self.epochs_since_best)}


@functools.lru_cache(maxsize=1024)
def _parsed_strategy(text: str) -> TargetStrategy:
    return make_strategy(text)


def _strategy(text: str) -> TargetStrategy:
    """The strategy `text` defines, an object of the member's own, parsed once per text
    (parsing was about a third of building a member)."""
    parsed = _parsed_strategy(text)
    return type(parsed)(parsed.args)
