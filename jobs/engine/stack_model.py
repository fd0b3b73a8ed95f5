"""N networks of one shape as one: member n's parameters are row n of one flat [N, P] matrix.

Each member starts with the parameters `build_model` would give it (its own seeded
initialisation, drawn by jobs.nn.initial); the stack copies them into one flat matrix and
trains views of it. A
dense layer is one batched matmul over the members (baddbmm on [N, out, in] weights); a
convolution is one grouped convolution (groups = N) over the members' channels side by side,
which keeps each member's dropout masks its own (torch.func's vmap would draw them from one
global stream). The optimiser then updates the flat matrix in a few whole-matrix operations.

`method=target_space` nets solve for their weights inside the forward pass; they run as a stack
of one (`ModuleStack`): the module itself, its parameters views of the flat matrix.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from jobs.engine.dropout import MemberDropout
from jobs.nn.activations import hidden_activation
from jobs.nn.models import CNN
from jobs.spec import JobSpec

EVAL_MEMBER_SAMPLES = 1 << 16  # member-samples per evaluation forward: bounds its memory

# The gradient views below have their parameters' strides (rows of the flat matrix), which
# torch's layout check for .grad does not expect; accumulating into them is correct and is
# what saves a copy of all gradients per batch.
warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout")


@dataclass(frozen=True)
class Slot:
    """Where one parameter of a member lies in its row of the flat matrix."""

    name: str
    shape: tuple[int, ...]
    offset: int
    size: int


class FlatParameters:
    """The members' parameters (equal names and shapes) as one [N, P] matrix and named views."""

    def __init__(self, members: Sequence[Mapping[str, torch.Tensor]],
                 device: torch.device) -> None:
        self.slots: list[Slot] = []
        offset = 0
        for name, tensor in members[0].items():
            self.slots.append(Slot(name, tuple(tensor.shape), offset, tensor.numel()))
            offset += tensor.numel()
        self.width = offset
        self.size = len(members)
        with torch.no_grad():
            self.flat = torch.stack([
                torch.cat([params[s.name].detach().reshape(-1).to(device, torch.float32)
                           for s in self.slots]) for params in members])  # [N, P]
        # Gradients land in one [N, P] matrix laid out like `flat`: each parameter's .grad is a
        # view of it, which backward accumulates into in place (no copy per batch).
        self.grad = torch.zeros_like(self.flat)
        self.params: dict[str, torch.Tensor] = {}
        for s in self.slots:
            view = self.flat[:, s.offset:s.offset + s.size].view(self.size, *s.shape)
            self.params[s.name] = view.requires_grad_(True)  # a leaf sharing flat's memory
            self.params[s.name].grad = self.grad[:, s.offset:s.offset + s.size].view(
                self.size, *s.shape)

    def zero_grad(self) -> None:
        self.grad.zero_()

    def flat_grad(self) -> torch.Tensor:
        """The members' gradients as one [N, P] matrix, laid out like `flat`."""
        return self.grad

    def member_row(self, index: int, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        """Row `index` of a [N, P] matrix laid out like `flat`, as named parameter copies."""
        return {s.name: tensor[index, s.offset:s.offset + s.size].reshape(s.shape).clone()
                for s in self.slots}

    def row_of(self, named: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """A member's named tensors as one row [P] laid out like `flat` (member_row's inverse)."""
        return torch.cat([named[s.name].reshape(-1).to(self.flat.device) for s in self.slots])

    def member_params(self, index: int) -> dict[str, torch.Tensor]:
        return self.member_row(index, self.flat)

    def weight_abs_sums(self) -> torch.Tensor:
        """Per member, the sum of |w| over weights (not biases): the L1 penalty's sum, [N]."""
        sums = [self.params[s.name].abs().flatten(1).sum(dim=1)
                for s in self.slots if s.name.endswith("weight")]
        return torch.stack(sums).sum(dim=0)

    def evaluate(self, x: torch.Tensor, members: slice | None = None) -> torch.Tensor:
        """Logits [N, T, K] of shared inputs [T, ...] in eval mode, in chunks of samples; with
        `members`, of those members alone ([len, T, K])."""
        net = self if members is None else self.of_members(members)
        chunk = max(1, EVAL_MEMBER_SAMPLES // net.size)
        logits = []
        with torch.no_grad():
            for start in range(0, x.shape[0], chunk):
                part = x[start:start + chunk]
                logits.append(net.forward(part.expand(net.size, *part.shape), None))
        return torch.cat(logits, dim=1)

    def of_members(self, members: slice) -> FlatParameters:
        """This network narrowed to a slice of its members, for a forward pass (no training):
        their parameter views, nothing copied."""
        size = len(range(*members.indices(self.size)))
        if size == self.size:
            return self
        narrowed = copy.copy(self)
        narrowed.params = {name: tensor[members] for name, tensor in self.params.items()}
        narrowed.size = size
        return narrowed

    def forward(self, x: torch.Tensor, dropout: MemberDropout | None) -> torch.Tensor:
        raise NotImplementedError

    def residual(self) -> float | None:
        """target_space: how far the realised sums are from the targets; None elsewhere."""
        return None


class StackedMLP(FlatParameters):
    """jobs.nn.models.MLP, stacked: inputs [N, B, features] -> logits [N, B, K]."""

    def __init__(self, members: Sequence[Mapping[str, torch.Tensor]], spec: JobSpec,
                 device: torch.device, prefix: str = "") -> None:
        super().__init__(members, device)
        self.prefix = prefix
        self.layers = sum(1 for s in self.slots
                          if s.name.startswith(f"{prefix}layers.") and s.name.endswith("weight"))
        self.shortcuts = spec.shortcuts
        self.act = hidden_activation(spec.activation)

    def forward(self, x: torch.Tensor, dropout: MemberDropout | None) -> torch.Tensor:
        return self.dense(x.flatten(2), dropout)

    def dense(self, x: torch.Tensor, dropout: MemberDropout | None) -> torch.Tensor:
        def drop(hidden: torch.Tensor) -> torch.Tensor:
            if dropout is None or not dropout.active:
                return hidden
            return hidden * dropout.masks(hidden.shape[1:])

        p = self.prefix
        if not self.shortcuts:
            for index in range(self.layers):
                x = drop(self.act(self._linear(f"{p}layers.{index}", x)))
            return self._linear(f"{p}head", x)
        features = [x]
        for index in range(self.layers):
            joined = torch.cat(features, dim=2)
            features.append(drop(self.act(self._linear(f"{p}layers.{index}", joined))))
        return self._linear(f"{p}head", torch.cat(features, dim=2))

    def _linear(self, prefix: str, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.params[f"{prefix}.weight"], self.params[f"{prefix}.bias"]
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


class StackedCNN(StackedMLP):
    """jobs.nn.models.CNN, stacked: inputs [N, B, C, H, W] -> logits [N, B, K]. The members'
    channels lie side by side ([B, N*C, H, W]) and each convolution is one grouped conv."""

    def __init__(self, members: Sequence[Mapping[str, torch.Tensor]], spec: JobSpec,
                 device: torch.device, input_shape: tuple[int, ...]) -> None:
        super().__init__(members, spec, device, prefix="dense.")
        self.padding = CNN.padding_for(input_shape)

    def forward(self, x: torch.Tensor, dropout: MemberDropout | None) -> torch.Tensor:
        n, b = x.shape[:2]
        h = x.reshape(n, b, -1, *x.shape[-2:]).transpose(0, 1).reshape(b, -1, *x.shape[-2:])
        h = self.act(F.max_pool2d(self._conv("features.0", h), 2))
        h = self._conv("features.3", h)
        if dropout is not None and dropout.active:  # Dropout2d: one mask per sample and channel
            channels = h.shape[1] // n
            masks = dropout.masks((b, channels)).permute(1, 0, 2).reshape(b, n * channels, 1, 1)
            h = h * masks
        h = self.act(F.max_pool2d(h, 2))
        features = h.reshape(b, n, -1).transpose(0, 1)  # [N, B, C*H*W]: nn.Flatten per member
        return self.dense(features, dropout)

    def _conv(self, prefix: str, h: torch.Tensor) -> torch.Tensor:
        weight, bias = self.params[f"{prefix}.weight"], self.params[f"{prefix}.bias"]
        return F.conv2d(h, weight.reshape(-1, *weight.shape[2:]), bias.reshape(-1),
                        padding=self.padding, groups=self.size)


class ModuleStack(FlatParameters):
    """One network that is not stacked (method=target_space): the module runs as it is, its
    parameters views of row 0 of the flat matrix, and its dropout draws from the global RNG,
    which the engine sets from the member's own stream each epoch."""

    def __init__(self, module: nn.Module, device: torch.device) -> None:
        super().__init__([dict(module.named_parameters())], device)
        self.module = module.to(device)
        for s in self.slots:
            owner_name, _, leaf = s.name.rpartition(".")
            owner = self.module.get_submodule(owner_name) if owner_name else self.module
            setattr(owner, leaf, nn.Parameter(self.params[s.name][0].detach()))
        self.params = dict(zip([s.name for s in self.slots], self._module_parameters(),
                               strict=True))
        for s in self.slots:  # its gradients land in row 0 of the flat gradient matrix too
            self.params[s.name].grad = self.grad[0, s.offset:s.offset + s.size].view(s.shape)

    def _module_parameters(self) -> list[nn.Parameter]:
        named = dict(self.module.named_parameters())
        return [named[s.name] for s in self.slots]

    def weight_abs_sums(self) -> torch.Tensor:
        sums = [self.params[s.name].abs().sum() for s in self.slots if s.name.endswith("weight")]
        return torch.stack(sums).sum().reshape(1) if sums else self.flat.new_zeros(1)

    def forward(self, x: torch.Tensor, dropout: MemberDropout | None) -> torch.Tensor:
        self.module.train(dropout is not None)
        return self.module(x[0]).unsqueeze(0)

    def residual(self) -> float | None:
        measure = getattr(self.module, "realisation_residual", None)
        return float(measure()) if callable(measure) else None


def stack_networks(specs: Sequence[JobSpec], members: Sequence[Mapping[str, torch.Tensor]],
                   input_shape: tuple[int, ...], device: torch.device,
                   module: nn.Module | None = None) -> FlatParameters:
    """The stacked network of members that share their network's shape (see jobs.engine.packing).

    `members` are the members' parameters by name; `module` the one member's own module when it
    cannot be stacked (method=target_space)."""
    spec = specs[0]
    if spec.method == "target_space":
        if module is None or len(specs) != 1:
            raise ValueError("method=target_space trains as a stack of one, from its module")
        for name, parameter in module.named_parameters():
            with torch.no_grad():
                parameter.copy_(members[0][name])
        return ModuleStack(module, device)
    if spec.model == "cnn":
        shape = input_shape if len(input_shape) == 3 else (1, *input_shape)
        return StackedCNN(members, spec, device, shape)
    return StackedMLP(members, spec, device)
