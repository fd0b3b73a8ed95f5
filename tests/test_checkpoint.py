"""A stack's checkpoint file: two CRC-checked slots written in place, an index of its jobs ahead
of their states, read back bit for bit; damaged files are passed over, not fatal."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import pytest
import torch

from jobs.engine.train import run_job
from jobs.rundir.checkpoint import (
    _HEADER,
    _INDEX_LENGTH,
    CheckpointError,
    CheckpointWriter,
    decode_state,
    encode_state,
    read_checkpoint,
    read_checkpoint_index,
    read_stack_checkpoint,
)
from jobs.rundir.layout import OutputDir
from jobs.spec import JobSpec
from tests import rundir_view

CKPT = "stack.ckpt"

TINY = {"dataset": "moons", "hidden": [8], "epochs": 3, "batch_size": 32}


def pieces():
    """A member's state as the engine checkpoints it (jobs.engine.member.Member.state)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    params = {name: p.detach() for name, p in model.named_parameters()}
    return {"model": params, "optimizer": {"steps": 1.0, "kind": "adam", "buffers": {
                "exp_avg": {n: torch.randn_like(p) for n, p in params.items()},
                "exp_avg_sq": {n: torch.rand_like(p) for n, p in params.items()}}},
            "strategy": {}, "schedule": {"epochs_done": 1, "lr": 0.01},
            "order": torch.Generator().manual_seed(1).get_state(),
            "dropout": torch.Generator().manual_seed(2).get_state()}


def save(writer: CheckpointWriter, epoch: int, rows: list | None = None) -> None:
    """Two members' states after `epoch`, as a stack saves them."""
    state = {"epoch": epoch, "rows": rows if rows is not None else [{"epoch": epoch}],
             **pieces()}
    writer.save({"job-a": state, "job-b": {**state, "epoch": epoch - 1}})


def saved_epoch(path: Path) -> int:
    return read_stack_checkpoint(path)["job-a"]["epoch"]


def save_epochs(path: Path, *epochs: int) -> None:
    """One writer (one job attempt) saving after each of `epochs`, then closed."""
    writer = CheckpointWriter(path)
    for epoch in epochs:
        save(writer, epoch)
    writer.close()


def tear_slot_of(path: Path, epoch: int) -> None:
    """Zero part of the payload of the slot that holds `epoch`: a write a kill cut short."""
    content = bytearray(path.read_bytes())
    start = next(start for start in (0, len(content) // 2)
                 if slot_epoch(content, start) == epoch)
    content[start + 100:start + 200] = bytes(100)
    path.write_bytes(bytes(content))


def slot_epoch(content: bytearray, start: int) -> int | None:
    """The first job's epoch in a slot's index (the index comes first in the payload)."""
    _, _, length, _ = _HEADER.unpack_from(content, start)
    payload = bytes(content[start + _HEADER.size:start + _HEADER.size + length])
    try:
        (size,) = _INDEX_LENGTH.unpack_from(payload)
        return next(iter(json.loads(payload[_INDEX_LENGTH.size:_INDEX_LENGTH.size + size])
                         .values()))
    except Exception:
        return None


def test_tensors_of_every_kind_come_back_equal_with_their_dtype():
    state = {
        "float": torch.randn(3, 4), "double": torch.randn(2, dtype=torch.float64),
        "long": torch.arange(5), "bool": torch.tensor([True, False]),
        "bfloat16": torch.randn(3).to(torch.bfloat16), "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3), "strided": torch.randn(4, 6)[:, ::2],
        "rng": torch.Generator().manual_seed(3).get_state(), "plain": [1, 2.5, "x", None],
    }
    back = decode_state(encode_state(state))
    for name, tensor in state.items():
        if isinstance(tensor, torch.Tensor):
            assert back[name].dtype == tensor.dtype and back[name].shape == tensor.shape, name
            assert torch.equal(back[name], tensor), name
    assert back["plain"] == [1, 2.5, "x", None]


def test_saves_alternate_slots_and_the_newest_is_read(tmp_path):
    path = tmp_path / CKPT
    save_epochs(path, 1, 2, 3)
    assert saved_epoch(path) == 3
    assert read_checkpoint_index(path) == {"job-a": 3, "job-b": 2}  # no tensors read
    size = path.stat().st_size
    assert size % 2 == 0 and size >= 2 * 64 * 1024  # two fixed slots, overwritten in place


def test_a_write_cut_short_falls_back_to_the_slot_before(tmp_path):
    path = tmp_path / CKPT
    save_epochs(path, 1, 2)
    tear_slot_of(path, 2)
    assert saved_epoch(path) == 1
    assert read_checkpoint_index(path) == {"job-a": 1, "job-b": 0}


def test_a_new_writer_continues_the_file_a_killed_attempt_left(tmp_path):
    path = tmp_path / CKPT
    save_epochs(path, 1, 2, 3)
    save_epochs(path, 4)  # a resumed attempt: its saves must count as newer
    assert saved_epoch(path) == 4


def test_a_checkpoint_that_outgrows_its_slots_is_rewritten_larger(tmp_path):
    path = tmp_path / CKPT
    writer = CheckpointWriter(path)
    save(writer, 1)
    small = path.stat().st_size
    many_rows = [{"epoch": i, "values": list(range(50))} for i in range(2000)]
    save(writer, 2, many_rows)
    save(writer, 3, many_rows)
    writer.close()
    assert path.stat().st_size > small
    saved = read_stack_checkpoint(path)["job-a"]
    assert saved["epoch"] == 3 and saved["rows"] == many_rows
    assert not list(tmp_path.glob(".*.tmp"))


def legacy_checkpoint(grid_dir: Path, spec: JobSpec) -> Path:
    """Where the layout before results by the stack kept a job's checkpoint."""
    path = OutputDir(grid_dir).legacy_runs / spec.job_id / "checkpoint.pt"
    path.parent.mkdir(parents=True)
    return path


def test_checkpoints_written_by_torch_save_still_load(tmp_path):
    parts = pieces()
    path = tmp_path / "checkpoint.pt"
    rows = [{"epoch": 0, "test_acc": 0.5}]
    buffer = io.BytesIO()
    torch.save({"version": 2, "epoch": 1, "rows": pickle.dumps(rows),
                "model": parts["model"]}, buffer)
    path.write_bytes(buffer.getvalue())
    saved = read_checkpoint(path)
    assert saved["epoch"] == 1 and saved["rows"] == rows
    save_epochs(path, 2)  # the next save replaces the old format
    assert saved_epoch(path) == 2


def test_a_job_does_not_resume_from_an_earlier_format_and_says_so(tmp_path):
    spec = JobSpec.from_dict(TINY)
    buffer = io.BytesIO()
    torch.save({"version": 2, "epoch": 1, "rows": pickle.dumps([])}, buffer)
    old = legacy_checkpoint(tmp_path, spec)
    old.write_bytes(buffer.getvalue())
    result = run_job(spec, tmp_path)
    assert result.state == "failed"
    assert result.error == (f"CheckpointError: checkpoint {old} was written by an earlier tvo "
                            "(format 2); delete it to train the job from its first epoch")


def test_an_unreadable_checkpoint_is_said_and_the_job_trains_from_its_first_epoch(tmp_path):
    spec = JobSpec.from_dict(TINY)
    old = legacy_checkpoint(tmp_path, spec)
    old.write_bytes(b"x" * 1000)
    with pytest.raises(CheckpointError, match="has no intact slot"):
        read_checkpoint(old)
    assert run_job(spec, tmp_path).state == "done"
    assert f"checkpoint {old} has no intact slot (cut short, damaged, or not written by tvo); " \
           "its jobs start from their first epoch instead" in rundir_view.all_logs(tmp_path)
    run_job(spec, tmp_path / "straight")
    assert metric_values(tmp_path, spec) == metric_values(tmp_path / "straight", spec)


class Interrupt(BaseException):
    """Stands for a kill mid-job."""


def test_a_job_resumes_from_the_older_slot_when_the_newest_is_torn(tmp_path):
    spec = JobSpec.from_dict(TINY)

    def stop_in_epoch_three(epoch: int, epochs: int, row: dict) -> None:
        if epoch == 3:  # after the checkpoints of epochs 1 and 2
            raise Interrupt

    with pytest.raises(Interrupt):
        run_job(spec, tmp_path, progress=stop_in_epoch_three, checkpoint_seconds=0)
    [path] = (tmp_path / "checkpoints").glob("*.ckpt")
    tear_slot_of(path, 2)
    assert run_job(spec, tmp_path).state == "done"
    assert "resumed after epoch 1" in rundir_view.all_logs(tmp_path)
    run_job(spec, tmp_path / "straight")
    assert metric_values(tmp_path, spec) == metric_values(tmp_path / "straight", spec)


def test_a_deleted_checkpoint_costs_only_time(tmp_path):
    spec = JobSpec.from_dict(TINY)

    def stop_in_epoch_three(epoch: int, epochs: int, row: dict) -> None:
        if epoch == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_job(spec, tmp_path, progress=stop_in_epoch_three, checkpoint_seconds=0)
    for path in (tmp_path / "checkpoints").glob("*.ckpt"):
        path.unlink()
    assert run_job(spec, tmp_path).state == "done"
    assert "resumed after epoch" not in rundir_view.all_logs(tmp_path)
    run_job(spec, tmp_path / "straight")
    assert metric_values(tmp_path, spec) == metric_values(tmp_path / "straight", spec)


def metric_values(grid_dir: Path, spec: JobSpec) -> list[dict]:
    return rundir_view.rows(grid_dir, spec.job_id, timing=False)
