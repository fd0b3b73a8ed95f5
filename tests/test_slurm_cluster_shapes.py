"""SLURM tests that need the dev cluster in another shape: 2 fake GPUs and MaxArraySize 2.

The module restarts the cluster once (`down`, then `up --gpus 2` with
TVO_SLURM_MAX_ARRAY_SIZE=2, about 4 s) and puts it back as it found it afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cluster.slurm.records import RECORD_FILE, latest_placements
from runner.cli.app import app
from tests import rundir_view
from tests.slurm_cluster import Shape, cluster_shaped, sacct_states, write_grid

pytestmark = pytest.mark.slurm


@pytest.fixture(autouse=True, scope="module")
def shape(slurm_cluster: str) -> Iterator[Shape]:
    with cluster_shaped(gpus=2, max_array_size=2) as shaped:
        yield shaped


def run_grid_file(grid: Path, out: Path, *options: str) -> str:
    result = CliRunner().invoke(app, ["run", str(grid), "--backend", "slurm", "--out", str(out),
                                      *options])
    assert (result.exit_code, result.stderr) == (0, ""), result.stdout
    return result.stdout


def test_gpu_packs_give_each_task_its_own_gpu(tmp_path: Path) -> None:
    """Three jobs, two per 2-GPU allocation: a pack of two (GPU 0 and GPU 1), then one alone."""
    record_dir = tmp_path / "seen"
    record_dir.mkdir()
    grid = write_grid(tmp_path / "g.yaml", "packed", seeds=3, device="cpu",
                      resources={"gpus_per_node": 2, "jobs_per_node": 2})
    out = run_grid_with_entry(grid, tmp_path / "out", record_dir)
    assert "2 jobs per SLURM job" in out
    seen = {path.stem: json.loads(path.read_text()) for path in record_dir.glob("*.json")}
    assert len(seen) == 3
    by_slurm_job: dict[str, list[dict]] = {}
    for record in seen.values():
        by_slurm_job.setdefault(record["SLURM_JOB_ID"], []).append(record)
    sizes = sorted(len(records) for records in by_slurm_job.values())
    assert sizes == [1, 2]
    for records in by_slurm_job.values():
        devices = sorted((r["SLURM_LOCALID"], r["CUDA_VISIBLE_DEVICES"]) for r in records)
        assert devices == [("0", "0"), ("1", "1")][:len(records)]


def run_grid_with_entry(grid: Path, out: Path, record_dir: Path) -> str:
    """`tvo run` with the recording entry in place of run_unit (through the driver itself)."""
    import functools

    from cluster.backends import BackendSettings
    from cluster.slurm.backend import SlurmBackend
    from runner.dispatch.driver import RunOptions, run_grid
    from runner.grid.expand import expand, load_grid
    from tests.slurm_entries import recording_entry

    loaded = load_grid(str(grid))
    grid_dir = out / loaded.name
    backend = SlurmBackend(BackendSettings(
        grid_dir=grid_dir, resources=loaded.resources, slurm=loaded.slurm,
        entry=functools.partial(recording_entry, record_dir=str(record_dir))))
    report = run_grid(expand(loaded), loaded.name, grid_dir, backend, loaded.resources,
                      RunOptions())
    assert report.exit_code == 0, report.problems
    return backend.describe()


def test_arrays_larger_than_max_array_size_are_split(tmp_path: Path) -> None:
    grid = write_grid(tmp_path / "g.yaml", "split", seeds=5)
    # one job per array element (packing by default would make fewer, larger units)
    out = run_grid_file(grid, tmp_path / "out", "--max-parallel", "4", "--pack", "off")
    grid_dir = tmp_path / "out" / "split"
    assert "arrays of up to 2" in out
    placements = latest_placements(grid_dir)
    by_array: dict[str, list[str]] = {}
    for placement in placements.values():
        by_array.setdefault(placement.slurm_id.split("_")[0], []).append(placement.slurm_id)
    assert sorted(len(ids) for ids in by_array.values()) == [1, 2, 2]
    assert set(sacct_states([p.slurm_id for p in placements.values()]).values()) == {
        "COMPLETED"}
    assert all(rundir_view.state(grid_dir, job_id) == "done" for job_id in placements)
    [folder] = (grid_dir / "slurm").iterdir()
    record = json.loads((folder / RECORD_FILE).read_text())
    assert record["max_array_size"] == 2 and len(record["units"]) == 5
    # --max-parallel 4: the driver sends 4 jobs at first, as two arrays that share the 4; the
    # fifth goes alone when a slot frees (submitit sends a single task without --array)
    arrays = sorted(line for script in folder.glob("*_submission.sh")
                    for line in script.read_text().splitlines() if "--array" in line)
    assert arrays == ["#SBATCH --array=0-1%2", "#SBATCH --array=0-1%2"]
    assert yaml.safe_load((grid_dir / "grid.yaml").read_text())["resources"]["cpus"] == 1
