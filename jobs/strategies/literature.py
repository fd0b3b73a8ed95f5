"""Adaptive targets from the literature: OLS, PS-KD, SAT and bootstrapping (RESEARCH.md sec. 3).

Each mixes the label with the network's own softmax predictions, so each needs output=softmax.
Per-sample memories (PS-KD, SAT) are indexed by the sample's position in the training set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from jobs.strategies import catalogue
from jobs.strategies.base import StackContext, StrategyStack, TargetStrategy, register


class SoftmaxStrategy(TargetStrategy):
    """Targets made from softmax predictions (declared with needs=softmax_output). Per-sample
    targets have no class template: the templates (test loss, confidence) are one-hot."""


class OneHotTemplates(StrategyStack):
    def __init__(self, members: Sequence[TargetStrategy], ctx: StackContext) -> None:
        super().__init__(members, ctx)
        self._onehot = self.eye.expand(self.size, -1, -1)

    def templates(self) -> torch.Tensor:
        return self._onehot


class SampleMemoryStack(OneHotTemplates):
    """One remembered distribution per member and training sample [G, n, K], starting at the
    sample's one-hot label."""

    def __init__(self, members: Sequence[TargetStrategy], ctx: StackContext) -> None:
        super().__init__(members, ctx)
        self.memory = self.eye[ctx.y_train].expand(self.size, -1, -1).clone()

    def state_dict(self, g: int) -> dict[str, Any]:
        return {"memory": self.memory[g].clone()}

    def load_state_dict(self, g: int, state: Mapping[str, Any]) -> None:
        self.memory[g] = state["memory"].to(self.device)


class OnlineLabelSmoothingStack(OneHotTemplates):
    def __init__(self, members: Sequence[TargetStrategy], ctx: StackContext) -> None:
        super().__init__(members, ctx)
        g, k = self.size, self.num_classes
        self.alpha = self.column("alpha")
        self.sums = torch.zeros(g * k, k, dtype=torch.float64, device=ctx.device)  # row g*K + y
        self.counts = torch.zeros(g * k, dtype=torch.float64, device=ctx.device)
        self._set_soft(torch.full((g, k, k), 1 / k, device=ctx.device))

    def _set_soft(self, soft: torch.Tensor) -> None:
        self.soft = soft.to(self.device, torch.float32)
        self._templates = self.alpha * self.eye + (1 - self.alpha) * self.soft

    def templates(self) -> torch.Tensor:
        return self._templates

    def observe(self, outputs: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor,
                epoch: int) -> None:
        rows = (labels + self.member_index * self.num_classes).reshape(-1)
        flat = outputs.reshape(-1, self.num_classes)
        correct = (flat.argmax(dim=1) == labels.reshape(-1)).to(torch.float64)  # weights, not
        self.sums.index_add_(0, rows, flat.to(torch.float64) * correct[:, None])  # a mask: no sync
        self.counts.index_add_(0, rows, correct)

    def end_epoch(self, epoch: int) -> None:
        g, k = self.size, self.num_classes
        mean = self.sums / self.counts.clamp_min(1)[:, None]
        uniform = torch.full_like(mean, 1 / k)
        self._set_soft(torch.where(self.counts[:, None] > 0, mean, uniform).view(g, k, k))
        self.sums.zero_()
        self.counts.zero_()

    def state_dict(self, g: int) -> dict[str, Any]:
        return {"soft": self.soft[g].clone()}

    def load_state_dict(self, g: int, state: Mapping[str, Any]) -> None:
        soft = self.soft.clone()
        soft[g] = state["soft"].to(self.device)
        self._set_soft(soft)


@register(catalogue.OLS)
class OnlineLabelSmoothing(SoftmaxStrategy):
    """S[y] is the mean softmax of the previous epoch's correctly predicted class-y samples.

    Epoch 1 uses S = uniform 1/K: before training no class has a correct sample, which is the
    rule for such a row. (The authors' code starts from S = 0, so its first epoch trains on
    alpha * y alone, a target that does not sum to 1.)
    """

    observes = True
    Stack = OnlineLabelSmoothingStack


class ProgressiveSelfKDStack(SampleMemoryStack):
    def __init__(self, members: Sequence[TargetStrategy], ctx: StackContext) -> None:
        super().__init__(members, ctx)
        self.alpha_T = self.column("alpha_T")
        self.epochs = torch.tensor([p.epochs for p in ctx.pairings], dtype=torch.float32,
                                   device=ctx.device).view(-1, 1, 1)

    def alpha(self, epoch: int) -> torch.Tensor:
        """[G, 1, 1]: each member's weight of its previous predictions in `epoch`."""
        return self.alpha_T * epoch / self.epochs

    def targets(self, labels: torch.Tensor, indices: torch.Tensor, epoch: int) -> torch.Tensor:
        alpha = self.alpha(epoch)
        return (1 - alpha) * self.eye[labels] + alpha * self.memory[self.member_index, indices]

    def observe(self, outputs: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor,
                epoch: int) -> None:
        self.memory[self.member_index, indices] = outputs


@register(catalogue.PSKD)
class ProgressiveSelfKD(SoftmaxStrategy):
    """alpha_t = alpha_T * t / E for 1-based epoch t (the source's (epoch+1)/E, 0-based); the
    remembered p_i is sample i's softmax from its training batch of the previous epoch, and
    starts at the one-hot label, so epoch 1 trains on one-hot targets."""

    observes = True
    Stack = ProgressiveSelfKDStack


class SelfAdaptiveTrainingStack(SampleMemoryStack):
    def __init__(self, members: Sequence[TargetStrategy], ctx: StackContext) -> None:
        super().__init__(members, ctx)
        self.m = self.column("m")
        self.start_epoch = torch.tensor([m.args["start_epoch"] for m in members],
                                        device=ctx.device)

    def adapting(self, epoch: int) -> torch.Tensor:
        """[G, 1, 1] bool: the members whose targets adapt in `epoch`."""
        return (epoch > self.start_epoch).view(-1, 1, 1)

    def batch_targets(self, outputs: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor,
                      epoch: int) -> torch.Tensor:
        adapting = self.adapting(epoch)
        remembered = self.memory[self.member_index, indices]
        running = self.m * remembered + (1 - self.m) * outputs.detach()
        self.memory[self.member_index, indices] = torch.where(adapting, running, remembered)
        return torch.where(adapting, running, self.eye[labels])

    def sample_weights(self, labels: torch.Tensor, indices: torch.Tensor,
                       epoch: int) -> torch.Tensor | None:
        adapting = self.adapting(epoch).view(-1, 1)
        weights = self.memory[self.member_index, indices].max(dim=-1).values
        return torch.where(adapting, weights, torch.ones_like(weights))


@register(catalogue.SAT)
class SelfAdaptiveTraining(SoftmaxStrategy):
    """Epochs 1..start_epoch train on one-hot targets (the source's `epoch < E_s`, 0-based).
    From then on, before each step, t_i <- m t_i + (1-m) p_i with p_i this batch's softmax, and
    the loss of sample i is weighted by max_k t_ik (normalised over the batch)."""

    uses_outputs = True
    weighted = True
    Stack = SelfAdaptiveTrainingStack


class BootstrapStack(OneHotTemplates):
    """t = beta y + (1-beta) q, q made from this batch's softmax p by the strategy's rule."""

    def __init__(self, members: Sequence[TargetStrategy], ctx: StackContext) -> None:
        super().__init__(members, ctx)
        self.beta = self.column("beta")
        self.hard = members[0].name == "bootstrap_hard"  # one stack_key: one rule per stack

    def batch_targets(self, outputs: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor,
                      epoch: int) -> torch.Tensor:
        prediction = self.eye[outputs.argmax(dim=-1)] if self.hard else outputs
        return self.beta * self.eye[labels] + (1 - self.beta) * prediction


class Bootstrap(SoftmaxStrategy):
    uses_outputs = True
    Stack = BootstrapStack


@register(catalogue.BOOTSTRAP_SOFT)
class BootstrapSoft(Bootstrap):
    """q = p with the gradient flowing through it: with loss=ce this is beta CE(y) plus (1-beta)
    times the prediction's entropy, Reed et al.'s 'minimum entropy regularisation' reading."""


@register(catalogue.BOOTSTRAP_HARD)
class BootstrapHard(Bootstrap):
    """q = onehot(argmax p): the network's current guess, with no gradient through it."""
