"""The checkpoint file: two CRC-checked slots written in place, read back bit for bit."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from jobs.engine.train import run_job
from jobs.rundir import results
from jobs.rundir.checkpoint import (
    _HEADER,
    CheckpointError,
    CheckpointWriter,
    decode_state,
    encode_state,
    read_checkpoint,
)
from jobs.spec import JobSpec

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
    writer.save({"epoch": epoch, "rows": rows if rows is not None else [{"epoch": epoch}],
                 **pieces()})


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
    _, _, length, _ = _HEADER.unpack_from(content, start)
    payload = bytes(content[start + _HEADER.size:start + _HEADER.size + length])
    try:
        return decode_state(payload)["epoch"]
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
    path = tmp_path / results.CHECKPOINT_FILE
    save_epochs(path, 1, 2, 3)
    assert read_checkpoint(path)["epoch"] == 3
    size = path.stat().st_size
    assert size % 2 == 0 and size >= 2 * 64 * 1024  # two fixed slots, overwritten in place


def test_a_write_cut_short_falls_back_to_the_slot_before(tmp_path):
    path = tmp_path / results.CHECKPOINT_FILE
    save_epochs(path, 1, 2)
    tear_slot_of(path, 2)
    assert read_checkpoint(path)["epoch"] == 1


def test_a_new_writer_continues_the_file_a_killed_attempt_left(tmp_path):
    path = tmp_path / results.CHECKPOINT_FILE
    save_epochs(path, 1, 2, 3)
    save_epochs(path, 4)  # a resumed attempt: its saves must count as newer
    assert read_checkpoint(path)["epoch"] == 4


def test_a_checkpoint_that_outgrows_its_slots_is_rewritten_larger(tmp_path):
    path = tmp_path / results.CHECKPOINT_FILE
    writer = CheckpointWriter(path)
    save(writer, 1)
    small = path.stat().st_size
    many_rows = [{"epoch": i, "values": list(range(50))} for i in range(2000)]
    save(writer, 2, many_rows)
    save(writer, 3, many_rows)
    writer.close()
    assert path.stat().st_size > small
    saved = read_checkpoint(path)
    assert saved["epoch"] == 3 and saved["rows"] == many_rows
    assert not list(tmp_path.glob(".*.tmp"))


def test_checkpoints_written_by_torch_save_still_load(tmp_path):
    parts = pieces()
    path = tmp_path / results.CHECKPOINT_FILE
    rows = [{"epoch": 0, "test_acc": 0.5}]
    buffer = io.BytesIO()
    torch.save({"version": 2, "epoch": 1, "rows": pickle.dumps(rows),
                "model": parts["model"]}, buffer)
    path.write_bytes(buffer.getvalue())
    saved = read_checkpoint(path)
    assert saved["epoch"] == 1 and saved["rows"] == rows
    save_epochs(path, 2)  # the next save replaces the old format
    assert read_checkpoint(path)["epoch"] == 2


def test_a_job_does_not_resume_from_an_earlier_format_and_says_so(tmp_path):
    run_dir = tmp_path / "job"
    run_dir.mkdir()
    buffer = io.BytesIO()
    torch.save({"version": 2, "epoch": 1, "rows": pickle.dumps([])}, buffer)
    (run_dir / results.CHECKPOINT_FILE).write_bytes(buffer.getvalue())
    result = run_job(JobSpec.from_dict(TINY), run_dir)
    assert result.state == "failed"
    assert result.error == (f"CheckpointError: checkpoint {run_dir / results.CHECKPOINT_FILE} "
                            "was written by an earlier tvo (format 2); delete it to train the "
                            "job from its first epoch")


def test_an_unreadable_checkpoint_fails_the_job_naming_the_file(tmp_path):
    spec = JobSpec.from_dict(TINY)
    run_dir = tmp_path / "job"
    run_dir.mkdir()
    (run_dir / results.CHECKPOINT_FILE).write_bytes(b"x" * 1000)
    with pytest.raises(CheckpointError, match="delete it to train the job from its first epoch"):
        read_checkpoint(run_dir / results.CHECKPOINT_FILE)
    result = run_job(spec, run_dir)
    assert result.state == "failed"
    assert f"checkpoint {run_dir / results.CHECKPOINT_FILE} has no intact slot" in result.error


def test_a_job_resumes_from_the_older_slot_when_the_newest_is_torn(tmp_path):
    spec = JobSpec.from_dict(TINY)
    run_dir = tmp_path / "job"
    run_job(spec, run_dir, checkpoint_seconds=0)  # a checkpoint after epochs 1 and 2 of 3
    tear_slot_of(run_dir / results.CHECKPOINT_FILE, spec.epochs - 1)
    metrics_before = (run_dir / results.METRICS_FILE).read_bytes()
    for name in (results.METRICS_FILE, results.STATUS_FILE):
        (run_dir / name).unlink()  # as if killed before the job finished
    assert run_job(spec, run_dir).state == "done"
    log = (run_dir / results.LOG_FILE).read_text()
    assert f"resumed after epoch {spec.epochs - 2}" in log
    assert metric_values(run_dir / results.METRICS_FILE) == metric_values(
        io.BytesIO(metrics_before))


def metric_values(source) -> list[dict]:
    return pq.read_table(source).drop_columns(["epoch_seconds", "samples_per_second"]).to_pylist()
