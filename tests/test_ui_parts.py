"""The parts of `tvo ui` that need no server: host names it answers to, grid names it accepts,
the ETA it shows, what it caches, and the command's own errors."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from typer.testing import CliRunner

from runner.cli.app import app
from runner.ui.cache import Memo, Recent
from runner.ui.grids import Pace
from runner.ui.security import Access, PathError, check_job_id, grid_dir


@pytest.mark.parametrize(("bound", "host", "allowed"), [
    ("127.0.0.1", "127.0.0.1:8731", True),
    ("127.0.0.1", "localhost", True),
    ("127.0.0.1", "[::1]:8731", True),
    ("127.0.0.1", "10.0.0.5:8731", False),  # bound to loopback, nobody else reaches it anyway
    ("127.0.0.1", "evil.example", False),
    ("127.0.0.1", "localhost.evil.example", False),
    ("127.0.0.1", "localhost:notaport", False),
    ("0.0.0.0", "10.0.0.5:8731", True),  # every interface: its addresses are fine ...
    ("0.0.0.0", socket.gethostname(), True),  # ... and the machine's name
    ("0.0.0.0", "evil.example:8731", False),  # a name rebound to this machine is not
    ("myhost.lab", "myhost.lab:8731", True),
])
def test_the_host_names_it_answers_to(bound, host, allowed):
    assert Access("t" * 48, bound).host_allowed(host) is allowed


def test_the_token_is_compared_whole():
    access = Access("a" * 48, "127.0.0.1")
    assert access.token_ok("a" * 48)
    assert not access.token_ok("a" * 47) and not access.token_ok(None) and not access.token_ok("")


def test_grid_names_stay_directly_under_the_root(tmp_path):
    (tmp_path / "out" / "grid").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "link").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "out" / "inside").symlink_to(tmp_path / "out" / "grid")
    out = tmp_path / "out"
    assert grid_dir(out, "grid") == (out / "grid").resolve()
    assert grid_dir(out, "inside") == (out / "grid").resolve()  # a link that stays inside
    for name in ("link", "..", ".", "../elsewhere", "grid/..", "/etc", "a\\b", "", ".hidden",
                 "x" * 101, "missing"):
        with pytest.raises(PathError):
            grid_dir(out, name)
    for job_id in ("../../x", "ABCDEF012345", "0123456789a", "0123456789abc"):
        with pytest.raises(PathError):
            check_job_id(job_id)
    assert check_job_id("0123456789ab") == "0123456789ab"


def test_the_eta_waits_for_ends_then_follows_the_pace():
    pace = Pace()
    pace.observe(0, True, now=0.0)
    for finished, now in ((2, 10.0), (4, 20.0)):
        pace.observe(finished, True, now=now)
        assert pace.eta_s(100 - finished, now) is None  # "estimating": too few ends seen
    pace.observe(6, True, now=30.0)
    # 4 jobs ended in the 20 s since the first end seen: 0.2 jobs/s, 94 left
    assert pace.eta_s(94, 30.0) == pytest.approx(470.0)
    assert pace.eta_s(94, 50.0) == pytest.approx(94 / (4 / 40))  # a stall slows it
    pace.observe(6, False, now=60.0)  # the grid stopped: the pace is forgotten
    assert pace.eta_s(94, 60.0) is None


def test_a_recent_value_is_read_once_while_fresh_and_once_for_waiting_readers():
    reads = []

    def read(key):
        reads.append(key)
        time.sleep(0.05)
        return len(reads)

    recent = Recent(read)
    threads = [threading.Thread(target=recent.get, args=("grid",)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert reads == ["grid"] and recent.get("grid") == 1  # one read for the burst
    assert recent.get("grid", fresh=True) == 2
    recent.forget("grid")
    assert recent.get("grid") == 3


def test_a_memo_computes_each_question_once_and_drops_the_oldest():
    memo = Memo(entries=2)
    calls = []
    for key in ("a", "b", "a", "c", "a", "b"):
        memo.get(key, lambda key=key: calls.append(key) or key.upper())
    assert calls == ["a", "b", "c", "b"]  # b was the least recently used when c came


def test_out_root_must_be_a_folder(tmp_path):
    (tmp_path / "file").write_text("")
    result = CliRunner().invoke(app, ["ui", str(tmp_path / "file")])
    assert result.exit_code == 2
    assert result.stderr == (f"Error: OUT_ROOT '{tmp_path / 'file'}' is not a folder; pass the "
                             "output root that `tvo run --out` wrote to (default: outputs)\n")


def test_a_port_in_use_is_one_line(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["ui", str(tmp_path), "--port", str(port)])
    finally:
        taken.close()
    assert result.exit_code == 2
    assert result.stderr == (f"Error: --port {port}: the port is in use; choose another, or "
                             "--port 0 for any free one\n")


def test_a_host_that_is_no_address_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["ui", str(tmp_path), "--host", "no.such.host.invalid"])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --host 'no.such.host.invalid': not an address of "
                                    "this machine")


def test_each_job_s_curve_is_capped_and_every_group_gets_its_turn(tmp_path):
    from runner.report.load import load_grid
    from runner.ui.curves import curves
    from tests.fake_grid import write_sized_grid

    data = load_grid(write_sized_grid(tmp_path / "grid", strategies=3, seeds=4))
    answer = curves(data, "test_acc", ["strategy"], seeds=True, max_series=5)
    assert (answer["series_total"], answer["series_capped"]) == (12, True)
    assert [series["group"] for series in answer["series"]] == [
        "onehot", "tvo", "fixed", "onehot", "tvo"]
    assert all(series["epochs"] == list(range(6)) for series in answer["series"])


def test_a_stamped_value_is_read_again_when_its_stamp_changes():
    reads = []
    recent = Recent(lambda key: reads.append(key) or len(reads))
    assert recent.get("grid", stamp=("done", 3)) == 1
    time.sleep(0.01)
    assert recent.get("grid", stamp=("done", 3)) == 1  # same counts: the same results
    assert recent.get("grid", stamp=("done", 4)) == 2  # a job ended
