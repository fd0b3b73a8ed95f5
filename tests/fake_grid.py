"""Grid output dirs with made-up numbers, for tests and benchmarks of `tvo aggregate`.

Everything is written through jobs.rundir (results files per stack, state events, jobs.parquet),
exactly as a grid run leaves it; no test writes Parquet by hand. `write_legacy_run` writes a
job the way tvo did before results by the stack (runs/<job_id>/), which is still read.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jobs.request import stack_id
from jobs.rundir import legacy, results
from jobs.rundir.journal import START, append_event
from jobs.rundir.layout import OutputDir
from jobs.rundir.run_dir import RunDir
from jobs.rundir.states import DONE, FINISHED, PENDING, RUNNING, JobState, Outcome
from jobs.spec import JobSpec

FakeRun = tuple[JobSpec, "list[dict[str, Any]] | None", str, "str | None"]  # state, error

# Settings under which onehot and fixed(c, nc) are both valid (fixed targets do not sum to 1).
BASE = {"dataset": "digits", "hidden": [16], "loss": "mse", "output": "sigmoid", "epochs": 3}
CLASSES = 10
# reliability bins of every fake row: [count, mean confidence, accuracy] per bin, the lowest
# three empty, each overconfident by 0.05 (the fake rows' ECE)
RELIABILITY = [[0.0, 0.0, 0.0]] * 3 + [[10.0 * b, b / 10 + 0.05, b / 10]
                                      for b in range(3, 10)]


def make_spec(**settings: Any) -> JobSpec:
    return JobSpec.from_dict({**BASE, **settings})


def curve_rows(test_acc: Sequence[float | None], *, final: dict[str, float] | None = None,
               targets: Sequence[tuple[float, float]] | None = None,
               val_acc: Sequence[float | None] | None = None) -> list[dict[str, Any]]:
    """One metrics row per epoch (0, 1, ...) with the given test accuracies (and validation
    accuracies, by default the same).

    `final` overrides measurements of the last row (test_nll, ece, reliability, confidence,
    margin, train_loss); `targets` gives (c, nc) per epoch, else every class keeps c=1, nc=0.
    """
    rows = []
    for epoch, acc in enumerate(test_acc):
        c, nc = targets[epoch] if targets is not None else (1.0, 0.0)
        rows.append({
            "epoch": epoch, "learning_rate": 0.1,
            "train_loss": 1.0 / (epoch + 1), "train_acc": acc,
            "test_loss": None if acc is None else 1.0 - acc, "test_acc": acc,
            "val_acc": acc if val_acc is None else val_acc[epoch],
            "test_nll": None if acc is None else 2.0 - acc,
            "confidence": 0.5, "margin": 0.25, "ece": 0.05, "reliability": RELIABILITY,
            "target_class": [c] * CLASSES, "target_nonclass": [nc] * CLASSES,
            "epoch_seconds": 0.01, "samples_per_second": 1000.0,
        })
    rows[-1].update(final or {})
    return rows


def write_run(grid_dir: Path, spec: JobSpec, rows: list[dict[str, Any]] | None, *,
              state: str = DONE, error: str | None = None,
              grid: str = "fake") -> Path:
    """One job as a run leaves it: a results file (done, diverged) or its state recorded
    (failed, cancelled, running); nothing for pending. Returns the grid dir."""
    write_runs(grid_dir, [(spec, rows, state, error)], grid=grid)
    return Path(grid_dir)


def write_runs(grid_dir: Path, runs: Sequence[FakeRun], *, grid: str = "fake",
               stack_size: int = 64) -> None:
    """Jobs as stacks of `stack_size` leave them: one results file per stack."""
    grid_dir = Path(grid_dir)
    for start in range(0, len(runs), stack_size):
        chosen = runs[start:start + stack_size]
        stack = stack_id(spec.job_id for spec, *_ in chosen)
        started = [spec.job_id for spec, _, state, _ in chosen if state != PENDING]
        if started:
            append_event(grid_dir, START, stack=stack, jobs=started, host="", pid=0,
                         pid_start="", log="", epochs=0)
        ended = [(spec, rows or [], Outcome(JobState(state), error, len(rows or []) - 1))
                 for spec, rows, state, error in chosen
                 if state not in (PENDING, RUNNING)]
        if ended:
            table = results.stack_table([(spec, rows) for spec, rows, outcome in ended
                                         if outcome.state in FINISHED], grid)
            commit = results.Commit(stack, time.time(),
                                    {spec.job_id: outcome for spec, _, outcome in ended})
            results.write_stack_results(OutputDir(grid_dir).results_file(stack), table, commit)
        running = [spec.job_id for spec, _, state, _ in chosen if state == RUNNING]
        if running:  # started by this process, which lives: running
            files = RunDir(grid_dir).stack_files(stack + "r", [s for s, *_ in chosen
                                                               if s.job_id in running])
            files.begin("cpu")
            files.close()


def write_legacy_run(grid_dir: Path, spec: JobSpec, rows: list[dict[str, Any]] | None, *,
                     state: str = DONE, error: str | None = None,
                     grid: str = "fake") -> Path:
    """A run dir as tvo wrote it before results by the stack: spec.json, status.json (unless
    pending), metrics.parquet."""
    run_dir = OutputDir(Path(grid_dir)).legacy_runs / spec.job_id
    results.atomic_write_json(run_dir / "spec.json", {"job_id": spec.job_id, "grid": grid,
                                                      "spec": spec.to_dict()})
    if state != PENDING:
        results.atomic_write_json(run_dir / legacy.STATUS_FILE, {
            "job_id": spec.job_id, "state": state, "error": error,
            "log": str(run_dir / legacy.LOG_FILE)})
    if rows is not None:
        results.write_parquet(run_dir / legacy.METRICS_FILE,
                              results.metrics_table(spec, grid, rows))
    return run_dir


def write_jobs(grid_dir: Path, specs: Sequence[JobSpec], grid: str = "fake") -> None:
    results.write_parquet(Path(grid_dir) / "jobs.parquet", results.jobs_table(specs, grid))


# Strategies of the sized grids below, long canonical strings on purpose (labels must cope).
STRATEGIES = ("onehot", "tvo(adapt=sigma)", "fixed(c=0.9, nc=0.1)", "fixed(c=0.8, nc=0.2)",
              "lecun", "label_smoothing(eps=0.1)", "label_smoothing(eps=0.2)", "tvo(adapt=none)",
              "tvo(init=soft, adapt=none)",
              "tvo(init=uniform, adapt=sigma_half, cadence=batch, layout=position)")
MOVES = ("tvo(adapt=sigma)", "tvo(init=uniform, adapt=sigma_half, cadence=batch, "
         "layout=position)")  # strategies whose fake targets move


def many_strategies(count: int) -> tuple[str, ...]:
    """`count` different strategies: those above, then label smoothing at more values of eps."""
    extra = tuple(f"label_smoothing(eps={k / 100:g})" for k in range(21, 21 + count))
    return (STRATEGIES + extra)[:count]


def write_sized_grid(root: Path, *, strategies: int, datasets: Sequence[str] = ("digits",),
                     lrs: Sequence[float] = (0.1,), seeds: int = 2, epochs: int = 5,
                     tanh: bool = False) -> Path:
    """strategies x datasets x lrs groups of `seeds` done jobs with plausible made-up curves;
    `tanh`: every job has a tanh output, so its ECE and NLL are null (not applicable)."""
    specs = []
    runs: list[FakeRun] = []
    for strategy_index, strategy in enumerate(many_strategies(strategies)):
        for dataset in datasets:
            for lr in lrs:
                for seed in range(seeds):
                    settings = {"strategy": strategy, "dataset": dataset, "lr": lr,
                                "seed": seed, "epochs": epochs}
                    if tanh:
                        settings["output"] = "tanh"
                    spec = make_spec(**settings)
                    top = 0.8 + 0.15 * strategy_index / strategies + 0.01 * seed
                    curve = [top * (1 - 0.6 ** epoch) + 0.1 for epoch in range(epochs + 1)]
                    moving = [(0.9 - 0.05 * e, 0.1 + 0.02 * e) for e in range(epochs + 1)]
                    rows = curve_rows([min(acc, 1.0) for acc in curve],
                                      targets=moving if strategy in MOVES else None)
                    if tanh:
                        for row in rows:
                            row.update(ece=None, test_nll=None, reliability=None)
                    runs.append((spec, rows, DONE, None))
                    specs.append(spec)
    write_runs(root, runs)
    write_jobs(root, specs)
    return root


# A comparison grid (`compare:`) of two methods with 4 configurations each and 4 final seeds.
COMPARED_GRID = """\
name: fakecmp
base: {dataset: digits, hidden: [16], loss: mse, output: sigmoid, epochs: 3, seed: 0}
grid: {strategy: [onehot, "fixed(c=0.9, nc=0.1)"]}
compare:
  by: strategy
  tune: {lr: "loguniform(0.1, 1)"}
  budget: 4
  select: val_acc
  final_seeds: [10, 11, 12, 13]
"""


def write_compared_grid(root: Path, tuning: dict[str, list[tuple[float, float, float]]],
                        finals: dict[str, list[float]]) -> Any:
    """A comparison grid's dir as `tvo run` leaves it: grid.yaml, and per method (onehot,
    fixed) the 4 tuning runs with (val_acc, val_loss, test_acc) at their last epoch, in draw
    order, then the final seeds of the configuration the protocol selects from them, with
    the test accuracies of `finals`. Returns the grid (runner.grid.expand.Grid)."""
    from runner.grid.expand import load_grid
    from runner.grid.protocol import select_from, stage_two, tuning_jobs

    root.mkdir(parents=True, exist_ok=True)
    (root / "grid.yaml").write_text(COMPARED_GRID)
    grid = load_grid(str(root / "grid.yaml"))
    scores: dict[str, tuple[float, float]] = {}
    specs = []
    for context, jobs in tuning_jobs(grid.base, grid.sweeps, grid.compare):
        method = str(context["strategy"]).split("(")[0]
        for spec, (val_acc, val_loss, test_acc) in zip(jobs, tuning[method], strict=True):
            write_run(root, spec, curve_rows([0.1, 0.5, test_acc], val_acc=[0.1, 0.5, val_acc],
                                             final={"val_loss": val_loss}), grid="fakecmp")
            scores[spec.job_id] = (val_acc, val_loss)
            specs.append(spec)
    chosen = select_from(grid.base, grid.sweeps, grid.compare,
                         lambda spec: scores.get(spec.job_id, (None, None)))
    for selection in chosen:
        method = str(selection.context["strategy"]).split("(")[0]
        for spec, test_acc in zip(stage_two([selection], grid.compare), finals[method],
                                  strict=True):
            write_run(root, spec, curve_rows([0.1, 0.6, test_acc], val_acc=[0.1, 0.6, 0.9],
                                             final={"val_loss": 0.1}), grid="fakecmp")
            specs.append(spec)
    write_jobs(root, specs, grid="fakecmp")
    return grid
