"""Grid files and command-line sweeps: parsing, overrides, expansion, the resolved grid."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.grid.expand import GridError, expand, load_grid, shipped_grids
from runner.grid.sweeps import SweepError, parse_sweep, split_values


def write(tmp_path: Path, text: str, name: str = "g.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(("text", "parts"), [
    ("0.1,0.5", ["0.1", "0.5"]),
    ("onehot,fixed(c=0.9, nc=0.1)", ["onehot", "fixed(c=0.9, nc=0.1)"]),
    ("[64,64],[128]", ["[64,64]", "[128]"]),
    ("[64,64]", ["[64,64]"]),
    ("matrix(rows=[[1, 0], [0, 1]]),onehot", ["matrix(rows=[[1, 0], [0, 1]])", "onehot"]),
    ("'a,b',c", ["'a,b'", "c"]),
])
def test_commas_inside_brackets_and_quotes_do_not_split(text: str, parts: list[str]) -> None:
    assert split_values(text) == parts


@pytest.mark.parametrize(("word", "values"), [
    ("seed=range(5)", [0, 1, 2, 3, 4]),
    ("seed=range(2, 5)", [2, 3, 4]),
    ("seed=range(0,10,4)", [0, 4, 8]),
    ("seed=7,range(2)", ["7", 0, 1]),
    ("lr=0.5", ["0.5"]),
])
def test_sweep_values(word: str, values: list[object]) -> None:
    assert parse_sweep(word)[1] == values


@pytest.mark.parametrize(("word", "message"), [
    ("seed=range(x)", "seed=range(x): range() takes 1 to 3 integers, e.g. range(5) or "
                      "range(0, 10, 2)"),
    ("seed=range()", "seed=range(): range() takes 1 to 3 integers, e.g. range(5) or "
                     "range(0, 10, 2)"),
    ("seed=range(1,2,3,4)", "seed=range(1,2,3,4): range() takes 1 to 3 integers, e.g. range(5) "
                            "or range(0, 10, 2)"),
    ("seed=range(0, 5, 0)", "seed=range(0, 5, 0): range() step must not be 0"),
    ("seed=range(3, 1)", "seed=range(3, 1): range(3, 1) gives no values"),
    ("lr=0.1,,0.5", "lr=0.1,,0.5: empty value; write KEY=VALUE or KEY=V1,V2"),
    ("lr", "cannot read 'lr': settings are written KEY=VALUE, e.g. lr=0.5"),
])
def test_bad_sweeps_say_what_is_valid(word: str, message: str) -> None:
    with pytest.raises(SweepError) as error:
        parse_sweep(word)
    assert str(error.value) == message


def test_shipped_grids_expand() -> None:
    assert set(shipped_grids()) >= {"quickstart", "smoke"}
    quickstart = load_grid("quickstart")
    assert len(expand(quickstart)) == 24
    assert quickstart.swept_keys == ["strategy", "lr", "seed"]
    assert len(expand(load_grid("smoke"))) == 4


def test_a_command_line_sweep_replaces_the_files_values(tmp_path: Path) -> None:
    path = write(tmp_path, "base: {lr: 0.5, hidden: [16], epochs: 2}\n"
                           "grid: {seed: [0, 1], strategy: [onehot]}\n")
    grid = load_grid(path, ["lr=0.1,0.2", "seed=5", "hidden=[64,64],[128]"])
    assert grid.base == {"epochs": 2, "seed": 5}
    assert grid.sweeps == {"strategy": ("onehot",), "lr": (0.1, 0.2),
                           "hidden": ((64, 64), (128,))}
    assert grid.swept_keys == ["lr", "hidden"]
    assert len(expand(grid)) == 4


def test_a_list_value_is_one_value(tmp_path: Path) -> None:
    grid = load_grid(write(tmp_path, "base: {epochs: 1}\n"), ["hidden=[64,64]"])
    assert grid.base["hidden"] == (64, 64)
    [spec] = expand(grid)
    assert spec.hidden == (64, 64)


def test_identical_jobs_collapse_to_one(tmp_path: Path) -> None:
    path = write(tmp_path, "grid:\n  lr: [0.1, 0.10, 1e-1]\n  strategy: [onehot, 'onehot()']\n")
    assert len(expand(load_grid(path))) == 1


def test_a_grid_value_may_be_a_sweep_string(tmp_path: Path) -> None:
    path = write(tmp_path, "grid:\n  seed: range(3)\n  strategy: onehot,fixed(c=0.9, nc=0.1)\n")
    grid = load_grid(path)
    assert grid.sweeps["seed"] == (0, 1, 2)
    assert grid.sweeps["strategy"] == ("onehot", "fixed(c=0.9, nc=0.1, normalize=false)")


def test_the_resolved_grid_runs_the_same_jobs(tmp_path: Path) -> None:
    grid = load_grid("quickstart", ["seed=range(2)", "epochs=3"])
    resolved = write(tmp_path, grid.to_yaml(), "resolved.yaml")
    again = load_grid(resolved)
    assert again.name == "quickstart"
    assert [s.job_id for s in expand(again)] == [s.job_id for s in expand(grid)]
    assert again.resources == grid.resources


def test_the_resolved_grid_writes_evenly_spaced_integers_as_a_range(tmp_path: Path) -> None:
    """80,000 jobs of 5,000 seeds: grid.yaml stays a few hundred bytes, and reads back."""
    grid = load_grid("quickstart", ["seed=range(5000)", "lr=0.5", "epochs=0,2,4,6"])
    text = grid.to_yaml()
    assert "seed: range(0, 5000)" in text
    assert "epochs: range(0, 8, 2)" in text
    assert len(text) < 1000
    again = load_grid(write(tmp_path, text, "resolved.yaml"))
    assert dict(again.sweeps) == dict(grid.sweeps)
    uneven = load_grid("quickstart", ["seed=0,1,3"]).to_yaml()
    assert "seed: [0, 1, 3]" in uneven


def test_name_defaults_to_the_file_stem_and_pack_and_slurm_are_kept(tmp_path: Path) -> None:
    grid = load_grid(write(tmp_path, "pack: 4\nslurm: {partition: debug}\n", "my-grid.yaml"))
    assert grid.name == "my-grid"
    assert grid.pack == 4
    assert grid.slurm == {"partition": "debug"}
    assert "pack: 4" in grid.to_yaml()
    assert load_grid(write(tmp_path, "pack: auto\n", "auto.yaml")).pack == 0  # auto
    assert load_grid(write(tmp_path, "pack: off\n", "off.yaml")).pack == 1


def test_resources_are_checked(tmp_path: Path) -> None:
    grid = load_grid(write(tmp_path, "resources: {cpus: 2, gpus: 1, mem_gb: 1.5}\n"))
    assert (grid.resources.cpus, grid.resources.gpus, grid.resources.mem_gb) == (2, 1, 1.5)
    with pytest.raises(GridError) as error:
        load_grid(write(tmp_path, "resources: {cpus: 0}\n"))
    assert str(error.value) == f"{tmp_path / 'g.yaml'}: resources.cpus got 0; expected an " \
                               "integer >= 1"
    with pytest.raises(GridError) as error:
        load_grid(write(tmp_path, "resources: {mem_gb: 0}\n"))
    assert str(error.value).endswith("resources.mem_gb got 0; expected a number > 0, or null")


def test_a_setting_in_both_base_and_grid_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "base: {lr: 0.1}\ngrid: {lr: [0.2]}\n")
    with pytest.raises(GridError) as error:
        load_grid(path)
    assert str(error.value) == f"{path}: 'lr' is set in both base and grid; keep it in one"


def test_shipped_grids_point_only_at_what_ships() -> None:
    """A shipped file's comments may not send readers to documents outside the project."""
    for path in shipped_grids().values():
        text = path.read_text()
        for name in ("RESEARCH.md", "DESIGN.md", "STYLE.md"):
            assert name not in text, f"{path.name} refers to {name}, which does not ship"
