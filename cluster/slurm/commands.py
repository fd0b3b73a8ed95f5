"""What submitit does not do for tvo: SLURM's client commands run in a clean environment
(sbatch --test-only, squeue, scancel), and SLURM's reasons on one line."""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("tvo.slurm")

# States after which a SLURM job never runs again (a requeued job goes back to PENDING).
TERMINAL_STATES = frozenset({
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
    "PREEMPTED", "REVOKED", "SPECIAL_EXIT", "TIMEOUT",
})
# submitit's parameters that are not sbatch options (they shape its script's body instead)
_NOT_SBATCH = frozenset({"additional_parameters", "array_parallelism", "setup", "teardown",
                         "signal_delay_s", "srun_args", "stderr_to_stdout", "use_srun"})
_CLIENT_TIMEOUT_S = 60
_environment_lock = threading.Lock()


class SlurmCommandError(RuntimeError):
    """A SLURM command that failed; the message is SLURM's own reason, on one line."""


def client_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for sbatch and friends: without the SLURM job this process may run in.

    A driver started inside a SLURM job (an interactive allocation, or a job that submits a
    grid) carries that job's SLURM_* variables. sbatch hands the submitting environment to the
    new job, whose srun then reads them as its own options: the parent's SLURM_MEM_PER_CPU next
    to the child's --mem stops it with "srun: fatal: SLURM_MEM_PER_CPU, SLURM_MEM_PER_GPU, and
    SLURM_MEM_PER_NODE are mutually exclusive". SLURM_CONF (where the cluster's config is) stays.
    Inside a job, the SBATCH_/SRUN_/SALLOC_ input variables go too: the parent's options, not
    the user's choice for this grid (that belongs in the grid's `slurm:` section).
    """
    environ = os.environ if environ is None else environ
    prefixes = ["SLURM_"]
    if "SLURM_JOB_ID" in environ:
        prefixes += ["SBATCH_", "SRUN_", "SALLOC_"]
    return {key: value for key, value in environ.items()
            if key == "SLURM_CONF" or not key.startswith(tuple(prefixes))}


@contextmanager
def client_environment_applied() -> Iterator[None]:
    """Run submitit's sbatch call in the clean environment (submitit takes no env argument).

    One submission at a time in this process changes os.environ; it is restored afterwards.
    """
    with _environment_lock:
        removed = {key: value for key, value in os.environ.items()
                   if key not in client_environment()}
        for key in removed:
            del os.environ[key]
        try:
            yield
        finally:
            os.environ.update(removed)


def watcher_warnings_to_stderr_only() -> None:
    """submitit's logging config prints its watcher's warning about a failed sacct call twice,
    on stderr and on stdout; in tvo's own processes stdout is the command's output (`tvo
    status`), so the warning goes to stderr alone. submitit's jobs, which log to their own
    stdout file, are other processes and keep their config."""
    submitit_logger = logging.getLogger("submitit")
    for handler in list(submitit_logger.handlers):
        if getattr(handler, "stream", None) is sys.__stdout__:
            submitit_logger.removeHandler(handler)


def run_client(*command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a SLURM client command in the clean environment."""
    try:
        done = subprocess.run(list(command), capture_output=True, text=True, check=False,
                              env=client_environment(), timeout=_CLIENT_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SlurmCommandError(f"{command[0]} failed: {exc}") from None
    if check and done.returncode != 0:
        raise SlurmCommandError(f"{command[0]} failed: {reason(done.stderr + done.stdout)}")
    return done


def reason(output: str) -> str:
    """SLURM's reason from a command's output, on one line.

    sbatch says "sbatch: error: invalid partition specified: x" and then "sbatch: error: Batch
    job submission failed: Invalid partition name specified"; the last line is the reason.
    """
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    if not lines:
        return "no output"
    last = lines[-1]
    for prefix in ("sbatch: error:", "srun: error:", "error:", "Batch job submission failed:",
                   "allocation failure:"):
        last = last.removeprefix(prefix).strip()
    return last.removeprefix("Batch job submission failed:").strip()


def slurm_installed() -> bool:
    return shutil.which("sbatch") is not None and shutil.which("srun") is not None


def max_array_size() -> int:
    """The cluster's MaxArraySize: array indices run from 0 to MaxArraySize - 1."""
    config = run_client("scontrol", "show", "config").stdout
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", config, re.MULTILINE)
    return int(match.group(1)) if match else 1001  # SLURM's default


def sbatch_lines(parameters: Mapping[str, Any]) -> list[str]:
    """The #SBATCH lines of a job with these submitit parameters (`executor.parameters`),
    spelt as submitit's own batch script spells them: --key-with-dashes=value, a bare --key
    for True."""
    options = {key: value for key, value in parameters.items() if key not in _NOT_SBATCH}
    options.update(parameters.get("additional_parameters") or {})
    return [f"#SBATCH --{key.replace('_', '-')}"
            + ("" if value is True else f"={shlex.quote(str(value))}")
            for key, value in sorted(options.items()) if value is not None]


def test_submission(parameters: Mapping[str, Any]) -> None:
    """Ask slurmctld whether it would accept a job with these submitit parameters, without
    queueing anything: sbatch --test-only on a script of our own with their #SBATCH lines.

    A bad partition, a GPU count no node has or an unknown feature comes back as
    SlurmCommandError with SLURM's reason.
    """
    with tempfile.NamedTemporaryFile("w", prefix="tvo-slurm-test-", suffix=".sh") as script:
        script.write("\n".join(["#!/bin/bash", *sbatch_lines(parameters), "true", ""]))
        script.flush()
        done = run_client("sbatch", "--test-only", script.name, check=False)
    if done.returncode != 0:
        raise SlurmCommandError(reason(done.stderr + done.stdout))


def queued(job_ids: Iterable[str]) -> dict[str, str] | None:
    """Jobs slurmctld still has pending or running, by element id ("12_3"); None: cannot tell.

    squeue answers from slurmctld itself, so a job that ended is gone from it at once, while
    its accounting record (sacct, which submitit's watcher reads) may lag; an id slurmctld
    forgot is simply not listed. One call for every array asked about.
    """
    arrays = sorted({job_id.split("_")[0] for job_id in job_ids})
    if not arrays:
        return {}
    try:
        done = run_client("squeue", "-h", "-r", "-o", "%i|%T", "-j", ",".join(arrays),
                          check=False)
    except SlurmCommandError as exc:
        log.warning("cannot ask squeue: %s", exc)
        return None
    if done.returncode != 0:
        if "Invalid job id" in done.stderr:
            return {}  # none of them is known any more
        log.warning("squeue failed: %s", reason(done.stderr))
        return None
    rows = (line.partition("|") for line in done.stdout.splitlines() if "|" in line)
    return {job_id.strip(): state.strip() for job_id, _, state in rows}


def scancel(job_ids: Iterable[str], *, pending_only: bool = False) -> list[str]:
    """Cancel these SLURM jobs (only those still pending, if so asked) with one scancel.

    Returns the ids asked for; [] when there are none or scancel is not installed here (a dir
    copied to a laptop). Ids SLURM no longer knows are fine: scancel skips them.
    """
    ids = sorted(set(job_ids))
    if not ids or shutil.which("scancel") is None:
        return []
    try:
        run_client("scancel", *(["--state=PENDING"] if pending_only else []), *ids, check=False)
    except SlurmCommandError:
        return []
    return ids
