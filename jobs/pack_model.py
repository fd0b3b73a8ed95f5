"""N MLPs of one shape as one stacked network: member n's parameters are row n of one matrix.

Each member starts as the `nn.Module` that `build_model` makes for it alone (so it keeps its own
seeded initialisation); the stack copies their parameters into one flat [N, P] matrix and trains
views of it: a layer's weight is a [N, out, in] view, and one batched matmul (baddbmm) computes
all members' layer at once. On the CPU, baddbmm over the stack gives bit for bit what each
member's nn.Linear gives alone, forward and backward. The optimiser then updates the flat matrix
in a few whole-matrix operations instead of a few per parameter and member.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from jobs.models import hidden_activation


@dataclass(frozen=True)
class Slot:
    """Where one parameter of a member lies in its row of the flat matrix."""

    name: str
    shape: tuple[int, ...]
    offset: int
    size: int


class MemberDropout:
    """Dropout with each member's own probability and its own random stream.

    Drawn the way torch draws dropout on the CPU (a Bernoulli(1 - p) mask of the layer's shape
    from the member's generator, divided by 1 - p), so a member gets the masks it would get
    training alone, as long as its generator holds the state the global RNG would have had.
    Members with p = 0 draw nothing, as nn.Identity draws nothing.
    """

    def __init__(self, probabilities: Sequence[float], generators: Sequence[torch.Generator],
                 device: torch.device) -> None:
        self.probabilities = list(probabilities)
        self.generators = list(generators)
        self.device = device
        self.active = any(p > 0 for p in self.probabilities)

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return hidden
        shape = hidden.shape[1:]
        masks = []
        for p, generator in zip(self.probabilities, self.generators, strict=True):
            if p > 0:
                mask = torch.empty(shape).bernoulli_(1 - p, generator=generator).div_(1 - p)
            else:
                mask = torch.ones(shape)
            masks.append(mask)
        return hidden * torch.stack(masks).to(self.device)


class StackedMLP:
    """The members' MLPs (jobs.models.MLP, all of one shape) trained as one."""

    def __init__(self, modules: Sequence[nn.Module], activation: str, shortcuts: bool,
                 device: torch.device) -> None:
        named = list(modules[0].named_parameters())
        self.slots: list[Slot] = []
        offset = 0
        for name, parameter in named:
            size = parameter.numel()
            self.slots.append(Slot(name, tuple(parameter.shape), offset, size))
            offset += size
        self.width = offset
        self.size = len(modules)
        with torch.no_grad():
            rows = []
            for module in modules:
                parameters = dict(module.named_parameters())
                rows.append(torch.cat([parameters[s.name].detach().reshape(-1).to(device)
                                       for s in self.slots]))
            self.flat = torch.stack(rows)  # [N, P]; updated in place by the optimiser
        self.params: dict[str, torch.Tensor] = {}
        for s in self.slots:
            view = self.flat[:, s.offset:s.offset + s.size].view(self.size, *s.shape)
            self.params[s.name] = view.requires_grad_(True)  # a leaf that shares flat's memory
        self.layers = sum(1 for s in self.slots if s.name.startswith("layers.")) // 2
        self.shortcuts = shortcuts
        self.act = hidden_activation(activation)

    # -- training -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, dropout: MemberDropout) -> torch.Tensor:
        """Logits [N, B, K] of inputs [N, B, features]: jobs.models.MLP.forward, stacked."""
        if not self.shortcuts:
            for index in range(self.layers):
                x = dropout(self.act(self._linear(f"layers.{index}", x)))
            return self._linear("head", x)
        features = [x]
        for index in range(self.layers):
            joined = torch.cat(features, dim=2)
            features.append(dropout(self.act(self._linear(f"layers.{index}", joined))))
        return self._linear("head", torch.cat(features, dim=2))

    def _linear(self, prefix: str, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.params[f"{prefix}.weight"], self.params[f"{prefix}.bias"]
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    def weight_abs_sums(self) -> torch.Tensor:
        """Per member, the sum of |w| over weights (not biases): the L1 penalty's sum, [N]."""
        total: torch.Tensor | int = 0
        for s in self.slots:
            if s.name.endswith("weight"):
                total = total + self.params[s.name].abs().flatten(1).sum(dim=1)
        assert isinstance(total, torch.Tensor)
        return total

    def zero_grad(self) -> None:
        for parameter in self.params.values():
            parameter.grad = None

    def flat_grad(self) -> torch.Tensor:
        """The members' gradients as one [N, P] matrix, laid out like `flat`."""
        return torch.cat([self.params[s.name].grad.reshape(self.size, -1) for s in self.slots],
                         dim=1)

    # -- one member -------------------------------------------------------------------------------
    def member_params(self, index: int) -> dict[str, torch.Tensor]:
        """Member `index`'s parameters by name (views: they follow the training)."""
        return {s.name: self.params[s.name][index].detach() for s in self.slots}

    @torch.no_grad()
    def store_member(self, index: int, module: nn.Module) -> None:
        """Copy member `index`'s current parameters into its own module."""
        for name, parameter in module.named_parameters():
            parameter.copy_(self.params[name][index])

    def member_row(self, index: int, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        """Row `index` of a [N, P] matrix laid out like `flat`, cut into parameter shapes."""
        return {s.name: tensor[index, s.offset:s.offset + s.size].reshape(s.shape)
                for s in self.slots}
