"""What the app knows and does, apart from HTTP: the grids under the root, each grid's results
through load_grid (aggregated once per version of its metrics), job states through grid_status,
and the runs and cancels it started."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from jobs.rundir.index import StateIndex
from runner.report.load import AggregateError, GridData, load_grid
from runner.ui import curves, grids, table
from runner.ui.cache import Memo, Recent
from runner.ui.launch import Cancels, Launches, StartRequest, plan
from runner.ui.metrics import (
    DEFAULT_METRIC,
    QueryError,
    check_metric,
    check_settings,
    default_grouping,
    plain,
    present_metrics,
    swept_settings,
)
from runner.ui.security import PathError, check_job_id, grid_dir

T = TypeVar("T")
JOB_PAGE = 100


class NoResults(LookupError):
    """A grid without finished jobs yet (load_grid's message says so); the page shows it."""


@dataclasses.dataclass(frozen=True)
class Results:
    data: GridData
    version: str  # changes whenever a metrics file is added or rewritten


def _load(folder: Path) -> Results | AggregateError:
    try:
        data = load_grid(folder)
    except AggregateError as exc:
        return exc
    # load_grid's fingerprint of what it read: each run's metrics file (size, mtime)
    version = f"{hash((frozenset(data.sources.items()), len(data.jobs))) & (2**64 - 1):016x}"
    return Results(data, version)


class Service:
    """One per server: everything the routes call."""

    def __init__(self, out_root: Path) -> None:
        self.out_root = out_root.absolute()
        self.statuses = Recent(self._read_status)
        self.indexes: dict[Path, StateIndex] = {}  # per grid: read again, it reads what changed
        self.loads: Recent[Results | AggregateError] = Recent(_load)
        self.memo = Memo()
        self.paces: dict[str, grids.Pace] = {}
        self.launches = Launches(self.out_root)
        self.cancels = Cancels()
        # computes the curves a page shows first while the page still loads plotly.js
        self.ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tvo-ui-ahead")
        self.read_ahead_done = False

    def read_ahead(self) -> None:
        """Read every grid once, as a page will ask: counts, results, the curves it shows
        first, then the other tabs' default views. Run when the server starts, so the first
        look at a large grid finds them read (a page asking meanwhile waits for the same read,
        never a second one)."""
        try:
            names = [line["name"] for line in self.grid_list()]
            for name in names:
                try:
                    results = self._results(name)
                    self._memo(results, "metrics",
                               lambda data=results.data: present_metrics(data))
                    self._curves(results, DEFAULT_METRIC, None, False)
                except (NoResults, PathError):
                    continue
            for name in names:
                try:
                    self.table(name, None, "job", None, None, False, {}, 0, 1)
                    self.parallel(name, None)
                except (NoResults, PathError):
                    continue
        finally:
            self.read_ahead_done = True

    # -- grids and jobs ----------------------------------------------------------------------

    def grid_list(self) -> list[dict[str, Any]]:
        names = sorted(set(grids.grid_names(self.out_root)) | set(self.launches.latest))
        listed = []
        for name in names:
            line = self._summary(name)
            if line is not None:
                listed.append(line)
        return listed

    def _summary(self, name: str) -> dict[str, Any] | None:
        launch = self.launches.get(name)
        try:
            folder = grid_dir(self.out_root, name)
        except PathError:
            folder = None
        status = self.statuses.get(folder) if folder is not None else None
        if status is None:
            if launch is None:
                return None  # a folder that is no grid's output dir
            line: dict[str, Any] = {"name": name, "total": 0, "counts": {}, "finished": 0,
                                    "progress": 0.0, "going": launch.returncode is None,
                                    "starting": launch.returncode is None, "eta_s": None}
        else:
            line = grids.summary(name, status, self.paces.setdefault(name, grids.Pace()))
        line["launch"] = launch.view() if launch else None
        return line

    def grid(self, name: str) -> dict[str, Any]:
        line = self._summary(name)
        if line is None:
            grid_dir(self.out_root, name)  # says why: no such folder, or a path outside
            raise PathError(f"{name!r} is not a grid's output dir (it has no jobs.parquet)")
        answer = {**line, "cancel": self.cancels.get(name), "results": None,
                  "results_note": None}
        try:
            results = self._results(name)
        except (NoResults, PathError) as exc:
            answer["results_note"] = str(exc)
            return answer
        data = results.data
        swept = self._memo(results, "swept", lambda: swept_settings(data))
        self.ahead.submit(self._curves, results, DEFAULT_METRIC, None, False)
        answer["results"] = {
            "version": results.version, "swept": swept, "default_by": default_grouping(swept),
            "metrics": self._memo(results, "metrics", lambda: present_metrics(data)),
            "jobs": len(data.jobs), "compare": self._memo(
                results, "compared", lambda: _is_compared(data.grid_dir)),
        }
        return answer

    def jobs(self, name: str, state: str | None, offset: int) -> dict[str, Any]:
        status = self._status(name)
        return grids.job_rows(status, state or None, max(0, offset), JOB_PAGE)

    def job(self, name: str, job_id: str) -> dict[str, Any]:
        status = self._status(name)
        job = grids.find_job(status, check_job_id(job_id))
        if job is None:
            raise PathError(f"grid {name!r} has no job {job_id!r}")
        settings = None
        try:
            known = self._results(name).data.jobs.get(job_id)
            settings = dict(known.settings) if known else None
        except NoResults:
            pass
        return {"job_id": job.job_id, "state": job.state, "error": job.error,
                "interrupted": job.interrupted,
                "log": grids.job_log(grid_dir(self.out_root, name), job_id),
                "settings": plain(settings) if settings else None,
                "slurm": dataclasses.asdict(job.slurm) if job.slurm else None}

    def _read_status(self, folder: Path) -> Any:
        index = self.indexes.get(folder) or StateIndex(folder)
        status = grids.read_status(folder, index)
        if status is not None:  # (Recent reads one grid in one thread at a time)
            self.indexes[folder] = index
        return status

    def _status(self, name: str) -> Any:
        status = self.statuses.get(grid_dir(self.out_root, name))
        if status is None:
            raise PathError(f"{name!r} is not a grid's output dir (it has no jobs.parquet)")
        return status

    # -- results -----------------------------------------------------------------------------

    def _results(self, name: str) -> Results:
        folder = grid_dir(self.out_root, name)
        status = self.statuses.get(folder)
        # results change when jobs end: read them again when the counts by state change
        stamp = tuple(sorted(status.counts.items())) if status is not None else ()
        loaded = self.loads.get(folder, stamp=stamp)
        if isinstance(loaded, AggregateError):
            raise NoResults(str(loaded))
        return loaded

    def _memo(self, results: Results, question: Any, compute: Callable[[], T]) -> T:
        return self.memo.get((str(results.data.grid_dir), results.version, question), compute)

    def curves(self, name: str, metric: str | None, by: Sequence[str] | None,
               seeds: bool) -> dict[str, Any]:
        results = self._results(name)
        answer = self._curves(results, check_metric(metric or DEFAULT_METRIC), by, seeds)
        return {**answer, "version": results.version}

    def _curves(self, results: Results, metric: str, by: Sequence[str] | None,
                seeds: bool) -> dict[str, Any]:
        keys = self._grouping(results, by)
        return self._memo(results, ("curves", metric, tuple(keys), seeds),
                          lambda: curves.curves(results.data, metric, keys, seeds))

    def table(self, name: str, metric: str | None, level: str, by: Sequence[str] | None,
              sort: str | None, descending: bool, filters: Mapping[str, str], offset: int,
              limit: int) -> dict[str, Any]:
        results = self._results(name)
        metric = check_metric(metric or DEFAULT_METRIC)
        swept = self._memo(results, "swept", lambda: swept_settings(results.data))
        jobs = self._memo(results, ("per_job", metric),
                          lambda: table.per_job(results.data, metric, swept))
        if level == "group":
            keys = self._grouping(results, by)
            frame = self._memo(results, ("per_group", metric, tuple(keys)),
                               lambda: table.per_group(jobs, keys))
        elif level == "job":
            frame = jobs
        else:
            raise QueryError(f"level: got {level[:20]!r}; expected job or group")
        answer = table.page(frame, sort=sort, descending=descending, filters=filters,
                            offset=offset, limit=limit)
        return {**answer, "metric": metric, "level": level, "version": results.version}

    def parallel(self, name: str, metric: str | None) -> dict[str, Any]:
        results = self._results(name)
        metric = check_metric(metric or DEFAULT_METRIC)
        swept = self._memo(results, "swept", lambda: swept_settings(results.data))
        answer = self._memo(results, ("parallel", metric),
                            lambda: curves.parallel(results.data, metric, swept))
        return {**answer, "version": results.version}

    def comparison(self, name: str) -> dict[str, Any]:
        from runner.ui.comparison import comparison

        results = self._results(name)
        answer = self._memo(results, "comparison", lambda: comparison(results.data))
        if answer is None:
            raise QueryError(f"grid {name!r} has no compare: section")
        return {**answer, "version": results.version}

    def _grouping(self, results: Results, by: Sequence[str] | None) -> list[str]:
        swept = self._memo(results, "swept", lambda: swept_settings(results.data))
        return default_grouping(swept) if by is None else check_settings(by, swept)

    # -- start and stop ----------------------------------------------------------------------

    def plan(self, body: Any) -> dict[str, Any]:
        return plan(StartRequest.from_json(body), self.out_root)

    def start(self, body: Any) -> dict[str, Any]:
        launch = self.launches.start(StartRequest.from_json(body))
        return {"grid": launch.grid, **launch.view()}

    def cancel(self, name: str, body: Any) -> dict[str, Any]:
        body = body if isinstance(body, Mapping) else {}
        jobs = body.get("jobs") or []
        if not isinstance(jobs, list) or not all(isinstance(job, str) for job in jobs):
            raise QueryError("jobs must be a list of job ids (none: the whole grid)")
        grace = body.get("grace_s", 30.0)
        if isinstance(grace, bool) or not isinstance(grace, int | float) or not 0 <= grace <= 3600:
            raise QueryError(f"grace_s: got {str(grace)[:20]!r}; expected seconds from 0 to 3600")
        folder = grid_dir(self.out_root, name)
        answer = self.cancels.cancel(name, folder, [check_job_id(job) for job in jobs],
                                     float(grace))
        self.statuses.forget(folder)
        return answer


def _is_compared(folder: Path) -> bool:
    from runner.report.stages import read_protocol

    return read_protocol(folder) is not None
