"""Search spaces: parsed like sweeps, refused in one line when malformed, drawn reproducibly."""

from __future__ import annotations

import math

import pytest

from runner.grid.spaces import Space, draw, parse_space
from runner.grid.sweeps import SweepError


def test_spaces_are_read_and_plain_values_are_not():
    assert parse_space("lr", "loguniform(0.001, 1)") == Space("loguniform", (0.001, 1.0))
    assert parse_space("hidden", "intuniform(8, 64)") == Space("intuniform", (8, 64))
    assert parse_space("momentum", "choice(0, 0.9)") == Space("choice", ("0", "0.9"))
    assert parse_space("lr", "0.5") is None and parse_space("lr", 0.5) is None


@pytest.mark.parametrize(("text", "message"), [
    ("loguniform(0, 1)", "lr: loguniform() needs 0 < low < high (a log scale)"),
    ("uniform(1, 0.5)", "lr: uniform() takes two numbers low < high, e.g. uniform(0.001, 1)"),
    ("uniform(1)", "lr: uniform() takes two numbers low < high, e.g. uniform(0.001, 1)"),
    ("intuniform(1.5, 3)", "lr: intuniform() takes two numbers low < high, e.g. intuniform(1, 8)"),
    ("uniform(0, inf)", "lr: uniform() takes two numbers low < high, e.g. uniform(0.001, 1)"),
    ("choice()", "lr: choice() needs at least one value, e.g. choice(0, 0.9)"),
])
def test_a_bad_space_is_one_line_naming_the_key(text, message):
    with pytest.raises(SweepError) as caught:
        parse_space("lr", text)
    assert str(caught.value) == message


def test_draws_are_reproducible_joint_and_inside_their_spaces():
    spaces = {"lr": Space("loguniform", (0.01, 1.0)), "width": Space("intuniform", (1, 4)),
              "momentum": Space("choice", ("0", "0.9"))}
    first, again = draw(spaces, 16, seed=3), draw(spaces, 16, seed=3)
    assert first == again and draw(spaces, 16, seed=4) != first
    assert all(0.01 <= c["lr"] <= 1 and c["width"] in (1, 2, 3, 4) and c["momentum"] in ("0", "0.9")
               for c in first)
    logs = sorted(math.log10(c["lr"]) for c in first)  # low discrepancy: every decade is hit
    assert logs[0] < -1.5 and logs[-1] > -0.5
    assert {c["width"] for c in first} == {1, 2, 3, 4}
    with pytest.raises(SweepError, match="samples: got 0; expected a whole number from 1 to"):
        draw(spaces, 0)


def test_a_space_on_the_command_line_is_drawn_samples_times_per_discrete_combination(
        tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from runner.cli.app import app
    from runner.grid.expand import expand, load_grid

    monkeypatch.chdir(tmp_path)
    grid = load_grid("quickstart", ["lr=loguniform(0.1, 3)"], samples=4)
    specs = expand(grid)
    assert len(specs) == 4 * 4 * 3  # strategies x draws x seeds
    assert len({spec.lr for spec in specs}) == 4
    assert all(0.1 <= spec.lr <= 3 for spec in specs)
    assert expand(load_grid("quickstart", ["lr=loguniform(0.1, 3)"], samples=4)) == specs
    runner = CliRunner()
    dry = runner.invoke(app, ["run", "quickstart", "lr=loguniform(0.1, 3)", "--samples", "4",
                              "--dry-run"])
    assert dry.exit_code == 0 and "quickstart: 48 jobs" in dry.output
    assert "lr (loguniform(0.1, 3.0), 4 draws)" in dry.output
    for words, message in [
        (["lr=loguniform(0.1, 3)"], "Error: quickstart.yaml: lr is a search space: say how many "
                                    "configurations to draw with --samples N (or samples: N in "
                                    "the grid)\n"),
        (["lr=loguniform(-1, 3)", "--samples", "2"],
         "Error: lr=loguniform(-1, 3): loguniform() needs 0 < low < high (a log scale)\n"),
        (["--samples", "2"], "Error: quickstart.yaml: samples: 2 needs search spaces to draw "
                             "from, e.g. 'lr=loguniform(0.01, 1)'\n"),
    ]:
        result = runner.invoke(app, ["run", "quickstart", *words, "--dry-run"])
        assert (result.exit_code, result.stderr) == (2, message)
    assert not (tmp_path / "outputs").exists()
