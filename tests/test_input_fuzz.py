"""Property test of the input contract over generated grid files, override words and strategy
strings (issue 16): a dry run either succeeds (exit 0, the job count, nothing written) or says
one `Error:` line (exit 2, nothing written), never a traceback, always within a few seconds.

CI runs a few hundred cases. By hand, for 10,000 and more (figures in README's testing section):
    TVO_FUZZ_EXAMPLES=4000 python -m pytest tests/test_input_fuzz.py -p no:cacheprovider -q
(the number is per test; there are three tests).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from jobs.spec import settings as spec_settings
from runner.cli.app import app

EXAMPLES = int(os.environ.get("TVO_FUZZ_EXAMPLES", "100"))
SECONDS_PER_CASE = 8.0  # generous for a loaded 2-core CI machine; typical cases take 0.05 s
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
                suppress_health_check=list(HealthCheck))
runner = CliRunner()
SETTINGS = sorted(spec_settings())
STRATEGY_NAMES = ["onehot", "fixed", "lecun", "label_smoothing", "tvo", "sat", "matrix",
                  "average_nudge", "sigma", "nosuch", ""]
NASTY = ["[/b]", "[bold]x", "\n", "\x00", "é", "..", "/", "yes", "no", "on", "null", "~",
         "2024-01-01", "1:30", "0x1F", "1e400", "-1e400", "nan", ".inf", ".nan", "1" + "0" * 400,
         "9" * 5000, "x" * 20_000, "range(1000000000000)", "range(100001)", "range(3)",
         "range(-1)", "[]", "[[[[[[[[[[", "(" * 50, "'", '"', ",", "=", "1_000", "0o17", "True",
         "018446744073709551616", "18446744073709551616", "-0", "+1", ".5", "5.", "1e-320"]


def numbers() -> st.SearchStrategy[Any]:
    return st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
                     st.sampled_from([0, 1, 2, 64, 0.5, 0.1, 1e-3, 2**64, 10**400]))


def texts() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(NASTY), st.sampled_from(SETTINGS),
                     st.text(max_size=12), st.from_regex(r"[a-z_]{1,12}", fullmatch=True))


def strategy_strings() -> st.SearchStrategy[str]:
    """Mostly well-formed `name(key=value, ...)` nests, with their pieces sometimes broken."""
    leaf = st.one_of(numbers().map(str), st.sampled_from(STRATEGY_NAMES), st.sampled_from(NASTY),
                     st.sampled_from(["true", "false", "uniform", "sigma", "average_nudge"]))

    def calls(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        arg = st.tuples(st.sampled_from(["c", "nc", "eps", "m", "nu", "init", "adapt",
                                         "start_epoch", "rows", "x", ""]), inner)
        return st.one_of(
            st.tuples(st.sampled_from(STRATEGY_NAMES), st.lists(arg, max_size=3)).map(
                lambda call: f"{call[0]}({', '.join(f'{k}={v}' for k, v in call[1])})"),
            st.lists(inner, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"))

    return st.one_of(st.sampled_from(STRATEGY_NAMES), st.recursive(leaf, calls, max_leaves=8),
                     st.text(max_size=30))


def yaml_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(numbers(), texts(), st.booleans(), st.none(), strategy_strings())
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(texts(), inner, max_size=3)), max_leaves=10)


def setting_values() -> st.SearchStrategy[Any]:
    """Plausible values for the plausible keys, so many grids are valid and expand."""
    return st.one_of(st.sampled_from([0.1, 0.5, 1, 2, 0, "mse", "sigmoid", "digits", "moons",
                                      "spirals", "relu", "sgd", "adam", [8], [4, 4], "cpu"]),
                     yaml_values())


def grid_documents() -> st.SearchStrategy[str]:
    base = st.dictionaries(st.one_of(st.sampled_from(SETTINGS), texts()), setting_values(),
                           max_size=4)
    sweeps = st.dictionaries(st.one_of(st.sampled_from(["seed", "lr", "strategy", "hidden"]),
                                       texts()),
                             st.one_of(st.lists(setting_values(), max_size=4), setting_values()),
                             max_size=3)
    sections = st.fixed_dictionaries({}, optional={
        "name": st.one_of(st.from_regex(r"[a-z][a-z0-9_.-]{0,20}", fullmatch=True), texts(),
                          yaml_values()),
        "base": st.one_of(base, yaml_values()), "grid": st.one_of(sweeps, yaml_values()),
        "resources": st.one_of(st.dictionaries(st.sampled_from(["cpus", "gpus", "mem_gb",
                                                                 "timeout_min", "cpu"]),
                                               numbers(), max_size=2), yaml_values()),
        "slurm": st.dictionaries(st.sampled_from(["partition", "result_grace_s", "qos", "x"]),
                                 yaml_values(), max_size=2),
        "pack": yaml_values(), "description": texts(), "gird": yaml_values(),
    })
    dumped = sections.map(lambda doc: yaml.safe_dump(doc, sort_keys=False, allow_unicode=True,
                                                     width=10**6))
    raw = st.sampled_from([
        "base: {seed: 2024-01-01}\n", "name: !!binary aGVsbG8=\n", "base: !!set {a}\n",
        "base: {lr: &a [*a]}\n", "base: {lr: " + "[" * 800 + "]" * 800 + "}\n",
        "grid: {seed: [0]}\ngrid: {lr: [0.1]}\n", "name: yes\n", "resources: {cpus: .nan}\n",
        "b: &b {lr: 0.5}\nbase: {<<: *b}\n", "base: {<<: [1]}\n", "{", "- a\n", "", "\x00",
        "a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
        "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
        "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nbase: {lr: *e}\n",
    ])
    return st.one_of(dumped, raw, st.tuples(dumped, raw).map("".join))


def override_words() -> st.SearchStrategy[str]:
    value = st.one_of(texts(), numbers().map(str), strategy_strings(),
                      st.lists(st.one_of(texts(), numbers().map(str)), min_size=1,
                               max_size=3).map(",".join))
    key = st.one_of(st.sampled_from(SETTINGS), texts())
    return st.one_of(st.tuples(key, value).map("=".join), texts())


def holds_contract(tmp_path: Path, args: list[str]) -> None:
    before = sorted(tmp_path.rglob("*"))
    started = time.perf_counter()
    result = runner.invoke(app, args, catch_exceptions=True)
    seconds = time.perf_counter() - started
    shown = " ".join(repr(arg[:80]) for arg in args)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{shown}: raised {result.exception!r}")
    assert result.exit_code in (0, 2), f"{shown}: exit {result.exit_code}: {result.output[-500:]}"
    if result.exit_code == 2:
        assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, (
            f"{shown}: {result.stderr[:500]!r}")
        assert len(result.stderr) < 2_000, f"{shown}: {len(result.stderr)} characters"
    else:
        assert " jobs -> " in result.stdout and "(dry run: nothing written)" in result.stdout
    assert sorted(tmp_path.rglob("*")) == before, f"{shown}: wrote files"
    assert seconds < SECONDS_PER_CASE, f"{shown}: {seconds:.1f} s"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(document=grid_documents(), words=st.lists(override_words(), max_size=2))
def test_grid_files(workdir: Path, document: str, words: list[str]) -> None:
    grid = workdir / "g.yaml"
    grid.write_text(document)
    holds_contract(workdir, ["run", str(grid), *words, "--dry-run", "--out",
                             str(workdir / "out")])
    grid.unlink()


@FUZZ
@given(words=st.lists(override_words(), min_size=1, max_size=4),
       out=st.one_of(st.just("out"), texts()))
def test_override_words(workdir: Path, words: list[str], out: str) -> None:
    holds_contract(workdir, ["run", "quickstart", *words, "--dry-run", "--out",
                             str(workdir / out) if out else ""])


@FUZZ
@given(strategy=strategy_strings())
def test_strategy_strings(workdir: Path, strategy: str) -> None:
    holds_contract(workdir, ["run", "quickstart", f"strategy={strategy}", "--dry-run", "--out",
                             str(workdir / "out")])
