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
import resource
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


def _stat(pid: str) -> tuple[int, int, float] | None:
    """(parent pid, start time, utime + stime in ticks) of a process, None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), int(fields[19]), int(fields[11]) + int(fields[12])


def watch(pid: int, stop: threading.Event, rss: list[int], cpu: list[float],
          tree_cpu: dict[tuple[int, int], float]) -> None:
    """Until the process ends: its peak resident memory (VmHWM, kB), its own CPU seconds, and
    the CPU seconds of every process below it (Ray's GCS, raylet and workers are not reaped by
    the runner, so RUSAGE_CHILDREN misses them), each process's latest reading kept."""
    ticks = os.sysconf("SC_CLK_TCK")
    while not stop.wait(0.2):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    rss.append(int(line.split()[1]))
        except OSError:
            return
        stats = {int(entry): found for entry in os.listdir("/proc") if entry.isdigit()
                 if (found := _stat(entry)) is not None}
        below, frontier = {pid}, [pid]
        while frontier:
            parent = frontier.pop()
            for child, (ppid, _, _) in stats.items():
                if ppid == parent and child not in below:
                    below.add(child)
                    frontier.append(child)
        for member in below:
            if member in stats:
                _, start, used = stats[member]
                tree_cpu[(member, start)] = used / ticks
        if pid in stats:
            cpu.append(stats[pid][2] / ticks)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_tvo(seeds: int, out: Path) -> dict[str, float]:
    """`tvo run` of the grid as a user types it: its wall seconds, the runner's peak RSS (GB)
    and own CPU seconds, and the CPU seconds of every process of the run."""
    env = {**os.environ, "TVO_MAX_JOBS": str(max(5 * seeds, 10_000))}
    cpu_before = children_cpu()
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "runner", "run", str(GRID),
                                f"seed=range({seeds})", "--out", str(out)],
                               cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    stop, rss, cpu, tree_cpu = threading.Event(), [], [], {}
    watcher = threading.Thread(target=watch, args=(process.pid, stop, rss, cpu, tree_cpu))
    watcher.start()
    code = process.wait()
    seconds = time.perf_counter() - started
    stop.set()
    watcher.join()
    if code != 0:
        raise SystemExit(f"tvo run exited {code}")
    return {"seconds": seconds, "rss_gb": max(rss, default=0) / 1024**2,
            "runner_cpu": max(cpu, default=0.0),
            "all_cpu": max(children_cpu() - cpu_before, sum(tree_cpu.values()))}


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
        run = run_tvo(args.seeds, out)
        seconds = run["seconds"]
        grid_dir = out / "scale"
        files, size = tree(grid_dir)
        status = timed("status", str(grid_dir))
        aggregate = timed("aggregate", str(grid_dir))
        files_after, size_after = tree(grid_dir)
        print(f"{jobs:,} jobs: tvo run {seconds:.1f} s wall ({jobs / seconds * 3600:,.0f} jobs/h),"
              f" runner peak RSS {run['rss_gb']:.2f} GB, runner CPU "
              f"{run['runner_cpu'] / jobs * 1000:.2f} ms a job, all processes "
              f"{run['all_cpu'] / jobs * 1000:.2f} ms a job; the run left {files:,} files, "
              f"{size / 1e6:.1f} MB ({files_after:,} files, {size_after / 1e6:.1f} MB after "
              f"aggregate); tvo status {status:.2f} s; tvo aggregate {aggregate:.1f} s",
              flush=True)
        if not args.no_loop:
            cpu_before = children_cpu()
            hand = baseline(jobs, args.stack, epochs=2, width=16)
            hand_cpu = children_cpu() - cpu_before
            print(f"hand-written stacked loop on {os.cpu_count()} cores: {hand:.1f} s, "
                  f"{hand_cpu / jobs * 1000:.2f} ms of CPU a job; tvo is {seconds / hand:.2f}x "
                  f"(goal <= {GOALS['ratio']}x), {(run['all_cpu'] - hand_cpu) / jobs * 1000:.2f}"
                  " ms of CPU a job more", flush=True)
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
