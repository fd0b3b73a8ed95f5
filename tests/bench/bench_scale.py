"""Scale benchmark: many small jobs through `tvo run` with default settings (embedded Ray), against
a hand-written stacked loop training the same models on every core, in the same run; then what
the run left (files, bytes), the runner's peak memory, and `tvo status` and `tvo aggregate`
(plots included) on it.

Run: python tests/bench/bench_scale.py --seeds 2000     (10,000 jobs; goal <= 2x the loop)
     python tests/bench/bench_scale.py --seeds 20000    (100,000 jobs; goals: <= 5 min,
                                                         <= 2,000 files, <= 300 MB, runner
                                                         RSS <= 2 GB, status <= 2 s,
                                                         aggregate <= 20 s)

The grid (tests/bench/scale.yaml): digits, MLP 64-16-10 relu, softmax + CE, SGD lr 0.1
momentum 0.9, batch 64, 2 epochs; 5 strategies x --seeds seeds. The loop is
bench_headline.hand_written with 16 hidden units, in stacks of --stack, one process per core.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.bench_headline import baseline  # noqa: E402

HERE = Path(__file__).resolve().parent
GRID = HERE / "scale.yaml"
ROOT = HERE.parents[1]
GOALS = {"ratio": 2.0, "seconds": 300.0, "files": 2000, "megabytes": 300.0, "rss_gb": 2.0,
         "status_s": 2.0, "aggregate_s": 20.0}


def peak_rss(pid: int, stop: threading.Event, seen: list[int]) -> None:
    """Keep the process's peak resident memory (VmHWM, kB) until it ends."""
    while not stop.wait(0.2):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    seen.append(int(line.split()[1]))
        except OSError:
            return


def run_tvo(seeds: int, out: Path) -> tuple[float, float]:
    """`tvo run` of the grid as a user types it; returns (seconds, runner peak RSS in GB)."""
    env = {**os.environ, "TVO_MAX_JOBS": str(max(5 * seeds, 10_000))}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "runner", "run", str(GRID),
                                f"seed=range({seeds})", "--out", str(out)],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    stop, seen = threading.Event(), []
    watcher = threading.Thread(target=peak_rss, args=(process.pid, stop, seen))
    watcher.start()
    code = process.wait()
    seconds = time.perf_counter() - started
    stop.set()
    watcher.join()
    if code != 0:
        raise SystemExit(f"tvo run exited {code}")
    return seconds, max(seen, default=0) / 1024**2


def timed(*args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "runner", *args], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def tree(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2000, help="seeds per strategy (5 each)")
    parser.add_argument("--stack", type=int, default=500, help="models per hand-written stack")
    parser.add_argument("--no-loop", action="store_true", help="skip the hand-written loop")
    args = parser.parse_args()
    jobs = 5 * args.seeds
    out = Path(tempfile.mkdtemp(prefix="bench_scale_", dir=os.environ.get("TMPDIR")))
    try:
        seconds, rss = run_tvo(args.seeds, out)
        grid_dir = out / "scale"
        files, size = tree(grid_dir)
        status = timed("status", str(grid_dir))
        aggregate = timed("aggregate", str(grid_dir))
        files_after, size_after = tree(grid_dir)
        print(f"{jobs:,} jobs: tvo run {seconds:.1f} s wall ({jobs / seconds * 3600:,.0f} jobs/h),"
              f" runner peak RSS {rss:.2f} GB; the run left {files:,} files, "
              f"{size / 1e6:.1f} MB ({files_after:,} files, {size_after / 1e6:.1f} MB after "
              f"aggregate); tvo status {status:.2f} s; tvo aggregate {aggregate:.1f} s",
              flush=True)
        if not args.no_loop:
            hand = baseline(jobs, args.stack, epochs=2, hidden=16)
            print(f"hand-written stacked loop on {os.cpu_count()} cores: {hand:.1f} s; tvo is "
                  f"{seconds / hand:.2f}x (goal <= {GOALS['ratio']}x)", flush=True)
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
