"""Every registered strategy, trained in a stack with mates of other strategies and seeds, gives
the metrics it gives alone; and every strategy whose targets differ from one-hot trains
differently from one-hot. A strategy added to the registry without an entry here fails."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from jobs.engine.train import run_job, run_stack
from jobs.request import StackRequest
from jobs.spec import JobSpec
from jobs.strategies import STRATEGIES
from tests import rundir_view

K = 10  # digits
SMOOTH_ROWS = [[0.82 if i == j else 0.02 for j in range(K)] for i in range(K)]

# Each strategy with parameters that make its targets differ from one-hot within 4 epochs.
CATALOGUE = {
    "onehot": "onehot",
    "fixed": "fixed(c=0.9, nc=0.1, normalize=true)",
    "lecun": "lecun(normalize=true)",
    "label_smoothing": "label_smoothing(eps=0.2)",
    "matrix": f"matrix(rows={SMOOTH_ROWS})",
    "two_stage": "two_stage(eps=0.2, switch_epoch=3)",
    "ols": "ols(alpha=0.5)",
    "pskd": "pskd(alpha_T=0.8)",
    "sat": "sat(m=0.9, start_epoch=1)",
    "bootstrap_soft": "bootstrap_soft(beta=0.8)",
    "bootstrap_hard": "bootstrap_hard(beta=0.8)",
    "tvo": "tvo(init=average_nudge, adapt=sigma, normalize=true)",
}
BASE = {"dataset": "digits", "hidden": [16], "activation": "relu", "output": "softmax",
        "loss": "ce", "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "batch_size": 64,
        "epochs": 4, "device": "cpu"}
COMPARED = ("train_loss", "train_acc", "test_loss", "test_acc", "target_class",
            "target_nonclass", "target_matrix")


def spec(name: str, seed: int) -> JobSpec:
    return JobSpec.from_dict({**BASE, "strategy": CATALOGUE[name], "seed": seed})


def rows(grid_dir: Path, job: JobSpec) -> list[dict[str, Any]]:
    return rundir_view.rows(grid_dir, job.job_id)


def close(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_the_catalogue_covers_every_registered_strategy():
    assert set(CATALOGUE) == set(STRATEGIES)


@pytest.fixture(scope="module")
def alone(tmp_path_factory) -> Path:
    """Every strategy trained alone (a stack of one), seed 0."""
    root = tmp_path_factory.mktemp("alone")
    for name in CATALOGUE:
        assert run_job(spec(name, 0), root / name).state == "done"
    return root


def test_a_member_among_mates_of_other_strategies_and_seeds_trains_as_alone(alone, tmp_path):
    names = list(CATALOGUE)
    for start in range(0, len(names), 4):  # stacks of 4: each member seed 0, its mates others
        chosen = names[start:start + 4]
        mates = [n for n in reversed(names) if n not in chosen][:4 - len(chosen)]
        jobs = [spec(n, 0) for n in chosen] + [spec(n, 100 + i) for i, n in enumerate(mates)]
        ends = run_stack(StackRequest(str(tmp_path / str(start)), tuple(jobs)))
        assert [end.state for end in ends] == ["done"] * 4
        for i, name in enumerate(chosen):
            stacked, single = rows(tmp_path / str(start), jobs[i]), rows(alone / name, jobs[i])
            assert [r["epoch"] for r in stacked] == [r["epoch"] for r in single] == [0, 1, 2, 3, 4]
            for a, b in zip(stacked, single, strict=True):
                for key in COMPARED:
                    assert close(a[key], b[key]), (name, a["epoch"], key, a[key], b[key])


@pytest.mark.parametrize("name", [n for n in CATALOGUE if n != "onehot"])
def test_every_strategy_trains_differently_from_one_hot(alone, name):
    ours = [r["train_loss"] for r in rows(alone / name, spec(name, 0))][1:]
    onehot = [r["train_loss"] for r in rows(alone / "onehot", spec("onehot", 0))][1:]
    assert not all(close(a, b) for a, b in zip(ours, onehot, strict=True)), name
