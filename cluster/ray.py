"""The Ray backend: each unit is one Ray task; outcomes arrive as tasks finish (ray.wait).

Ray is joined at RAY_ADDRESS or --ray-address when given; otherwise an embedded local Ray starts
here, in a dir of its own and listening on loopback only, and stops at close(), which removes
its dir (kept for its logs when a unit crashed). If the driver process dies (even by SIGKILL),
the embedded Ray's raylet and GCS die with it (Ray ties them to the driver); its workers would
train on for about two seconds more, so each task watches its runner's claims and exits as soon
as it is gone.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cluster.backends import BackendError, BackendSettings, UnitEntry, run_entry
from cluster.base import Backend, Outcome, Resources, WorkUnit
from jobs.entry import StackRequest, one_per_dataset
from jobs.rundir.results import JobResult
from jobs.spec import JobSpec

log = logging.getLogger("tvo.ray")

# Ray puts unix sockets at <temp dir>/session_<date>_<time>_<usec>_<pid>/sockets/plasma_store,
# and a unix socket path holds at most 107 bytes on Linux: the temp dir must stay short.
_SOCKET_PATH_MAX = 107
_SESSION_SOCKET_SUFFIX = len("/session_2026-01-01_00-00-00_000000_4194304/sockets/plasma_store")
_PREFIX = "tvo-ray-"
_PRIVATE_DIR_CHARS = len(_PREFIX) + 8  # mkdtemp's name: the prefix and 8 random characters


def private_temp_dir() -> Path:
    """A new dir of this run's own for an embedded Ray's sockets, logs and session files.

    Made (mode 0700) in TVO_RAY_TMPDIR when set, else in the temp dir (TMPDIR), else, when
    TMPDIR is too long for Ray's socket paths, in /tmp; never a dir another run shares. Not
    under the output dir: that is often long and often on a network filesystem, where unix
    sockets may not work. The caller removes it when Ray stops (RayBackend.close).
    """
    chosen = os.environ.get("TVO_RAY_TMPDIR")
    bases = [Path(chosen)] if chosen else [Path(tempfile.gettempdir()), Path("/tmp")]
    for base in bases:
        if _fits(base):
            try:
                base.mkdir(parents=True, exist_ok=True)
                return Path(tempfile.mkdtemp(prefix=_PREFIX, dir=base))
            except OSError as exc:
                raise BackendError(f"cannot make a dir for Ray in {base}: "
                                   f"{exc.strerror or exc}") from None
    limit = _SOCKET_PATH_MAX - _SESSION_SOCKET_SUFFIX - _PRIVATE_DIR_CHARS - 1
    raise BackendError(f"TVO_RAY_TMPDIR={chosen} is too long for Ray's socket paths; "
                       f"use a path of at most {limit} characters")


def _fits(base: Path) -> bool:
    length = len(str(base).encode()) + 1 + _PRIVATE_DIR_CHARS + _SESSION_SOCKET_SUFFIX
    return length <= _SOCKET_PATH_MAX


def _use_session_token() -> None:
    """Keep Ray's token authentication on without writing ~/.ray/auth_token.

    Ray 2.60 turns token auth on for a new local cluster and, when no token exists, writes one
    to ~/.ray/auth_token. When the user has no token anywhere, the embedded cluster gets a
    random one in RAY_AUTH_TOKEN instead: this process and Ray's children (GCS, raylet,
    workers) inherit it, and it dies with them. RAY_AUTH_MODE=token says so explicitly, which
    is also what keeps Ray from announcing that it turned token auth on by default.
    """
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return
    if (Path.home() / ".ray" / "auth_token").exists():
        return
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


@contextmanager
def _loopback_only() -> Iterator[None]:
    """Make an embedded Ray's node address 127.0.0.1, so that every process of it (GCS, raylet,
    workers, the dashboard agent and the metrics servers) listens on loopback only.

    Ray binds its servers to the node's address, and for a new local cluster it takes the
    address this machine reaches the network with (0.0.0.0 or the node IP then: reachable
    from other machines), unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, Ray's own switch for
    single-machine Ray (the default on Windows and macOS); ray.init(_node_ip_address=
    "127.0.0.1") is turned back into the network address. Ray reads the variable when it is
    first imported, and its processes inherit it when ray.init starts them; it is taken out
    again afterwards, so that this process's later children (a `ray start`) do not see it. An
    embedded Ray in a process that imported ray before is not loopback-only.
    """
    name = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
    before = os.environ.get(name)
    os.environ[name] = "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def start_ray(address: str | None = None, *, num_cpus: int | None = None,
              temp_dir: Path | None = None) -> Path | None:
    """Join Ray at `address` (or RAY_ADDRESS), else start an embedded one in `temp_dir` (by
    default a private dir made for it, which the caller removes when Ray has stopped).

    Returns the embedded Ray's temp dir, or None when an existing cluster was joined.
    """
    address = address or os.environ.get("RAY_ADDRESS") or None
    # Ray's C++ core would otherwise catch SIGTERM while ray.init runs and abort the process
    # (SIGABRT, a stack dump): `kill` during Ray's start must stop tvo like Ctrl-C does.
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    if address is None:
        return _start_embedded(num_cpus or os.cpu_count() or 1, temp_dir or private_temp_dir())
    import ray

    # The cluster's workers run this checkout's jobs and cluster packages, uploaded by Ray, so
    # driver and workers never disagree on a job's code or its results' schema.
    import cluster
    import jobs

    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING,
                 runtime_env={"py_modules": [jobs, cluster]})
    except (ConnectionError, RuntimeError, ValueError, OSError) as exc:
        hint = ("; if the cluster uses token authentication (Ray's default), set "
                "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN" if "RAY_AUTH_MODE" not in os.environ
                else "")
        raise BackendError(f"cannot join Ray at {address}: {_one_line(exc)}{hint}") from None
    return None


def _start_embedded(num_cpus: int, temp_dir: Path) -> Path:
    _use_session_token()
    with _loopback_only():
        import ray

        try:
            ray.init(num_cpus=num_cpus, include_dashboard=False, _temp_dir=str(temp_dir),
                     log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError, OSError) as exc:
            raise BackendError(f"cannot start a local Ray: {_one_line(exc)} (Ray's logs: "
                               f"{_logs_of(temp_dir)})") from None
        except BaseException:  # interrupted while Ray starts (Ctrl-C, SIGTERM): nothing stays
            if ray.is_initialized():
                ray.shutdown()
            shutil.rmtree(temp_dir, ignore_errors=True)
            raise
    temp_dir.chmod(0o700)  # Ray opens its temp dir to everyone (0777); this one is the run's
    return temp_dir


def _free_gpu_memory(devices: list[str]) -> int | None:
    from cluster.inline import cuda_free_memory

    return cuda_free_memory(devices)


def _logs_of(temp_dir: Path) -> Path:
    return temp_dir / "session_latest" / "logs"


def _warm_up_task(specs: Sequence[JobSpec]) -> None:
    """What a Ray worker runs before the first units come (RayBackend.warm_up)."""
    from jobs.entry import warm_up

    warm_up(specs)


def _run_unit_task(entry: UnitEntry | None, request: StackRequest,
                   threads: int) -> list[JobResult]:
    """What a Ray worker runs for one unit: stops at once if the runner that sent it dies."""
    from jobs.rundir.claim_watch import ClaimWatch

    if not request.settings.runner:
        return run_entry(entry, request, threads)
    with ClaimWatch(Path(request.grid_dir), request.settings.runner):
        return run_entry(entry, request, threads)


class RayBackend(Backend):
    """Units become Ray tasks sized by the grid's resources; Ray itself never retries them.

    Retries belong to the runner (--retries), so a crashed worker comes back as a crash.
    """

    name = "ray"
    queues_ahead = True  # Ray queues tasks its CPUs cannot start yet, and keeps to its CPUs

    def __init__(self, settings: BackendSettings) -> None:
        self._entry = settings.entry
        self._pending: dict[Any, WorkUnit] = {}
        started = time.perf_counter()
        self._temp_dir: Path | None = None  # the embedded Ray's own dir, removed at close
        self._crashed = False  # a unit crashed in Ray: its logs are kept at close
        # A caller's Ray (already initialized in this process) is used and left as it is. (ray
        # is imported by start_ray, which first sets what the import reads.)
        self._connected_here = "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
        self._warming: list[Any] = []  # warm-up tasks (kept referenced while they run)
        if self._connected_here:
            cpus = os.cpu_count() or 1
            if settings.max_parallel:  # room for the requested number of concurrent units
                cpus = max(cpus, settings.max_parallel * settings.resources.cpus)
            self._temp_dir = start_ray(settings.ray_address, num_cpus=cpus)
        import ray

        self._ray = ray
        self.embedded = self._temp_dir is not None  # this backend started its Ray (and stops it)
        self._logs = f" (Ray's logs: {_logs_of(self._temp_dir)})" if self._temp_dir else ""
        self.start_seconds = time.perf_counter() - started
        self.cluster = ray.cluster_resources()
        self._task = ray.remote(_run_unit_task)
        if self.embedded:
            self._check_fits(settings.resources)

    def _check_fits(self, resources: Resources) -> None:
        for setting, wanted, kind in (("cpus", resources.cpus, "CPU"),
                                      ("gpus", resources.gpus, "GPU")):
            have = int(self.cluster.get(kind, 0))
            if wanted > have:
                self.close()
                raise BackendError(f"resources.{setting}={wanted} per unit, but the local Ray "
                                   f"has {have} {kind}s; lower resources.{setting}")

    def describe(self) -> str:
        kind = "embedded local Ray" if self.embedded else "Ray cluster"
        cpus = int(self.cluster.get("CPU", 0))
        gpus = int(self.cluster.get("GPU", 0))
        return f"{kind}: {cpus} CPUs, {gpus} GPUs (ready in {self.start_seconds:.1f} s)"

    def warm_up(self, specs: Sequence[JobSpec], resources: Resources) -> None:
        """On an embedded Ray, one task per slot imports the engine and loads the grid's data
        (up to jobs.engine.train.DATASETS_KEPT datasets) while the runner prepares the output
        dir and claims the first jobs: the first units then start training at once (1-2 s sooner on
        two cores). A joined cluster's workers are not known ahead; they load on first use."""
        slots = self.capacity(resources)
        if not self.embedded or self._entry is not None or not slots:
            return  # (a stand-in entry does not use the engine)
        task = self._ray.remote(_warm_up_task).options(**self._task_options(resources))
        chosen = one_per_dataset(specs)
        self._warming = [task.remote(chosen) for _ in range(slots)]

    def device_memory(self, specs: Sequence[JobSpec], resources: Resources) -> int | None:
        """Free memory of a GPU a unit gets, asked of a worker holding one (None without
        GPUs in the cluster, or for jobs on the CPU)."""
        if not self._wants_gpu(specs, resources):
            return None
        probe = self._ray.remote(_free_gpu_memory).options(num_gpus=1, num_cpus=0,
                                                           max_retries=0)
        return self._ray.get(probe.remote([spec.device for spec in specs[:1]]))

    def _wants_gpu(self, specs: Sequence[JobSpec], resources: Resources) -> bool:
        """Units of these jobs take a GPU each: the grid asks for GPUs, or its jobs train on
        cuda (or auto) where the cluster has GPUs."""
        if resources.gpus:
            return True
        return int(self.cluster.get("GPU", 0)) > 0 and any(
            spec.device in ("cuda", "auto") for spec in specs)

    def _task_options(self, resources: Resources) -> dict[str, Any]:
        options: dict[str, Any] = {"num_cpus": resources.cpus, "num_gpus": resources.gpus,
                                   "max_retries": 0, "retry_exceptions": False}
        if resources.mem_gb:
            options["memory"] = int(resources.mem_gb * 1024**3)
        return options

    def submit(self, units: Sequence[WorkUnit], resources: Resources) -> None:
        options = self._task_options(resources)
        for unit in units:
            gpus = max(resources.gpus, 1) if self._wants_gpu(unit.specs, resources) else 0
            task = self._task.options(**{**options, "num_gpus": gpus})  # a GPU of its own
            self._pending[task.remote(self._entry, unit, resources.cpus)] = unit

    def outcomes(self) -> Iterator[Outcome]:
        ray = self._ray
        while self._pending:
            ready, _ = ray.wait(list(self._pending), num_returns=1)
            unit = self._pending.pop(ready[0])
            try:
                results = ray.get(ready[0])
            except ray.exceptions.RayTaskError as exc:  # the unit raised in the worker
                cause = exc.cause if exc.cause is not None else exc
                self._crashed = True
                yield Outcome(unit, crash=_one_line(cause), info={"traceback": str(exc)})
                continue
            except ray.exceptions.RayError as exc:  # the worker died, or the task was cancelled
                self._crashed = True
                yield Outcome(unit, crash=_one_line(exc) + self._logs,
                              info={"traceback": traceback.format_exc()})
                continue
            yield Outcome(unit, tuple(results))

    def cancel(self) -> None:
        for ref in list(self._pending):
            self._ray.cancel(ref, force=True)
        self._pending.clear()

    def capacity(self, resources: Resources, specs: Sequence[JobSpec] = ()) -> int | None:
        slots = int(self.cluster.get("CPU", 0)) // max(resources.cpus, 1)
        if self._wants_gpu(specs, resources):  # one stack per GPU
            slots = min(slots, int(self.cluster.get("GPU", 0)) // max(resources.gpus, 1))
        return slots or None  # none free now: an autoscaling cluster may still add nodes

    def close(self) -> str | None:
        """Stop the embedded Ray and remove its dir, or disconnect from a joined cluster (which
        keeps running). After a crash the dir stays for its logs: the line returned says where."""
        if not self._connected_here or not self._ray.is_initialized():
            return None
        if self.embedded:
            _stop_autoscaler_monitor()
        self._ray.shutdown()
        if self._temp_dir is None:
            return None
        if self._crashed:
            return f"Ray's logs of this run are kept (a unit crashed): {_logs_of(self._temp_dir)}"
        shutil.rmtree(self._temp_dir, ignore_errors=True)
        return None


def _stop_autoscaler_monitor() -> None:
    """Kill the embedded Ray's autoscaler monitor (by its pid, through Ray's handle on the
    processes it started) before ray.shutdown: on SIGTERM it reports its end to the GCS, which
    ray.shutdown has stopped first, and waits a second for it; it keeps no state, and one node
    has nothing to scale. `tvo run` ends 0.7 s sooner (0.36-0.39 s against 1.11-1.12 s for
    ray.shutdown, Ray 2.60). Ray has no public way to start a local cluster without the monitor
    or to stop one of its processes, so this is the one use of ray._private, guarded: with
    another Ray's internals it does nothing and ray.shutdown stops the monitor as before."""
    try:
        import ray

        node = ray._private.worker._global_node
        node._kill_process_type("monitor", check_alive=False, allow_graceful=False)
    except Exception:  # noqa: BLE001  (another Ray's internals: ray.shutdown stops it)
        log.debug("could not stop Ray's autoscaler monitor ahead", exc_info=True)


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if len(first) > limit:
        first = first[:limit] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
