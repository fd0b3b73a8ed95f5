"""`tvo ui` over real HTTP, started as a user starts it: the token, Host and Origin checks, no
path outside OUT_ROOT, the CLI's own errors for bad input, and what the API computes (curves with
95 % CIs, the final-metrics table, parallel coordinates, a comparison), checked against the
made-up numbers the grids were written with."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from jobs.metric_catalogue import metric
from runner.cli.app import app
from runner.report.pipeline import aggregate
from runner.report.selection import answer_cells, selection_cells
from tests.fake_grid import (
    curve_rows,
    make_spec,
    many_strategies,
    write_jobs,
    write_run,
    write_sized_grid,
)
from tests.listeners import listeners
from tests.ui_grids import write_compared_grid
from tests.ui_server import REPO, cookie_of, start_ui, wait_until_gone

STRATEGIES, SEEDS, EPOCHS = 3, 4, 5


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("out")
    write_sized_grid(root / "fake", strategies=STRATEGIES, lrs=(0.1, 0.5), seeds=SEEDS,
                     epochs=EPOCHS)
    write_compared_grid(root)
    done, pending = make_spec(seed=0), make_spec(seed=1)
    write_run(root / "partial", done, curve_rows([0.1, 0.5, 0.8]))
    write_jobs(root / "partial", [done, pending])
    outside = tmp_path_factory.mktemp("outside")
    write_sized_grid(outside / "secret", strategies=1, seeds=1)
    (root / "escape").symlink_to(outside / "secret")  # a grid dir that leads out of the root
    (root / "notes").mkdir()  # a folder that is no grid
    return root


@pytest.fixture(scope="module")
def server(root):
    server = start_ui(root)
    yield server
    server.stop()


def test_it_prints_a_loopback_url_with_a_fresh_token_and_serves_the_page(server, root):
    assert server.printed.startswith(f"tvo ui: the grids under {root} at\n")
    assert re.fullmatch(r"[0-9a-f]{48}", server.token)
    status, page, headers = server.request("GET", f"/?token={server.token}", token=False)
    assert status == 200 and f'<meta name="tvo-token" content="{server.token}">' in page
    cookie = headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    assert "default-src 'self'" in headers["content-security-policy"]
    for asset in ("app.js", "grid.js", "charts.js", "app.css", "plotly.min.js"):
        status, _, _ = server.request("GET", f"/static/{asset}", token=False)
        assert status == 200, asset


def test_it_listens_on_loopback_only_by_default(server):
    found = listeners([server.process.pid])
    assert [(listener.address, listener.port) for listener in found] == [
        ("127.0.0.1", server.port)]
    assert all(listener.loopback for listener in found)


def test_the_page_without_the_token_carries_none(server):
    status, page, headers = server.request("GET", "/", token=False)
    assert status == 200 and "tvo-token" not in page and "set-cookie" not in headers
    status, page, _ = server.request("GET", "/?token=" + "0" * 48, token=False)
    assert "tvo-token\" content" not in page


@pytest.mark.parametrize("how", ["none", "wrong header", "wrong cookie", "wrong query"])
def test_the_api_refuses_requests_without_the_token(server, how):
    headers = {"none": {}, "wrong header": {"X-TVO-Token": "f" * 48},
               "wrong cookie": {"Cookie": "tvo_token=" + "f" * 48}, "wrong query": {}}[how]
    path = "/api/grids?token=" + "f" * 48 if how == "wrong query" else "/api/grids"
    status, answer, _ = server.request("GET", path, token=False, headers=headers)
    assert status == 401 and answer["error"].startswith("no valid token: open the URL")


def test_the_cookie_the_url_sets_lets_the_page_read(server):
    _, _, headers = server.request("GET", f"/?token={server.token}", token=False)
    status, answer, _ = server.request("GET", "/api/grids", token=False,
                                       headers={"Cookie": cookie_of(headers)})
    assert status == 200
    assert [grid["name"] for grid in answer["grids"]] == ["compared", "fake", "partial"]


def test_start_and_cancel_need_the_token_header_a_cookie_is_not_enough(server, root):
    _, _, headers = server.request("GET", f"/?token={server.token}", token=False)
    for path, body in (("/api/start", {"grid": "quickstart", "backend": "inline"}),
                       ("/api/grids/fake/cancel", {})):
        status, answer, _ = server.request("POST", path, body=body, token=False,
                                           headers={"Cookie": cookie_of(headers)})
        assert status == 401 and "X-TVO-Token header" in answer["error"]
    assert not (root / "quickstart").exists() and not (root / "fake" / "cancel").exists()


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1.nip.io:{port}",
                                  "localhost.evil.example:{port}", "[::2]:{port}", "", "a b"])
def test_a_foreign_host_is_refused_against_dns_rebinding(server, host):
    header = host.format(port=server.port)
    for path in ("/", "/static/app.js", "/api/grids"):
        status, answer, _ = server.request("GET", path, headers={"Host": header})
        assert status == 403 and "is not this server's" in answer["error"], path


@pytest.mark.parametrize("host", ["localhost:{port}", "127.0.0.1:{port}", "LOCALHOST:{port}",
                                  "[::1]:{port}", "localhost:9000"])
def test_loopback_names_are_served_also_through_a_forwarded_port(server, host):
    status, _, _ = server.request("GET", "/api/grids", headers={"Host": host.format(
        port=server.port)})
    assert status == 200


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "https://127.0.0.1:{port}",
                                    "http://127.0.0.1:1", "http://localhost:{port}"])
def test_a_foreign_origin_is_refused_against_csrf(server, root, origin):
    header = origin.format(port=server.port)
    status, answer, _ = server.request(
        "POST", "/api/start", body={"grid": "quickstart", "backend": "inline"},
        headers={"Origin": header})
    assert status == 403 and "another site's page may not use tvo ui" in answer["error"]
    status, _, _ = server.request("GET", "/api/grids", headers={"Origin": header})
    assert status == 403
    assert not (root / "quickstart").exists()


def test_the_page_s_own_origin_is_accepted(server):
    status, _, _ = server.request("GET", "/api/grids", headers={"Origin": server.base})
    assert status == 200


@pytest.mark.parametrize("path", [
    "/api/grids/..", "/api/grids/...", "/api/grids/%2e%2e", "/api/grids/..%2F..%2Fetc",
    "/api/grids/%2Fetc%2Fpasswd", "/api/grids/%2e%2e%2f%2e%2e%2fetc", "/api/grids/.tvo-ui",
    "/api/grids/escape", "/api/grids/escape/curves", "/api/grids/notes",
    "/api/grids/fake/jobs/..%2F..%2F..%2Fetc%2Fpasswd", "/api/grids/fake/jobs/xyz",
    "/api/grids//etc/passwd", "/api/grids/fake%00", "/static/..%2Fapp.py",
    "/static/%2e%2e/security.py", "/static/../security.py", "/static/index.html",
])
def test_no_path_outside_the_root_is_served(server, path):
    status, answer, _ = server.request("GET", path)
    assert status == 404, (path, answer)
    assert "secret" not in str(answer) and "def " not in str(answer)


def test_a_grid_behind_a_symlink_out_of_the_root_is_not_listed(server):
    names = [grid["name"] for grid in server.get("/api/grids")["grids"]]
    assert "escape" not in names and "notes" not in names


def test_an_uploaded_grid_is_kept_to_the_root(server, root):
    for name in ("../../evil.yaml", "/tmp/evil.yaml", "..yaml", "a/b.yaml", "evil.txt"):
        status, answer, _ = server.request("POST", "/api/plan", body={
            "upload": {"name": name, "text": "name: evil\n"}, "backend": "inline"})
        assert status == 400 and "its name must be a plain file name" in answer["error"], name
    assert not (root.parent / "evil.yaml").exists()


def cli_error(*words: str) -> str:
    """What `tvo run WORDS --dry-run` prints for bad input (exit 2)."""
    result = CliRunner().invoke(app, ["run", *words, "--dry-run"])
    assert result.exit_code == 2, result.output
    return result.stderr.strip()


@pytest.mark.parametrize(("body", "words"), [
    ({"grid": "quickstart", "overrides": ["lrr=0.1"]}, ["quickstart", "lrr=0.1"]),
    ({"grid": "quickstart", "overrides": ["lr=fast"]}, ["quickstart", "lr=fast"]),
    ({"grid": "quickstart", "overrides": ["strategy=nope"]}, ["quickstart", "strategy=nope"]),
    ({"grid": "quickstart", "overrides": ["dataset=mnist", "data_root=/nonexistent"]},
     ["quickstart", "dataset=mnist", "data_root=/nonexistent"]),
    ({"grid": "quickstart", "overrides": ["seed=range(20000)"]}, ["quickstart",
                                                                 "seed=range(20000)"]),
    ({"grid": "nosuchgrid"}, None),
])
def test_bad_input_gets_the_cli_s_one_line_error(server, root, body, words):
    status, answer, _ = server.request("POST", "/api/plan", body={**body, "backend": "inline"})
    assert status == 400 and "\n" not in answer["error"]
    if words is not None:
        assert answer["error"] == cli_error(*words, "--out", str(root))
    else:
        assert answer["error"].startswith("Error: unknown grid 'nosuchgrid': the app starts")


def test_an_uploaded_grid_s_errors_name_the_file_as_the_cli_does(server, tmp_path, monkeypatch):
    text = "name: up\nbase: {lr: -1}\n"
    status, answer, _ = server.request("POST", "/api/plan", body={
        "upload": {"name": "my-grid.yaml", "text": text}, "backend": "inline"})
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my-grid.yaml").write_text(text)
    assert status == 400 and answer["error"] == cli_error("my-grid.yaml")


@pytest.mark.parametrize(("body", "message"), [
    ({"grid": "quickstart", "backend": "mars"}, "Error: --backend: got 'mars'; expected one of "
                                                "ray, inline, slurm"),
    ({"grid": "quickstart", "max_parallel": 0}, "Error: --max-parallel: got '0'; expected a "
                                                "whole number from 1 to 100,000"),
    ({"grid": "quickstart", "overrides": "lr=1"}, "Error: upload must be {name, text} and "
                                                  "overrides a list of KEY=VALUES words"),
    ({}, "Error: choose a shipped grid or upload a grid file"),
])
def test_bad_start_options_are_one_line(server, body, message):
    status, answer, _ = server.request("POST", "/api/start", body=body)
    assert (status, answer["error"]) == (400, message)


def test_a_body_that_is_no_json_is_refused(server):
    status, answer, _ = server.request("POST", "/api/plan", body=b"{nope")
    assert (status, answer["error"]) == (400, "Error: the request body is not JSON")


def test_the_dry_run_shows_jobs_swept_keys_and_stacks_and_writes_nothing(server, root):
    status, plan, _ = server.request("POST", "/api/plan", body={
        "grid": "quickstart", "overrides": ["epochs=1", "seed=range(2)"], "backend": "inline"})
    assert status == 200
    assert (plan["grid"], plan["jobs"], plan["swept"]) == ("quickstart", 16,
                                                           "strategy (4), lr (2), seed (2)")
    dry = CliRunner().invoke(app, ["run", "quickstart", "epochs=1", "seed=range(2)", "--backend",
                                   "inline", "--out", str(root), "--dry-run"])
    lines = dry.output.splitlines()
    assert lines[1] == f"swept: {plan['swept']}" and lines[2] == plan["packing"]  # as the CLI
    assert len(plan["rows"]) == 16 and {row["state"] for row in plan["rows"]} == {"new"}
    assert plan["command"] == (f"tvo run --out {root} --backend inline -- quickstart epochs=1 "
                               "'seed=range(2)'")
    assert not (root / "quickstart").exists()


def test_the_grid_list_counts_jobs_by_state(server):
    grids = {grid["name"]: grid for grid in server.get("/api/grids")["grids"]}
    fake = grids["fake"]
    total = STRATEGIES * 2 * SEEDS
    assert (fake["total"], fake["finished"], fake["progress"], fake["going"]) == (
        total, total, 1.0, False)
    assert fake["counts"] == {"done": total, "running": 0, "failed": 0, "diverged": 0,
                              "cancelled": 0, "pending": 0}


def test_a_grid_says_what_is_swept_and_measured(server):
    detail = server.get("/api/grids/fake")
    results = detail["results"]
    assert results["swept"] == ["strategy", "lr", "seed"]
    assert results["default_by"] == ["strategy", "lr"]
    assert "test_acc" in results["metrics"] and "ts_residual" not in results["metrics"]
    assert results["compare"] is False and server.get("/api/grids/compared")["results"][
        "compare"] is True


def made_up_curve(strategy_index: int, seed: int) -> np.ndarray:
    """tests.fake_grid.write_sized_grid's test accuracies, epoch by epoch."""
    top = 0.8 + 0.15 * strategy_index / STRATEGIES + 0.01 * seed
    return np.minimum([top * (1 - 0.6 ** epoch) + 0.1 for epoch in range(EPOCHS + 1)], 1.0)


def test_curves_are_the_mean_over_seeds_with_a_95_percent_t_band(server):
    answer = server.get("/api/grids/fake/curves?metric=test_acc&by=strategy")
    labels = [group["label"] for group in answer["groups"]]
    assert len(labels) == STRATEGIES
    for index, strategy in enumerate(many_strategies(STRATEGIES)):
        values = np.array([made_up_curve(index, seed) for seed in range(SEEDS)] * 2)  # 2 lrs
        canonical = make_spec(strategy=strategy).strategy
        group = next(g for g in answer["groups"] if g["key"] == {"strategy": canonical})
        assert group["jobs"] == 2 * SEEDS and group["epochs"] == list(range(EPOCHS + 1))
        mean = values.mean(axis=0)
        half = stats.t.ppf(0.975, len(values) - 1) * values.std(axis=0, ddof=1) / math.sqrt(
            len(values))
        np.testing.assert_allclose(group["mean"], mean, rtol=1e-9)
        np.testing.assert_allclose(group["high"], mean + half, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(group["low"], mean - half, rtol=1e-9, atol=1e-12)
    assert "series" not in answer


def test_each_job_s_curve_is_sent_only_when_asked(server):
    answer = server.get("/api/grids/fake/curves?by=strategy,lr&seeds=1")
    assert len(answer["groups"]) == STRATEGIES * 2
    assert answer["series_total"] == len(answer["series"]) == STRATEGIES * 2 * SEEDS
    assert not answer["series_capped"]


def test_curves_of_everything_at_once_and_bad_questions(server):
    answer = server.get("/api/grids/fake/curves?by=&metric=train_loss")
    assert [group["label"] for group in answer["groups"]] == ["all jobs"]
    status, error, _ = server.request("GET", "/api/grids/fake/curves?metric=colour")
    assert status == 400 and error["error"].startswith("Error: unknown metric 'colour'; valid")
    status, error, _ = server.request("GET", "/api/grids/fake/curves?by=dataset")
    assert (status, error["error"]) == (400, "Error: cannot group by 'dataset': the swept "
                                             "settings of this grid are strategy, lr, seed")


def test_the_final_table_pages_filters_and_sorts_on_the_server(server):
    base = "/api/grids/fake/table?metric=test_acc&level=job"
    first = server.get(base + "&limit=5&sort=last&desc=1")
    assert first["total"] == STRATEGIES * 2 * SEEDS and len(first["rows"]) == 5
    columns = first["columns"]
    assert columns == ["job_id", "strategy", "lr", "seed", "state", "epochs", "last", "best",
                       "best_epoch", "min", "max"]
    last = [row[columns.index("last")] for row in first["rows"]]
    assert last == sorted(last, reverse=True)
    best_possible = made_up_curve(STRATEGIES - 1, SEEDS - 1)[-1]
    assert last[0] == pytest.approx(best_possible)
    second = server.get(base + "&limit=5&offset=5&sort=last&desc=1")
    assert second["rows"][0][columns.index("last")] <= last[-1]
    onehot = server.get(base + "&f.strategy=ONEHOT&f.seed=%3E%3D2")  # >=2
    assert onehot["total"] == 2 * 2  # 2 lrs x seeds 2 and 3
    assert {row[columns.index("strategy")] for row in onehot["rows"]} == {"onehot"}
    row = onehot["rows"][0]
    assert row[columns.index("min")] == pytest.approx(0.1)
    assert row[columns.index("best_epoch")] == EPOCHS


def test_the_final_table_by_group(server):
    answer = server.get("/api/grids/fake/table?metric=train_loss&level=group&by=strategy")
    assert answer["columns"] == ["strategy", "jobs", "last_mean", "last_ci", "best_mean",
                                 "min", "max"]
    assert [row[1] for row in answer["rows"]] == [2 * SEEDS] * STRATEGIES
    # train_loss is 1/(epoch+1) in every fake job: lower is better, best = last = 1/6
    assert all(row[2] == pytest.approx(1 / (EPOCHS + 1)) and row[4] == pytest.approx(
        1 / (EPOCHS + 1)) for row in answer["rows"])
    status, error, _ = server.request("GET", "/api/grids/fake/table?sort=colour")
    assert status == 400 and error["error"].startswith("Error: cannot sort by 'colour'")


def test_parallel_coordinates_have_one_line_per_configuration(server):
    answer = server.get("/api/grids/fake/parallel?metric=test_acc")
    assert [d["label"] for d in answer["dimensions"]] == ["strategy", "lr", "final test_acc"]
    assert answer["lines"] == answer["total"] == STRATEGIES * 2
    assert answer["seeds"] == [SEEDS] * (STRATEGIES * 2)
    finals = answer["dimensions"][-1]["values"]
    assert finals == sorted(finals, reverse=True)
    expected = np.mean([made_up_curve(STRATEGIES - 1, seed)[-1] for seed in range(SEEDS)])
    assert finals[0] == pytest.approx(expected)
    assert answer["dimensions"][0]["ticktext"] == sorted(answer["dimensions"][0]["ticktext"])


def test_a_comparison_is_what_tvo_aggregate_computes(server, root, tmp_path):
    answer = server.get("/api/grids/compared/comparison")
    copy = tmp_path / "compared"
    shutil.copytree(root / "compared", copy)
    report = aggregate(copy, plots=False).contents
    protocol = report.protocol
    assert answer["verdicts"] == protocol.verdicts
    assert answer["verdicts"][1].startswith("lecun reaches 0.899 final test accuracy")
    assert "significantly better than onehot at the 5 % level" in answer["verdicts"][1]
    tables = {table["title"]: [table["headers"], *table["rows"]] for table in answer["tables"]}
    assert tables["Selection"] == [selection_cells(protocol)[0], *selection_cells(protocol)[1]]
    headers, rows = answer_cells(protocol, report.summary)
    assert tables["Final seeds against the baseline"] == [headers, *rows]
    assert [curve["method"] for curve in answer["curves"]] == ["onehot", "lecun"]
    assert all(curve["budgets"] == [1, 2, 3, 4] for curve in answer["curves"])
    expected = dict(protocol.curves)["lecun"]
    assert answer["curves"][1]["expected"] == pytest.approx(expected.expected)
    status, error, _ = server.request("GET", "/api/grids/fake/comparison")
    assert (status, error["error"]) == (400, "Error: grid 'fake' has no compare: section")


def test_jobs_and_a_job_s_log(server):
    jobs = server.get("/api/grids/fake/jobs?state=done")
    assert jobs["total"] == STRATEGIES * 2 * SEEDS and jobs["jobs"][0]["state"] == "done"
    job = server.get(f"/api/grids/fake/jobs/{jobs['jobs'][0]['job_id']}")
    assert job["state"] == "done" and job["settings"]["dataset"] == "digits"
    assert server.get("/api/grids/fake/jobs?state=failed")["total"] == 0


@pytest.mark.slow
def test_a_run_started_from_the_page_goes_on_when_the_server_stops(tmp_path):
    """The run is a process of its own session: the server (and the page) may go, the run
    finishes, and `tvo status` sees it done."""
    server = start_ui(tmp_path)
    try:
        status, started, _ = server.request("POST", "/api/start", body={
            "grid": "quickstart", "overrides": ["epochs=1", "seed=0", "hidden=[8]"],
            "backend": "inline"})
        assert status == 200, started
        assert started["command"] == (f"tvo run --out {tmp_path} --backend inline -- quickstart "
                                      "epochs=1 seed=0 'hidden=[8]'")
    finally:
        said = server.stop()
    assert server.process.returncode == 0
    assert said.endswith("\ntvo ui stopped; runs started from it go on (see `tvo status`)\n")
    assert wait_until_gone(started["pid"], 120), "the run did not finish"
    result = subprocess.run([sys.executable, "-m", "runner", "status",
                             str(tmp_path / "quickstart")], capture_output=True, text=True,
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "done 8 · running 0 · failed 0" in result.stdout
    assert "quickstart: 8 jobs" in Path(started["output"]).read_text()


def test_one_job_is_cancelled_and_a_job_the_grid_lacks_is_one_line(server):
    pending = make_spec(seed=1).job_id
    partial = server.get("/api/grids/partial")
    assert partial["counts"]["pending"] == 1 and partial["counts"]["done"] == 1
    status, answer, _ = server.request("POST", "/api/grids/partial/cancel",
                                       body={"jobs": [pending], "grace_s": 0})
    assert status == 200, answer
    assert (answer["whole_grid"], answer["targets"], answer["running"]) == (False, 1, 0)
    status, answer, _ = server.request("POST", "/api/grids/partial/cancel",
                                       body={"jobs": ["0123456789ab"]})
    assert status == 400 and answer["error"].startswith("Error: ") and (
        "has no job '0123456789ab'" in answer["error"])
    status, answer, _ = server.request("POST", "/api/grids/partial/cancel",
                                       body={"grace_s": -1})
    assert (status, answer["error"]) == (400, "Error: grace_s: got '-1'; expected seconds from "
                                              "0 to 3600")


def test_a_grid_without_finished_jobs_says_so_and_lists_its_jobs(server, root):
    detail = server.get("/api/grids/partial")
    assert detail["results"] is not None  # one job is done
    status, answer, _ = server.request("GET", "/api/grids/partial/curves")
    assert status == 200 and answer["groups"][0]["jobs"] == 1


def test_the_server_reads_its_grids_ahead_when_it_starts(server):
    deadline = time.monotonic() + 60
    while not server.get("/api/session")["read_ahead_done"] and time.monotonic() < deadline:
        time.sleep(0.1)
    session = server.get("/api/session")
    assert session["read_ahead_done"] and "quickstart" in session["shipped"]
    assert session["metric_descriptions"]["test_acc"] == metric("test_acc").description
