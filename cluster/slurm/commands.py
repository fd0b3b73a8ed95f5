"""SLURM's client commands as tvo calls them: a clean environment, job states, one-line reasons."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("tvo.slurm")

# States after which a SLURM job never runs again (a requeued job goes back to PENDING).
TERMINAL_STATES = frozenset({
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
    "PREEMPTED", "REVOKED", "SPECIAL_EXIT", "TIMEOUT",
})
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


def test_submission(script: Path) -> None:
    """Ask slurmctld whether it would accept this batch script (sbatch --test-only).

    Nothing is queued; a bad partition, a GPU count no node has or an unknown feature comes
    back as SlurmCommandError with SLURM's reason.
    """
    done = run_client("sbatch", "--test-only", str(script), check=False)
    if done.returncode != 0:
        raise SlurmCommandError(reason(done.stderr + done.stdout))


def cancel(job_ids: Iterable[str]) -> None:
    ids = sorted(set(job_ids))
    if ids:
        run_client("scancel", *ids, check=False)


@dataclass(frozen=True)
class JobState:
    """What SLURM says about one job (or array element)."""

    state: str  # e.g. PENDING, RUNNING, COMPLETED, "CANCELLED by 0"
    exit_code: str = ""
    reason: str = ""

    @property
    def name(self) -> str:
        return self.state.split()[0] if self.state else ""

    @property
    def ended(self) -> bool:
        return self.name in TERMINAL_STATES


def queued(array_ids: Iterable[str]) -> dict[str, str] | None:
    """Jobs slurmctld still has pending or running, by element id ("12_3"); None: cannot tell.

    squeue answers from slurmctld itself, so a job that ended is gone from it at once, while
    the accounting record (sacct) may lag; an id slurmctld forgot is simply not listed.
    """
    ids = sorted(set(array_ids))
    if not ids:
        return {}
    try:
        done = run_client("squeue", "-h", "-r", "-o", "%i|%T", "-j", ",".join(ids), check=False)
    except SlurmCommandError as exc:
        log.warning("cannot ask squeue: %s", exc)
        return None
    if done.returncode != 0:
        if "Invalid job id" in done.stderr:
            return {}  # none of them is known any more
        log.warning("squeue failed: %s", reason(done.stderr))
        return None
    return dict(_split(line) for line in done.stdout.splitlines() if "|" in line)


def accounting(array_ids: Iterable[str]) -> dict[str, JobState] | None:
    """sacct's record of each job and array element; None when sacct does not answer.

    Pending array elements are listed as one range ("12_[3-7%2]"): expanded here.
    """
    ids = sorted(set(array_ids))
    if not ids or shutil.which("sacct") is None:
        return None if ids else {}
    try:
        done = run_client("sacct", "-n", "-X", "-P", "-o", "JobID,State,ExitCode,Reason",
                          "-j", ",".join(ids), check=False)
    except SlurmCommandError as exc:
        log.warning("cannot ask sacct: %s", exc)
        return None
    if done.returncode != 0:
        log.warning("sacct failed: %s", reason(done.stderr))
        return None
    states: dict[str, JobState] = {}
    for line in done.stdout.splitlines():
        fields = line.split("|")
        if len(fields) < 4:
            continue
        state = JobState(fields[1].strip(), fields[2].strip(), fields[3].strip())
        for element in expand_ids(fields[0].strip()):
            states[element] = state
    return states


def expand_ids(job_id: str) -> list[str]:
    """ "12_[3-5,8%2]" -> ["12_3", "12_4", "12_5", "12_8"]; other ids stay as they are."""
    match = re.fullmatch(r"(\d+)_\[([\d,\-]+)(?:%\d+)?\]", job_id)
    if match is None:
        return [job_id]
    array_id, ranges = match.groups()
    elements = []
    for part in ranges.split(","):
        low, _, high = part.partition("-")
        elements += [f"{array_id}_{index}" for index in range(int(low), int(high or low) + 1)]
    return elements


def _split(line: str) -> tuple[str, str]:
    job_id, _, state = line.partition("|")
    return job_id.strip(), state.strip()
