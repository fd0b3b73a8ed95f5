"""Adaptive targets from the literature: OLS, PS-KD, SAT and bootstrapping (RESEARCH.md sec. 3).

Each mixes the label with the network's own softmax predictions, so each needs output=softmax.
Per-sample memories (PS-KD, SAT) are indexed by the sample's position in the training set.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from jobs.strategies.base import (
    Pairing,
    StrategyContext,
    StrategyValues,
    TargetStrategy,
    register,
    values_from_table,
)
from jobs.strategies.params import StrategyError, integer, number, param


class SoftmaxStrategy(TargetStrategy):
    """Targets made from softmax predictions. Per-sample targets have no class template: the
    templates (test loss, confidence) are one-hot."""

    def check(self, pairing: Pairing) -> None:
        if pairing.output != "softmax":
            raise StrategyError(
                f"strategy {self.name} mixes labels with softmax predictions and needs "
                f"output=softmax; got output={pairing.output}"
            )

    def setup(self, ctx: StrategyContext) -> None:
        super().setup(ctx)
        self.eye = torch.eye(self.num_classes, device=ctx.device)

    def templates(self) -> torch.Tensor:
        return self.eye


class SampleMemory(SoftmaxStrategy):
    """One remembered distribution per training sample, starting at its one-hot label."""

    def setup(self, ctx: StrategyContext) -> None:
        super().setup(ctx)
        self.memory = self.eye[ctx.y_train].clone()

    def state_dict(self) -> dict[str, Any]:
        return {"memory": self.memory}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.memory = state["memory"].to(self.device)


@register
class OnlineLabelSmoothing(SoftmaxStrategy):
    """S[y] is the mean softmax of the previous epoch's correctly predicted class-y samples.

    Epoch 1 uses S = uniform 1/K: before training no class has a correct sample, which is the
    rule for such a row. (The authors' code starts from S = 0, so its first epoch trains on
    alpha * y alone, a target that does not sum to 1.)
    """

    name = "ols"
    summary = ("online label smoothing: alpha y + (1-alpha) S[y], S[y] = mean softmax of last "
               "epoch's correct class-y samples")
    source = "Zhang et al. 2021, Delving Deep into Label Smoothing (IEEE TIP)"
    observes = True
    params = (param("alpha", 0.5, "weight of the one-hot label", number(0, 1)),)

    def setup(self, ctx: StrategyContext) -> None:
        super().setup(ctx)
        k = self.num_classes
        self.sums = torch.zeros(k, k, dtype=torch.float64, device=ctx.device)
        self.counts = torch.zeros(k, dtype=torch.float64, device=ctx.device)
        self._set_soft(torch.full((k, k), 1 / k, device=ctx.device))

    def _set_soft(self, soft: torch.Tensor) -> None:
        self.soft = soft.to(self.device, torch.float32)
        alpha = self.args["alpha"]
        self._templates = alpha * self.eye + (1 - alpha) * self.soft

    def templates(self) -> torch.Tensor:
        return self._templates

    def observe(self, outputs: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor,
                epoch: int) -> None:
        correct = (outputs.argmax(dim=1) == labels).to(torch.float64)  # weights, not a mask:
        self.sums.index_add_(0, labels, outputs.to(torch.float64) * correct[:, None])  # no sync
        self.counts.index_add_(0, labels, correct)

    def end_epoch(self, epoch: int) -> None:
        uniform = torch.full_like(self.sums, 1 / self.num_classes)
        mean = self.sums / self.counts.clamp_min(1)[:, None]
        self._set_soft(torch.where(self.counts[:, None] > 0, mean, uniform))
        self.sums.zero_()
        self.counts.zero_()

    def values(self) -> StrategyValues:
        return values_from_table(self._templates)

    def state_dict(self) -> dict[str, Any]:
        return {"soft": self.soft}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._set_soft(state["soft"])


@register
class ProgressiveSelfKD(SampleMemory):
    """alpha_t = alpha_T * t / E for 1-based epoch t (the source's (epoch+1)/E, 0-based); the
    remembered p_i is sample i's softmax from its training batch of the previous epoch, and
    starts at the one-hot label, so epoch 1 trains on one-hot targets."""

    name = "pskd"
    summary = ("progressive self-knowledge distillation: (1-a_t) y + a_t p_i(last epoch), "
               "a_t = alpha_T t/E")
    source = "Kim et al. 2021, Self-Knowledge Distillation with Progressive Refinement (ICCV)"
    observes = True
    params = (param("alpha_T", 0.8, "weight of the previous predictions in the last epoch",
                    number(0, 1)),)

    def setup(self, ctx: StrategyContext) -> None:
        super().setup(ctx)
        self.epochs = ctx.pairing.epochs

    def alpha(self, epoch: int) -> float:
        return self.args["alpha_T"] * epoch / self.epochs

    def targets(self, labels: torch.Tensor, indices: torch.Tensor, epoch: int) -> torch.Tensor:
        alpha = self.alpha(epoch)
        return (1 - alpha) * self.eye[labels] + alpha * self.memory[indices]

    def observe(self, outputs: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor,
                epoch: int) -> None:
        self.memory[indices] = outputs


@register
class SelfAdaptiveTraining(SampleMemory):
    """Epochs 1..start_epoch train on one-hot targets (the source's `epoch < E_s`, 0-based).
    From then on, before each step, t_i <- m t_i + (1-m) p_i with p_i this batch's softmax, and
    the loss of sample i is weighted by max_k t_ik (normalised over the batch)."""

    name = "sat"
    uses_outputs = True
    summary = ("self-adaptive training: t_i <- m t_i + (1-m) p_i after start_epoch, "
               "loss weighted by max_k t_ik")
    source = "Huang et al. 2020, Self-Adaptive Training (NeurIPS)"
    params = (
        param("m", 0.9, "momentum of the running target", number(0, 1, open_high=True)),
        param("start_epoch", 60, "epochs of plain one-hot training before targets adapt "
              "(the source's E_s)", integer(0)),
    )

    def check(self, pairing: Pairing) -> None:
        super().check(pairing)
        if self.args["start_epoch"] >= pairing.epochs:
            raise StrategyError(
                f"strategy {self.canonical()} adapts only after epoch "
                f"{self.args['start_epoch']}, but the job trains {pairing.epochs} epochs; "
                "use start_epoch < epochs"
            )

    def adapting(self, epoch: int) -> bool:
        return epoch > self.args["start_epoch"]

    def batch_targets(self, outputs: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor,
                      epoch: int) -> torch.Tensor:
        if not self.adapting(epoch):
            return self.eye[labels]
        m = self.args["m"]
        running = m * self.memory[indices] + (1 - m) * outputs.detach()
        self.memory[indices] = running
        return running

    def sample_weights(self, labels: torch.Tensor, indices: torch.Tensor,
                       epoch: int) -> torch.Tensor | None:
        if not self.adapting(epoch):
            return None
        return self.memory[indices].max(dim=1).values


class Bootstrap(SoftmaxStrategy):
    """t = beta y + (1-beta) q, q made from this batch's softmax p by `prediction`."""

    source = "Reed et al. 2015, Training Deep Neural Networks on Noisy Labels with Bootstrapping"
    uses_outputs = True

    def prediction(self, outputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def batch_targets(self, outputs: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor,
                      epoch: int) -> torch.Tensor:
        beta = self.args["beta"]
        return beta * self.eye[labels] + (1 - beta) * self.prediction(outputs)


@register
class BootstrapSoft(Bootstrap):
    """q = p with the gradient flowing through it: with loss=ce this is beta CE(y) plus (1-beta)
    times the prediction's entropy, Reed et al.'s 'minimum entropy regularisation' reading."""

    name = "bootstrap_soft"
    summary = "soft bootstrapping: beta y + (1-beta) p, p the current softmax"
    params = (param("beta", 0.95, "weight of the given label", number(0, 1)),)

    def prediction(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs


@register
class BootstrapHard(Bootstrap):
    name = "bootstrap_hard"
    summary = "hard bootstrapping: beta y + (1-beta) onehot(argmax p), p the current softmax"
    params = (param("beta", 0.8, "weight of the given label", number(0, 1)),)

    def prediction(self, outputs: torch.Tensor) -> torch.Tensor:
        return self.eye[outputs.argmax(dim=1)]
