"""Activation functions of the networks: hidden activations, and the output activation that
targets are compared with."""

from __future__ import annotations

import torch
from torch import nn

LECUN_TANH_SCALE = 1.7159  # LeCun 1998: f(x) = 1.7159 tanh(2x/3) has f(+-1) = +-1


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


def activate(logits: torch.Tensor, output: str) -> torch.Tensor:
    """The output layer's activation: what the targets are compared with."""
    if output == "softmax":
        return torch.softmax(logits, dim=-1)
    if output == "sigmoid":
        return torch.sigmoid(logits)
    if output == "tanh":
        return torch.tanh(logits)
    if output == "lecun_tanh":
        return LECUN_TANH_SCALE * torch.tanh(logits * (2.0 / 3.0))
    return logits
