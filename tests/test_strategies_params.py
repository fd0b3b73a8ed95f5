"""Strategy strings: nested options, one canonical spelling, one-line errors, CLI, listing."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from jobs.spec import JobSpec
from jobs.strategies import STRATEGIES, StrategyError, make_strategy
from jobs.strategies.params import Call
from runner.cli.app import app

ALL = ["bootstrap_hard", "bootstrap_soft", "fixed", "label_smoothing", "lecun", "matrix", "ols",
       "onehot", "pskd", "sat", "tvo", "two_stage"]
TWO_CLASSES = {"dataset": "moons", "loss": "mse"}


def test_the_registry_holds_the_whole_catalogue():
    assert sorted(STRATEGIES) == ALL


@pytest.mark.parametrize("short, full", [
    ("tvo(init=average_nudge)", "tvo(init=average_nudge(nu=0.1))"),
    ("tvo(adapt=sigma)", "tvo(adapt=sigma(m=1))"),
    ("tvo", "tvo(init=average_nudge(nu=0.1), adapt=sigma(m=1.0), cadence=epoch, layout=class, "
            "normalize=auto)"),
    ("tvo(init=soft)", "tvo(init=soft(nc=0.2, c=0.8))"),
    ("label_smoothing", "label_smoothing(variant=uniform, eps=0.1)"),
    ("matrix(rows=[[1, 0], [0, 1]])", "matrix(rows=[[1.0, 0.0], [0.0, 1.0]], file='', sha='')"),
])
def test_defaults_and_nested_defaults_give_one_canonical_string(short, full):
    assert make_strategy(short).canonical() == make_strategy(full).canonical()
    assert (JobSpec.from_dict({"strategy": short, **TWO_CLASSES}).job_id
            == JobSpec.from_dict({"strategy": full, **TWO_CLASSES}).job_id)


def test_the_canonical_string_spells_every_nested_value():
    strategy = make_strategy("tvo(init=average_nudge, adapt=none, normalize=false)")
    assert strategy.canonical() == ("tvo(init=average_nudge(nu=0.1), adapt=none, cadence=epoch, "
                                    "layout=class, normalize=false)")
    assert strategy.args["init"] == Call("average_nudge", {"nu": 0.1})
    assert make_strategy(strategy.canonical()).canonical() == strategy.canonical()


@pytest.mark.parametrize("text, message", [
    ("nope", "unknown strategy 'nope'; valid strategies: " + ", ".join(ALL)),
    ("lable_smoothing", "unknown strategy 'lable_smoothing' (did you mean 'label_smoothing'?); "
                        "valid strategies: " + ", ".join(ALL)),
    ("label_smoothing(e=0.1)",
     "strategy 'label_smoothing' has no parameter 'e'; its parameters: eps, variant"),
    ("label_smoothing(eps=1.5)",
     "strategy 'label_smoothing' parameter 'eps' got 1.5; expected a number in [0, 1]"),
    ("label_smoothing(variant=all)",
     "strategy 'label_smoothing' parameter 'variant' got all; expected one of uniform, others"),
    ("tvo(init=avg)", "strategy 'tvo' parameter 'init' got avg; expected one of uniform, average, "
                      "average_nudge(nu), average_nudge_remap(nu), remap, soft(c, nc)"),
    ("tvo(init=average_nudge(x=1))",
     "strategy 'tvo' parameter 'init': average_nudge has no parameter 'x'; its parameters: nu"),
    ("tvo(init=average(nu=0.1))",
     "strategy 'tvo' parameter 'init': average has no parameter 'nu'; its parameters: none"),
    ("tvo(adapt=sigma(m=0))",
     "strategy 'tvo' parameter 'adapt': sigma parameter 'm' got 0; expected a number in (0, inf)"),
    ("tvo(adapt=eps_min(eps=[1]))",
     "strategy 'tvo' parameter 'adapt': eps_min parameter 'eps' got [1]; expected a number in "
     "[0, 1]"),
    ("tvo(normalize=yes)", "strategy 'tvo' parameter 'normalize' got yes; expected auto (true "
                           "when output=softmax), true or false"),
    ("sat(start_epoch=1.5)",
     "strategy 'sat' parameter 'start_epoch' got 1.5; expected an integer >= 0"),
    ("matrix(rows=[[1, x]])", "strategy 'matrix' parameter 'rows' got [[1, x]]; expected a list "
                              "of rows of numbers like [[0.9, 0.1], [0.2, 0.8]]"),
    ("tvo(init=", "cannot read strategy 'tvo(init=': expected a value, found the end"),
])
def test_bad_strategy_strings_fail_with_one_line_naming_what_is_valid(text, message):
    with pytest.raises(StrategyError) as info:
        make_strategy(text)
    assert str(info.value) == message


@pytest.mark.parametrize("setting, message", [
    ("strategy=nope",
     "Error: unknown strategy 'nope'; valid strategies: " + ", ".join(ALL)),
    ("strategy=tvo(init=average_nudge(nu=2))",
     "Error: strategy 'tvo' parameter 'init': average_nudge parameter 'nu' got 2; expected a "
     "number in [0, 1]"),
    ("strategy=lecun",
     "Error: strategy lecun with output=softmax needs lecun(normalize=true): softmax outputs "
     "sum to 1, so per-neuron targets must be normalised first"),
])
def test_the_cli_refuses_bad_strategies_with_exit_code_2(setting, message, tmp_path):
    result = CliRunner().invoke(app, ["train", setting, "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == message
    assert not (tmp_path / "runs").exists()


def test_tvo_strategies_lists_every_strategy_with_parameters_ranges_and_source():
    result = CliRunner().invoke(app, ["strategies"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    for name in ALL:
        cls = STRATEGIES[name]
        assert f"{name}  {cls.summary}  [{cls.source}]" in lines
    assert "    eps=0.1          [0, 1]: probability mass moved off the true class" in lines
    assert "    start_epoch=60  an integer >= 0: epochs of plain one-hot training before " \
           "targets adapt (the source's E_s)" in lines
    assert any(line.startswith("    init=average_nudge(nu=0.1)  uniform|average|average_nudge|"
                               "average_nudge_remap|remap|soft: how c and nc start")
               for line in lines)
    assert ("        average_nudge(nu=0.1 [0, 1]): average, then nc pushed nu away from c "
            "(clamped to [0, 1])") in lines
    assert "        sigma_half: if |c - nc| < s, move c and nc apart by s/2 each, within [0, 1]" \
        in lines


def test_every_strategy_class_trains_its_declaration():
    from jobs.strategies.catalogue import DECLARATIONS

    assert set(DECLARATIONS) == set(STRATEGIES)
    for name, cls in STRATEGIES.items():
        assert cls.declaration is DECLARATIONS[name]
        assert (cls.name, cls.params, cls.summary) == (name, cls.declaration.params,
                                                       cls.declaration.summary)


@pytest.mark.parametrize("text, settings", [
    ("foo", {}), ("fixed(x=1)", {}), ("tvo(init=bogus)", {}), ("ols(alpha=2)", {}),
    ("fixed(c=0.9, nc=0.1, normalize=maybe)", {}),
    ("lecun", {}), ("lecun", {"output": "linear", "loss": "mse"}),
    ("fixed(c=1.5, nc=0)", {"output": "sigmoid", "loss": "mse"}),
    ("ols", {"output": "sigmoid", "loss": "mse"}), ("sat(start_epoch=10)", {"epochs": 5}),
    ("two_stage(switch_epoch=6)", {"epochs": 5}), ("tvo", {"output": "tanh", "loss": "mse"}),
    ("matrix(rows=[[1, 0], [0, 1]])", {}),
])
def test_a_bad_strategy_is_refused_without_torch_as_the_registry_refuses_it(text, settings):
    """Names, parameters and pairings are checked from the declarations alone; the torch
    classes refuse the same strategies with the same words."""
    import subprocess
    import sys

    from jobs.spec import JobSpec, SpecError

    spec = JobSpec.from_dict({"strategy": "onehot", **settings})
    with pytest.raises(StrategyError) as caught:
        make_strategy(text).check(spec.pairing())
    probe = ("import sys\nfrom jobs.spec import JobSpec, SpecError\n"
             f"try:\n    JobSpec.from_dict({{'strategy': {text!r}, **{settings!r}}})\n"
             "except SpecError as exc:\n    print(exc)\n"
             "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out == [str(caught.value), "False"]
    with pytest.raises(SpecError):
        JobSpec.from_dict({"strategy": text, **settings})


def test_expanding_a_grid_and_a_dry_run_never_import_torch(tmp_path):
    """Settings, strategies and datasets are checked from declarations: torch's import (about a
    second) is paid by the jobs that train, not by `tvo run GRID --dry-run`."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    probe = ("import sys\nfrom runner.grid.expand import expand, load_grid\n"
             "print(len(expand(load_grid('quickstart'))))\n"
             "from typer.testing import CliRunner\nfrom runner.cli.app import app\n"
             "done = CliRunner().invoke(app, ['run', 'fair-quickstart', '--dry-run'])\n"
             "print(done.exit_code, done.stdout.splitlines()[0])\n"
             "print(sorted(name for name in sys.modules if name.split('.')[0] == 'torch'))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(root)}
                         ).stdout.splitlines()
    assert out == ["24", "0 fair-quickstart: 64 jobs -> outputs/fair-quickstart (dry run: "
                         "nothing written)", "[]"]
