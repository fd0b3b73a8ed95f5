"""A member's learning rate, epoch by epoch: torch's step, exponential, cosine and plateau rules.

The stacked optimiser takes each member's rate as a number, so a schedule is a small value per
member rather than a torch scheduler bound to a torch optimiser. The rules follow
torch.optim.lr_scheduler (StepLR, ExponentialLR, CosineAnnealingLR in its closed form,
ReduceLROnPlateau with mode=min, threshold 1e-4 relative, cooldown 0, eps 1e-8).
"""

from __future__ import annotations

import math
from typing import Any

from jobs.spec import JobSpec

PLATEAU_THRESHOLD = 1e-4  # torch's default: an improvement is below best * (1 - 1e-4)
PLATEAU_EPS = 1e-8  # torch's default: smaller decays are skipped


class LearningRate:
    """The learning rate of one job for its next epoch; `step(train_loss)` after each epoch."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.epochs_done = 0
        self.lr = spec.lr
        self.best = math.inf  # plateau only
        self.bad_epochs = 0

    def step(self, train_loss: float) -> None:
        self.epochs_done += 1
        spec, t = self.spec, self.epochs_done
        if spec.schedule == "step":
            self.lr = spec.lr * spec.gamma ** (t // spec.step_size)
        elif spec.schedule == "exponential":
            self.lr = spec.lr * spec.gamma ** t
        elif spec.schedule == "cosine":
            cosine = math.cos(math.pi * t / max(spec.epochs, 1))
            self.lr = spec.min_lr + (spec.lr - spec.min_lr) * (1 + cosine) / 2
        elif spec.schedule == "plateau":
            self._plateau(train_loss)

    def _plateau(self, train_loss: float) -> None:
        if train_loss < self.best * (1 - PLATEAU_THRESHOLD):
            self.best, self.bad_epochs = train_loss, 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs > self.spec.patience:
            decayed = max(self.lr * self.spec.gamma, self.spec.min_lr)
            if self.lr - decayed > PLATEAU_EPS:
                self.lr = decayed
            self.bad_epochs = 0

    def state_dict(self) -> dict[str, Any]:
        return {"epochs_done": self.epochs_done, "lr": self.lr, "best": self.best,
                "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epochs_done, self.lr = state["epochs_done"], state["lr"]
        self.best, self.bad_epochs = state["best"], state["bad_epochs"]
