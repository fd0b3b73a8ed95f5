"""A stack: the members training in one epoch, as one network, one optimiser and one batch loop.

Per batch the whole stack runs a fixed number of tensor operations, whatever its size: one
gather of every member's own shuffled batch, a batched forward, the loss of every member, one
backward, one optimiser update. Strategies are the members' own objects; a strategy whose
targets are its templates (it neither overrides `targets` or `sample_weights` nor observes)
contributes a row of one [N, K, K] template table, gathered for all members at once and
refreshed each epoch (such a strategy can only change its templates in `end_epoch`). Every other
strategy is called per batch with its member's slice, exactly as run_job calls it. A per-member
call that raises fails that member only: its slice trains on as filler until the epoch ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from jobs.datasets import Dataset
from jobs.losses import per_sample_loss, reduce_loss
from jobs.models import activate
from jobs.pack_member import Member
from jobs.pack_model import MemberDropout, StackedMLP
from jobs.pack_optim import StackedOptimizer
from jobs.strategies import TargetStrategy


def _overrides(strategy: TargetStrategy, method: str) -> bool:
    return getattr(type(strategy), method) is not getattr(TargetStrategy, method)


def _call(member: Member, method: Callable[..., Any], *args: Any) -> Any:
    """A per-member call; an error fails that member (once) and gives None."""
    if member.failure is not None:
        return None
    try:
        return method(*args)
    except Exception as exc:
        member.record_failure(exc)
        return None


class Stack:
    """The members of one epoch (all at the same epoch) trained as one."""

    def __init__(self, members: Sequence[Member], data: Dataset, device: torch.device) -> None:
        self.members = list(members)
        self.data = data
        self.device = device
        specs = [m.spec for m in self.members]
        shared = specs[0]
        self.loss, self.output = shared.loss, shared.output
        self.batch_size = shared.batch_size or data.x_train.shape[0]
        self.model = StackedMLP([m.module for m in self.members], shared.activation,
                                shared.shortcuts, device)
        self.optimizer = StackedOptimizer(specs, self.model.slots, self.model.width, device)
        for index, member in enumerate(self.members):
            self.optimizer.load_member(index, member.optimizer)
            member.stacked, member.slot = self.model, index
        self.dropout = MemberDropout([s.dropout for s in specs],
                                     [m.dropout_rng for m in self.members], device)
        self.l1 = (torch.tensor([s.l1 for s in specs], device=device)
                   if any(s.l1 > 0 for s in specs) else None)
        strategies = [m.strategy for m in self.members]
        self.called = [i for i, s in enumerate(strategies)
                       if s.observes or _overrides(s, "targets") or _overrides(s, "sample_weights")]
        self.weighted = [i for i, s in enumerate(strategies) if _overrides(s, "sample_weights")]
        self.observers = [i for i, s in enumerate(strategies) if s.observes]
        self.own_predict = [i for i, s in enumerate(strategies)
                            if s.decision != "argmax" or _overrides(s, "predict")]
        # as run_job: one-hot targets go to the fused cross-entropy as class indices, and the
        # output activation is computed only where something needs it
        self.class_indices = self.loss == "ce" and all(s.onehot_targets for s in strategies) \
            and not self.weighted
        uses_outputs = [self.loss != "ce" or s.observes or s.decision == "template"
                        for s in strategies]
        self.uses_outputs = uses_outputs
        self.needs_outputs = any(uses_outputs)
        self.all_outputs = all(uses_outputs)
        self.outputs_mask = torch.tensor(uses_outputs, device=device).unsqueeze(1)
        self.member_index = torch.arange(len(self.members), device=device).unsqueeze(1)

    def sync(self, member: Member) -> None:
        """Put the stack's live state of `member` into its own module and optimiser."""
        self.model.store_member(member.slot, member.module)
        self.optimizer.store_member(member.slot, member.optimizer)
        member.in_sync = True

    def release(self) -> None:
        """Hand every member's state back to the member, before the stack is rebuilt."""
        for member in self.members:
            self.sync(member)
            member.stacked, member.slot = None, -1

    # -- one epoch --------------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> tuple[list[float], list[float], float]:
        """One pass over the training set; per member (mean loss, accuracy), and the seconds."""
        started = time.perf_counter()
        for member in self.members:
            member.in_sync = False
        self.optimizer.set_learning_rates([m.learning_rate() for m in self.members])
        x = self.data.x_train.flatten(1)
        y = self.data.y_train
        n = x.shape[0]
        order = torch.stack([torch.randperm(n, generator=m.order) for m in self.members])
        order = order.to(self.device)
        table = None if self.class_indices else self._templates()
        batch_losses, correct = [], []  # device tensors: no sync until the epoch ends
        for start in range(0, n, self.batch_size):
            index = order[:, start:start + self.batch_size]
            xb, yb = x[index], y[index]  # every member's own batch: [N, B, features], [N, B]
            logits = self.model.forward(xb, self.dropout)
            size, batch, classes = logits.shape
            flat = logits.reshape(size * batch, classes)
            outputs = activate(flat, self.output) if self.needs_outputs else flat
            targets = self._targets(table, yb, index, epoch)
            values = per_sample_loss(self.loss, flat, outputs, targets, self.output)
            member_loss = self._reduce(values.view(size, batch), yb, index, epoch)
            if self.l1 is not None:
                member_loss = member_loss + self.l1 * self.model.weight_abs_sums()
            self.model.zero_grad()
            member_loss.sum().backward()  # members share no parameter: each gets its own gradient
            self.optimizer.step(self.model.flat, self.model.flat_grad())
            outputs = outputs.detach().view(size, batch, classes)
            for i in self.observers:
                member = self.members[i]
                _call(member, member.strategy.observe, outputs[i], yb[i], index[i], epoch)
            batch_losses.append(member_loss.detach() * batch)
            correct.append((self._predict(logits.detach(), outputs) == yb).sum(dim=1))
        # the epoch's one sync point; per member, sums in run_job's order (one row each)
        losses = torch.stack(batch_losses, dim=1).sum(dim=1).tolist()
        counts = torch.stack(correct, dim=1).sum(dim=1).tolist()
        return [loss / n for loss in losses], [count / n for count in counts], \
            time.perf_counter() - started

    def _templates(self) -> torch.Tensor:
        """[N, K, K]: every member's current templates (filler for a failed member)."""
        classes = self.data.num_classes
        tables = []
        for member in self.members:
            table = _call(member, member.strategy.templates)
            if table is None:
                table = torch.zeros(classes, classes, device=self.device)
            tables.append(table)
        return torch.stack(tables)

    def _targets(self, table: torch.Tensor | None, labels: torch.Tensor, index: torch.Tensor,
                 epoch: int) -> torch.Tensor:
        if table is None:
            return labels.reshape(-1)
        targets = table[self.member_index, labels]  # [N, B, K] in one gather
        for i in self.called:
            member = self.members[i]
            own = _call(member, member.strategy.targets, labels[i], index[i], epoch)
            if own is not None:
                targets[i] = own
        return targets.reshape(-1, targets.shape[2])

    def _reduce(self, values: torch.Tensor, labels: torch.Tensor, index: torch.Tensor,
                epoch: int) -> torch.Tensor:
        """Each member's batch loss [N]: the mean, or its strategy's weighted mean."""
        if not self.weighted:
            return values.mean(dim=1)
        weights: list[torch.Tensor | None] = [None] * len(self.members)
        for i in self.weighted:
            member = self.members[i]
            weights[i] = _call(member, member.strategy.sample_weights, labels[i], index[i], epoch)
        return torch.stack([reduce_loss(values[i], weights[i]) for i in range(len(weights))])

    def _predict(self, logits: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        """Predicted classes [N, B], each member by its own rule, on what run_job predicts on."""
        if self.all_outputs:
            predicted = outputs.argmax(dim=2)
        elif not self.needs_outputs:
            predicted = logits.argmax(dim=2)
        else:
            predicted = torch.where(self.outputs_mask, outputs.argmax(dim=2), logits.argmax(dim=2))
        for i in self.own_predict:
            member = self.members[i]
            seen = outputs[i] if self.uses_outputs[i] else logits[i]
            own = _call(member, member.strategy.predict, seen)
            if own is not None:
                predicted[i] = own
        return predicted
