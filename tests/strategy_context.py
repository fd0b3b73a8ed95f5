"""A StrategyContext for unit tests: a fixed small data set and a fixed network, no training."""

from __future__ import annotations

from collections.abc import Callable

import torch

from jobs.strategies import Pairing, StrategyContext, TargetStrategy, make_strategy


def context(num_classes: int = 3, *, labels: list[int] | None = None, output: str = "softmax",
            loss: str = "ce", epochs: int = 4,
            forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
            x: torch.Tensor | None = None, seed: int = 0) -> StrategyContext:
    y = torch.tensor(labels if labels is not None else list(range(num_classes)) * 2)
    if x is None:
        x = torch.arange(len(y), dtype=torch.float32)[:, None]
    if forward is None:
        def forward(inputs: torch.Tensor) -> torch.Tensor:
            return torch.full((inputs.shape[0], num_classes), 1 / num_classes)
    return StrategyContext(
        pairing=Pairing(num_classes=num_classes, output=output, loss=loss, epochs=epochs),
        num_train=len(y), device=torch.device("cpu"), x_train=x, y_train=y, forward=forward,
        generator=torch.Generator().manual_seed(seed))


def ready(text: str, ctx: StrategyContext | None = None) -> TargetStrategy:
    """The strategy `text`, checked against the context's pairing and set up."""
    ctx = ctx or context()
    strategy = make_strategy(text)
    strategy.check(ctx.pairing)
    strategy.setup(ctx)
    return strategy
