"""Warming a worker up: the engine imported and each data key's dataset loaded into the
process's cache before the first unit comes; a dataset that cannot load is left to its jobs."""

from __future__ import annotations

from jobs.engine import train
from jobs.entry import warm_up
from jobs.spec import JobSpec


def test_warm_up_loads_each_dataset_once_and_leaves_failures_to_the_jobs(tmp_path):
    train._dataset.cache_clear()
    specs = [JobSpec.from_dict({"dataset": "moons", "seed": seed}) for seed in range(3)]
    specs.append(JobSpec.from_dict({"dataset": "moons", "noise": 0.3}))
    specs.append(JobSpec.from_dict({"dataset": "mnist", "data_root": str(tmp_path)}))  # no files
    warm_up(specs)
    assert train._dataset.cache_info().currsize == 2  # moons twice (two noises); mnist failed
    before = train._dataset.cache_info().hits
    train.shared_dataset(specs[1], train.resolve_device("cpu"))
    assert train._dataset.cache_info().hits == before + 1
