"""Checks before anything is written or submitted: what every job needs from where it will run.

A grid whose data is missing, whose device=cuda cannot be had, or whose output dir cannot be
written would otherwise fail once per job, after dispatch (on SLURM: a whole array of failures).
Each check runs once per distinct need (dataset and data_root, device), reads a few bytes at
most, and writes nothing.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from cluster.base import Resources
from jobs.spec import JobSpec
from jobs.strategies.params import echo

NAME_MAX = 255  # bytes in one path component (Linux, and most filesystems)
PATH_MAX = 4095


class PreflightError(ValueError):
    """A need of the grid that cannot be met here; one line saying what to change."""


def check_run(specs: Sequence[JobSpec], out_dir: Path, *, backend: str = "inline",
              resources: Resources | None = None, ray_address: str | None = None) -> None:
    """Everything a run of `specs` on `backend` needs; raises PreflightError."""
    check_datasets(specs)
    check_devices(specs, backend, resources or Resources(), ray_address)
    check_writable(out_dir)


def check_datasets(specs: Iterable[JobSpec]) -> None:
    """Each dataset read from disk is present and readable at its data_root (once per pair)."""
    from jobs.data.catalogue import DataError, check_dataset_files

    for name, root in sorted({(spec.dataset, spec.data_root) for spec in specs}):
        try:
            check_dataset_files(name, root or None)
            for path in _dataset_paths(name, root):
                _check_readable(name, path)
        except DataError as exc:
            raise PreflightError(str(exc)) from None
        except OSError as exc:  # a data_root too long, or a file that vanished meanwhile
            raise PreflightError(f"dataset {name!r}: cannot read data_root={echo(root)}: "
                                 f"{exc.strerror or exc}") from None


def _dataset_paths(name: str, root: str) -> list[Path]:
    from jobs.data.catalogue import dataset_files

    return list(dataset_files(name, root or None).values())


IDX_MAGIC_PREFIX = b"\x00\x00\x08"  # unsigned-byte IDX: 0x0000 08 ndim


def _check_readable(name: str, path: Path) -> None:
    """Open the file and read its first bytes: permissions, and an IDX file's magic."""
    from jobs.data.catalogue import DataError

    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as file:
                head = file.read(4)
        else:
            with path.open("rb") as file:
                head = file.read(4)
    except (OSError, EOFError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DataError(f"dataset {name!r}: cannot read {path}: {reason}") from None
    if "idx" in path.name and not head.startswith(IDX_MAGIC_PREFIX):
        raise DataError(f"dataset {name!r}: {path} is not an IDX file (it starts with "
                        f"{head.hex() or 'nothing'}); replace it with the original download")


def check_devices(specs: Iterable[JobSpec], backend: str, resources: Resources,
                  ray_address: str | None = None) -> None:
    """device=cuda is satisfiable where the jobs will run.

    inline and an embedded Ray run jobs on this machine: torch must see a CUDA GPU here.
    SLURM and a Ray cluster place jobs elsewhere: the grid must ask for GPUs, or no job gets
    one.
    """
    if not any(spec.device == "cuda" for spec in specs):
        return
    remote = backend == "slurm" or (backend == "ray" and bool(
        ray_address or os.environ.get("RAY_ADDRESS")))
    if remote:
        if resources.gpus < 1 and resources.gpus_per_node < 1:
            where = "SLURM" if backend == "slurm" else "the Ray cluster"
            raise PreflightError(f"device=cuda, but the grid asks {where} for no GPU; set "
                                 "resources: {gpus: 1} (per job), or use device=auto")
        return
    import torch

    if not torch.cuda.is_available():
        build = f"torch {torch.__version__}" + ("" if torch.version.cuda else ", a CPU-only build")
        raise PreflightError(f"device=cuda, but torch sees no CUDA GPU on this machine ({build});"
                             f" use device=auto or device=cpu, or --backend slurm with "
                             "resources.gpus")


def check_writable(out_dir: Path) -> None:
    """`out_dir` can be created and written by this user; creates nothing."""
    text = os.fsencode(out_dir.resolve() if not out_dir.is_absolute() else out_dir)
    if len(text) > PATH_MAX or any(len(part) > NAME_MAX for part in text.split(b"/")):
        raise PreflightError(f"output dir {echo(str(out_dir))}: path too long (at most "
                             f"{NAME_MAX} bytes per name, {PATH_MAX} in all); use --out with a "
                             "shorter path")
    existing = out_dir
    try:
        while not existing.exists():
            if existing.is_symlink():  # a dangling link: mkdir would fail on it
                raise PreflightError(f"output dir {echo(str(out_dir))}: {existing} is a broken "
                                     "symbolic link")
            existing = existing.parent
    except OSError as exc:
        raise PreflightError(f"output dir {echo(str(out_dir))}: {exc.strerror or exc}") from None
    if not existing.is_dir():
        raise PreflightError(f"output dir {echo(str(out_dir))}: {existing} is a file, not a "
                             "directory; choose another --out")
    for folder in [existing, *_grid_folders(out_dir)]:
        _check_folder_writable(out_dir, folder)


GRID_FOLDERS = ("results", "state", "logs", "checkpoints", "claims")  # jobs.rundir.layout's


def _grid_folders(out_dir: Path) -> list[Path]:
    """The folders a run writes into inside an existing grid dir (a dir made read-only after
    an earlier run may hold writable ones, or the other way round)."""
    return [out_dir / name for name in GRID_FOLDERS if (out_dir / name).is_dir()]


def _check_folder_writable(out_dir: Path, folder: Path) -> None:
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:
        raise PreflightError(f"output dir {echo(str(out_dir))}: {folder} is on a read-only file "
                             "system; remount it read-write (its finished jobs are kept), or "
                             "choose another --out")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PreflightError(f"output dir {echo(str(out_dir))}: {folder} is not writable by "
                             "this user; make it writable (chmod u+w; its finished jobs are "
                             "kept), or choose another --out")
