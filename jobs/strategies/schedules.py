"""Targets fixed in advance or on a schedule: lecun, label_smoothing, two_stage."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from jobs.strategies.base import (
    Pairing,
    StackContext,
    StrategyStack,
    TargetStrategy,
    check_target_table,
    register,
)
from jobs.strategies.fixed import StaticStrategy, fixed_table
from jobs.strategies.params import StrategyError, boolean, choice, integer, number, param


def second_derivative_peak(output: str) -> float:
    """The input x > 0 at which a sigmoid-shaped output's second derivative is extreme.

    sigmoid: f'' = f(1-f)(1-2f) is extreme where f''' = 0, i.e. 6f^2 - 6f + 1 = 0, so
    f = (3 +- sqrt 3)/6, at x = +-ln(2 + sqrt 3) = +-1.317.
    tanh: f'' = -2t(1-t^2) is extreme where 1 - 3t^2 = 0, i.e. t = +-1/sqrt 3, x = atanh(1/sqrt 3).
    """
    if output == "sigmoid":
        return math.log(2 + math.sqrt(3))
    if output == "tanh":
        return math.atanh(1 / math.sqrt(3))
    raise ValueError(output)


def lecun_values(output: str) -> tuple[float, float]:
    """(class, non-class) targets: the output nonlinearity at +-x of its second-derivative peak.

    lecun_tanh, 1.7159 tanh(2x/3): LeCun chose 1.7159 (= 1/tanh(2/3), rounded) so that
    f(+-1) = +-1 with the second-derivative peak at x = +-1, and names +-1 as the targets. (The
    exact peak is 1.5 atanh(1/sqrt 3) = 0.988, f = 0.9907; we keep the paper's +-1, as that
    function was made for them.) A softmax output has no per-neuron nonlinearity; it gets the
    logistic sigmoid's values, which the strategy then normalises.
    """
    from jobs.nn.activations import activate

    if output == "lecun_tanh":
        return 1.0, -1.0
    per_neuron = "sigmoid" if output == "softmax" else output
    peak = second_derivative_peak(per_neuron)
    values = activate(torch.tensor([[peak, -peak]], dtype=torch.float64), per_neuron)
    return float(values[0, 0]), float(values[0, 1])


@register
class Lecun(StaticStrategy):
    name = "lecun"
    summary = ("targets where the output nonlinearity's second derivative peaks: "
               "sigmoid 0.7887/0.2113, tanh +-0.5774, lecun_tanh +-1")
    source = "LeCun et al. 1998, Efficient BackProp, sec. 4.5"
    params = (
        param("normalize", False, "divide each target row by its sum (needed for output=softmax)",
              boolean()),
    )

    def table(self, pairing: Pairing) -> torch.Tensor:
        output = pairing.output
        if output == "linear":
            raise StrategyError(
                "strategy lecun needs a saturating output: output=sigmoid, tanh, lecun_tanh, "
                "or softmax with lecun(normalize=true); got output=linear"
            )
        if output == "softmax" and not self.args["normalize"]:
            raise StrategyError(
                "strategy lecun with output=softmax needs lecun(normalize=true): softmax "
                "outputs sum to 1, so per-neuron targets must be normalised first"
            )
        c, nc = lecun_values(output)
        return fixed_table(pairing.num_classes, c, nc, self.args["normalize"])


def smoothing_table(num_classes: int, eps: float, variant: str) -> torch.Tensor:
    """uniform: (1-eps) y + eps/K (torch's and Keras's label_smoothing); others: 1-eps on the
    true class and eps/(K-1) on each other class."""
    eye = torch.eye(num_classes)
    if variant == "uniform":
        return (1 - eps) * eye + eps / num_classes
    return (1 - eps) * eye + eps / (num_classes - 1) * (1 - eye)


@register
class LabelSmoothing(StaticStrategy):
    name = "label_smoothing"
    summary = "mix the one-hot target with the uniform distribution: (1-eps) y + eps/K"
    source = "Szegedy et al. 2016 (Inception v3); torch CrossEntropyLoss(label_smoothing)"
    params = (
        param("eps", 0.1, "probability mass moved off the true class", number(0, 1)),
        param("variant", "uniform",
              "uniform: eps/K on every class; others: eps/(K-1) on the other classes only",
              choice("uniform", "others")),
    )

    def table(self, pairing: Pairing) -> torch.Tensor:
        return smoothing_table(pairing.num_classes, self.args["eps"], self.args["variant"])


class TwoStageStack(StrategyStack):
    """Each member's smoothed and one-hot tables [G, 2, K, K], picked per member and epoch."""

    def __init__(self, members: Sequence[TargetStrategy], ctx: StackContext) -> None:
        super().__init__(members, ctx)
        k = self.num_classes
        smoothed = torch.stack([smoothing_table(k, m.args["eps"], "uniform") for m in members])
        onehot = torch.eye(k).expand(self.size, k, k)
        self._stages = torch.stack([smoothed, onehot], dim=1).to(ctx.device)  # [G, 2, K, K]
        self._switch = torch.tensor([m.args["switch_epoch"] for m in members], device=ctx.device)
        self._trained = self.table_for(1)  # the epoch just trained (before training: epoch 1)
        self._batch_epoch, self._batch_table = 1, self._trained

    def table_for(self, epoch: int) -> torch.Tensor:
        """[G, K, K]: every member's targets in `epoch`."""
        stage = (epoch >= self._switch).long()
        return self._stages[self.member_index.squeeze(1), stage]

    def targets(self, labels: torch.Tensor, indices: torch.Tensor, epoch: int) -> torch.Tensor:
        if epoch != self._batch_epoch:  # once per epoch, not per batch
            self._batch_epoch, self._batch_table = epoch, self.table_for(epoch)
        return self._batch_table[self.member_index, labels]

    def end_epoch(self, epoch: int) -> None:
        self._trained = self.table_for(epoch)  # set after every epoch: no state to checkpoint

    def templates(self) -> torch.Tensor:
        return self._trained


@register
class TwoStage(TargetStrategy):
    """Epochs 1 .. switch_epoch-1 train on smoothed targets; switch_epoch and later on one-hot."""

    name = "two_stage"
    summary = "label smoothing (1-eps) y + eps/K before epoch switch_epoch, one-hot from it on"
    source = "Xu et al. 2020, Towards Understanding Label Smoothing (TSLA)"
    params = (
        param("eps", 0.1, "label smoothing of the first stage", number(0, 1)),
        param("switch_epoch", 10, "first epoch (1-based) trained on one-hot targets",
              integer(2)),
    )
    Stack = TwoStageStack

    def check(self, pairing: Pairing) -> None:
        smoothed = smoothing_table(pairing.num_classes, self.args["eps"], "uniform")
        check_target_table(self.canonical(), smoothed, pairing)
        check_target_table(self.canonical(), torch.eye(pairing.num_classes), pairing)
        if self.args["switch_epoch"] > pairing.epochs:
            raise StrategyError(
                f"strategy {self.canonical()} switches to one-hot at epoch "
                f"{self.args['switch_epoch']}, but the job trains {pairing.epochs} epochs; "
                "use switch_epoch <= epochs, or label_smoothing"
            )
