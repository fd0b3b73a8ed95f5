"""The grid's `resources` and `slurm` sections in submitit's terms: one table, checked up front.

tvo's names (left) map to submitit's SLURM parameters (right, spelt as AutoExecutor's `slurm_*`
names; SlurmExecutor takes them without the prefix). Every key of a grid's `slurm:` section must
be in the table; an unknown one is an error that lists the valid ones.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cluster.base import Resources

# The one table from tvo's names to submitit's. Keys starting with "resources." come from the
# grid's resources section (checked by the grid reader; per SLURM job, see executor_parameters);
# the others are what a grid's `slurm:` section may hold. Value: (submitit parameter, or None
# for a setting of tvo's own; the YAML type accepted; what it is for).
PARAMETERS: dict[str, tuple[str | None, type | tuple[type, ...], str]] = {
    "resources.cpus": ("slurm_cpus_per_task", int, "CPU cores of each task"),
    "resources.gpus_per_node": ("slurm_gpus_per_node", int,
                                "GPUs of one SLURM job (resources.gpus times its tasks)"),
    "resources.jobs_per_node": ("slurm_ntasks_per_node", int, "tasks (tvo jobs) per SLURM job"),
    "resources.mem_gb": ("slurm_mem", (int, float), "memory of one SLURM job, all tasks, GB"),
    "resources.timeout_min": ("slurm_time", int, "time limit in minutes"),
    "partition": ("slurm_partition", str, "partition (queue) the jobs go to"),
    "account": ("slurm_account", str, "account the jobs are charged to"),
    "qos": ("slurm_qos", str, "quality of service"),
    "constraint": ("slurm_constraint", str, "node features, e.g. a100"),
    "exclude": ("slurm_exclude", str, "nodes to avoid, e.g. node[01-03]"),
    "nodelist": ("slurm_nodelist", str, "nodes to use"),
    "job_name": ("slurm_job_name", str, "the name squeue shows (default tvo-<grid>)"),
    "comment": ("slurm_comment", str, "free text stored with the job"),
    "mail_type": ("slurm_mail_type", str, "e.g. END,FAIL"),
    "mail_user": ("slurm_mail_user", str, "where SLURM mails to"),
    "exclusive": ("slurm_exclusive", bool, "whole nodes only"),
    "setup": ("slurm_setup", list, "shell lines run before the job, e.g. [module load cuda]"),
    "additional_parameters": ("slurm_additional_parameters", dict,
                              "any other sbatch option, e.g. {reservation: r1, licenses: x}"),
    "srun_args": ("slurm_srun_args", list, "extra srun arguments"),
    "signal_delay_s": ("slurm_signal_delay_s", int,
                       "seconds before the time limit that the job is told to checkpoint and "
                       "requeue (default: 90, or a quarter of a shorter time limit)"),
    "max_num_timeout": ("slurm_max_num_timeout", int,
                        "how often a job may be requeued at its time limit (default 20; a job "
                        "that saved no checkpoint within a whole time limit is never requeued)"),
    "python": ("slurm_python", str, "how the job starts python (default: this interpreter)"),
    "result_grace_s": (None, (int, float),
                       "seconds a job SLURM reports ended may take to show its result file "
                       "before it counts as failed (default 2; raise it on slow shared disks)"),
    "state_poll_s": (None, (int, float),
                     "seconds between the squeue calls that find jobs which ended without a "
                     "result (default 2; at least 0.1; raise it on a busy cluster)"),
}
SLURM_KEYS = [key for key in PARAMETERS if not key.startswith("resources.")]
# submitit takes these as SlurmExecutor(...) arguments, not update_parameters
_EXECUTOR_ARGUMENTS = ("max_num_timeout", "python")

DEFAULT_SIGNAL_DELAY_S = 90  # submitit's default
# submitit's default is 3; tvo's requeues are bounded by progress (see slurm_task.checkpoint), so
# a job may go on for more time limits than that, as long as each one saves a new checkpoint.
DEFAULT_MAX_NUM_TIMEOUT = 20
DEFAULT_RESULT_GRACE_S = 2.0
DEFAULT_STATE_POLL_S = 2.0  # one squeue call for all of a run's pending jobs
MIN_STATE_POLL_S = 0.1


class SlurmSettingsError(ValueError):
    """A grid whose `slurm` or `resources` section cannot run on SLURM; one line."""


@dataclass(frozen=True)
class Layout:
    """How units fill one SLURM job: one task per unit, `gpus_per_task` GPUs each."""

    units_per_job: int
    gpus_per_task: int

    @classmethod
    def of(cls, resources: Resources) -> Layout:
        per_job = resources.jobs_per_node
        if resources.gpus_per_node:
            if resources.gpus_per_node % per_job:
                raise SlurmSettingsError(
                    f"resources.gpus_per_node={resources.gpus_per_node} does not split evenly "
                    f"into resources.jobs_per_node={per_job} tasks; make it a multiple")
            per_task = resources.gpus_per_node // per_job
            if resources.gpus and resources.gpus != per_task:
                raise SlurmSettingsError(
                    f"resources.gpus={resources.gpus} per job, but gpus_per_node/jobs_per_node "
                    f"gives each job {per_task}; set one of them")
            return cls(per_job, per_task)
        return cls(per_job, resources.gpus)


@dataclass(frozen=True)
class SlurmSettings:
    """A grid's `slurm` section, checked: submitit parameters plus tvo's own knobs."""

    parameters: dict[str, Any] = field(default_factory=dict)  # SlurmExecutor's names
    max_num_timeout: int = DEFAULT_MAX_NUM_TIMEOUT
    python: str | None = None
    result_grace_s: float = DEFAULT_RESULT_GRACE_S
    state_poll_s: float = DEFAULT_STATE_POLL_S
    signal_delay_s: int | None = None  # None: chosen from the time limit

    @classmethod
    def read(cls, section: Mapping[str, Any]) -> SlurmSettings:
        parameters: dict[str, Any] = {}
        own: dict[str, Any] = {}
        for key, value in section.items():
            if key not in SLURM_KEYS:
                close = difflib.get_close_matches(str(key), SLURM_KEYS, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise SlurmSettingsError(f"slurm: unknown key {key!r}{hint}; valid keys: "
                                         f"{', '.join(SLURM_KEYS)}")
            parameter, kind, _ = PARAMETERS[key]
            _check_type(key, value, kind)
            if key in ("signal_delay_s", "max_num_timeout", "result_grace_s") and value < 0:
                raise SlurmSettingsError(f"slurm.{key} got {value!r}; expected a number >= 0")
            if key == "state_poll_s" and not value >= MIN_STATE_POLL_S:
                raise SlurmSettingsError(f"slurm.{key} got {value!r}; expected a number >= "
                                         f"{MIN_STATE_POLL_S}")
            if key in ("setup", "srun_args") and not all(isinstance(v, str) for v in value):
                raise SlurmSettingsError(f"slurm.{key} must be a list of strings, e.g. "
                                         f"{key}: [\"module load cuda\"]")
            if parameter is None or key in (*_EXECUTOR_ARGUMENTS, "signal_delay_s"):
                own[key] = value
            elif value is not False:  # submitit would write "--exclusive=False", which sbatch
                # rejects; false is SLURM's default
                parameters[_submitit_name(parameter)] = value
        return cls(parameters, **own)

    def executor_parameters(self, resources: Resources, tasks: int, grid_name: str,
                            array_parallelism: int | None = None) -> dict[str, Any]:
        """SlurmExecutor.update_parameters arguments for SLURM jobs of `tasks` units each."""
        gpus_per_task = Layout.of(resources).gpus_per_task
        per_job: dict[str, Any] = {  # tvo's resource names, for one SLURM job
            "cpus": resources.cpus,
            "gpus_per_node": gpus_per_task * tasks,
            "jobs_per_node": tasks,
            "mem_gb": resources.mem_gb * tasks if resources.mem_gb else None,
            "timeout_min": resources.timeout_min,
        }
        parameters: dict[str, Any] = {
            "job_name": f"tvo-{grid_name}",
            "nodes": 1,
            "signal_delay_s": signal_delay(resources.timeout_min, self.signal_delay_s),
        }
        for name, value in per_job.items():
            if value:
                parameters[_submitit_name(PARAMETERS[f"resources.{name}"][0])] = value
        if "mem" in parameters:  # sbatch takes whole units: whole MB
            parameters["mem"] = f"{round(parameters['mem'] * 1024)}MB"
        if array_parallelism:
            parameters["array_parallelism"] = array_parallelism
        parameters.update(self.parameters)
        return parameters


def _submitit_name(parameter: str | None) -> str:
    assert parameter is not None
    return parameter.removeprefix("slurm_")


def signal_delay(timeout_min: int, configured: int | None) -> int:
    """Seconds before the time limit at which SLURM sends the checkpoint signal (USR2).

    submitit's 90 s default would signal a job with a 1-minute limit as it starts, and the job
    would requeue itself again and again: a short limit gets a quarter of its length instead.
    """
    limit_s = timeout_min * 60
    if configured is not None:
        if configured >= limit_s:
            raise SlurmSettingsError(
                f"slurm.signal_delay_s={configured} is not below the time limit "
                f"(resources.timeout_min={timeout_min} = {limit_s} s); lower it")
        return configured
    return min(DEFAULT_SIGNAL_DELAY_S, limit_s // 4)


def _check_type(key: str, value: Any, kind: type | tuple[type, ...]) -> None:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    wrong_bool = isinstance(value, bool) and bool not in kinds
    if isinstance(value, kinds) and not wrong_bool:
        return
    names = {str: "text", int: "an integer", float: "a number", bool: "true or false",
             list: "a list", dict: "a mapping"}
    expected = " or ".join(names[k] for k in kinds)
    raise SlurmSettingsError(f"slurm.{key} got {value!r}; expected {expected}")
