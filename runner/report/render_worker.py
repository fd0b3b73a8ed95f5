"""Figures drawn in two processes beside this one, so the figures (the slowest part: about 0.4 s
each for PNG and SVG) and the statistics use both cores of a small machine.

One worker process starts first and imports matplotlib while the parent reads the metrics
(0.6-0.8 s of CPU, paid once: it forks the second drawing process once its first job arrives,
with everything imported). Jobs arrive pickled on stdin: first, optionally, the curve plots'
data (sent as soon as the groups are ranked, before the statistics), each process drawing one
curve plot; then the summary and the rest of the plot data, which the worker hands on to its
fork; the other figures are split into two shares of about equal cost. The worker answers with
every file's bytes (pickled, on stdout). Processes rather than threads: matplotlib's layout and
drawing hold the GIL. The worker is started with subprocess rather than multiprocessing:
forking the parent would copy polars' thread pool (a known deadlock), and spawn would import the
parent's __main__ (pytest, say) again; the worker forks before it starts a thread.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NoReturn

import runner

if TYPE_CHECKING:  # the caller starts the worker before it imports numpy: nothing heavy here
    from runner.report.labels import Labels
    from runner.report.model import Curve, PlotData, Summary

# each figure's drawing time (PNG and SVG) relative to a curve plot's, on the 1,000-job benchmark
# grid (test_acc 0.36 s, train_loss 0.47 s, calibration 0.37 s, final_acc 0.27 s of CPU) and
# targets at its 12 panels of 20 lines
COSTS = {"test_acc": 1.0, "train_loss": 1.0, "calibration": 1.0, "final_acc": 0.75,
         "targets": 1.3, "tuning_curves": 1.0, "performance_profile": 0.6}
PROCESSES = 2  # the worker and its fork
CURVES, REST = "curves", "rest"  # the two jobs a worker gets, each pickled with this tag first


class FigureWorkers:
    """The worker process for the figures (it forks the second drawing process); close() ends
    it if still running. Jobs are written by a thread: the worker may still be importing."""

    def __init__(self) -> None:
        package_root = str(Path(runner.__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [package_root, *filter(None, [os.environ.get("PYTHONPATH")])])}
        self.process = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.jobs: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.writer = threading.Thread(target=self._write, name="figure jobs", daemon=True)
        self.writer.start()
        self.curves_sent = False

    def draw_curves(self, labels: Labels, curves: dict[str, list[Curve]]) -> None:
        """The curve plots' data (plot_data.curves, in the summary's group order), ahead of
        the rest: they are drawn while the caller computes the statistics."""
        from runner.report.model import without_jobs  # the caller has numpy by now

        light = {name: [dataclasses.replace(curve, group=without_jobs(curve.group))
                        for curve in drawn] for name, drawn in curves.items()}
        self.jobs.put(pickle.dumps((CURVES, labels, light)))
        self.curves_sent = True

    def draw(self, summary: Summary, plot_data: PlotData) -> None:
        """The summary and the plot data (curves sent already are not sent again); the worker
        draws while the caller goes on."""
        if self.curves_sent:
            plot_data = dataclasses.replace(plot_data, curves={})
        from runner.report.model import without_jobs

        summary = dataclasses.replace(summary, groups=[without_jobs(g) for g in summary.groups])
        self.jobs.put(pickle.dumps((REST, summary, plot_data)))
        self.jobs.put(None)

    def _write(self) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        try:
            while (job := self.jobs.get()) is not None:
                stdin.write(job)
                stdin.flush()
            stdin.close()
        except OSError:  # the worker has ended: files() or close() says what happened
            pass

    def files(self) -> dict[str, bytes]:
        """Every figure's files, name -> bytes; a failed drawing raises with its error."""
        self.writer.join()
        self.process.stdin = None  # closed by the writer; communicate() would flush it
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
        self.jobs.put(None)  # a writer still waiting for jobs ends


def draw_share(summary: Summary, plot_data: PlotData, names: Sequence[str]) -> dict[str, bytes]:
    from runner.report.plots import figure_files, make_figures

    files: dict[str, bytes] = {}
    for name, figure in make_figures(summary, plot_data, names).items():
        files.update(figure_files(name, figure))
    return files


def split(names: Sequence[str], count: int = PROCESSES) -> list[list[str]]:
    """The figures in `count` shares (some maybe empty) of about equal cost: the costliest
    first, each into the share that costs least so far."""
    shares: list[list[str]] = [[] for _ in range(count)]
    totals = [0.0] * count
    for name in sorted(names, key=lambda n: -COSTS.get(n, 1.0)):
        lightest = totals.index(min(totals))
        shares[lightest].append(name)
        totals[lightest] += COSTS.get(name, 1.0)
    return shares


Early = tuple[str, "Labels", dict[str, list["Curve"]]]  # (CURVES, labels, curves)


def draw_part(index: int, count: int, early: Early | None,
              rest: Callable[[], tuple[str, Summary, PlotData]]) -> dict[str, bytes]:
    """What drawing process `index` of `count` draws: its curve plots from the `early` job,
    then, once `rest()` has the rest, its share of the other figures."""
    from runner.report.plots import curve_figure, curve_figures, figure_files, figure_names

    files: dict[str, bytes] = {}
    drawn: list[str] = []
    if early is not None:
        _, labels, curves = early
        drawn = [name for name in curve_figures() if curves.get(name)]
        for name in drawn[index::count]:
            files.update(figure_files(name, curve_figure(name, curves[name], labels)))
    _, summary, plot_data = rest()
    if early is not None:
        plot_data = dataclasses.replace(plot_data, curves=early[2])
    names = [name for name in figure_names(summary, plot_data) if name not in drawn]
    files.update(draw_share(summary, plot_data, split(names, count)[index]))
    return files


def draw_forked(first: Early | tuple[str, Summary, PlotData],
                stdin: BinaryIO) -> dict[str, bytes]:
    """Part 0 drawn here, part 1 in a fork; the rest of the jobs (after `first`) is read from
    `stdin` by a thread that hands it on to the fork, so neither waits for the other."""
    early = first if first[0] == CURVES else None
    forward_read, forward_write = os.pipe()
    answer_read, answer_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the fork: draw its part, hand the files (or its error) back, and end
        os.close(forward_write)
        os.close(answer_read)
        _run_fork(answer_write, lambda: draw_part(1, 2, early, lambda: pickle.loads(
            _read_all(forward_read))))
    os.close(forward_read)
    os.close(answer_write)
    received: list[bytes] = []

    def forward() -> None:
        content = stdin.read() if early is not None else pickle.dumps(first)
        received.append(content)
        try:
            with os.fdopen(forward_write, "wb") as out:
                out.write(content)
        except OSError:  # the fork has ended: its answer says why
            pass

    thread = threading.Thread(target=forward, name="hand on", daemon=True)
    thread.start()

    def rest() -> tuple[str, Summary, PlotData]:
        thread.join()
        answer: tuple[str, Summary, PlotData] = pickle.loads(received[0])
        return answer

    try:
        files = draw_part(0, 2, early, rest)
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        raise
    finally:
        content = _read_all(answer_read)
        status = os.waitpid(pid, 0)[1]
    answer = pickle.loads(content) if content else f"ended with status {status}"
    if isinstance(answer, str):
        raise RuntimeError(f"a forked figure process failed: {answer}")
    files.update(answer)
    return files


def _read_all(fd: int) -> bytes:
    with os.fdopen(fd, "rb") as pipe:
        return pipe.read()


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
    # imported before the first job arrives: what the worker does while the parent reads
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.backends.backend_svg  # noqa: F401
    import matplotlib.figure  # noqa: F401

    import runner.report.calibration_figure  # noqa: F401
    import runner.report.figures  # noqa: F401
    import runner.report.plots  # noqa: F401

    stdin = sys.stdin.buffer
    first = pickle.load(stdin)
    if hasattr(os, "fork"):
        files = draw_forked(first, stdin)
    else:
        early = first if first[0] == CURVES else None
        files = draw_part(0, 1, early, lambda: first if early is None else pickle.load(stdin))
    pickle.dump(files, sys.stdout.buffer)


if __name__ == "__main__":
    main()
