"""Activation functions of the networks: hidden activations, and the output activation that
targets are compared with."""

from __future__ import annotations

import torch
from torch import nn

from jobs.nn.output_ranges import LECUN_TANH_SCALE

# torch's CPU (log_)softmax vectorises along the class dimension only, so with fewer classes
# than one vector holds (16 floats with AVX-512) it runs scalar code per row: 4-6x slower on the
# 10 classes of most grids than the same formula as whole-tensor operations (measured on this
# machine for 4,096 rows: 0.65 ms against 0.15 ms forward; 1.06 against 0.34 ms with backward).
# Below ROWS_FOR_FORMULA rows torch's kernel is as fast or faster, and on a GPU it is the one.
FEW_CLASSES = 16
ROWS_FOR_FORMULA = 256


class LecunTanh(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return LECUN_TANH_SCALE * torch.tanh(x * (2.0 / 3.0))


def hidden_activation(name: str) -> nn.Module:
    return {
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
        "lecun_tanh": LecunTanh,
        "relu": nn.ReLU,
        "leaky_relu": nn.LeakyReLU,
    }[name]()


def _by_formula(logits: torch.Tensor) -> bool:
    classes = logits.shape[-1]
    return (logits.device.type == "cpu" and classes < FEW_CLASSES
            and logits.numel() >= ROWS_FOR_FORMULA * classes)


def log_softmax(logits: torch.Tensor) -> torch.Tensor:
    """log softmax over the last dimension, by whichever of torch's kernel and the formula is
    faster for this shape (see FEW_CLASSES). The formula shifts by the detached row maximum:
    log softmax does not change under a shift, so values and gradients are exact."""
    if not _by_formula(logits):
        return torch.log_softmax(logits, dim=-1)
    shifted = logits - logits.detach().amax(dim=-1, keepdim=True)
    return shifted - shifted.exp().sum(dim=-1, keepdim=True).log()


def softmax(logits: torch.Tensor) -> torch.Tensor:
    """softmax over the last dimension (see log_softmax)."""
    if not _by_formula(logits):
        return torch.softmax(logits, dim=-1)
    exp = (logits - logits.detach().amax(dim=-1, keepdim=True)).exp()
    return exp / exp.sum(dim=-1, keepdim=True)


def activate(logits: torch.Tensor, output: str) -> torch.Tensor:
    """The output layer's activation: what the targets are compared with."""
    if output == "softmax":
        return softmax(logits)
    if output == "sigmoid":
        return torch.sigmoid(logits)
    if output == "tanh":
        return torch.tanh(logits)
    if output == "lecun_tanh":
        return LECUN_TANH_SCALE * torch.tanh(logits * (2.0 / 3.0))
    return logits
