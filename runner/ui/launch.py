"""Start and stop grids from the app as the CLI would: the same validation and one-line errors
(runner.cli.run.plan_run, the preflight), a dry-run view first, then `python -m runner run` as a
process of its own session, so the run goes on when the page or the server closes and `tvo
status` sees it like any other run. Cancel is runner.dispatch.cancel, as `tvo cancel` does it."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster.backends import BACKENDS

UI_DIR = ".tvo-ui"  # under the output root: uploaded grids and the output of started runs
MAX_UPLOAD_BYTES = 1_000_000  # runner.grid.files reads no larger grid file
PLAN_ROWS = 200  # jobs shown in the dry-run view; the count says how many more
_UPLOAD_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}\.ya?ml")


class StartError(ValueError):
    """Input `tvo run` would refuse; the message is the one the CLI prints after `Error: `."""


@dataclass(frozen=True)
class StartRequest:
    """What the start form sends: a shipped grid or an uploaded file, with `tvo run`'s words."""

    grid: str = ""  # a shipped grid's name
    upload_name: str = ""  # or an uploaded grid file: its name and text
    upload_text: str = ""
    overrides: tuple[str, ...] = ()
    backend: str = "ray"
    max_parallel: int | None = None
    samples: int | None = None
    retries: int = 0

    @classmethod
    def from_json(cls, body: Any) -> StartRequest:
        if not isinstance(body, Mapping):
            raise StartError("the request body must be a JSON object with grid or upload, "
                             "overrides and backend")
        upload = body.get("upload") or {}
        overrides = body.get("overrides") or []
        if not isinstance(upload, Mapping) or not isinstance(overrides, list) or not all(
                isinstance(word, str) for word in overrides):
            raise StartError("upload must be {name, text} and overrides a list of KEY=VALUES "
                             "words")
        backend = body.get("backend") or "ray"
        if backend not in BACKENDS:
            raise StartError(f"--backend: got {str(backend)[:40]!r}; expected one of "
                             f"{', '.join(BACKENDS)}")
        return cls(grid=str(body.get("grid") or ""), upload_name=str(upload.get("name") or ""),
                   upload_text=str(upload.get("text") or ""),
                   overrides=tuple(word for word in overrides if word.strip()),
                   backend=backend,
                   max_parallel=_whole(body.get("max_parallel"), "--max-parallel", 1, 100_000),
                   samples=_whole(body.get("samples"), "--samples", 1, 100_000),
                   retries=_whole(body.get("retries"), "--retries", 0, 1_000) or 0)


def _whole(value: Any, option: str, low: int, high: int) -> int | None:
    if value in (None, ""):
        return None
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit() \
            or not low <= int(value) <= high:
        raise StartError(f"{option}: got {str(value)[:40]!r}; expected a whole number from "
                         f"{low} to {high:,}")
    return int(value)


def plan(request: StartRequest, out_root: Path) -> dict[str, Any]:
    """The dry-run view: what `tvo run ... --dry-run` prints, as data. Raises StartError."""
    from runner.cli.run import compare_text, default_slots, packing_text, swept_text

    with grid_file(request, Path(tempfile.mkdtemp(prefix="tvo-ui-plan-"))) as (ref, label):
        planned = _validated(request, ref, label, out_root)
    grid = planned.grid
    swept = grid.swept_keys
    states = _states(planned.grid_dir)
    rows = []
    for spec in planned.specs[:PLAN_ROWS]:
        values = spec.to_dict()
        rows.append({"job_id": spec.job_id, **{key: values[key] for key in swept},
                     "state": states.get(spec.job_id, "new")})
    slots = request.max_parallel or default_slots(request.backend)
    return {"grid": grid.name, "jobs": len(planned.specs), "grid_dir": str(planned.grid_dir),
            "exists": planned.grid_dir.is_dir(), "swept": swept_text(grid),
            "swept_keys": swept, "description": grid.description,
            "compare": compare_text(grid) if grid.compare is not None else None,
            "packing": packing_text(planned.specs, grid.pack or 0, slots),
            "rows": rows, "more": max(0, len(planned.specs) - PLAN_ROWS),
            "command": "tvo " + shlex.join(command_words(request, ref_for_display(request),
                                                         out_root))}


def _validated(request: StartRequest, ref: str, label: str, out_root: Path) -> Any:
    """plan_run and the preflight, as `tvo run` calls them; errors name the upload, not our
    copy of it."""
    from runner.cli.run import plan_run
    from runner.dispatch.preflight import PreflightError, check_run
    from runner.grid.expand import GridError

    try:
        planned = plan_run(ref, list(request.overrides), out_root, request.samples)
        check_run(planned.specs, planned.grid_dir, backend=request.backend,
                  resources=planned.grid.resources)
    except (GridError, PreflightError) as exc:
        raise StartError(str(exc).replace(ref, label) if ref != label else str(exc)) from None
    return planned


def _states(grid_dir: Path) -> dict[str, str]:
    from runner.ui.grids import read_status

    status = read_status(grid_dir) if grid_dir.is_dir() else None
    return {job.job_id: job.state for job in status.jobs} if status else {}


@contextmanager
def grid_file(request: StartRequest, folder: Path, *, keep: bool = False) -> Iterator[
        tuple[str, str]]:
    """The grid reference plan_run gets (a shipped name, or a copy of the upload in `folder`)
    and how errors name it (the upload's own name); `folder` is removed after unless `keep`."""
    try:
        if request.upload_text or request.upload_name:
            yield _write_upload(request, folder), request.upload_name
            return
        if not request.grid:
            raise StartError("choose a shipped grid or upload a grid file")
        from runner.grid.files import shipped_grids

        if request.grid not in shipped_grids():
            raise StartError(f"unknown grid {request.grid[:60]!r}: the app starts the grids "
                             f"shipped with tvo ({', '.join(shipped_grids())}) or an uploaded "
                             "file")
        yield request.grid, request.grid
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def _write_upload(request: StartRequest, folder: Path) -> str:
    name = request.upload_name
    if not _UPLOAD_NAME.fullmatch(name):
        raise StartError(f"uploaded grid file {name[:60]!r}: its name must be a plain file name "
                         "ending in .yaml or .yml")
    data = request.upload_text.encode()
    if len(data) > MAX_UPLOAD_BYTES:
        raise StartError(f"grid file {name!r} is larger than {MAX_UPLOAD_BYTES:,} bytes; grid "
                         "files describe jobs, they do not list them")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return str(path)


def ref_for_display(request: StartRequest) -> str:
    return request.upload_name or request.grid


def command_words(request: StartRequest, ref: str, out_root: Path) -> list[str]:
    """`tvo run` with options first and `--` before the grid, so no word is read as an option."""
    words = ["run", "--out", str(out_root), "--backend", request.backend]
    if request.max_parallel:
        words += ["--max-parallel", str(request.max_parallel)]
    if request.samples:
        words += ["--samples", str(request.samples)]
    if request.retries:
        words += ["--retries", str(request.retries)]
    return [*words, "--", ref, *request.overrides]


@dataclass
class Launch:
    """A run this server started: its process, command and output file."""

    grid: str
    pid: int
    command: list[str]
    output: Path
    started_at: float
    returncode: int | None = None

    def view(self) -> dict[str, Any]:
        return {"pid": self.pid, "command": "tvo " + shlex.join(self.command),
                "output": str(self.output), "started_at": self.started_at,
                "running": self.returncode is None, "returncode": self.returncode,
                "output_tail": _tail(self.output)}


@dataclass
class Launches:
    """Every run started from this server, the latest per grid."""

    out_root: Path
    latest: dict[str, Launch] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, request: StartRequest) -> Launch:
        """Validate as `tvo run` does, then start it in a session of its own."""
        folder = self.out_root / UI_DIR / "uploads"
        if request.upload_name or request.upload_text:
            folder = folder / hashlib.sha256(request.upload_text.encode()).hexdigest()[:12]
        with grid_file(request, folder, keep=True) as (ref, label):
            planned = _validated(request, ref, label, self.out_root)
        words = command_words(request, ref, self.out_root)
        logs = self.out_root / UI_DIR / "runs"
        logs.mkdir(parents=True, exist_ok=True)
        output = logs / f"{planned.grid.name}-{time.strftime('%Y%m%d-%H%M%S')}.log"
        with open(output, "ab") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "runner", *words], stdin=subprocess.DEVNULL,
                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        launch = Launch(planned.grid.name, process.pid, words, output, time.time())
        with self.lock:
            self.latest[launch.grid] = launch
        # reaps the process (no zombie) and records how it ended; never stops it
        threading.Thread(target=_wait_for, args=(process, launch), daemon=True,
                         name=f"tvo-ui-run-{process.pid}").start()
        return launch

    def get(self, grid: str) -> Launch | None:
        with self.lock:
            return self.latest.get(grid)


def _wait_for(process: subprocess.Popen[bytes], launch: Launch) -> None:
    launch.returncode = process.wait()


def _tail(path: Path, size: int = 16 * 1024) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - size))
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


@dataclass
class Cancels:
    """Cancel requests made from this server, with how each stop went (stop runs in a thread:
    it waits up to the grace for the jobs to stop by themselves)."""

    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def cancel(self, grid: str, grid_dir: Path, job_ids: Sequence[str],
               grace_s: float) -> dict[str, Any]:
        """Leave the requests now (raises OutDirError, CancelError), stop in the background."""
        from runner.dispatch.cancel import request_cancel

        request = request_cancel(grid_dir, list(job_ids))
        view: dict[str, Any] = {"whole_grid": request.whole_grid, "targets": len(request.targets),
                                "running": len(request.running), "drivers": request.drivers,
                                "grace_s": grace_s, "requested_at": time.time(),
                                "stopping": True, "report": None}
        with self.lock:
            self.reports[grid] = view
        threading.Thread(target=self._stop, args=(view, request, grace_s), daemon=True,
                         name=f"tvo-ui-cancel-{grid}").start()
        return dict(view)

    def _stop(self, view: dict[str, Any], request: Any, grace_s: float) -> None:
        from runner.dispatch.cancel import stop

        report = stop(request, grace_s)
        view["report"] = {"forced": report.forced, "signalled": report.signalled,
                          "marked": report.marked, "still_running": report.still_running,
                          "scancelled": report.scancelled_pending + report.scancelled,
                          "seconds": round(report.seconds, 1)}
        view["stopping"] = False

    def get(self, grid: str) -> dict[str, Any] | None:
        with self.lock:
            view = self.reports.get(grid)
            return dict(view) if view else None
