"""Claims: one file per runner, jobs taken under the dispatch lock, never twice; released, taken
over from runners that died, kept alive by the heartbeat, watched by workers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from jobs.rundir.claim_watch import WATCH_EXIT_CODE, ClaimWatch
from jobs.rundir.claims import ClaimBook, ClaimReader, DispatchLock, live_held
from jobs.rundir.journal import process_start
from jobs.rundir.layout import OutputDir
from tests.backend_suite import dead_pid


def write_runner(grid_dir: Path, name: str, *, host: str, pid: int, age_s: float = 0.0,
                 take: tuple[str, ...] = (), release: tuple[str, ...] = (),
                 lease_s: float = 60.0) -> Path:
    """A claim file as another runner leaves it: who, what it took and released, and its
    last heartbeat `age_s` ago."""
    path = OutputDir(grid_dir).claims / f"{name}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [{"runner": name, "host": host, "pid": pid, "pid_start": "1", "lease_s": lease_s}]
    lines += [{"take": list(take)}] if take else []
    lines += [{"release": list(release)}] if release else []
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def dead_runner(grid_dir: Path, *jobs: str) -> Path:
    """A runner on this host that was SIGKILLed holding `jobs`."""
    return write_runner(grid_dir, "dead", host=socket.gethostname(), pid=dead_pid(), take=jobs)


def test_process_start_tells_live_from_dead() -> None:
    assert process_start(os.getpid())
    assert process_start(dead_pid()) is None


def test_a_book_must_be_open_to_claim(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="open the book before claiming"):
        ClaimBook(tmp_path).take(["a"])


def test_a_job_is_exclusive_until_released(tmp_path: Path) -> None:
    with ClaimBook(tmp_path) as first, ClaimBook(tmp_path) as second:
        assert first.take(["a", "b"]).taken == ["a", "b"]
        assert first.take(["a"]).taken == ["a"]  # holding it already
        taken = second.take(["a", "c"])
        assert taken.taken == ["c"] and list(taken.elsewhere) == ["a"]
        assert taken.elsewhere["a"].runner.runner == first.runner
        assert taken.elsewhere["a"].is_live()
        first.release(["a"])
        again = second.take(["a"])
        assert again.taken == ["a"]
        replaced = again.replaced["a"]  # as it was at the takeover: released by a live runner
        assert replaced.runner.runner == first.runner and replaced.released
        assert replaced.runner_alive()
        assert live_held(tmp_path) == {"a", "b", "c"}


def test_one_file_per_runner_however_many_jobs(tmp_path: Path) -> None:
    with ClaimBook(tmp_path) as book:
        book.take([f"job{i}" for i in range(5000)])
        names = sorted(path.name for path in OutputDir(tmp_path).claims.iterdir())
        assert names == [f"{book.runner}.jsonl", "lock"]
        assert len(live_held(tmp_path)) == 5000


def test_closing_the_book_releases_every_claim_and_removes_its_file(tmp_path: Path) -> None:
    with ClaimBook(tmp_path) as book:
        book.take(["a", "b"])
        path = book.path
    assert not path.exists()
    assert live_held(tmp_path) == set()
    with ClaimBook(tmp_path) as book:
        assert book.take(["a", "b"]).taken == ["a", "b"]


def test_a_dead_runners_jobs_are_taken_over_after_a_grace(tmp_path: Path) -> None:
    dead_runner(tmp_path, "a")
    assert live_held(tmp_path) == set()
    with ClaimBook(tmp_path) as book:
        taken = book.take(["a"])
        assert taken.taken == ["a"] and not taken.replaced["a"].released
        assert book.grace_left() > 0.5  # its workers stop within the grace
    assert not (OutputDir(tmp_path).claims / "dead.jsonl").exists()  # swept at the end


def test_another_hosts_runner_holds_while_its_heartbeat_is_fresh(tmp_path: Path) -> None:
    write_runner(tmp_path, "far", host="elsewhere.invalid", pid=1, age_s=5, take=("a",))
    write_runner(tmp_path, "stale", host="elsewhere.invalid", pid=1, age_s=61, take=("b",))
    with ClaimBook(tmp_path) as book:
        taken = book.take(["a", "b"])
        assert taken.taken == ["b"]
        assert taken.elsewhere["a"].runner.host == "elsewhere.invalid"


def test_the_heartbeat_keeps_the_lease_fresh_and_a_removed_file_is_lost(tmp_path: Path) -> None:
    with ClaimBook(tmp_path, lease_s=0.2) as book:
        book.take(["a"])
        old = time.time() - 100
        os.utime(book.path, (old, old))
        time.sleep(0.3)
        assert time.time() - book.path.stat().st_mtime < 1
        book.path.unlink()  # what a runner that thought this one dead does
        time.sleep(0.3)
        assert book.lost


def test_the_reader_takes_in_only_what_was_appended(tmp_path: Path) -> None:
    with ClaimBook(tmp_path) as book:
        reader = ClaimReader(tmp_path)
        book.take(["a"])
        reader.refresh()
        assert set(reader.holders()) == {"a"}
        book.take(["b"])
        book.release(["a"])
        reader.refresh()
        holders = reader.holders()
        assert holders["a"].released and not holders["b"].released


def race_for(grid_dir: Path, runners: int, job: str) -> None:
    """Many runners try to take one job at the same moment: exactly one gets it."""
    outcomes: list[list[str]] = [[] for _ in range(runners)]
    start = threading.Barrier(runners)
    with ExitStack() as stack:
        books = [stack.enter_context(ClaimBook(grid_dir)) for _ in range(runners)]

        def race(index: int) -> None:
            start.wait()
            outcomes[index] = books[index].take([job]).taken

        threads = [threading.Thread(target=race, args=(i,)) for i in range(runners)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(len(taken) for taken in outcomes) == 1


def test_holders_of_some_jobs_are_the_same_as_of_all(tmp_path: Path) -> None:
    """A claim looks up only its own jobs' holders: the same answers as the whole table, a
    live holder over a dead one, a holding one over one that released."""
    dead_runner(tmp_path, "a", "b")
    write_runner(tmp_path, "far", host="elsewhere.invalid", pid=1, age_s=5, take=("b", "c"),
                 release=("d",))
    write_runner(tmp_path, "stale", host="elsewhere.invalid", pid=1, age_s=61,
                 take=("d", "e"))
    reader = ClaimReader(tmp_path)
    reader.refresh()
    every = reader.holders()
    assert set(every) == {"a", "b", "c", "d", "e"}
    assert every["b"].runner.runner == "far" and every["d"].released
    some = reader.holders(["b", "d", "x"])
    assert some == {"b": every["b"], "d": every["d"]}
    assert reader.holders([]) == {}


def test_only_one_of_many_racing_runners_takes_a_job(tmp_path: Path) -> None:
    for attempt in range(5):
        dead_runner(tmp_path, f"stale{attempt}")
        race_for(tmp_path, 8, f"fresh{attempt}")
        race_for(tmp_path, 8, f"stale{attempt}")


def test_a_dispatch_lock_left_by_a_dead_runner_is_taken(tmp_path: Path) -> None:
    folder = OutputDir(tmp_path).claims / "lock"
    folder.mkdir(parents=True)
    (folder / "0").write_text(json.dumps({"runner": "dead", "host": socket.gethostname(),
                                          "pid": dead_pid(), "pid_start": "1"}))
    with DispatchLock(tmp_path, {"runner": "me"}) as lock:
        assert lock.path == folder / "1"
    assert sorted(path.name for path in folder.iterdir()) == ["1"]


def test_the_next_lock_removes_temp_files_of_runners_killed_while_writing_one(
        tmp_path: Path) -> None:
    folder = OutputDir(tmp_path).claims / "lock"
    folder.mkdir(parents=True)
    with DispatchLock(tmp_path, {"runner": "killed"}):
        pass
    # a runner SIGKILLed between writing its lock's temp file and linking it into place
    for name in (".1.k1ll3d.tmp", ".2.k1ll3d.tmp"):
        (folder / name).write_text("{")
    with DispatchLock(tmp_path, {"runner": "me"}) as lock:
        assert lock.path == folder / "1"
    assert sorted(path.name for path in folder.iterdir()) == [".2.k1ll3d.tmp", "1"]
    with DispatchLock(tmp_path, {"runner": "me"}) as lock:
        assert lock.path == folder / "2"
    assert sorted(path.name for path in folder.iterdir()) == ["2"]


def test_a_worker_watch_sees_its_runner_end_or_die(tmp_path: Path) -> None:
    with ClaimBook(tmp_path) as book:
        watch = ClaimWatch(tmp_path, book.runner)
        assert watch.lost() is None
    assert watch.lost().endswith("is gone: its runner ended or was thought dead")
    gone = dead_pid()
    write_runner(tmp_path, "same-host", host=socket.gethostname(), pid=gone)
    assert ClaimWatch(tmp_path, "same-host").lost() == \
        f"its runner {socket.gethostname()}:{gone} is gone"
    write_runner(tmp_path, "far", host="elsewhere.invalid", pid=1, age_s=50)
    assert ClaimWatch(tmp_path, "far").lost() == "its runner elsewhere.invalid:1 is gone"
    write_runner(tmp_path, "near", host="elsewhere.invalid", pid=1, age_s=5)
    assert ClaimWatch(tmp_path, "near").lost() is None


def test_a_worker_process_exits_when_its_runner_is_killed(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    runner = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from jobs.rundir.claims import ClaimBook; "
         f"book = ClaimBook(Path({str(tmp_path)!r})).__enter__(); book.take(['a']); "
         "print(book.runner, flush=True); time.sleep(60)"],
        env=env, stdout=subprocess.PIPE)
    runner_id = runner.stdout.readline().decode().strip()
    worker = subprocess.Popen(
        [sys.executable, "-c", "import time; from pathlib import Path; "
         "from jobs.rundir.claim_watch import ClaimWatch; "
         f"watch = ClaimWatch(Path({str(tmp_path)!r}), {runner_id!r}).__enter__(); "
         "print('watching', flush=True); time.sleep(60)"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert worker.stdout.readline() == b"watching\n"
    time.sleep(0.5)
    assert worker.poll() is None  # its runner lives: it works on
    runner.kill()
    runner.wait()
    killed = time.monotonic()
    assert worker.wait(timeout=10) == WATCH_EXIT_CODE
    assert time.monotonic() - killed < 2
    assert worker.stderr.read().decode().startswith("tvo: stopping this worker: ")
