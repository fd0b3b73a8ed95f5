"""Figures drawn in two processes beside this one, so the figures (the slowest part: about 0.5 s
each for PNG and SVG) and the statistics use both cores of a small machine.

One worker process starts first and imports matplotlib while the parent reads the metrics
(0.6-0.8 s of CPU, paid once: the second drawing process is forked from it once the job has
arrived, with everything imported). It then gets the summary and the plot data (pickled, on
stdin), splits the figures into two shares of about equal cost, draws the first share while its
fork draws the second,
and answers with every file's bytes (pickled, on stdout). Processes rather than threads:
matplotlib's layout and drawing hold the GIL. The worker is started with subprocess rather than
multiprocessing: forking the parent would copy polars' thread pool (a known deadlock), and
spawn would import the parent's __main__ (pytest, say) again; the worker itself runs no threads,
so it forks safely.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

import runner
from runner.aggregate.model import PlotData, Summary

# each figure's drawing time (PNG and SVG) relative to a curve plot's, on the 1,000-job benchmark
# grid (test_acc 0.36 s, train_loss 0.47 s, calibration 0.37 s, final_acc 0.27 s of CPU) and
# targets at its 12 panels of 20 lines
COSTS = {"test_acc": 1.0, "train_loss": 1.0, "calibration": 1.0, "final_acc": 0.75,
         "targets": 1.3}
PROCESSES = 2  # the worker and its fork


class FigureWorkers:
    """The worker process for the figures (it forks the second drawing process); close() ends
    it if still running."""

    def __init__(self) -> None:
        package_root = str(Path(runner.__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [package_root, *filter(None, [os.environ.get("PYTHONPATH")])])}
        self.process = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)

    def draw(self, payload: bytes) -> None:
        """Hand the worker the pickled (summary, plot data); it draws while the caller goes
        on."""
        process = self.process
        assert process.stdin is not None
        process.stdin.write(payload)
        process.stdin.close()
        process.stdin = None  # communicate() would flush it

    def files(self) -> dict[str, bytes]:
        """Every figure's files, name -> bytes; a failed drawing raises with its error."""
        output, errors = self.process.communicate()
        if self.process.returncode != 0:
            last = errors.decode(errors="replace").strip().splitlines()[-1:] or ["no error"]
            raise RuntimeError(f"drawing the figures failed: {last[0]}")
        files: dict[str, bytes] = pickle.loads(output)
        return files

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def draw_share(summary: Summary, plot_data: PlotData, names: Sequence[str]) -> dict[str, bytes]:
    from runner.aggregate.plots import figure_files, make_figures

    files: dict[str, bytes] = {}
    for name, figure in make_figures(summary, plot_data, names).items():
        files.update(figure_files(name, figure))
    return files


def split(names: Sequence[str], count: int = PROCESSES) -> list[list[str]]:
    """The figures in `count` shares of about equal cost: the costliest first, each into the
    share that costs least so far."""
    shares: list[list[str]] = [[] for _ in range(count)]
    totals = [0.0] * count
    for name in sorted(names, key=lambda n: -COSTS.get(n, 1.0)):
        lightest = totals.index(min(totals))
        shares[lightest].append(name)
        totals[lightest] += COSTS.get(name, 1.0)
    return [share for share in shares if share]


def draw_shares(summary: Summary, plot_data: PlotData,
                shares: Sequence[Sequence[str]]) -> dict[str, bytes]:
    """The first share drawn here, each other one in a process forked from this one (where
    fork exists); a fork that fails is a RuntimeError with its last line of error."""
    if not hasattr(os, "fork") or len(shares) < 2:
        return draw_share(summary, plot_data, [name for share in shares for name in share])
    forks = []
    try:
        for names in shares[1:]:
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:  # the fork: draw, hand the files (or its error) back, and end
                os.close(read)
                _run_fork(write, lambda names=names: draw_share(summary, plot_data, names))
            os.close(write)
            forks.append((pid, read))
        files = draw_share(summary, plot_data, shares[0])
        while forks:
            pid, read = forks.pop(0)
            with os.fdopen(read, "rb") as pipe:
                content = pipe.read()
            status = os.waitpid(pid, 0)[1]
            answer = pickle.loads(content) if content else f"ended with status {status}"
            if isinstance(answer, str):
                raise RuntimeError(f"a forked figure process failed: {answer}")
            files.update(answer)
    finally:
        for pid, read in forks:  # left only by an error: not waited for
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read)
    return files


def _run_fork(pipe: int, draw: Callable[[], dict[str, bytes]]) -> NoReturn:
    """In a forked process: pickle draw()'s files, or its error as a line of text, to `pipe`,
    then end the process at once (no cleanup of the parent's state)."""
    code = 0
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the worker's stdout is its answer alone
        try:
            answer: dict[str, bytes] | str = draw()
        except Exception as exc:  # the worker raises it again, with this line
            import traceback

            traceback.print_exc()
            answer, code = f"{type(exc).__name__}: {exc}", 1
        with os.fdopen(pipe, "wb") as out:
            pickle.dump(answer, out)
    finally:
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    # imported before the job arrives: this is what the worker does while the parent reads
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.backends.backend_svg  # noqa: F401
    import matplotlib.figure  # noqa: F401

    import runner.aggregate.figures  # noqa: F401
    from runner.aggregate.plots import figure_names

    summary, plot_data = pickle.load(sys.stdin.buffer)
    shares = split(figure_names(summary, plot_data))
    pickle.dump(draw_shares(summary, plot_data, shares), sys.stdout.buffer)


if __name__ == "__main__":
    main()
