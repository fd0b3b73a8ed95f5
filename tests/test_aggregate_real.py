"""tvo aggregate on real training runs: 2 strategies x 3 seeds on digits, trained by run_job."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from jobs.engine.train import run_job
from jobs.spec import JobSpec
from runner.cli.app import app

STRATEGIES = ("onehot", "fixed(c=0.9, nc=0.1)")


@pytest.mark.slow
def test_aggregate_real_runs(tmp_path):
    for strategy in STRATEGIES:
        for seed in range(3):
            spec = JobSpec.from_dict({"dataset": "digits", "hidden": [16], "epochs": 3,
                                      "loss": "mse", "output": "sigmoid", "lr": 0.5,
                                      "strategy": strategy, "seed": seed, "device": "cpu"})
            result = run_job(spec, tmp_path, grid="real", threads=1)
            assert result.state == "done", result.error
    outcome = CliRunner().invoke(app, ["aggregate", str(tmp_path), "--format", "json"])
    assert outcome.exit_code == 0, outcome.output
    content = json.loads(outcome.stdout)
    assert content["grid"] == "real" and content["group_by"] == ["strategy"]
    assert content["jobs"] == {"done": 6}
    groups = {g["strategy"]: g for g in content["groups"]}
    assert set(groups) == {"onehot", "fixed(c=0.9, nc=0.1, normalize=false)"}
    for group in groups.values():
        assert group["seeds"] == 3
        assert 0.1 < group["final_test_acc_mean"] <= 1
        assert group["final_test_acc_ci_low"] <= group["final_test_acc_mean"]
        assert 0 <= group["test_acc_at_best_val_mean"] <= 1
        assert 0 <= group["ece_mean"] <= 1 and group["test_nll_mean"] > 0
    fixed = groups["fixed(c=0.9, nc=0.1, normalize=false)"]
    assert fixed["baseline"] == "strategy=onehot" and 0 <= fixed["p_value"] <= 1
    assert not math.isnan(fixed["diff_ci_low"])
    summary = tmp_path / "summary"
    for name in ("report.md", "summary.csv", "summary.parquet", "metrics.parquet",
                 "test_acc.png", "train_loss.png", "final_acc.png", "calibration.png"):
        assert (summary / name).exists(), name
    assert not (summary / "targets.png").exists()  # onehot and fixed never move their targets
