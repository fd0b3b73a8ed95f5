"""A results file's commit read from its footer's bytes (tvo status over 1,563 files at 100,000
jobs), the same as pyarrow reads it; anything else found there falls back to pyarrow or None."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.rundir import footer, results
from jobs.rundir.results import STACK_KEY, Commit, read_commit, write_stack_results

OUTCOMES = {f"job{i}": {"state": "done", "epochs_done": 2, "test_acc": 0.5 + i / 1000}
            for i in range(300)}  # a value over 16 KB: a varint length of three bytes


def committed(tmp_path: Path, log: str = "logs/p1.log") -> Path:
    path = tmp_path / "s1.parquet"
    table = pa.table({"job_id": ["job0", "job1"], "epoch": [0, 1]})
    write_stack_results(path, table, Commit("s1", 12.5, OUTCOMES, "host", 7, log))
    return path


def test_the_footers_bytes_give_what_pyarrow_gives(tmp_path: Path) -> None:
    path = committed(tmp_path)
    value = footer.footer_value(path, STACK_KEY)
    assert value is not None and len(value) > 16_384
    assert value == pq.read_metadata(path).metadata[STACK_KEY]
    commit = read_commit(path)
    assert commit == Commit("s1", 12.5, OUTCOMES, "host", 7, "logs/p1.log")


def test_what_is_not_a_committed_results_file_gives_nothing(tmp_path: Path) -> None:
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(committed(tmp_path).read_bytes()[:-100])
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"a": [1]}), plain)
    text = tmp_path / "text.parquet"
    text.write_text("not parquet")
    for path in (cut, plain, text, tmp_path / "gone.parquet"):
        assert footer.footer_value(path, STACK_KEY) is None
        assert read_commit(path) is None


def test_a_footer_the_bytes_do_not_explain_is_read_by_pyarrow(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = committed(tmp_path)
    monkeypatch.setattr(results, "footer_value", lambda *_: b"{not json")
    assert read_commit(path) == Commit("s1", 12.5, OUTCOMES, "host", 7, "logs/p1.log")
