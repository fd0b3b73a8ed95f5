"""The one engine: a stack's members end as each ends alone (a stack of one), to float tolerance."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import torch

from jobs.engine.packing import auto_pack_size, pack_key, pack_refusal, plan_packs
from jobs.engine.train import JobResult, run_job, run_stack
from jobs.entry import RunSettings, StackRequest, run_unit
from jobs.rundir import results
from jobs.spec import JobSpec
from jobs.strategies import STRATEGIES, StackContext, StrategyStack, StrategyValues, TargetStrategy
from jobs.strategies.catalogue import DECLARATIONS, Declaration
from jobs.strategies.params import number, param
from tests import rundir_view

TINY = {"hidden": [16], "epochs": 3, "batch_size": 64, "device": "cpu"}
TIMINGS = ("epoch_seconds", "samples_per_second")


class Interrupt(BaseException):
    """Stands for the process being stopped mid-pack (not an error a job records)."""


def specs(*variants: dict[str, Any], **shared: Any) -> list[JobSpec]:
    return [JobSpec.from_dict({**TINY, **shared, **variant}) for variant in variants]


def stack(specs: Sequence[JobSpec], root: Path, checkpoint_seconds: float = 10.0) -> StackRequest:
    return StackRequest(str(root), tuple(specs), RunSettings("g",
                                                             checkpoint_seconds=checkpoint_seconds))


def train_stack(specs: Sequence[JobSpec], root: Path, progress: Any = None,
                **settings: Any) -> list[JobResult]:
    return run_stack(stack(specs, root, **settings), progress=progress)


def metric_rows(grid_dir: Path, job_id: str) -> list[dict[str, Any]]:
    record = rundir_view.record(grid_dir, job_id)
    assert pq.read_schema(record.committed).equals(results.metrics_schema())
    return rundir_view.rows(grid_dir, job_id, timing=False)


def close(a: Any, b: Any) -> bool:
    """Equal, with floats to float tolerance (both NaN counts as equal)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-4,
                                                                    abs_tol=1e-6)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[key], b[key]) for key in a)
    return a == b


def assert_same_run(packed: Path, alone: Path, job_id: str) -> None:
    """The job's record and metrics are the same in both grid dirs (timings, attempts aside)."""
    record_packed = rundir_view.record(packed, job_id)
    record_alone = rundir_view.record(alone, job_id)
    for key in ("job_id", "state", "error", "epochs_done"):
        assert getattr(record_packed, key) == getattr(record_alone, key), key
    assert close(record_packed.test_acc, record_alone.test_acc)
    if record_alone.state == "failed":
        return
    rows_packed, rows_alone = metric_rows(packed, job_id), metric_rows(alone, job_id)
    assert [r["epoch"] for r in rows_packed] == [r["epoch"] for r in rows_alone]
    for row_packed, row_alone in zip(rows_packed, rows_alone, strict=True):
        for key, value in row_alone.items():
            assert close(row_packed[key], value), (key, row_alone["epoch"], row_packed[key], value)


def train_both(tmp_path: Path, jobs: Sequence[JobSpec],
               **options: Any) -> list[JobResult]:
    """Train `jobs` as one stack and each alone; assert every member ended as it did alone."""
    packed = train_stack(jobs, tmp_path / "packed", **options)
    for spec, result in zip(jobs, packed, strict=True):
        alone = run_job(spec, tmp_path / "alone" / spec.job_id, grid="g", **options)
        assert (result.state, result.error, result.epochs_done) == \
            (alone.state, alone.error, alone.epochs_done)
        assert_same_run(tmp_path / "packed", tmp_path / "alone" / spec.job_id, spec.job_id)
    return packed


# ---------------------------------------------------------------------------------------------
# A member of a stack equals the job alone


@pytest.mark.parametrize("jobs", [
    specs({"seed": 0}, {"seed": 1, "lr": 0.05}, {"seed": 2, "lr": 0.3},
          {"seed": 3, "strategy": "fixed(c=0.9, nc=0.1, normalize=true)"},
          {"seed": 4, "strategy": "fixed(c=0.8, nc=0.2, normalize=true)", "init": "he"}),
    specs({"seed": 0}, {"seed": 1, "momentum": 0.9}, {"seed": 2, "momentum": 0.5, "nesterov": True},
          {"seed": 3, "weight_decay": 1e-3, "momentum": 0.9, "nesterov": True},
          {"seed": 4, "l1": 1e-3}, {"seed": 5, "weight_decay": 1e-2}),
    specs({"seed": 0}, {"seed": 1, "lr": 0.003, "weight_decay": 1e-3}, {"seed": 2, "l1": 1e-4},
          optimizer="adam", lr=0.01),
    specs({"seed": 0}, {"seed": 1, "weight_decay": 0.1}, {"seed": 2, "lr": 0.003},
          optimizer="adamw", lr=0.01),
    specs({"seed": 0}, {"seed": 1, "rho": 0.5}, {"seed": 2, "momentum": 0.9},
          {"seed": 3, "weight_decay": 1e-3}, optimizer="rmsprop", lr=0.003),
    specs({"schedule": "step", "step_size": 1, "gamma": 0.5},
          {"schedule": "exponential", "gamma": 0.7, "seed": 1},
          {"schedule": "plateau", "patience": 0, "gamma": 0.1, "seed": 2},
          {"schedule": "cosine", "min_lr": 0.01, "seed": 3}, {"seed": 4}, lr=0.2),
    specs({"strategy": "onehot"}, {"strategy": "fixed(c=0.9, nc=0.1)", "seed": 1},
          {"strategy": "fixed(c=0.8, nc=0.2)", "seed": 2, "lr": 0.5},
          loss="mse", output="sigmoid", activation="sigmoid", lr=1.0),
    specs({"seed": 0}, {"seed": 1, "strategy": "fixed(c=0.9, nc=0.1)"}, loss="bce",
          output="sigmoid", activation="tanh", init="xavier"),
    specs({"seed": 0, "dropout": 0.2}, {"seed": 1}, {"seed": 2, "dropout": 0.5},
          hidden=[16, 8], shortcuts=True, activation="leaky_relu"),
    specs({"seed": 0, "epochs": 1}, {"seed": 1, "epochs": 4, "eval_every": 3},
          {"seed": 2, "epochs": 2, "eval_every": 2}, {"seed": 3, "epochs": 0}),
    specs({"seed": 0, "dropout": 0.3}, {"seed": 1, "strategy": "label_smoothing(eps=0.2)"},
          {"seed": 2, "lr": 0.03, "momentum": 0.9, "l1": 1e-4},
          {"seed": 3, "strategy": "ols", "weight_decay": 1e-3}, model="cnn", dataset="digits",
          epochs=2, hidden=[8]),
], ids=["seeds-lrs-strategies-init", "sgd-momentum-nesterov-decay-l1", "adam", "adamw",
        "rmsprop", "schedules", "mse-sigmoid-fixed", "bce", "dropout-shortcuts-deep",
        "epochs-eval_every", "cnn-dropout-l1-l2"])
def test_a_packed_job_ends_as_it_would_alone(tmp_path, jobs):
    assert len({pack_key(spec) for spec in jobs}) == 1
    results_ = train_both(tmp_path, jobs, checkpoint_seconds=0)
    assert all(result.state == "done" for result in results_)
    assert all(rundir_view.record(tmp_path / "packed", spec.job_id).attempts == 1
               for spec in jobs)
    log = rundir_view.log(tmp_path / "packed", jobs[0].job_id)
    assert f"] {len(jobs)} jobs on " in log
    epochs = max(spec.epochs for spec in jobs)
    assert f"epoch {epochs}/{epochs}" in log


def test_a_member_that_diverges_leaves_the_others_untouched(tmp_path):
    jobs = specs({"seed": 0}, {"seed": 1, "lr": 1e4}, {"seed": 2, "lr": 0.05},
                 output="linear", loss="mse", epochs=3)
    packed = train_both(tmp_path, jobs)
    assert [r.state for r in packed] == ["done", "diverged", "done"]
    assert packed[1].error == "training loss became nan in epoch 1"
    assert [row["epoch"] for row in metric_rows(tmp_path / "packed", jobs[1].job_id)] == [0, 1]
    assert "diverged: training loss became nan in epoch 1" in \
        rundir_view.log(tmp_path / "packed", jobs[1].job_id)


# ---------------------------------------------------------------------------------------------
# Strategies with state: each member's own object, called with its own slice


class DriftingStack(StrategyStack):
    """Learns: targets drift towards the mean outputs per class it observes (at a per-member
    rate), each sample's weight follows its index, and it looks at the untrained network."""

    def __init__(self, members: Sequence[TargetStrategy], ctx: StackContext) -> None:
        super().__init__(members, ctx)
        probe = ctx.forward(ctx.x_train[:32]).mean(dim=1)  # [G, K]
        self.table = self.eye * 0.8 + 0.1 * probe.unsqueeze(1)
        k = self.num_classes
        self.sums, self.counts = torch.zeros(self.size, k, k), torch.zeros(self.size, k)
        self.rate = self.column("rate")

    def sample_weights(self, labels, indices, epoch):
        return 1.0 + (indices % 3).float()

    def observe(self, outputs, labels, indices, epoch):
        for g in range(self.size):  # a test strategy may loop: only speed suffers
            self.sums[g].index_add_(0, labels[g], outputs[g])
            self.counts[g] += torch.bincount(labels[g], minlength=self.num_classes).float()

    def end_epoch(self, epoch):
        means = self.sums / self.counts.clamp_min(1).unsqueeze(2)
        self.table = (1 - self.rate) * self.table + self.rate * means
        self.sums.zero_()
        self.counts.zero_()

    def templates(self):
        return self.table

    def all_values(self):
        return [StrategyValues(target_matrix=table) for table in self.table.tolist()]

    def state_dict(self, g):
        return {"table": self.table[g].clone()}

    def load_state_dict(self, g, state):
        self.table[g] = state["table"]


class Drifting(TargetStrategy):
    declaration = Declaration("drifting_test", "test only", "tests/test_engine.py", params=(
        param("rate", 0.5, "how far targets move per epoch", number(low=0, high=1)),))
    name, params = declaration.name, declaration.params
    observes = True
    weighted = True
    decision = "template"
    Stack = DriftingStack


class ExplodingStack(StrategyStack):
    def templates(self):
        return self.eye.expand(self.size, -1, -1)

    def end_epoch(self, epoch):
        if epoch == 2:
            raise ValueError("targets exploded in epoch 2")


class Exploding(TargetStrategy):
    """A test strategy that fails in epoch 2."""

    declaration = Declaration("exploding_test", "test only", "tests/test_engine.py")
    name = declaration.name
    Stack = ExplodingStack


@pytest.fixture
def test_strategies(monkeypatch) -> Iterator[None]:
    for cls in (Drifting, Exploding):  # declared, and trained by the class, for this test only
        monkeypatch.setitem(DECLARATIONS, cls.name, cls.declaration)
        monkeypatch.setitem(STRATEGIES, cls.name, cls)
    yield


def test_stateful_strategies_get_their_own_members_slices(tmp_path, test_strategies):
    jobs = specs({"strategy": "drifting_test(rate=0.5)"},
                 {"strategy": "drifting_test(rate=0.2)", "seed": 1},
                 {"strategy": "onehot", "seed": 2}, {"strategy": "fixed(c=0.9, nc=0.1)", "seed": 3},
                 loss="mse", output="sigmoid", lr=0.5)
    train_both(tmp_path, jobs)
    matrices = [row["target_matrix"] for row in metric_rows(tmp_path / "packed", jobs[0].job_id)]
    assert len({json.dumps(m) for m in matrices}) == len(matrices)  # changed every epoch


def test_a_member_that_fails_is_recorded_and_the_others_go_on(tmp_path, test_strategies):
    jobs = specs({"seed": 0}, {"seed": 1, "strategy": "exploding_test"}, {"seed": 2})
    packed = train_both(tmp_path, jobs, checkpoint_seconds=0)
    assert [r.state for r in packed] == ["done", "failed", "done"]
    assert packed[1].error == "ValueError: targets exploded in epoch 2"
    assert "Traceback" in rundir_view.log(tmp_path / "packed", jobs[1].job_id)
    assert rundir_view.rows(tmp_path / "packed", jobs[1].job_id) == []


def test_a_stack_without_its_data_records_the_error_in_every_member(tmp_path):
    jobs = specs({"seed": 0}, {"seed": 1}, dataset="mnist", data_root=str(tmp_path / "none"))
    packed = train_both(tmp_path, jobs)  # each records the error as it does alone
    assert [r.state for r in packed] == ["failed", "failed"]
    assert packed[0].error.startswith("DataError: dataset 'mnist': missing ")
    assert rundir_view.record(tmp_path / "packed", jobs[0].job_id).attempts == 1


def test_when_the_stack_raises_its_members_go_on_alone(tmp_path, test_strategies):
    jobs = specs({"seed": 0}, {"seed": 1, "strategy": "exploding_test"}, {"seed": 2})
    packed = train_stack(jobs, tmp_path, checkpoint_seconds=0)
    assert [r.state for r in packed] == ["done", "failed", "done"]
    log = rundir_view.log(tmp_path, jobs[0].job_id)
    assert "the stack failed (ValueError: targets exploded in epoch 2); its 3 unfinished jobs " \
           "go on alone" in log
    assert "resumed after epoch 1" in log  # from the checkpoint the stack wrote
    assert rundir_view.record(tmp_path, jobs[0].job_id).attempts == 2  # the stack, then alone


# ---------------------------------------------------------------------------------------------
# Resume


def stop_at(job_id: str, epoch: int) -> Callable[[str, int, int, dict], None]:
    def progress(reporting: str, at: int, epochs: int, row: dict) -> None:
        if reporting == job_id and at == epoch:
            raise Interrupt

    return progress


def test_an_interrupted_pack_resumes_to_the_same_results(tmp_path):
    jobs = specs({"seed": 0, "dropout": 0.3}, {"seed": 1, "lr": 0.03, "weight_decay": 1e-3},
                 {"seed": 2, "momentum": 0.9, "schedule": "step", "step_size": 1}, epochs=4)
    # in epoch 3, before the stack's checkpoint of that epoch (one write for all its members)
    with pytest.raises(Interrupt):
        train_stack(jobs, tmp_path / "packed", progress=stop_at(jobs[1].job_id, 3),
                    checkpoint_seconds=0)
    for spec in jobs:  # its stack started in this process, which still runs; nothing committed
        assert rundir_view.state(tmp_path / "packed", spec.job_id) == "running"
        assert rundir_view.rows(tmp_path / "packed", spec.job_id) == []
    packed = train_both(tmp_path, jobs, checkpoint_seconds=0)  # with each alone, uninterrupted
    assert all(r.state == "done" for r in packed)
    for spec, resumed in zip(jobs, (2, 2, 2), strict=True):
        assert rundir_view.record(tmp_path / "packed", spec.job_id).attempts == 2
        assert f"resumed after epoch {resumed}" in rundir_view.log(tmp_path / "packed",
                                                                   spec.job_id)


def interrupt_at(stop: int) -> Callable[[int, int, dict], None]:
    def progress(epoch: int, epochs: int, row: dict) -> None:
        if epoch == stop:
            raise Interrupt

    return progress


def same_rows(packed: Path, alone: Path, job_id: str) -> bool:
    rows_packed, rows_alone = metric_rows(packed, job_id), metric_rows(alone, job_id)
    return len(rows_packed) == len(rows_alone) and all(
        close(a[key], b[key]) for a, b in zip(rows_packed, rows_alone, strict=True) for key in b)


def test_members_at_different_epochs_catch_up_from_checkpoints_written_alone(tmp_path):
    ahead, behind, fresh = specs({"seed": 0}, {"seed": 1, "lr": 0.05}, {"seed": 2}, epochs=4)
    root = tmp_path / "packed"
    with pytest.raises(Interrupt):  # checkpoint after epoch 2
        run_job(ahead, root, grid="g", progress=interrupt_at(3), checkpoint_seconds=0)
    with pytest.raises(Interrupt):  # checkpoint after epoch 1
        run_job(behind, root, grid="g", progress=interrupt_at(2), checkpoint_seconds=0)
    packed = train_stack([ahead, behind, fresh], root)
    assert all(r.state == "done" for r in packed)
    assert "resumed after epoch 2" in rundir_view.log(root, ahead.job_id)
    assert "resumed after epoch 1" in rundir_view.log(root, behind.job_id)
    for spec in (ahead, behind, fresh):
        run_job(spec, tmp_path / "alone", grid="g")
        assert same_rows(root, tmp_path / "alone", spec.job_id)


def test_a_packed_checkpoint_resumes_alone(tmp_path):
    jobs = specs({"seed": 0, "optimizer": "rmsprop", "lr": 0.003, "momentum": 0.5},
                 {"seed": 1, "optimizer": "rmsprop", "lr": 0.01}, epochs=3)
    with pytest.raises(Interrupt):
        train_stack(jobs, tmp_path / "packed", progress=stop_at(jobs[0].job_id, 2),
                    checkpoint_seconds=0)
    for spec in jobs:
        assert run_job(spec, tmp_path / "packed", grid="g").state == "done"
        run_job(spec, tmp_path / "alone", grid="g")
        assert same_rows(tmp_path / "packed", tmp_path / "alone", spec.job_id)


def test_a_finished_member_is_not_trained_again(tmp_path):
    done, todo_a, todo_b = specs({"seed": 0}, {"seed": 1}, {"seed": 2})
    first = run_job(done, tmp_path / "packed", grid="g")
    metrics_file = Path(rundir_view.record(tmp_path / "packed", done.job_id).committed)
    before = metrics_file.stat().st_mtime_ns
    packed = train_stack([done, todo_a, todo_b], tmp_path / "packed")
    assert packed[0] == first
    assert metrics_file.stat().st_mtime_ns == before
    assert rundir_view.record(tmp_path / "packed", done.job_id).attempts == 1
    log = rundir_view.log(tmp_path / "packed", todo_a.job_id)
    assert "] 2 jobs on " in log
    assert [r.state for r in packed[1:]] == ["done", "done"]


def test_with_the_default_interval_a_small_stack_writes_no_checkpoint(tmp_path):
    jobs = specs({"seed": 0}, {"seed": 1})
    train_stack(jobs, tmp_path)
    assert not (tmp_path / "checkpoints").exists()
    for spec in jobs:
        assert rundir_view.record(tmp_path, spec.job_id).finished


# ---------------------------------------------------------------------------------------------
# Which jobs pack together


def test_pack_key_is_shared_by_jobs_that_differ_only_per_member():
    base = JobSpec.from_dict(TINY)
    per_member = [base.replace(seed=3), base.replace(lr=0.5, momentum=0.9, nesterov=True),
                  base.replace(strategy="fixed(c=0.9, nc=0.1, normalize=true)"),
                  base.replace(init="he", dropout=0.2, weight_decay=1e-3, l1=1e-4),
                  base.replace(strategy="tvo(init=uniform, adapt=eps_min)"),
                  base.replace(schedule="cosine", epochs=7, eval_every=2)]
    assert {pack_key(spec) for spec in per_member} == {pack_key(base)}
    shared = [base.replace(hidden=[32]), base.replace(batch_size=32),
              base.replace(optimizer="adam"), base.replace(loss="mse", output="sigmoid"),
              base.replace(activation="tanh"), base.replace(shortcuts=True),
              base.replace(dataset="moons"), base.replace(normalize="minmax"),
              base.replace(device="auto"), base.replace(model="cnn", dataset="digits")]
    keys = {pack_key(spec) for spec in shared}
    assert len(keys) == len(shared) and pack_key(base) not in keys


def test_only_target_space_jobs_train_alone_and_say_why():
    for settings in ({"model": "cnn", "dataset": "digits"}, {"dropout": 0.1, "device": "cuda"}):
        assert pack_refusal(JobSpec.from_dict({**TINY, **settings})) is None
    spec = JobSpec.from_dict({**TINY, "method": "target_space"})
    assert pack_refusal(spec) == ("method=target_space solves for its weights on a fixed batch "
                                  "of its own; it trains as a stack of one")
    assert pack_key(spec) is None


def test_auto_spreads_the_jobs_over_the_slots_up_to_a_cap():
    assert auto_pack_size(24, 2) == 12
    assert auto_pack_size(1000, 2) == 63  # 8 rounds of 2 stacks; 64 would leave one of 40
    assert auto_pack_size(130, 2) == 33  # not 64, 64 and 2
    assert auto_pack_size(128, 2) == 64
    assert auto_pack_size(3, 8) == 1
    assert auto_pack_size(0, 2) == 1


def test_plan_packs_groups_compatible_jobs_in_order_and_in_even_sizes():
    base = JobSpec.from_dict(TINY)
    wide = [base.replace(hidden=[32], seed=s) for s in range(3)]
    narrow = [base.replace(seed=s) for s in range(5)]
    cnn = base.replace(model="cnn", dataset="digits")
    jobs = [narrow[0], wide[0], cnn, *narrow[1:], *wide[1:]]
    assert plan_packs(jobs, 3) == [narrow[:3], wide, [cnn], narrow[3:]]
    assert plan_packs(jobs, 16) == [narrow, wide, [cnn]]
    assert plan_packs(jobs, 1) == [[job] for job in jobs]
    assert [len(p) for p in plan_packs([base.replace(seed=s) for s in range(20)], 16)] == [10, 10]
    with pytest.raises(ValueError, match=r"max_size must be >= 1 \(got 0\)"):
        plan_packs(jobs, 0)


def test_run_unit_stacks_compatible_jobs_and_the_others_apart(tmp_path):
    jobs = specs({"seed": 0}, {"seed": 1}, {"method": "target_space", "seed": 2}, epochs=1)
    outcome = run_unit(stack(jobs, tmp_path))
    assert [r.state for r in outcome] == ["done", "done", "done"]
    assert [r.job_id for r in outcome] == [spec.job_id for spec in jobs]
    stacks = [rundir_view.record(tmp_path, spec.job_id).stack for spec in jobs]
    assert stacks[0] == stacks[1] != stacks[2]
    single = run_unit(stack(specs({"seed": 5}, epochs=1), tmp_path))
    assert single[0].state == "done"
