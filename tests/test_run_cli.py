"""`tvo run`, `tvo status`, `tvo grids` via the CLI: exit codes, exact errors, the output dir."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cluster import backends
from jobs.engine.train import run_job
from jobs.spec import settings
from jobs.strategies import STRATEGIES
from runner.cli.app import app
from runner.dispatch.outdir import prepare
from runner.grid.expand import expand, load_grid, shipped_grids
from tests import rundir_view
from tests.backend_suite import interrupt_at, record_dead_start

runner = CliRunner()

# The catalogues grow as tvo does: the messages list whatever is registered.
SETTINGS = ", ".join(sorted(settings()))
STRATEGY_NAMES = ", ".join(sorted(STRATEGIES))
SHIPPED = ", ".join(shipped_grids())
TINY_GRID = """\
name: tiny
description: two tiny jobs
base: {dataset: digits, hidden: [16], epochs: 2, lr: 0.5, output: sigmoid, loss: mse}
grid: {seed: [0, 1]}
"""


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


BAD_GRIDS = [
    ("unknown top-level key", "name: x\ngird: {}\n",
     "g.yaml: unknown key 'gird' (did you mean 'grid'?); valid keys: name, description, base, "
     "grid, resources, slurm, pack, samples, compare"),
    ("unknown setting", "base: {lrr: 0.1}\n",
     f"g.yaml: base: unknown setting 'lrr' (did you mean 'lr'?); valid settings: {SETTINGS}"),
    ("bad value", "base: {lr: -1}\n",
     "g.yaml: base.lr: setting 'lr' got '-1'; expected a number > 0"),
    ("bad value in grid", "grid: {epochs: [2, two]}\n",
     "g.yaml: grid.epochs: setting 'epochs' got 'two'; expected an integer >= 0"),
    ("broken YAML", "base: {lr: [0.1\n",
     "grid file 'g.yaml' is not valid YAML: expected ',' or ']', but got '<stream end>' at "
     "line 2, column 1"),
    ("bad range", "grid: {seed: 'range(1, x)'}\n",
     "g.yaml: grid.seed: range() takes 1 to 3 integers, e.g. range(5) or range(0, 10, 2)"),
    ("unknown strategy", "grid: {strategy: [onehot, nosuch]}\n",
     f"g.yaml: grid.strategy: unknown strategy 'nosuch'; valid strategies: {STRATEGY_NAMES}"),
    ("unsafe YAML tag", "name: !!python/object/apply:os.system ['touch pwned']\n",
     "grid file 'g.yaml' is not valid YAML: tag !!python/object/apply:os.system is not allowed "
     "(grid files hold plain data: text, numbers, true/false, lists, mappings) at line 1, "
     "column 7"),
    ("name with ..", "name: ../escape\n",
     "g.yaml: name '../escape' must be a plain name (1 to 100 letters, digits, '-', '_' and '.', "
     "starting with a letter, digit or '_', without '..')"),
    ("name with a path separator", "name: a/b\n",
     "g.yaml: name 'a/b' must be a plain name (1 to 100 letters, digits, '-', '_' and '.', "
     "starting with a letter, digit or '_', without '..')"),
    ("not a mapping", "- a\n- b\n",
     "grid file 'g.yaml' must be a mapping with keys name, description, base, grid, resources, "
     "slurm, pack, samples, compare; it holds a list"),
    ("unknown resource", "resources: {cpu: 2}\n",
     "g.yaml: resources: unknown key 'cpu' (did you mean 'cpus'?); valid keys: cpus, gpus, "
     "mem_gb, timeout_min, gpus_per_node, jobs_per_node"),
    ("settings that do not pair", "base: {loss: ce, output: sigmoid}\ngrid: {seed: [0, 1]}\n",
     "g.yaml: job seed=0: loss=ce needs output=softmax (got output=sigmoid); use loss=mse or "
     "loss=bce with other outputs"),
]


@pytest.mark.parametrize(("text", "message"), [case[1:] for case in BAD_GRIDS],
                         ids=[case[0] for case in BAD_GRIDS])
def test_a_bad_grid_file_is_one_line_exit_2_and_nothing_written(in_tmp: Path, text: str,
                                                                  message: str) -> None:
    (in_tmp / "g.yaml").write_text(text)
    code, out, err = invoke("run", "g.yaml", "--backend", "inline", "--out", "out")
    assert (code, err) == (2, f"Error: {message}\n")
    assert sorted(p.name for p in in_tmp.iterdir()) == ["g.yaml"]


BAD_ARGUMENTS = [
    (["missing.yaml"], "grid file 'missing.yaml' does not exist"),
    (["nosuch"], "unknown grid 'nosuch': no such file, and no grid of that name ships with tvo "
                 f"(shipped: {SHIPPED}; see `tvo grids`)"),
    (["../etc/passwd"], "grid file '../etc/passwd' does not exist"),
    (["smoke", "seed=range(x)"],
     "seed=range(x): range() takes 1 to 3 integers, e.g. range(5) or range(0, 10, 2)"),
    (["smoke", "lrr=0.1"],
     f"lrr=0.1: unknown setting 'lrr' (did you mean 'lr'?); valid settings: {SETTINGS}"),
    (["smoke", "lr=abc"], "lr=abc: setting 'lr' got 'abc'; expected a number > 0"),
    (["smoke", "strategy=onehot,nosuch"],
     f"strategy=onehot,nosuch: unknown strategy 'nosuch'; valid strategies: {STRATEGY_NAMES}"),
    (["smoke", "--ray-address", "127.0.0.1:1", "--backend", "inline"],
     "--ray-address is for --backend ray (got --backend inline)"),
]


@pytest.mark.parametrize(("args", "message"), BAD_ARGUMENTS,
                         ids=[" ".join(args) for args, _ in BAD_ARGUMENTS])
def test_bad_arguments_are_one_line_exit_2_and_nothing_written(in_tmp: Path, args: list[str],
                                                                message: str) -> None:
    code, out, err = invoke("run", *args, "--out", "out")
    assert (code, err) == (2, f"Error: {message}\n")
    assert list(in_tmp.iterdir()) == []


def test_a_backend_missing_from_this_build_is_a_clear_error(
        in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(backends.BACKENDS, "inline", ("cluster.not_built_yet", "Nope"))
    code, out, err = invoke("run", "smoke", "--backend", "inline", "--out", "out")
    assert (code, err) == (2, "Error: backend 'inline' is not available in this version of tvo "
                              "(cluster/not_built_yet.py is missing); use one of: ray, slurm\n")
    assert list(in_tmp.iterdir()) == []


def test_dry_run_prints_the_jobs_and_writes_nothing(in_tmp: Path) -> None:
    code, out, err = invoke("run", "quickstart", "seed=range(2)", "--dry-run", "--out", "out")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "quickstart: 16 jobs -> out/quickstart (dry run: nothing written)"
    assert lines[1] == "swept: strategy (4), lr (2), seed (2)"
    for spec in expand(load_grid("quickstart", ["seed=range(2)"])):
        assert spec.job_id in out
    assert list(in_tmp.iterdir()) == []


def test_run_writes_the_grid_dir_and_a_rerun_skips_done_jobs(in_tmp: Path) -> None:
    (in_tmp / "tiny.yaml").write_text(TINY_GRID)
    code, out, err = invoke("run", "tiny.yaml", "--backend", "inline", "--out", "out")
    assert code == 0, out + err
    grid_dir = in_tmp / "out" / "tiny"
    assert "2 jobs: done 2 · running 0 · failed 0 · diverged 0 · pending 0" in out
    assert load_grid(str(grid_dir / "grid.yaml")).sweeps == {"seed": (0, 1)}
    jobs = pq.read_table(grid_dir / "jobs.parquet")
    assert jobs.schema.metadata[b"tvo.schema"] == b"jobs"
    assert jobs.column("seed").to_pylist() == [0, 1]
    finished = {p: p.stat().st_mtime_ns for p in grid_dir.glob("results/*.parquet")}
    assert finished

    code, out, err = invoke("run", "tiny.yaml", "seed=0,1,2", "--backend", "inline",
                            "--out", "out")
    assert code == 0, out + err
    assert "2 already done before this run" in out
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # never rewritten
    assert pq.read_table(grid_dir / "jobs.parquet").column("seed").to_pylist() == [0, 1, 2]

    code, out, err = invoke("run", "tiny.yaml", "seed=5", "--backend", "inline", "--out", "out")
    assert code == 0
    assert pq.read_table(grid_dir / "jobs.parquet").column("seed").to_pylist() == [0, 1, 2, 5]
    code, out, err = invoke("status", str(grid_dir))
    assert (code, out.splitlines()[1]) == (
        0, "done 4 · running 0 · failed 0 · diverged 0 · cancelled 0 · pending 0")


def corrupt_mnist(root: Path) -> None:
    """MNIST files that pass the preflight (present, readable, IDX magic) but fail in the job."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        (raw / name).write_bytes(b"\x00\x00\x08\x03")
    for name in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(b"\x00\x00\x08\x01")


def test_failed_and_diverged_jobs_exit_1_and_are_listed_with_their_log(in_tmp: Path) -> None:
    corrupt_mnist(in_tmp / "nodata")
    (in_tmp / "g.yaml").write_text(
        "name: mixed\nbase: {hidden: [16], epochs: 2, loss: mse, output: linear, "
        "activation: relu, data_root: nodata}\n"
        "grid: {dataset: [digits, mnist], lr: [0.1, 1000]}\n")
    code, out, err = invoke("run", "g.yaml", "--backend", "inline", "--out", "out")
    assert code == 1
    assert "4 jobs: done 1 · running 0 · failed 2 · diverged 1 · pending 0" in out
    grid_dir = in_tmp / "out" / "mixed"
    for job_id in pq.read_table(grid_dir / "jobs.parquet").column("job_id").to_pylist():
        state = rundir_view.state(grid_dir, job_id)
        if state != "done":
            assert f"{state} {job_id}: " in out
            assert f"  log: tvo status out/mixed --job {job_id}" in out
            code, shown, err = invoke("status", "out/mixed", "--job", job_id)
            assert code == 0 and shown.startswith(f"job {job_id}: {state}\n")
            assert ("DataError" if state == "failed" else "diverged: training loss") in shown

    code, out, err = invoke("status", "out/mixed")
    assert code == 0
    assert out.splitlines()[:2] == [
        "out/mixed: 4 jobs", "done 1 · running 0 · failed 2 · diverged 1 · cancelled 0 · pending 0"]
    assert "failed " in out and "DataError: dataset 'mnist': corrupt file " in out


def test_fail_fast_leaves_the_rest_pending(in_tmp: Path) -> None:
    corrupt_mnist(in_tmp / "nodata")
    (in_tmp / "g.yaml").write_text(
        "name: ff\nbase: {hidden: [16], epochs: 2, loss: mse, output: sigmoid, "
        "data_root: nodata}\ngrid: {dataset: [mnist, digits], seed: [0, 1]}\n")
    code, out, err = invoke("run", "g.yaml", "--backend", "inline", "--out", "out",
                            "--fail-fast", "--pack", "off")
    assert code == 1
    assert ("--fail-fast: stopped launching after the first failure; 3 jobs were not started "
            "and stay pending") in out
    code, out, err = invoke("status", "out/ff")
    assert out.splitlines()[1] == (
        "done 0 · running 0 · failed 1 · diverged 0 · cancelled 0 · pending 3")


def test_status_shows_a_job_whose_runner_died_as_interrupted_pending(in_tmp: Path) -> None:
    (in_tmp / "tiny.yaml").write_text(TINY_GRID)
    assert invoke("run", "tiny.yaml", "--backend", "inline", "--out", "out")[0] == 0
    spec = expand(load_grid("tiny.yaml", ["seed=2", "epochs=4"]))[0]
    grid_dir = in_tmp / "out" / "tiny"
    with pytest.raises(KeyboardInterrupt):
        run_job(spec, grid_dir, grid="tiny", progress=interrupt_at(3), checkpoint_seconds=0)
    record_dead_start(grid_dir, [spec])  # a later attempt, killed: its worker is gone
    prepare(grid_dir, load_grid("tiny.yaml").to_yaml(), [spec], "tiny")
    code, out, err = invoke("status", "out/tiny")
    assert out.splitlines()[1] == (
        "done 2 · running 0 · failed 0 · diverged 0 · cancelled 0 · pending 1 (1 interrupted: "
        "their runner is gone; `tvo run` resumes them from their checkpoint)")


def test_grids_lists_the_shipped_grids_with_job_counts() -> None:
    code, out, err = invoke("grids")
    assert code == 0
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip()
            for line in out.splitlines() if line.count("│") >= 3}
    assert rows["quickstart"] == "24"
    assert rows["smoke"] == "4"
    # 4 methods x 16 tuning draws, then 4 selected configurations x 10 fresh seeds
    assert rows["fair-quickstart"] == "104 (64 + 40)"



def test_status_counts_a_job_its_engine_marked_interrupted_as_pending(in_tmp: Path) -> None:
    (in_tmp / "tiny.yaml").write_text(TINY_GRID)
    grid = load_grid("tiny.yaml")
    specs = expand(grid)
    grid_dir = in_tmp / "out" / "tiny"
    prepare(grid_dir, grid.to_yaml(), specs, grid.name)
    with pytest.raises(KeyboardInterrupt):
        run_job(specs[0], grid_dir, grid="tiny", progress=interrupt_at(1), checkpoint_seconds=0)
    code, out, err = invoke("status", "out/tiny")
    assert code == 0 and "pending 2 (1 interrupted" in out


def test_status_lists_every_job_and_shows_one_with_its_log(in_tmp: Path) -> None:
    (in_tmp / "tiny.yaml").write_text(TINY_GRID)
    assert invoke("run", "tiny.yaml", "--backend", "inline", "--out", "out")[0] == 0
    specs = expand(load_grid("tiny.yaml"))
    code, out, err = invoke("status", "out/tiny", "--jobs")
    assert code == 0
    listed = [line.split() for line in out.splitlines() if line.split()[:1] in (
        [specs[0].job_id], [specs[1].job_id])]
    assert [(row[0], row[1], row[2]) for row in listed] == [
        (spec.job_id, "done", "2") for spec in specs]
    code, out, err = invoke("status", "out/tiny", "--job", specs[1].job_id)
    assert code == 0
    assert out.startswith(f"job {specs[1].job_id}: done\n")
    assert f"[job {specs[1].job_id}] done after epoch 2" in out
    code, out, err = invoke("status", "out/tiny", "--job", "nope")
    assert (code, out + err) == (2, "Error: 'out/tiny' has no job 'nope'; `tvo status out/tiny "
                                    "--jobs` lists its jobs\n")


def test_the_help_examples_are_words_bash_accepts() -> None:
    """Every example in `--help` can be pasted into bash: `strategy=fixed(c=0.9, nc=0.1)`
    unquoted is a syntax error there, so the examples quote such words."""
    import subprocess

    import typer.main

    command = typer.main.get_command(app)
    texts = []
    for sub in command.commands.values():  # type: ignore[attr-defined]
        texts += [line.split("Example:", 1)[1] for line in (sub.help or "").splitlines()
                  if "Example:" in line]
        texts += ["tvo run quickstart " + param.help.split(":", 1)[1].split(" (", 1)[0]
                  for param in sub.params
                  if "Overrides and sweeps" in (getattr(param, "help", None) or "")]
    assert any("fixed(c=0.9, nc=0.1)" in text for text in texts)
    assert subprocess.run(["bash", "-n", "-c", "tvo run x strategy=fixed(c=0.9, nc=0.1)"],
                          capture_output=True).returncode != 0  # what the check catches
    for text in texts:
        checked = subprocess.run(["bash", "-n", "-c", text], capture_output=True, text=True)
        assert checked.returncode == 0, (text, checked.stderr)
