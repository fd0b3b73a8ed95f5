"""The CLI as a user meets it: help everywhere, exact one-line errors, exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from runner.cli.app import app
from tests import rundir_view

runner = CliRunner()
README = (Path(__file__).parent.parent / "README.md").read_text()


def command_names() -> list[str]:
    return [c.name or c.callback.__name__ for c in typer.main.get_group(app).commands.values()]


def test_the_top_level_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in command_names():
        assert name in result.output


@pytest.mark.parametrize("name", command_names())
def test_every_command_has_help_with_an_example_and_is_in_the_readme(name):
    result = runner.invoke(app, [name, "--help"])
    assert result.exit_code == 0
    assert "Example: tvo " + name in " ".join(result.output.split())
    assert f"tvo {name}" in README


def test_run_help_lists_every_exit_code():
    text = " ".join(runner.invoke(app, ["run", "--help"]).output.split())
    for code in ("0 when every job is done", "1 when some failed", "2 for bad input",
                 "130 when interrupted"):
        assert code in text


def test_train_writes_a_run_dir_and_reports_the_result(tmp_path):
    result = runner.invoke(app, ["train", "epochs=2", "hidden=[8]", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "epoch 2/2" in result.output and "done: test_acc " in result.output
    [row] = {row["job_id"] for row in rundir_view.all_rows(tmp_path)}
    assert f"tvo status {tmp_path}" not in result.output  # it ended well: no log to point at
    assert len(list((tmp_path / "results").glob("*.parquet"))) == 1


@pytest.mark.parametrize(("args", "message"), [
    (["lrr=0.1"], "Error: unknown setting 'lrr' (did you mean 'lr'?); valid settings: "
                  "activation, batch_size, "),
    (["lr"], "Error: cannot read 'lr': settings are written KEY=VALUE, e.g. lr=0.5"),
    (["lr=fast"], "Error: setting 'lr' got 'fast'; expected a number > 0"),
    (["optimizer=lbfgs"], "Error: setting 'optimizer' got 'lbfgs'; expected one of sgd, rmsprop, "
                          "adam, adamw"),
    (["loss=ce", "output=tanh"], "Error: loss=ce needs output=softmax (got output=tanh); use "
                                 "loss=mse or loss=bce with other outputs"),
    (["strategy=nope"], "Error: unknown strategy 'nope'; valid strategies: "),
    (["dataset=mnist", "data_root=/nonexistent"],
     "Error: dataset 'mnist': missing /nonexistent/MNIST/raw/train-images-idx3-ubyte (or .gz) "
     "under data_root=/nonexistent"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    result = runner.invoke(app, ["train", *args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.stderr.startswith(message)
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_diverged_job_exits_1_without_a_traceback(tmp_path):
    result = runner.invoke(app, ["train", "output=linear", "loss=mse", "lr=10000", "epochs=3",
                                 "hidden=[16]", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "diverged: training loss became nan in epoch 1; log: " in result.output
    assert "Traceback" not in result.output
