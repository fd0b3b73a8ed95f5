"""Output dirs for the `tvo ui` tests, written through the project's writers (tests.fake_grid):
a comparison grid with both stages finished, made-up scores where validation and test agree."""

from __future__ import annotations

from pathlib import Path

from jobs.rundir import results
from jobs.spec import JobSpec
from runner.grid.expand import load_grid
from runner.grid.protocol import select, stage_one, stage_two
from tests.fake_grid import curve_rows, write_jobs, write_run

COMPARED = """\
name: compared
base: {dataset: digits, hidden: [16], loss: mse, output: sigmoid, epochs: 3, seed: 0}
grid: {strategy: [onehot, lecun]}
compare:
  by: strategy
  tune: {lr: "loguniform(0.05, 5)"}
  budget: 4
  select: val_acc
  final_seeds: [10, 11, 12]
"""


def _score(spec: JobSpec) -> float:
    """lecun 5 points above one-hot (on average over the final seeds 10-12), better near
    lr = 0.5, with noise by seed that differs between the methods."""
    lecun = spec.strategy_name == "lecun"
    noise = 0.004 * ((spec.seed * (2 if lecun else 1)) % 3)
    return 0.85 + (0.05 if lecun else 0.0) - 0.02 * abs(spec.lr - 0.5) + noise


def write_compared_grid(root: Path) -> Path:
    """root/compared: grid.yaml and jobs.parquet as `tvo run` leaves them, every job done."""
    source = root / "compared.yaml"
    source.write_text(COMPARED)
    grid = load_grid(str(source))
    grid_dir = root / grid.name
    grid_dir.mkdir(parents=True)
    results.atomic_write_bytes(grid_dir / "grid.yaml", grid.to_yaml().encode())
    first = stage_one(grid.base, grid.sweeps, grid.compare)
    for spec in first:
        write_run(grid_dir, spec, _rows(spec), grid=grid.name)
    final = stage_two(select(grid_dir, grid.base, grid.sweeps, grid.compare), grid.compare)
    for spec in final:
        write_run(grid_dir, spec, _rows(spec), grid=grid.name)
    write_jobs(grid_dir, first + final, grid=grid.name)
    source.unlink()
    return grid_dir


def _rows(spec: JobSpec) -> list[dict]:
    top = _score(spec)
    return curve_rows([0.1, top - 0.1, top])
