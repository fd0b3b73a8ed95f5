"""Small files in the real on-disk formats (MNIST IDX, CIFAR-10 pickles) for tests."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np

from jobs.data.files import IDX_UBYTE_IMAGES, IDX_UBYTE_LABELS


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(size.to_bytes(4, "big") for size in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, magic: int, *, gz: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(idx_bytes(array, magic)))
    else:
        path.write_bytes(idx_bytes(array, magic))


def write_mnist(root: Path, folder: str) -> dict[str, np.ndarray]:
    """A tiny MNIST-layout dir: train files plain, test files gzipped (torchvision keeps both)."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.array([0, 9, 3, 3, 7], dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.array([1, 2, 8], dtype=np.uint8),
    }
    for file_name, array in arrays.items():
        magic = IDX_UBYTE_IMAGES if "images" in file_name else IDX_UBYTE_LABELS
        write_idx(root / folder / "raw" / file_name, array, magic, gz=file_name.startswith("t10k"))
    return arrays


def cifar_pickle(batch: dict, *, python2_style: bool) -> bytes:
    """A batch pickled like the originals: protocol 2, numpy's old module path; else Python 3's."""
    if not python2_style:
        return pickle.dumps(batch)
    return pickle.dumps(batch, protocol=2).replace(b"numpy._core.multiarray",
                                                   b"numpy.core.multiarray")


def write_cifar(root: Path, *, python2_style: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A tiny cifar-10-batches-py dir: five training batches of 2 images, a test batch of 3."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (13, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, 13).tolist()
    names = [f"data_batch_{index}" for index in range(1, 6)] + ["test_batch"]
    for index, file_name in enumerate(names):
        rows = slice(2 * index, 2 * index + (3 if file_name == "test_batch" else 2))
        batch = {b"batch_label": file_name.encode(), b"labels": labels[rows],
                 b"data": data[rows], b"filenames": [b"x.png"] * len(labels[rows])}
        (folder / file_name).write_bytes(cifar_pickle(batch, python2_style=python2_style))
    return data, np.array(labels)
