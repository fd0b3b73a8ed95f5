"""The SLURM backend: units go to SLURM as submitit job arrays, and submitit's jobs carry them.

- The units of one submit() call go to SLURM at once, as few job arrays as possible:
  `resources.jobs_per_node` units share one SLURM job (one task each, each task with its own
  GPUs), arrays are split at the cluster's MaxArraySize, and --max-parallel is the arrays'
  concurrency (`%N`).
- Settings are checked with `sbatch --test-only` when the backend starts, so a partition or a
  GPU count the cluster lacks fails with SLURM's reason before anything is written.
- Each unit is a submitit job (one task of it): its result file marks it done (one directory
  listing per folder finds them all) and `job.result()` reads it. A job that squeue no longer
  lists, and whose result has not shown up `result_grace_s` later, is a crash with the state
  submitit's watcher reads from sacct (CANCELLED, TIMEOUT, NODE_FAIL, ...) and its log: the
  driver never waits on a job that died without a word.
- A job still queued or running from an earlier run into the same grid dir (one that was
  detached, say) is re-attached with `SlurmJob(folder, job_id)` and waited for, not submitted
  a second time.
"""

from __future__ import annotations

import logging
import os
import shlex
import site
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cluster.backends import BackendError, BackendSettings
from cluster.base import Backend, Outcome, Resources, WorkUnit
from cluster.slurm import commands
from cluster.slurm.records import Placement, latest_placements, new_folder, write_record
from cluster.slurm.settings import Layout, SlurmSettings, SlurmSettingsError
from cluster.slurm.task import UnitTasks

log = logging.getLogger("tvo.slurm")

RESULT_POLL_S = 0.25  # result files: one directory listing per submitit folder
UNREACHABLE_S = 600.0  # squeue failing this long: the pending units are given up as crashed
_TRACE_RULE = "-" * 22 + "\n"  # what frames the task's traceback in submitit's FailedJobError


@dataclass
class _Pending:
    unit: WorkUnit
    placement: Placement
    job: Any  # submitit.SlurmJob: this unit's task of its SLURM job
    result: Path = field(init=False)  # job.paths.result_pickle, looked up once (7 us a time)
    gone_since: float | None = None  # when squeue first stopped listing its SLURM job
    unreachable: bool = False  # given up because squeue stopped answering

    def __post_init__(self) -> None:
        self.result = self.job.paths.result_pickle


class SlurmBackend(Backend):
    """Runs units as SLURM jobs through submitit; see the module docstring."""

    name = "slurm"

    def __init__(self, settings: BackendSettings) -> None:
        if not commands.slurm_installed():
            raise BackendError("--backend slurm needs SLURM's client commands (sbatch, srun) on "
                               "PATH; they are not installed here")
        try:
            self.settings = SlurmSettings.read(settings.slurm)
            self.layout = Layout.of(settings.resources)
            self.max_array_size = commands.max_array_size()
        except (SlurmSettingsError, commands.SlurmCommandError) as exc:
            raise BackendError(str(exc)) from None
        self.grid_dir = Path(settings.grid_dir)
        self.entry = settings.entry
        self.max_parallel = settings.max_parallel
        self._check_accepted(settings.resources)
        commands.watcher_warnings_to_stderr_only()
        self.folder: Path | None = None  # created at the first submission
        self._placements: list[Placement] = []
        self._pending: dict[tuple[str, int], _Pending] = {}
        self._earlier = latest_placements(self.grid_dir)
        self._last_state_check = 0.0
        self._unreachable_since: float | None = None

    # -- starting -------------------------------------------------------------------------------
    def _executor(self, folder: Path, resources: Resources, tasks: int,
                  parallelism: int | None = None) -> Any:
        import submitit

        executor = submitit.SlurmExecutor(folder, max_num_timeout=self.settings.max_num_timeout,
                                          python=self.settings.python)
        parameters = self.settings.executor_parameters(resources, tasks, self.grid_dir.name,
                                                       parallelism)
        setup = [*_import_path_setup(), *parameters.get("setup", [])]
        if setup:
            parameters["setup"] = setup
        try:
            executor.update_parameters(**parameters)
        except ValueError as exc:  # submitit checks values by writing a test script
            raise BackendError(f"slurm: {str(exc).splitlines()[0]}") from None
        return executor

    def _check_accepted(self, resources: Resources) -> None:
        """sbatch --test-only with the parameters of the largest job this grid submits."""
        with tempfile.TemporaryDirectory(prefix="tvo-slurm-test-") as folder:
            executor = self._executor(Path(folder), resources, self.layout.units_per_job)
            try:
                commands.test_submission(executor.parameters)
            except commands.SlurmCommandError as exc:
                raise BackendError(f"SLURM rejects this grid's resources and slurm settings: "
                                   f"{exc} ({self._asked(executor.parameters)})") from None

    @staticmethod
    def _asked(parameters: dict[str, Any]) -> str:
        shown = ("partition", "account", "qos", "constraint", "gpus_per_node",
                 "ntasks_per_node", "cpus_per_task", "mem", "time")
        return "asked for " + ", ".join(f"{key}={parameters[key]}" for key in shown
                                        if key in parameters)

    def describe(self) -> str:
        partition = self.settings.parameters.get("partition", "the default partition")
        pack = (f", {self.layout.units_per_job} jobs per SLURM job"
                if self.layout.units_per_job > 1 else "")
        return (f"SLURM via submitit ({partition}{pack}; arrays of up to "
                f"{self.max_array_size}; logs in {self.grid_dir / 'slurm'})")

    # -- submitting -----------------------------------------------------------------------------
    def submit(self, units: Sequence[WorkUnit], resources: Resources) -> None:
        """Send the units now: arrays of full packs, and one job for a last, partial pack."""
        fresh = self._adopt_queued(units)
        per_job = self.layout.units_per_job
        packs = [tuple(fresh[i:i + per_job]) for i in range(0, len(fresh), per_job)]
        full = [pack for pack in packs if len(pack) == per_job]
        partial = [pack for pack in packs if len(pack) < per_job]
        arrays = [group[start:start + self.max_array_size] for group in (full, partial)
                  for start in range(0, len(group), self.max_array_size)]
        # --max-parallel caps the whole submission: split arrays share it (each runs >= 1)
        for index, packs_of_array in enumerate(arrays):
            share = None
            if self.max_parallel:
                share = max(1, self.max_parallel // len(arrays)
                            + (index < self.max_parallel % len(arrays)))
            self._submit_array(packs_of_array, resources, share)

    def _submit_array(self, packs: list[tuple[WorkUnit, ...]], resources: Resources,
                      parallelism: int | None) -> None:
        if self.folder is None:
            self.folder = new_folder(self.grid_dir)
        executor = self._executor(self.folder, resources, len(packs[0]), parallelism)
        tasks = [UnitTasks(pack, resources.cpus, self.layout.gpus_per_task, self.entry,
                           time_limit_s=resources.timeout_min * 60,
                           signal_delay_s=executor.parameters["signal_delay_s"])
                 for pack in packs]
        try:
            with commands.client_environment_applied():
                jobs = executor.submit_array(tasks)
        except Exception as exc:  # submitit raises its own FailedJobError, or OSError
            self._forget_empty_folder()
            raise BackendError(f"sbatch failed: {commands.reason(str(exc))}") from None
        for job, pack in zip(jobs, packs, strict=True):
            for task, unit in enumerate(pack):
                placement = Placement(self.folder, job.job_id, task, tuple(unit.job_ids))
                self._placements.append(placement)
                self._pending[(job.job_id, task)] = _Pending(unit, placement, job.task(task))
        write_record(self.folder, self._placements, {
            "grid": self.grid_dir.name, "written_at": _now(),
            "max_array_size": self.max_array_size, "max_parallel": self.max_parallel})
        log.info("submitted %d SLURM jobs (%s)", len(jobs), jobs[0].job_id.split("_")[0])

    def _forget_empty_folder(self) -> None:
        """A run that submitted nothing leaves no folder behind (only submitit's leftovers)."""
        if self.folder is None or self._placements:
            return
        for path in sorted(self.folder.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        self.folder.rmdir()
        self.folder = None

    def _adopt_queued(self, units: Sequence[WorkUnit]) -> list[WorkUnit]:
        """Re-attach to the SLURM jobs an earlier run left queued for these units and wait for
        them; the rest are new.

        A detached run's jobs may still be pending or running when `tvo run` is started again
        on the same grid: submitting them again would train each twice into one run dir.
        """
        earlier: dict[str, Placement] = {}
        for unit in units:
            placement = self._earlier.get(unit.specs[0].job_id)
            if (placement is not None and placement.job_ids == tuple(unit.job_ids)
                    and not placement.job.paths.result_pickle.exists()):  # not one that ended
                earlier[unit.key] = placement
        queued = commands.queued(p.slurm_id for p in earlier.values()) if earlier else {}
        if queued is None:  # submitting blind could train a job twice into one run dir
            raise BackendError("squeue does not answer, so tvo cannot tell whether the SLURM "
                               "jobs of an earlier run into this dir still run; try again")
        fresh = []
        for unit in units:
            placement = earlier.get(unit.key)
            if placement is None or queued.get(placement.slurm_id) in (None, "COMPLETING"):
                fresh.append(unit)
                continue
            log.info("job %s is still %s as SLURM job %s: waiting for it", unit.key,
                     queued[placement.slurm_id], placement.slurm_id)
            self._pending[(placement.slurm_id, placement.task)] = _Pending(unit, placement,
                                                                           placement.job)
        return fresh

    # -- collecting -----------------------------------------------------------------------------
    def outcomes(self) -> Iterator[Outcome]:
        while self._pending:
            ready = self._ready()
            for key in ready:
                pending = self._pending.pop(key, None)
                if pending is not None:
                    yield self._outcome(pending)
            if not ready:
                time.sleep(RESULT_POLL_S)

    def _ready(self) -> list[tuple[str, int]]:
        """Units whose result file is there, or whose SLURM job died without one.

        What job.done() asks of each job, asked of a whole folder at once: one listing (after
        the chmod that makes an NFS client drop its cached view, as submitit does) instead of
        a stat per job, and squeue instead of sacct, whose record of a job's end may lag.
        """
        listed: dict[Path, set[str]] = {}
        for pending in self._pending.values():
            folder = pending.placement.folder
            if folder not in listed:
                try:
                    folder.chmod(folder.stat().st_mode)
                except OSError:  # not ours to chmod: the cache expires by itself
                    pass
                try:
                    listed[folder] = set(os.listdir(folder))
                except OSError:  # removed under us: its jobs can only end as dead
                    listed[folder] = set()
        ready = [key for key, pending in self._pending.items()
                 if pending.result.name in listed[pending.placement.folder]]
        now = time.monotonic()
        if now - self._last_state_check >= self.settings.state_poll_s:
            self._last_state_check = now
            ready += self._dead(now, exclude=set(ready))
        return ready

    def _dead(self, now: float, exclude: set[tuple[str, int]]) -> list[tuple[str, int]]:
        """Units whose SLURM job left the queue `result_grace_s` ago and left no result."""
        queued = commands.queued(pending.job.job_id for pending in self._pending.values())
        if queued is None:  # slurmctld did not answer: decide nothing, unless it never does
            self._unreachable_since = self._unreachable_since or now
            if now - self._unreachable_since < UNREACHABLE_S:
                return []
            given_up = [key for key in self._pending if key not in exclude]
            for key in given_up:
                self._pending[key].unreachable = True
            return given_up
        self._unreachable_since = None
        dead = []
        for key, pending in self._pending.items():
            if key in exclude:
                continue
            if pending.job.job_id in queued:
                pending.gone_since = None  # e.g. requeued after a preemption
            elif pending.gone_since is None:
                pending.gone_since = now
            elif now - pending.gone_since >= self.settings.result_grace_s:
                dead.append(key)
        if dead:  # one forced sacct through submitit's watcher answers for them all
            self._pending[dead[0]].job.get_info()
        return dead

    def _outcome(self, pending: _Pending) -> Outcome:
        job = pending.job
        where = f"SLURM job {job.job_id}"
        info: dict[str, Any] = {"slurm_job_id": job.job_id, "slurm_task": pending.placement.task,
                                "slurm_log": str(job.paths.stdout)}
        if pending.result.exists():
            try:
                return Outcome(pending.unit, tuple(job.result()), info=info)
            except Exception as exc:  # submitit's FailedJobError: the task raised
                text = str(exc)
                trace = text.split(_TRACE_RULE)[1] if text.count(_TRACE_RULE) >= 2 else text
                last = [line for line in trace.strip().splitlines() if line.strip()][-1:]
                return Outcome(pending.unit, crash=f"{''.join(last)} ({where}, log "
                                                   f"{job.paths.stdout})",
                               info={**info, "traceback": trace})
        if pending.unreachable:
            return Outcome(pending.unit, crash=f"squeue did not answer for {UNREACHABLE_S:.0f} s: "
                                               f"gave up on {where}; log {job.paths.stdout}",
                           info=info)
        state = job.state  # what submitit's watcher read from sacct when it was found dead
        if (state.split() or [""])[0] not in commands.TERMINAL_STATES:
            state = "UNKNOWN (no sacct record)"
        info["slurm_state"] = state
        last = _last_line(job)
        why = f" ({last})" if last else ""
        return Outcome(pending.unit, crash=f"{where} ended {state} without a result{why}; log "
                                           f"{job.paths.stdout}", info=info)

    # -- stopping -------------------------------------------------------------------------------
    def cancel(self) -> None:
        commands.scancel(pending.job.job_id for pending in self._pending.values())
        self._pending.clear()


def _last_line(job: Any, limit: int = 200) -> str:
    """The last line of a task's stderr that says something: often the reason it died."""
    try:
        text = job.stderr() or ""
    except (OSError, UnicodeDecodeError):
        return ""
    said = [line.strip() for line in text.splitlines() if line.strip()
            and not line.startswith(("submitit ", "srun: got SIGCONT", "srun: forcing"))]
    return said[-1][:limit] if said else ""


def _import_path_setup() -> list[str]:
    """Make the job import the same tvo as this process when tvo runs from a source tree.

    The job's python imports `cluster.slurm.task` to unpickle its task; from an installed tvo
    that simply works, from a checkout it needs the checkout on PYTHONPATH.
    """
    root = Path(__file__).resolve().parents[2]
    installed = {Path(path).resolve() for path in [*site.getsitepackages(),
                                                   site.getusersitepackages()]}
    if root in installed:
        return []
    return [f"export PYTHONPATH={shlex.quote(str(root))}${{PYTHONPATH:+:$PYTHONPATH}}"]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
