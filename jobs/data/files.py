"""Readers for the on-disk dataset formats: IDX (MNIST, Fashion-MNIST) and CIFAR-10 pickles."""

from __future__ import annotations

import gzip
import math
import pickle
from pathlib import Path

import numpy as np

IDX_UBYTE_IMAGES = 0x00000803  # unsigned bytes, 3 dims (N, rows, cols)
IDX_UBYTE_LABELS = 0x00000801  # unsigned bytes, 1 dim (N,)
CIFAR_NUM_CLASSES = 10
CIFAR_ROW_BYTES = 3 * 32 * 32


class FileFormatError(ValueError):
    """A dataset file is unreadable or not in its format; the message names the file."""


def find_file(path: Path, *, gz_allowed: bool) -> Path | None:
    """`path` if it exists, else `path.gz` where that is allowed and exists, else None.

    The plain file wins: torchvision keeps both after extracting, and it reads faster.
    """
    if path.is_file():
        return path
    gz_path = path.with_name(path.name + ".gz")
    if gz_allowed and gz_path.is_file():
        return gz_path
    return None


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The unsigned-byte array in IDX file `path` (gzip-compressed when it ends in .gz).

    IDX: a big-endian uint32 magic (0x0000 0x08=ubyte ndim), ndim big-endian uint32 sizes,
    then the bytes in C order. The header must say `magic` and the data must fill it exactly.
    """
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as err:
        raise FileFormatError(f"cannot read {path}: {err}") from None
    if len(raw) < 4:
        raise FileFormatError(f"corrupt file {path}: {len(raw)} bytes, too short for an IDX header")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise FileFormatError(f"corrupt file {path}: magic 0x{found:08x}, expected 0x{magic:08x}")
    ndim = magic & 0xFF
    header_bytes = 4 + 4 * ndim
    if len(raw) < header_bytes:
        raise FileFormatError(f"corrupt file {path}: header cut short ({len(raw)} bytes)")
    dims = tuple(int(size) for size in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    data_bytes = len(raw) - header_bytes
    if data_bytes != math.prod(dims):
        shape = "x".join(map(str, dims))
        raise FileFormatError(
            f"corrupt file {path}: header says {shape} = {math.prod(dims)} bytes of data, "
            f"file holds {data_bytes}"
        )
    # Copy out of the immutable bytes so callers get a writable array.
    return np.frombuffer(raw, np.uint8, offset=header_bytes).reshape(dims).copy()


def read_idx_split(
    images_path: Path, labels_path: Path, *, image_size: tuple[int, int], num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, H, W), labels int64 (N,)) from a pair of IDX files, checked to agree."""
    images = read_idx(images_path, IDX_UBYTE_IMAGES)
    labels = read_idx(labels_path, IDX_UBYTE_LABELS)
    if images.shape[1:] != image_size:
        raise FileFormatError(
            f"corrupt file {images_path}: images are {images.shape[1]}x{images.shape[2]}, "
            f"expected {image_size[0]}x{image_size[1]}"
        )
    if len(images) != len(labels):
        raise FileFormatError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
        )
    _check_labels(labels_path, labels, num_classes)
    return images, labels.astype(np.int64)


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles CIFAR-10 batches, refusing any global a batch does not need.

    Unpickling a crafted file can run arbitrary code, and pickles are CIFAR-10's own
    distribution format. Allowing only numpy's array reconstruction (old and new module paths,
    and what Python 3 protocol 2 uses for bytes) keeps a hostile file from running anything.
    """

    _ALLOWED = frozenset({
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    })

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 3, 32, 32), labels int64 (N,)) from one cifar-10-batches-py pickle.

    A batch is a dict with b'data' (N x 3072 uint8: the red plane, then green, then blue, each
    32x32 row-major) and b'labels' (N ints), pickled by Python 2, hence encoding='bytes'.
    """
    try:
        with path.open("rb") as file:
            batch = _CifarUnpickler(file, encoding="bytes").load()
    except OSError as err:
        raise FileFormatError(f"cannot read {path}: {err}") from None
    except Exception as err:  # a damaged pickle can fail in almost any way
        raise FileFormatError(f"corrupt file {path}: not a CIFAR-10 batch pickle ({err})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise FileFormatError(f"corrupt file {path}: expected a dict with b'data' and b'labels'")
    data, labels = batch[b"data"], np.asarray(batch[b"labels"])
    rows_ok = isinstance(data, np.ndarray) and data.ndim == 2 and data.shape[1] == CIFAR_ROW_BYTES
    if not rows_ok or data.dtype != np.uint8:
        raise FileFormatError(f"corrupt file {path}: b'data' is not an N x 3072 uint8 array")
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise FileFormatError(
            f"corrupt file {path}: {len(data)} images but b'labels' is not {len(data)} integers"
        )
    _check_labels(path, labels, CIFAR_NUM_CLASSES)
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _check_labels(path: Path, labels: np.ndarray, num_classes: int) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)][0]
        raise FileFormatError(f"corrupt file {path}: label {bad} outside 0..{num_classes - 1}")
