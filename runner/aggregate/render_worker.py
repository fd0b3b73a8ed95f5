"""Figures drawn in two worker processes, so the figures (the slowest part: about 0.5 s each
for PNG and SVG) and the statistics use both cores of a small machine.

The workers start first, and import matplotlib while the parent reads the metrics; each then
gets the summary and the plot data (pickled, on stdin) and the names of its share of the
figures, and answers with the files' bytes (pickled, on stdout). Processes rather than threads:
matplotlib's layout and drawing hold the GIL. Started with subprocess rather than
multiprocessing: fork would copy polars' thread pool (a known deadlock), and spawn would import
the parent's __main__ (pytest, say) again.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import runner
from runner.aggregate.model import PlotData, Summary

# figures per worker, about equal in cost (curve plots cost the most)
SHARES = (("test_acc", "final_acc", "targets"), ("train_loss", "calibration"))


class FigureWorkers:
    """Worker processes for the figures; close() ends any still running."""

    def __init__(self, count: int = len(SHARES)) -> None:
        package_root = str(Path(runner.__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [package_root, *filter(None, [os.environ.get("PYTHONPATH")])])}
        self.processes = [
            subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
            for _ in range(count)]

    def draw(self, payload: bytes) -> None:
        """Hand each worker the pickled (summary, plot data) and its share of the figures; they
        draw while the caller goes on."""
        shares = [list(share) for share in SHARES[:len(self.processes)]]
        shares[-1] += [name for share in SHARES[len(self.processes):] for name in share]
        for process, names in zip(self.processes, shares, strict=True):
            assert process.stdin is not None
            process.stdin.write(payload)
            process.stdin.write(pickle.dumps(names))
            process.stdin.close()
            process.stdin = None  # communicate() would flush it

    def files(self) -> dict[str, bytes]:
        """Every worker's files, name -> bytes; a worker that failed raises with its error."""
        files: dict[str, bytes] = {}
        for process in self.processes:
            output, errors = process.communicate()
            if process.returncode != 0:
                last = errors.decode(errors="replace").strip().splitlines()[-1:] or ["no error"]
                raise RuntimeError(f"drawing the figures failed: {last[0]}")
            files.update(pickle.loads(output))
        return files

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def draw_share(summary: Summary, plot_data: PlotData, names: Sequence[str]) -> dict[str, bytes]:
    from runner.aggregate.plots import figure_files, make_figures

    files: dict[str, bytes] = {}
    for name, figure in make_figures(summary, plot_data, names).items():
        files.update(figure_files(name, figure))
    return files


def main() -> None:
    # imported before the job arrives: this is what the worker does while the parent reads
    import matplotlib.backends.backend_agg  # noqa: F401

    import runner.aggregate.figures  # noqa: F401

    summary, plot_data = pickle.load(sys.stdin.buffer)
    names = pickle.load(sys.stdin.buffer)
    pickle.dump(draw_share(summary, plot_data, names), sys.stdout.buffer)


if __name__ == "__main__":
    main()
