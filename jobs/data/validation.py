"""The validation split: a stratified, seeded part of the training data held out for choosing
(epochs, configurations); the test set is never used to choose."""

from __future__ import annotations

import torch


def stratified_split(labels: torch.Tensor, fraction: float,
                     seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept, held): sorted positions of the training part and of the validation part.

    Each class gives round(fraction * its count) samples, at least one where it has two or more
    (so every class can be validated) and never all of them, chosen by a permutation seeded with
    `seed`: the same labels, fraction and seed always give the same split.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {fraction}")
    generator = torch.Generator().manual_seed(seed)
    held = []
    for label in torch.unique(labels).tolist():
        positions = (labels == label).nonzero().flatten()
        count = positions.numel()
        take = min(max(round(fraction * count), 1 if count >= 2 else 0), count - 1)
        chosen = torch.randperm(count, generator=generator)[:take]
        held.append(positions[chosen])
    held_positions = torch.cat(held).sort().values
    mask = torch.ones(labels.numel(), dtype=torch.bool)
    mask[held_positions] = False
    return mask.nonzero().flatten(), held_positions
