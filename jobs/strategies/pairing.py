"""Pairing: what a strategy must fit with, known from the settings alone (no torch needed)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pairing:
    """What a strategy must fit with; known before any data is loaded, so checks run up front."""

    num_classes: int
    output: str  # output activation: sigmoid | softmax | tanh | lecun_tanh | linear
    loss: str  # mse | bce | ce
    epochs: int
