"""Every class of bad input the fuzzer found (issue 16): one `Error:` line, exit 2, nothing
written, in bounded time."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runner.cli.app import app
from tests.datafiles import write_mnist

runner = CliRunner()
BOMB = "".join(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n"
               for prev, name in zip("abcdefgh", "bcdefghi", strict=True)).replace("*a", "x")
DEEP = "[" * 600 + "]" * 600
# In process, after imports, a refusal takes milliseconds; the first case that names a strategy
# pays torch's import (1-2 s), and CI's 2 cores are shared: the bound catches hangs, not jitter.
SECONDS = 5.0


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def refused(args: list[str], tmp_path: Path) -> str:
    """Run `args`, assert the contract, return the error line."""
    before = sorted(tmp_path.rglob("*"))
    started = time.perf_counter()
    result = runner.invoke(app, args)
    seconds = time.perf_counter() - started
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
    assert len(result.stderr) < 1_000
    assert sorted(tmp_path.rglob("*")) == before
    assert seconds < SECONDS, f"{seconds:.1f} s"
    return result.stderr.strip()


GRID_FILES = [
    ("date where a number goes", "base: {seed: 2024-01-01}\n",
     "base.seed: setting 'seed' got '2024-01-01'; expected an integer in [0, 4294967295]"),
    ("binary", "name: !!binary aGVsbG8=\n", "tag !!binary is not allowed"),
    ("set", "base: !!set {a}\n", "tag !!set is not allowed"),
    ("recursive alias", "base: {lr: &a [*a]}\n", "a recursive alias"),
    ("alias bomb", BOMB + "base: {lr: *i}\n", "values once its aliases are expanded"),
    ("alias bomb as pack", BOMB + "pack: *i\n", "values once its aliases are expanded"),
    ("deep nesting", f"base: {{lr: {DEEP}}}\n", "nested more than 32 levels deep"),
    ("infinite cpus", "resources: {cpus: .inf}\n", "resources.cpus got .inf; expected an integer"),
    ("nan cpus", "resources: {cpus: .nan}\n", "resources.cpus got .nan; expected an integer"),
    ("nan memory", "resources: {mem_gb: .nan}\n", "resources.mem_gb got .nan; expected a number"),
    ("nan grace", "slurm: {result_grace_s: .nan}\n", "slurm.result_grace_s got nan; expected a "
                                                     "finite number"),
    ("nan deep in slurm", "slurm: {additional_parameters: {x: [.inf]}}\n",
     "slurm.additional_parameters.x[0] got inf; expected a finite number"),
    ("huge integer", "base: {seed: " + "9" * 5000 + "}\n", "a number of 5000 characters"),
    ("two grid sections", "grid: {seed: [0]}\ngrid: {lr: [0.1]}\n",
     "duplicate key 'grid' (first set on line 1; keep one)"),
    ("yes as a name", "name: yes\nbase: {epochs: yes}\n",
     "base.epochs: setting 'epochs' got 'yes'; expected an integer >= 0"),
    ("nan width", "base: {hidden: [.nan]}\n", "setting 'hidden' got"),
    ("noise on digits", "base: {noise: 0.1}\n", "noise=0.1 applies to spirals, moons only"),
    ("a 300-character name", "name: " + "n" * 300 + "\n", "must be a plain name (1 to 100"),
    ("too many jobs", "grid: {seed: 'range(100001)'}\n", "gives 100,001 values; a grid holds "
                                                         "at most 100,000 jobs"),
]


@pytest.mark.parametrize(("text", "part"), [case[1:] for case in GRID_FILES],
                         ids=[case[0] for case in GRID_FILES])
def test_bad_grid_files(in_tmp: Path, text: str, part: str) -> None:
    (in_tmp / "g.yaml").write_text(text)
    assert part in refused(["run", "g.yaml", "--dry-run"], in_tmp)


WORDS = [
    (["lr=1" + "0" * 400], "setting 'lr' got '100000000000000000000000000000000000000000000"),
    (["hidden=[1e400]"], "setting 'hidden' got '[1e400]'"),
    (["hidden=[nan]"], "setting 'hidden' got '[nan]'"),
    (["strategy=sat(start_epoch=1e400)"], "number 1e400 is out of range"),
    (["strategy=fixed(c=1e400)"], "strategy=fixed(c=1e400): strategy 'fixed(c=1e400)': number "
                                  "1e400 is out of range"),
    (["seed=range(1000000000000)"], "gives 1,000,000,000,000 values; a grid holds at most "
                                    "100,000 jobs. Split it into several grids"),
    (["seed=range(100001)"], "gives 100,001 values"),
    (["seed=18446744073709551616"], "setting 'seed' got '18446744073709551616'; expected an "
                                    "integer in [0, 4294967295]"),
    (["strategy=" + "fixed(c=" * 600 + ")" * 600], "is too long"),
    (["strategy=" + "tvo(init=" * 20 + ")" * 20], "nests lists and parameters more than 8 deep"),
    (["noise=0.1"], "noise=0.1 applies to spirals, moons only (got dataset=digits)"),
    (["lr=" + "x" * 20_000], "... (20,000 characters)"),
    (["data_root=[/b],x", "dataset=mnist"], "dataset 'mnist'"),
    (["data_root=[/b],x"], "data_root='[/b]' applies to mnist, fashion_mnist, cifar10 only (got "
                           "dataset=digits, which is built in); leave data_root unset"),
    (["seed=range(99999999999999999999)"], "gives 99,999,999,999,999,999,999 values; a grid "
                                           "holds at most 100,000 jobs"),
    (["seed=range(0, 99999999999999999999, 7)"], "gives 14,285,714,285,714,285,715 values"),
]


@pytest.mark.parametrize(("words", "part"), WORDS, ids=[w[0][0][:30] for w in WORDS])
def test_bad_override_words(in_tmp: Path, words: list[str], part: str) -> None:
    assert part in refused(["run", "quickstart", *words, "--dry-run"], in_tmp)


@pytest.mark.parametrize(("words", "part"), [
    (["seed=18446744073709551616"], "expected an integer in [0, 4294967295]"),
    (["noise=0.1"], "noise=0.1 applies to spirals, moons only"),
    (["lr=" + "x" * 20_000], "... (20,000 characters)"),
])
def test_bad_train_words(in_tmp: Path, words: list[str], part: str) -> None:
    assert part in refused(["train", *words, "epochs=0"], in_tmp)


def test_a_long_or_odd_grid_argument_is_one_line(in_tmp: Path) -> None:
    (in_tmp / "g.yaml").mkdir()
    assert "'g.yaml' is a directory" in refused(["run", "g.yaml", "--dry-run"], in_tmp)
    assert "File name too long" in refused(["run", "x" * 256 + ".yaml", "--dry-run"], in_tmp)
    line = refused(["run", "x" * 20_000, "--dry-run"], in_tmp)
    assert line.count("x") < 200


def test_markup_in_values_is_printed_as_written(in_tmp: Path) -> None:
    for root in ("[/b]", "[/c]"):  # data_root is shown when swept; it must hold MNIST files
        write_mnist(in_tmp / root, "MNIST")
    result = runner.invoke(app, ["run", "quickstart", "dataset=mnist", "data_root=[/b],[/c]",
                                 "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "[/b]" in result.stdout
    result = runner.invoke(app, ["run", "quickstart", "--out", "[/b]", "--dry-run"])
    assert result.exit_code == 0 and "[/b]" in result.stdout


def test_a_data_root_is_refused_only_where_no_job_of_the_grid_reads_files(in_tmp: Path) -> None:
    """A grid of mnist and digits shares one data_root: the mnist jobs read it, the digits jobs
    get none (they read no files). A grid of built-in datasets only refuses it."""
    from runner.grid.expand import expand, load_grid

    write_mnist(in_tmp / "data", "MNIST")
    specs = expand(load_grid("quickstart", ["dataset=mnist,digits", "data_root=data",
                                            "seed=0", "lr=0.5", "strategy=onehot"]))
    assert sorted((spec.dataset, spec.data_root) for spec in specs) == [
        ("digits", ""), ("mnist", "data")]
    assert "data_root='data' applies to mnist, fashion_mnist, cifar10 only" in refused(
        ["run", "quickstart", "dataset=digits,spirals", "data_root=data", "--dry-run"], in_tmp)
