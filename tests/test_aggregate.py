"""tvo aggregate on made-up grids: statistics per group, baseline, partial grids, compaction."""

from __future__ import annotations

import math
import os
from pathlib import Path

import polars as pl
import pytest
from scipy import stats as scipy_stats

from jobs.rundir import results
from jobs.rundir.states import DIVERGED, DONE, FAILED, RUNNING
from runner.dispatch.status import grid_status
from runner.report import stats
from runner.report.load import AggregateError, load_grid
from runner.report.pipeline import aggregate
from tests import rundir_view
from tests.fake_grid import (
    curve_rows,
    make_spec,
    write_jobs,
    write_legacy_run,
    write_run,
    write_runs,
)

FIXED = "fixed(c=0.9, nc=0.1)"
T_975_DF2 = 4.302652729749464  # Student's t table: 97.5 % quantile, 2 degrees of freedom
# test accuracy at epochs 0..3 per seed; onehot seed 2 peaks before its last epoch
CURVES = {
    "onehot": [[0.10, 0.50, 0.85, 0.90], [0.10, 0.60, 0.91, 0.92], [0.20, 0.70, 0.95, 0.94]],
    FIXED: [[0.30, 0.80, 0.93, 0.95], [0.30, 0.85, 0.94, 0.96], [0.40, 0.90, 0.95, 0.97]],
}
MOVING = [(0.9, 0.1), (0.8, 0.15), (0.7, 0.2), (0.75, 0.2)]  # (c, nc) per epoch for FIXED


def build_grid(root: Path, *, partial: bool = False) -> Path:
    """2 strategies x 3 seeds done; partial adds failed, diverged, running, pending onehot jobs."""
    specs = []
    for strategy, curves in CURVES.items():
        for seed, curve in enumerate(curves):
            spec = make_spec(strategy=strategy, seed=seed)
            write_run(root, spec, curve_rows(curve, targets=MOVING if strategy == FIXED else None))
            specs.append(spec)
    if partial:
        failed, diverged, running, pending = (make_spec(strategy="onehot", seed=s)
                                              for s in (3, 4, 5, 6))
        write_run(root, failed, None, state=FAILED, error="RuntimeError: out of memory")
        write_run(root, diverged, curve_rows([0.1, 0.2, None]), state=DIVERGED,
                  error="training loss became nan in epoch 2")
        write_run(root, running, None, state=RUNNING)
        specs += [failed, diverged, running, pending]
    write_jobs(root, specs)
    return root


def row_of(aggregation, strategy: str) -> dict:
    return next(r for r in aggregation.summary.rows if r["strategy"] == make_spec(
        strategy=strategy).strategy)


def trapezoid_auc(curve: list[float]) -> float:
    return sum((curve[i] + curve[i + 1]) / 2 for i in range(len(curve) - 1)) / (len(curve) - 1)


def test_statistics_per_group_match_hand_computed_values(tmp_path):
    result = aggregate(build_grid(tmp_path), plots=False)
    assert result.summary.keys == ["strategy"]
    onehot = row_of(result, "onehot")
    assert (onehot["jobs"], onehot["seeds"]) == (3, 3)
    # final accuracies 0.90, 0.92, 0.94: mean 0.92, std 0.02
    assert onehot["final_test_acc_mean"] == pytest.approx(0.92)
    assert onehot["final_test_acc_std"] == pytest.approx(0.02)
    half = T_975_DF2 * 0.02 / math.sqrt(3)
    assert onehot["final_test_acc_ci_low"] == pytest.approx(0.92 - half)
    assert onehot["final_test_acc_ci_high"] == pytest.approx(0.92 + half)
    # test accuracy where each seed's validation accuracy peaks (here the same curve): 0.90,
    # 0.92, 0.95
    assert onehot["test_acc_at_best_val_mean"] == pytest.approx((0.90 + 0.92 + 0.95) / 3)
    # first epoch at >= 0.9: 3, 2, 2 -> median 2
    assert onehot["epochs_to_threshold"] == 2
    assert (onehot["threshold_reached"], onehot["threshold_never"]) == (3, 0)
    aucs = [trapezoid_auc(c) for c in CURVES["onehot"]]  # 1.85/3, 2.02/3, 2.22/3
    assert aucs[0] == pytest.approx(1.85 / 3)
    assert onehot["acc_auc_mean"] == pytest.approx(sum(aucs) / 3)
    # fake rows have test_nll = 2 - acc, train_loss = 1 / (epoch + 1), ece 0.05
    assert onehot["test_nll_mean"] == pytest.approx(2 - 0.92)
    assert onehot["final_train_loss_mean"] == pytest.approx(0.25)
    assert onehot["ece_mean"] == pytest.approx(0.05) and onehot["ece_std"] == pytest.approx(0)
    assert [r["strategy"] for r in result.summary.rows] == [make_spec(strategy=FIXED).strategy,
                                                             "onehot"]  # best first


@pytest.mark.parametrize(("threshold", "median", "reached"), [
    (0.95, 2.0, 1),  # only seed 2 gets there, at epoch 2
    (0.99, None, 0),  # never: a value, not an error
])
def test_epochs_to_threshold_counts_seeds_that_never_reach_it(tmp_path, threshold, median,
                                                               reached):
    result = aggregate(build_grid(tmp_path), threshold=threshold, plots=False)
    onehot = row_of(result, "onehot")
    assert (onehot["threshold_reached"], onehot["threshold_never"]) == (reached, 3 - reached)
    if median is None:
        assert math.isnan(onehot["epochs_to_threshold"])
    else:
        assert onehot["epochs_to_threshold"] == median


def test_groups_whose_seeds_pair_up_are_compared_by_a_paired_test(tmp_path):
    result = aggregate(build_grid(tmp_path), plots=False)
    fixed, onehot = row_of(result, FIXED), row_of(result, "onehot")
    # per seed: fixed - onehot = 0.05, 0.04, 0.03 -> mean 0.04, std 0.01, t = 0.04 / (0.01 /
    # sqrt(3)) = 6.928 with 2 degrees of freedom, two-sided p = 0.0202 (t table)
    t = 0.04 / (0.01 / math.sqrt(3))
    assert fixed["test"] == "paired t" and fixed["pairs"] == 3
    assert fixed["baseline"] == "strategy=onehot"
    assert fixed["diff_final_test_acc"] == pytest.approx(0.04)
    assert fixed["p_value"] == pytest.approx(0.020204, abs=1e-6)
    assert fixed["p_value"] == pytest.approx(2 * scipy_stats.t.sf(t, 2))
    half = T_975_DF2 * 0.01 / math.sqrt(3)
    assert (fixed["diff_ci_low"], fixed["diff_ci_high"]) == pytest.approx((0.04 - half,
                                                                         0.04 + half))
    assert fixed["p_holm"] == pytest.approx(fixed["p_value"])  # one comparison: no correction
    assert fixed["significant"] is True
    assert onehot["baseline"] is None and math.isnan(onehot["p_value"])
    assert onehot["test"] is None and math.isnan(onehot["p_holm"])


def test_p_values_are_holm_corrected_across_all_comparisons(tmp_path):
    finals = {"onehot": [0.90, 0.91, 0.92, 0.93], FIXED: [0.93, 0.95, 0.94, 0.97],
              "lecun": [0.91, 0.91, 0.94, 0.92], "label_smoothing(eps=0.1)": [0.90, 0.92, 0.91,
                                                                              0.95]}
    for strategy, accuracies in finals.items():
        for seed, final in enumerate(accuracies):
            write_run(tmp_path, make_spec(strategy=strategy, seed=seed),
                      curve_rows([0.1, 0.5, final]))
    rows = {r["label"]: r for r in aggregate(tmp_path, plots=False).summary.rows}
    raw = {label: scipy_stats.ttest_rel(finals[strategy], finals["onehot"]).pvalue
           for label, strategy in (("fixed", FIXED), ("lecun", "lecun"),
                                   ("label_smoothing", "label_smoothing(eps=0.1)"))}
    # Holm by hand: the smallest p times 3, the next times 2, the largest times 1, each at
    # least the one before
    order = sorted(raw, key=raw.get)
    expected, running = {}, 0.0
    for rank, label in enumerate(order):
        running = max(running, min(1.0, raw[label] * (len(order) - rank)))
        expected[label] = running
    for label in raw:
        assert rows[label]["p_value"] == pytest.approx(raw[label])
        assert rows[label]["p_holm"] == pytest.approx(expected[label])
        assert rows[label]["significant"] is bool(expected[label] < 0.05)
    assert rows["fixed"]["p_holm"] > rows["fixed"]["p_value"]


def test_groups_on_different_data_are_compared_by_welch(tmp_path):
    finals = {("onehot", "digits"): [0.90, 0.92, 0.94], ("onehot", "mnist1d"): [0.95, 0.96, 0.97]}
    for (strategy, dataset), accuracies in finals.items():
        for seed, final in enumerate(accuracies):
            write_run(tmp_path, make_spec(strategy=strategy, dataset=dataset, seed=seed),
                      curve_rows([0.1, 0.5, final]))
    result = aggregate(tmp_path, baseline="dataset=digits", plots=False)
    mnist1d = next(r for r in result.summary.rows if r["dataset"] == "mnist1d")
    expected = stats.welch([0.95, 0.96, 0.97], [0.90, 0.92, 0.94])
    assert (mnist1d["test"], mnist1d["pairs"]) == ("Welch t", None)
    assert mnist1d["p_value"] == pytest.approx(0.0553, abs=1e-3)
    assert (mnist1d["diff_ci_low"], mnist1d["diff_ci_high"]) == pytest.approx(
        (expected.ci_low, expected.ci_high))
    assert mnist1d["significant"] is False


def test_baseline_option_takes_any_spelling_of_a_value(tmp_path):
    result = aggregate(build_grid(tmp_path), baseline="strategy=fixed(nc=0.1,c=0.9)",
                       plots=False)
    onehot = row_of(result, "onehot")
    assert onehot["diff_final_test_acc"] == pytest.approx(-0.04)
    assert onehot["baseline"] == "strategy=fixed(c=0.9, nc=0.1, normalize=false)"


def test_baseline_is_matched_within_each_combination_of_other_settings(tmp_path):
    accuracies = {("onehot", 0.1): [0.80, 0.82], (FIXED, 0.1): [0.90, 0.92],
                  (FIXED, 0.5): [0.70, 0.71], ("onehot", 0.5): [0.60, 0.62],
                  (FIXED, 0.9): [0.5, 0.52]}  # no onehot at lr=0.9
    for (strategy, lr), finals in accuracies.items():
        for seed, final in enumerate(finals):
            write_run(tmp_path, make_spec(strategy=strategy, lr=lr, seed=seed),
                      curve_rows([0.1, 0.3, 0.5, final]))
    result = aggregate(tmp_path, plots=False)
    assert result.summary.keys == ["strategy", "lr"]
    rows = {(r["strategy"].split("(")[0], r["lr"]): r for r in result.summary.rows}
    assert rows[("fixed", 0.1)]["diff_final_test_acc"] == pytest.approx(0.10)
    assert rows[("fixed", 0.5)]["diff_final_test_acc"] == pytest.approx(0.095)
    assert rows[("fixed", 0.5)]["baseline"] == "strategy=onehot; lr=0.5"
    assert rows[("fixed", 0.9)]["baseline"] is None
    assert result.summary.baseline_note == (
        "1 group(s) have no strategy=onehot group with otherwise equal settings: "
        "fixed; lr=0.9")
    by_strategy = aggregate(tmp_path, by=["strategy"], plots=False)
    # lr merged: onehot 0.71 mean over 4 runs (seeds 0 and 1 at two lr) beats fixed's 0.708
    # over 6 (the same 2 seeds at three lr)
    assert [(r["strategy"], r["runs"], r["seeds"]) for r in by_strategy.summary.rows] == [
        ("onehot", 4, 2), ("fixed(c=0.9, nc=0.1, normalize=false)", 6, 2)]


def test_partial_grid_counts_what_is_missing(tmp_path):
    result = aggregate(build_grid(tmp_path, partial=True), plots=False)
    onehot = row_of(result, "onehot")
    assert (onehot["jobs"], onehot["seeds"]) == (7, 3)
    assert [onehot[s] for s in ("failed", "diverged", "running", "cancelled", "pending")] == [
        1, 1, 1, 0, 1]
    assert onehot["final_test_acc_mean"] == pytest.approx(0.92)  # diverged seed not averaged
    report = (tmp_path / "summary" / "report.md").read_text()
    assert "10 jobs: 6 done, 1 diverged, 1 failed, 1 running, 1 pending." in report
    assert "| failed | RuntimeError: out of memory |" in report
    assert "| diverged | training loss became nan in epoch 2 |" in report


def test_single_setting_grid_is_one_group_without_baseline(tmp_path):
    for seed, final in enumerate([0.5, 0.7]):
        write_run(tmp_path, make_spec(seed=seed), curve_rows([0.1, 0.2, 0.3, final]))
    result = aggregate(tmp_path, plots=False)
    assert result.summary.keys == []
    [row] = result.summary.rows
    assert row["group"] == "all jobs" and row["final_test_acc_mean"] == pytest.approx(0.6)
    assert result.summary.baseline_note == (
        "no baseline comparison: strategy is not among the grouping settings; choose one with "
        "--baseline KEY=VALUE")


def test_runs_without_jobs_table_take_settings_from_metrics(tmp_path):
    build_grid(tmp_path)
    (tmp_path / "jobs.parquet").unlink()
    result = aggregate(tmp_path, plots=False)
    assert row_of(result, "onehot")["seeds"] == 3
    assert row_of(result, FIXED)["diff_final_test_acc"] == pytest.approx(0.04)


def results_files(grid_dir: Path) -> list[str]:
    return [str(path) for path in sorted(grid_dir.glob("results/*.parquet"))]


def test_compaction_is_reused_and_updated_file_by_file(tmp_path):
    build_grid(tmp_path)
    first = aggregate(tmp_path, plots=False)
    assert first.data.compaction == "compacted 6 results files into summary/metrics.parquet"
    compacted = tmp_path / "summary" / "metrics.parquet"
    runs = pl.read_parquet(results_files(tmp_path))  # one glob reads every row
    assert pl.read_parquet(compacted).sort("job_id", "epoch").equals(runs.sort("job_id", "epoch"))
    assert aggregate(tmp_path, plots=False).data.compaction == "reused summary/metrics.parquet"

    extra = make_spec(strategy="onehot", seed=7)
    write_run(tmp_path, extra, curve_rows([0.1, 0.2, 0.3, 0.4]))
    updated = aggregate(tmp_path, plots=False)
    assert updated.data.compaction == (
        "updated summary/metrics.parquet: kept 6 results files, read 1, dropped 0")
    assert row_of(updated, "onehot")["seeds"] == 4
    assert pl.read_parquet(compacted).height == 7 * 4

    Path(rundir_view.record(tmp_path, extra.job_id).committed).unlink()
    dropped = aggregate(tmp_path, plots=False)
    assert dropped.data.compaction.endswith("kept 6 results files, read 0, dropped 1")
    assert pl.read_parquet(compacted).height == 6 * 4
    assert not list((tmp_path / "summary").glob(".*tmp"))


def test_compacted_file_is_plain_parquet_that_pyarrow_reads(tmp_path):
    import pyarrow.parquet as pq

    build_grid(tmp_path)
    aggregate(tmp_path, plots=False)
    compacted = pq.read_table(tmp_path / "summary" / "metrics.parquet")
    assert compacted.column_names == results.metrics_schema().names
    runs = pq.ParquetDataset(results_files(tmp_path)).read()
    key = [("job_id", "ascending"), ("epoch", "ascending")]
    assert compacted.sort_by(key).to_pylist() == runs.sort_by(key).to_pylist()
    version = pq.ParquetFile(tmp_path / "summary" / "metrics.parquet").metadata.metadata
    assert version[b"tvo.schema_version"] == results.metrics_schema().metadata[
        b"tvo.schema_version"]


def test_the_results_are_one_glob_for_duckdb_pandas_and_polars(tmp_path):
    import duckdb
    import pandas

    build_grid(tmp_path)
    pattern = str(tmp_path / "results" / "*.parquet")
    by_duckdb = duckdb.sql(f"select strategy, avg(test_acc) as acc from '{pattern}' "
                           "where epoch = 3 group by strategy order by strategy").fetchall()
    by_polars = (pl.scan_parquet(pattern).filter(pl.col("epoch") == 3).group_by("strategy")
                 .agg(pl.col("test_acc").mean()).sort("strategy").collect().rows())
    frames = pandas.concat(pandas.read_parquet(path) for path in results_files(tmp_path))
    by_pandas = frames[frames.epoch == 3].groupby("strategy").test_acc.mean()
    assert by_duckdb == pytest.approx(by_polars)
    assert by_pandas.to_dict() == pytest.approx(dict(by_polars))
    assert dict(by_polars)["onehot"] == pytest.approx(0.92)


def test_rewritten_results_file_is_read_again(tmp_path):
    build_grid(tmp_path)
    aggregate(tmp_path, plots=False)
    spec = make_spec(strategy="onehot", seed=0)
    write_run(tmp_path, spec, curve_rows([0.1, 0.2, 0.3, 0.60]))  # its stack's file, again
    os.utime(rundir_view.record(tmp_path, spec.job_id).committed, ns=(1, 1))  # even an old
    result = aggregate(tmp_path, plots=False)  # mtime is noticed: the fingerprint differs
    assert result.data.compaction.endswith("kept 5 results files, read 1, dropped 0")
    assert row_of(result, "onehot")["final_test_acc_mean"] == pytest.approx((0.6 + 0.92 + 0.94) / 3)


def test_metrics_of_an_older_schema_read_with_new_columns_empty(tmp_path):
    spec = make_spec()
    table = results.metrics_table(spec, "old", curve_rows([0.1, 0.2, 0.3, 0.8]))
    write_legacy_run(tmp_path, spec, None)
    results.write_parquet(tmp_path / "runs" / spec.job_id / "metrics.parquet",
                          table.drop_columns(["ts_residual", "target_matrix"]))
    data = load_grid(tmp_path)
    frame = data.metrics.collect()
    assert frame["ts_residual"].null_count() == 4 and frame["test_acc"].to_list()[-1] == 0.8


def test_the_layout_before_results_by_the_stack_is_still_read(tmp_path):
    """A grid dir of runs/<job_id>/ folders, then more jobs run into it: status and aggregate
    read both, each job's rows once."""
    specs = []
    for strategy, curves in CURVES.items():
        for seed, curve in enumerate(curves):
            spec = make_spec(strategy=strategy, seed=seed)
            writer = write_legacy_run if seed < 2 else write_run
            writer(tmp_path, spec, curve_rows(curve))
            specs.append(spec)
    failed = make_spec(strategy="onehot", seed=9)
    write_legacy_run(tmp_path, failed, None, state=FAILED, error="RuntimeError: boom")
    write_jobs(tmp_path, [*specs, failed])
    result = aggregate(tmp_path, plots=False)
    assert row_of(result, "onehot")["seeds"] == 3
    assert row_of(result, "onehot")["final_test_acc_mean"] == pytest.approx(0.92)
    assert pl.read_parquet(tmp_path / "summary" / "metrics.parquet").height == 6 * 4
    status = grid_status(tmp_path)
    assert status.counts["done"] == 6 and status.counts["failed"] == 1
    assert status.problems[0].error == "RuntimeError: boom"


def test_rows_of_a_job_committed_twice_are_read_once(tmp_path):
    """Never written by tvo's runner (claims and the state index prevent it), but a copied-in
    file must not double a job's rows either: each finished job is read from one file."""
    build_grid(tmp_path)
    spec = make_spec(strategy="onehot", seed=0)
    write_runs(tmp_path, [(spec, curve_rows([0.1, 0.2, 0.3, 0.5]), DONE, None),
                          (make_spec(strategy="onehot", seed=8), curve_rows([0.1, 0.2, 0.3, 0.9]),
                           DONE, None)])
    result = aggregate(tmp_path, plots=False)
    frame = pl.read_parquet(tmp_path / "summary" / "metrics.parquet")
    assert frame.filter(pl.col("job_id") == spec.job_id).height == 4
    assert row_of(result, "onehot")["seeds"] == 4


def test_unreadable_results_file_is_named(tmp_path):
    build_grid(tmp_path)
    broken = Path(results_files(tmp_path)[0])
    broken.write_bytes(b"not parquet")
    with pytest.raises(AggregateError) as error:
        aggregate(tmp_path, plots=False)
    assert str(error.value) == (f"{broken} is not a readable results file (cut short or "
                                "damaged); `tvo run` on this grid sets it aside and trains its "
                                "jobs again")
    assert not (tmp_path / "summary").exists()  # nothing written


def test_grid_without_finished_jobs_says_so(tmp_path):
    specs = [make_spec(seed=s) for s in range(3)]
    write_jobs(tmp_path, specs)
    write_run(tmp_path, specs[0], None, state=RUNNING)
    with pytest.raises(AggregateError) as error:
        aggregate(tmp_path)
    assert str(error.value) == (f"{tmp_path} has no finished jobs yet: none of its 3 jobs has "
                                "committed results (2 pending, 1 running)")


def test_epochs_are_chosen_on_validation_not_on_test(tmp_path):
    from tests.fake_grid import curve_rows, make_spec, write_run

    grid_dir = tmp_path / "grid"
    for seed in range(2):  # test peaks at epoch 1, validation at epoch 3
        write_run(grid_dir, make_spec(seed=seed),
                  curve_rows([0.2, 0.95, 0.6, 0.7], val_acc=[0.2, 0.5, 0.6, 0.9]))
    row = aggregate(grid_dir, plots=False, threshold=0.8).summary.rows[0]
    assert row["test_acc_at_best_val_mean"] == pytest.approx(0.7)  # not 0.95
    assert row["epochs_to_threshold"] == 3  # validation reaches 0.8 at epoch 3, test at 1
