"""jobs.parquet as `tvo aggregate` reads it: column by column (100,000 jobs in a fraction of a
second), with the same settings as reading it row by row, an older table's missing columns at
today's defaults."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from jobs.rundir import results
from runner.report.load import _read_jobs_table, _settings_from_spec
from tests.fake_grid import make_spec, many_strategies


def _specs() -> list:
    return [make_spec(strategy=strategy, seed=seed, hidden=hidden, lr=lr)
            for strategy in many_strategies(4) for seed in (0, 7)
            for hidden, lr in (([16], 0.1), ([32, 8], 0.5))]


def test_the_jobs_table_reads_as_row_by_row_settings(tmp_path: Path) -> None:
    path = tmp_path / "jobs.parquet"
    results.write_parquet(path, results.jobs_table(_specs(), "sized"))
    settings, grid = _read_jobs_table(path)
    rows = pq.read_table(path).to_pylist()
    assert grid == "sized"
    assert list(settings) == [row["job_id"] for row in rows]
    assert [settings[row["job_id"]] for row in rows] == [_settings_from_spec(r) for r in rows]
    first = settings[rows[0]["job_id"]]
    assert first["hidden"] == (16,) and first["strategy_name"] == "onehot"
    assert {s["hidden"] for s in settings.values()} == {(16,), (32, 8)}


def test_a_column_an_older_table_lacks_takes_todays_default(tmp_path: Path) -> None:
    path = tmp_path / "jobs.parquet"
    table = results.jobs_table(_specs(), "sized")
    results.write_parquet(path, table.drop_columns(["momentum", "hidden"]))
    settings, _ = _read_jobs_table(path)
    default = _settings_from_spec({})
    assert {s["momentum"] for s in settings.values()} == {default["momentum"]}
    assert {s["hidden"] for s in settings.values()} == {default["hidden"]}
