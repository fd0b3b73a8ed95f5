"""The output activations' softmax and log-softmax: torch's values and gradients on both paths
(torch's kernel, and the formula used for few classes on the CPU), stable at extreme logits."""

from __future__ import annotations

import pytest
import torch

from jobs.nn.activations import FEW_CLASSES, ROWS_FOR_FORMULA, log_softmax, softmax

SHAPES = [(64, 64, 10),  # a stack's batch of 10 classes: the formula
          (1, 8, 10),  # a few rows: torch's kernel
          (4, ROWS_FOR_FORMULA, FEW_CLASSES),  # a vector's width of classes: torch's kernel
          (2, 300, 3)]


@pytest.mark.parametrize("shape", SHAPES)
def test_log_softmax_and_softmax_equal_torchs_in_value_and_gradient(shape):
    logits = (torch.randn(*shape, generator=torch.Generator().manual_seed(0)) * 5
              ).requires_grad_()
    weights = torch.rand(*shape, generator=torch.Generator().manual_seed(1))
    ours = log_softmax(logits)
    (ours * weights).sum().backward()
    ours_grad, logits.grad = logits.grad.clone(), None
    theirs = torch.log_softmax(logits, dim=-1)
    (theirs * weights).sum().backward()
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert torch.allclose(ours_grad, logits.grad, atol=1e-5)
    assert torch.allclose(softmax(logits), torch.softmax(logits, dim=-1), atol=1e-6)


def test_extreme_logits_stay_finite():
    logits = torch.full((64, 64, 10), -1000.0)
    logits[..., 3] = 1000.0
    assert torch.isfinite(log_softmax(logits)).all()
    assert softmax(logits)[..., 3].eq(1).all()
    assert log_softmax(logits)[..., 0].eq(-2000).all()
