"""Every member's optimiser (torch's SGD, RMSprop, Adam or AdamW rule) as one update of the
flat [N, P] parameter matrix.

Each member keeps its own hyperparameters (lr, momentum, nesterov, weight decay, rho) as a
[N, 1] column that broadcasts over its row, and its own step count. The update rules are
torch.optim's single-tensor formulas written once for the whole matrix, operation for operation
in torch's order, so a member's update equals what torch computes for it to float rounding, with
no torch optimiser object built per job. A member's state (`member_state`, `load_member`) is its
step count and its buffers by parameter name, as the checkpoint keeps them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from jobs.engine.stack_model import FlatParameters
from jobs.spec import JobSpec

ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam/AdamW defaults, which jobs.optim uses
EPS = 1e-8  # torch's default for Adam, AdamW and RMSprop

BUFFERS = {  # state tensors per parameter, by optimiser, as torch names them
    "sgd": ("momentum_buffer",),
    "rmsprop": ("square_avg", "momentum_buffer"),
    "adam": ("exp_avg", "exp_avg_sq"),
    "adamw": ("exp_avg", "exp_avg_sq"),
}


class StackedOptimizer:
    """One optimiser step for every member of a stack, each with its own settings."""

    def __init__(self, specs: Sequence[JobSpec], net: FlatParameters,
                 device: torch.device) -> None:
        kinds = {spec.optimizer for spec in specs}
        if len(kinds) != 1:
            raise ValueError(f"a stack needs one optimiser, got {sorted(kinds)}")
        self.kind = kinds.pop()
        self.net = net
        self.device = device
        width = net.width

        def column(values: Sequence[float], dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.tensor(list(values), dtype=dtype, device=device).unsqueeze(1)

        self.momentum_values = [spec.momentum for spec in specs]
        self.weight_decay64 = column([spec.weight_decay for spec in specs], torch.float64)
        self.weight_decay = self.weight_decay64.float()
        self.momentum = column(self.momentum_values)
        self.nesterov = column([spec.nesterov for spec in specs], torch.bool)
        self.rho = column([spec.rho for spec in specs])
        self.one_minus_rho = column([1 - spec.rho for spec in specs])
        self.any_weight_decay = any(spec.weight_decay != 0 for spec in specs)
        self.any_momentum = any(value != 0 for value in self.momentum_values)
        self.any_nesterov = any(spec.nesterov for spec in specs)
        shape = (len(specs), width)
        self.buffers = {name: torch.zeros(shape, device=device) for name in BUFFERS[self.kind]}
        self.steps = torch.zeros(len(specs), 1, dtype=torch.float64, device=device)
        self.set_learning_rates([spec.lr for spec in specs])

    def set_learning_rates(self, rates: Sequence[float]) -> None:
        """Each member's learning rate for the coming steps (its schedule sets it per epoch)."""
        self.lr64 = torch.tensor(list(rates), dtype=torch.float64,
                                 device=self.device).unsqueeze(1)
        self.lr = self.lr64.float()
        self.decay = (1 - self.lr64 * self.weight_decay64).float()  # adamw's decoupled decay

    @torch.no_grad()
    def step(self, param: torch.Tensor, grad: torch.Tensor) -> None:
        """Update the flat [N, P] parameters in place from their flat gradients."""
        self.steps += 1
        if self.kind == "sgd":
            self._sgd(param, grad)
        elif self.kind == "rmsprop":
            self._rmsprop(param, grad)
        else:
            self._adam(param, grad, decoupled=self.kind == "adamw")

    def _sgd(self, param: torch.Tensor, grad: torch.Tensor) -> None:
        if self.any_weight_decay:
            grad = grad + self.weight_decay * param
        if self.any_momentum:
            # a zero buffer times momentum plus the gradient is torch's first-step clone; with
            # momentum 0 the buffer is the gradient itself, as torch uses it
            buffer = self.buffers["momentum_buffer"]
            buffer.mul_(self.momentum).add_(grad)
            if self.any_nesterov:
                grad = torch.where(self.nesterov, grad + self.momentum * buffer, buffer)
            else:
                grad = buffer
        param.sub_(self.lr * grad)

    def _rmsprop(self, param: torch.Tensor, grad: torch.Tensor) -> None:
        if self.any_weight_decay:
            grad = grad + self.weight_decay * param
        square_avg = self.buffers["square_avg"]
        square_avg.mul_(self.rho).add_(self.one_minus_rho * grad * grad)
        avg = square_avg.sqrt().add_(EPS)
        if self.any_momentum:
            buffer = self.buffers["momentum_buffer"]
            buffer.mul_(self.momentum).add_(grad / avg)
            param.sub_(self.lr * buffer)
        else:
            param.sub_(self.lr * grad / avg)

    def _adam(self, param: torch.Tensor, grad: torch.Tensor, *, decoupled: bool) -> None:
        beta1, beta2 = ADAM_BETAS
        if self.any_weight_decay:
            if decoupled:
                param.mul_(self.decay)
            else:
                grad = grad + self.weight_decay * param
        exp_avg, exp_avg_sq = self.buffers["exp_avg"], self.buffers["exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        # bias corrections in float64 as torch computes them in Python, then one rounding
        step_size = (self.lr64 / (1 - beta1 ** self.steps)).float()
        bias_correction2_sqrt = ((1 - beta2 ** self.steps) ** 0.5).float()
        denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(EPS)
        param.sub_(step_size * exp_avg / denom)

    # -- one member's state, as its checkpoint keeps it -----------------------------------------
    def member_state(self, index: int) -> dict[str, object]:
        return {"steps": float(self.steps[index]), "kind": self.kind,
                "buffers": {name: self.net.member_row(index, buffer)
                            for name, buffer in self.buffers.items()}}

    @torch.no_grad()
    def load_member(self, index: int, state: dict[str, object] | None) -> None:
        """Put back what `member_state` returned (None: a member that has not stepped yet)."""
        if state is None:
            return
        if state["kind"] != self.kind:
            raise ValueError(f"the checkpoint holds {state['kind']} state, the job uses "
                             f"optimizer={self.kind}")
        buffers = state["buffers"]
        assert isinstance(buffers, dict)
        for name, buffer in self.buffers.items():
            buffer[index] = self.net.row_of(buffers[name])
        self.steps[index] = float(state["steps"])  # type: ignore[arg-type]
