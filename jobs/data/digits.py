"""scikit-learn's 8x8 digits, read without importing scikit-learn.

`import sklearn` costs about 1.1 s of CPU (scipy.stats comes with it), more than a small digits
job trains for, and every worker process that trains digits paid it. The pixels are read from
the file `sklearn.datasets.load_digits` reads (`sklearn/datasets/data/digits.csv.gz`, found
without importing the package), and the train/test split is the one tvo has always used,
`train_test_split(test_size=0.25, stratify=target, random_state=0)`, shipped as its row order in
`digits_split.npz` (`train`: 1347 rows, `test`: 450 rows, each in the order that call returns
them). tests/test_datasets.py checks both against scikit-learn itself.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from jobs.data.catalogue import DataError

SPLIT_FILE = Path(__file__).with_name("digits_split.npz")


def digits_file() -> Path:
    """sklearn's digits.csv.gz, found without importing sklearn."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("dataset 'digits' needs scikit-learn installed (it ships the digits "
                        "file): pip install scikit-learn")
    path = Path(next(iter(spec.submodule_search_locations)), "datasets", "data", "digits.csv.gz")
    if not path.is_file():
        raise DataError(f"dataset 'digits': {path} is missing from the installed scikit-learn")
    return path


@functools.lru_cache(maxsize=1)
def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train images (N, 8, 8) float64 in 0..16, train labels int64, test images, test labels:
    once per process, read-only."""
    table = np.loadtxt(digits_file(), delimiter=",")  # 1797 rows: 64 pixels, then the label
    arrays = []
    with np.load(SPLIT_FILE) as split:
        for part in ("train", "test"):
            rows = table[split[part]]
            arrays += [rows[:, :-1].reshape(-1, 8, 8), rows[:, -1].astype(np.int64)]
    for array in arrays:
        array.flags.writeable = False
    return tuple(arrays)
