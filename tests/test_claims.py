"""Per-job claims: exclusive, released, taken over when stale, kept alive by the heartbeat."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from jobs.rundir.claims import (
    WATCH_EXIT_CODE,
    ClaimBook,
    ClaimWatch,
    current_holder,
    generations,
    process_start,
)
from tests.backend_suite import dead_pid, write_dead_claim


def write_foreign_claim(run_dir: Path, age_s: float, lease_s: float = 60.0) -> None:
    """A claim from a runner on another host whose last heartbeat was `age_s` ago."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "claim-0"
    path.write_text(json.dumps({"runner": "far-away", "host": "elsewhere.invalid", "pid": 1,
                                "pid_start": "1", "lease_s": lease_s, "released": False}))
    then = time.time() - age_s
    os.utime(path, (then, then))


def test_process_start_tells_live_from_dead() -> None:
    assert process_start(os.getpid())
    assert process_start(dead_pid()) is None


def test_a_book_must_be_open_to_claim(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="open the book before claiming"):
        ClaimBook().acquire(tmp_path)


def test_a_runner_in_this_process_is_alive_while_its_book_is_open(tmp_path: Path) -> None:
    with ClaimBook() as book:
        book.acquire(tmp_path)
        book.release(tmp_path)
        assert current_holder(tmp_path).runner_alive()
    assert not current_holder(tmp_path).runner_alive()


def test_a_claim_knows_the_claim_it_replaced_as_it_was_at_the_takeover(tmp_path: Path) -> None:
    """A runner that peeked at a claim still held, then acquired after its release, must see
    the release: that is how it knows the job ended under a live runner (and is not its own to
    run again). A peek before acquiring would still say 'held'."""
    with ClaimBook() as first, ClaimBook() as second:
        assert second.replaced(tmp_path) is None
        first.acquire(tmp_path)
        peeked = current_holder(tmp_path)
        first.release(tmp_path)  # the job ended between the peek and the acquire
        assert second.acquire(tmp_path) is None
        replaced = second.replaced(tmp_path)
        assert not peeked.released
        assert replaced is not None and replaced.runner == first.runner and replaced.released
        assert replaced.runner_alive()
        second.release(tmp_path)
        assert second.replaced(tmp_path) is None


def test_a_claim_is_exclusive_until_released(tmp_path: Path) -> None:
    with ClaimBook() as first, ClaimBook() as second:
        assert first.acquire(tmp_path) is None
        assert first.acquire(tmp_path) is None  # holding it already
        holder = second.acquire(tmp_path)
        assert holder is not None and holder.runner == first.runner and holder.is_live()
        first.release(tmp_path)
        assert second.acquire(tmp_path) is None
        assert generations(tmp_path) == [1]  # the winner removed the older generation
        assert current_holder(tmp_path).runner == second.runner


def test_closing_the_book_releases_every_claim(tmp_path: Path) -> None:
    with ClaimBook() as book:
        for name in ("a", "b"):
            assert book.acquire(tmp_path / name) is None
    assert not current_holder(tmp_path / "a").is_live()
    assert not current_holder(tmp_path / "b").is_live()


def test_a_dead_runners_claim_is_taken_over(tmp_path: Path) -> None:
    write_dead_claim(tmp_path)
    assert not current_holder(tmp_path).is_live()
    with ClaimBook() as book:
        assert book.acquire(tmp_path) is None
        assert generations(tmp_path) == [1]


def test_another_hosts_claim_holds_while_its_lease_is_fresh(tmp_path: Path) -> None:
    write_foreign_claim(tmp_path, age_s=5)
    with ClaimBook() as book:
        holder = book.acquire(tmp_path)
        assert holder is not None and holder.host == "elsewhere.invalid"


def test_another_hosts_claim_with_an_expired_lease_is_taken_over(tmp_path: Path) -> None:
    write_foreign_claim(tmp_path, age_s=61)
    with ClaimBook() as book:
        assert book.acquire(tmp_path) is None


def test_the_heartbeat_keeps_the_lease_fresh(tmp_path: Path) -> None:
    with ClaimBook(lease_s=0.2) as book:
        book.acquire(tmp_path)
        path = tmp_path / "claim-0"
        old = time.time() - 100
        os.utime(path, (old, old))
        time.sleep(0.3)
        assert time.time() - path.stat().st_mtime < 1


def test_a_claim_taken_over_is_reported_lost(tmp_path: Path) -> None:
    with ClaimBook(lease_s=0.2) as book:
        book.acquire(tmp_path)
        (tmp_path / "claim-0").unlink()  # what a takeover by a runner that thought us dead does
        time.sleep(0.3)
        assert book.lost == [tmp_path]
        assert not book.holds(tmp_path)


def race_for(run_dir: Path, runners: int) -> list[ClaimBook]:
    """Many runners try to claim one job at the same moment; returns the ones that got it."""
    outcomes: list[object] = [None] * runners
    start = threading.Barrier(runners)
    with ExitStack() as stack:
        books = [stack.enter_context(ClaimBook()) for _ in range(runners)]

        def race(index: int) -> None:
            start.wait()
            outcomes[index] = books[index].acquire(run_dir)

        threads = [threading.Thread(target=race, args=(i,)) for i in range(runners)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners = [book for book, outcome in zip(books, outcomes, strict=True) if outcome is None]
        assert len(winners) == 1
        assert current_holder(run_dir).runner == winners[0].runner
    return winners


def test_only_one_of_many_racing_runners_takes_a_job(tmp_path: Path) -> None:
    for attempt in range(5):
        fresh, stale = tmp_path / f"fresh{attempt}", tmp_path / f"stale{attempt}"
        write_dead_claim(stale)
        for run_dir in (fresh, stale):
            assert len(race_for(run_dir, 8)) == 1


def test_a_worker_watch_sees_its_runner_release_or_lose_the_claim(tmp_path: Path) -> None:
    with ClaimBook() as book:
        book.acquire(tmp_path / "a")
        book.acquire(tmp_path / "b")
        watch_a, watch_b = ClaimWatch([tmp_path / "a"]), ClaimWatch([tmp_path / "b"])
        assert watch_a.lost() is None
        book.release(tmp_path / "a")
        assert watch_a.lost() == f"{tmp_path / 'a' / 'claim-0'} was released: its runner stopped"
        (tmp_path / "b" / "claim-0").unlink()  # what a takeover does to the old generation
        assert watch_b.lost() == f"{tmp_path / 'b' / 'claim-0'} was taken over by another runner"


def test_a_worker_watch_sees_its_runner_die(tmp_path: Path) -> None:
    write_dead_claim(tmp_path / "same-host")
    assert ClaimWatch([tmp_path / "same-host"]).lost().endswith("is gone")
    write_foreign_claim(tmp_path / "far", age_s=50)  # stale for a worker at 3/4 of the lease
    assert ClaimWatch([tmp_path / "far"]).lost().endswith("is gone")
    write_foreign_claim(tmp_path / "near", age_s=5)
    assert ClaimWatch([tmp_path / "near"]).lost() is None


def test_a_worker_process_exits_when_its_runner_is_killed(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    runner = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from jobs.rundir.claims import ClaimBook; book = ClaimBook().__enter__(); "
         f"book.acquire(Path({str(tmp_path)!r})); print('held', flush=True); time.sleep(60)"],
        env=env, stdout=subprocess.PIPE)
    assert runner.stdout.readline() == b"held\n"
    worker = subprocess.Popen(
        [sys.executable, "-c", "import time; from pathlib import Path; "
         "from jobs.rundir.claims import ClaimWatch; "
         f"watch = ClaimWatch([Path({str(tmp_path)!r})]).__enter__(); "
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
