"""Stack: the members training in one epoch, as one network, one optimiser and one batch loop.

Per batch the whole stack runs a fixed number of tensor operations, whatever its size: one
gather of every member's own shuffled batch, a batched forward, every member's targets (one call
per strategy stack: members sharing a strategy type share one), the losses, one backward, one
optimiser update; dropout masks for all members in one draw (jobs.engine.dropout). Evaluation
is stacked too (jobs.engine.evaluation): stacked forwards over a split and every metric computed
for many members at once, one sync per split.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Collection, Sequence
from typing import Any

import torch

from jobs.data.datasets import Dataset
from jobs.engine import evaluation
from jobs.engine.dropout import MemberDropout
from jobs.engine.evaluation import TEST_MEASURES
from jobs.engine.member import Member
from jobs.engine.stack_model import ModuleStack, stack_networks
from jobs.engine.stack_optim import StackedOptimizer
from jobs.nn.activations import activate, log_softmax
from jobs.nn.losses import per_sample_loss, reduce_loss
from jobs.strategies import StackContext, StrategyStack

EPOCH_GATHER_FLOATS = 1 << 25  # inputs gathered once per epoch up to this size (128 MB)


def stack_order(members: Sequence[Member]) -> list[Member]:
    """Members sharing a strategy stack side by side (stable): each strategy stack is a slice."""
    return sorted(members, key=lambda member: member.strategy.stack_key())


class Stack:
    """Members (all at the same epoch, in `stack_order`) trained as one."""

    def __init__(self, members: Sequence[Member], data: Dataset, device: torch.device) -> None:
        self.members = list(members)
        self.device = device
        specs = [m.spec for m in self.members]
        shared = specs[0]
        self.loss, self.output = shared.loss, shared.output
        self.size = len(self.members)
        self.num_classes = data.num_classes
        self.x_train, self.y_train = _inputs(data.x_train, shared), data.y_train
        self.x_test, self.y_test = _inputs(data.x_test, shared), data.y_test
        self.x_val = None if data.x_val is None else _inputs(data.x_val, shared)
        self.y_val = data.y_val
        self.batch_size = shared.batch_size or self.x_train.shape[0]
        self.net = stack_networks(specs, [m.params for m in self.members], data.input_shape,
                                  device, self.members[0].module)
        self.optimizer = StackedOptimizer(specs, self.net, device)
        for index, member in enumerate(self.members):
            self.optimizer.load_member(index, member.optimizer)
        self.dropout = MemberDropout([s.dropout for s in specs],
                                     [m.dropout_seed for m in self.members], device)
        self.l1 = (torch.tensor([s.l1 for s in specs], device=device)
                   if any(s.l1 > 0 for s in specs) else None)
        self.groups = self._strategy_stacks(data)
        definitions = [m.strategy for m in self.members]
        # one-hot targets go to torch's fused cross-entropy as class indices; the output
        # activation is computed only where something needs it
        self.class_indices = self.loss == "ce" and all(s.onehot_targets for s in definitions)
        self.needs_outputs = self.loss != "ce" or any(
            s.observes or s.uses_outputs or s.decision == "template" for s in definitions)
        self.weighted = any(s.weighted for s in definitions)
        self.observers = [(part, group) for part, group in self.groups
                          if group.members[0].observes]
        self.all_argmax = all(s.decision == "argmax" for s in definitions)
        self.member_index = torch.arange(self.size, device=device).unsqueeze(1)
        self._sizes: torch.Tensor | None = None

    def _strategy_stacks(self, data: Dataset) -> list[tuple[slice, StrategyStack]]:
        groups = []
        start = 0
        for _, run in itertools.groupby(self.members, key=lambda m: m.strategy.stack_key()):
            chosen = list(run)
            part = slice(start, start + len(chosen))
            ctx = StackContext(
                pairings=[m.spec.pairing() for m in chosen], num_train=self.x_train.shape[0],
                device=self.device, x_train=self.x_train, y_train=self.y_train,
                forward=lambda x, part=part: activate(self.net.evaluate(x, part), self.output),
                generators=[m.strategy_generator for m in chosen])
            group = type(chosen[0].strategy).Stack([m.strategy for m in chosen], ctx)
            for g, member in enumerate(chosen):
                if member.strategy_state is not None:
                    group.load_state_dict(g, member.strategy_state)
            groups.append((part, group))
            start += len(chosen)
        return groups

    # -- one epoch --------------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> tuple[list[float], list[float], float]:
        """One pass over the training set; per member (mean loss, accuracy), and the seconds."""
        started = time.perf_counter()
        self.optimizer.set_learning_rates([m.schedule.lr for m in self.members])
        x, y = self.x_train, self.y_train
        n = x.shape[0]
        order = torch.stack([torch.randperm(n, generator=m.order) for m in self.members])
        order = order.to(self.device)
        y_epoch = y[order]  # [N, n]: each member's labels in its own order
        # Each member's inputs in its own order, gathered once (batches are then views) where
        # that copy is small; else gathered per batch.
        x_epoch = x[order] if order.numel() * x[0].numel() <= EPOCH_GATHER_FLOATS else None
        self.dropout.start_epoch(epoch)
        own_rng = isinstance(self.net, ModuleStack)  # its module draws dropout from the global RNG
        if own_rng:
            torch.set_rng_state(self.members[0].dropout.get_state())
        # what the epoch's loss and accuracy are made of, kept on the device and reduced when
        # the epoch ends; argmax decisions wait for the epoch's end too (templates, which may
        # move within an epoch, decide per batch)
        batch_losses, decided = [], []
        for start in range(0, n, self.batch_size):
            index = order[:, start:start + self.batch_size]
            yb = y_epoch[:, start:start + self.batch_size]
            xb = x[index] if x_epoch is None else x_epoch[:, start:start + self.batch_size]
            logits = self.net.forward(xb, self.dropout)  # xb: [N, B, ...], yb: [N, B]
            # one log-softmax serves the cross-entropy and the outputs
            log_probs = log_softmax(logits) if self.loss == "ce" else None
            if not self.needs_outputs:
                outputs = logits
            elif log_probs is not None:
                outputs = log_probs.exp()
            else:
                outputs = activate(logits, self.output)
            member_loss = self._loss(logits, outputs, log_probs, yb, index, epoch)
            self.net.zero_grad()
            member_loss.sum().backward()  # members share no parameter: each its own gradient
            self.optimizer.step(self.net.flat, self.net.flat_grad())
            outputs = outputs.detach()
            for part, group in self.observers:
                group.observe(outputs[part], yb[part], index[part], epoch)
            batch_losses.append(member_loss.detach())
            decided.append(outputs if self.all_argmax else self._predict(outputs))
        if own_rng:
            self.members[0].dropout.set_state(torch.get_rng_state())
        # Few operations from here, and the epoch's one sync point
        predicted = torch.cat(decided, dim=1)
        if self.all_argmax:  # argmax of logits is argmax of outputs: activations are monotone
            predicted = predicted.argmax(dim=-1)
        sizes = self._batch_sizes(n)
        losses = (torch.stack(batch_losses, dim=1) @ sizes / n).tolist()
        accuracies = ((predicted == y_epoch).sum(dim=1) / n).tolist()
        return losses, accuracies, time.perf_counter() - started

    def _batch_sizes(self, n: int) -> torch.Tensor:
        """The sizes of an epoch's batches (the last may be short): the weights of the batch
        means in the epoch's mean over samples."""
        if self._sizes is None:
            count = -(-n // self.batch_size)
            sizes = torch.full((count,), float(self.batch_size), device=self.device)
            sizes[-1] = n - self.batch_size * (count - 1)
            self._sizes = sizes
        return self._sizes

    def _loss(self, logits: torch.Tensor, outputs: torch.Tensor, log_probs: torch.Tensor | None,
              labels: torch.Tensor, index: torch.Tensor, epoch: int) -> torch.Tensor:
        """Each member's batch loss [N]: the mean (or its strategy's weighted mean) of its
        samples' losses, plus its L1 penalty."""
        if self.class_indices:
            targets = labels
        else:
            targets = _joined([group.batch_targets(outputs[part], labels[part], index[part],
                                                   epoch) for part, group in self.groups])
        values = per_sample_loss(self.loss, logits, outputs, targets, self.output, log_probs)
        weights = None
        if self.weighted:
            weights = _joined([_or_ones(group.sample_weights(labels[part], index[part], epoch),
                                          labels[part]) for part, group in self.groups])
        loss = reduce_loss(values, weights)
        if self.l1 is not None:
            loss = loss + self.l1 * self.net.weight_abs_sums()
        return loss

    def _predict(self, outputs: torch.Tensor) -> torch.Tensor:
        """Predicted classes [N, B], each member by its strategy's decision rule."""
        return _joined([group.predict(outputs[part]) for part, group in self.groups])

    def end_epoch(self, epoch: int, train_losses: Sequence[float]) -> None:
        for _, group in self.groups:
            group.end_epoch(epoch)
        for member, loss in zip(self.members, train_losses, strict=True):
            member.schedule.step(loss)

    # -- evaluation (jobs.engine.evaluation) ----------------------------------------------------
    def measure(self, x: torch.Tensor, y: torch.Tensor,
                wanted: Collection[str] = TEST_MEASURES) -> dict[str, list[Any]]:
        return evaluation.measure(self, x, y, wanted)

    def evaluation_rows(self, epoch: int) -> list[dict[str, Any]]:
        return evaluation.evaluation_rows(self, epoch)

    # -- handing state back -----------------------------------------------------------------------
    def hand_back(self, index: int) -> None:
        """Put member `index`'s live state into the member (for its checkpoint, or a new stack)."""
        member = self.members[index]
        member.params = self.net.member_params(index)
        member.optimizer = self.optimizer.member_state(index)
        for part, group in self.groups:
            if part.start <= index < part.stop:
                member.strategy_state = group.state_dict(index - part.start)

    def hand_back_all(self) -> None:
        for index in range(self.size):
            self.hand_back(index)


def _inputs(x: torch.Tensor, spec: Any) -> torch.Tensor:
    """The inputs as the stacked network takes them: flat for an MLP, images for a CNN, as they
    are for a network that is not stacked."""
    return x.flatten(1) if spec.model == "mlp" and spec.method != "target_space" else x


def _joined(parts: list[torch.Tensor]) -> torch.Tensor:
    """The strategy stacks' parts of a per-member tensor, in member order (one stack: as is)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _or_ones(weights: torch.Tensor | None, labels: torch.Tensor) -> torch.Tensor:
    return torch.ones(labels.shape, device=labels.device) if weights is None else weights
