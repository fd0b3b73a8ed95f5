"""Datasets for one training job: small built-in sets, and the usual image sets read from disk.

Nothing is ever downloaded. Every train/test split, and any noise added to the data, uses a
fixed seed (`SPLIT_SEED`), never the job's seed: every seed of a grid trains on the same data
and is tested on the same test set.
"""

from __future__ import annotations

import functools
import math
import numbers
import random
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from jobs.data.catalogue import (  # noqa: F401 (DataError, DATASETS: part of this module's API)
    DATASETS,
    DataError,
    check_dataset_files,
    dataset_files,
    dataset_info,
)
from jobs.data.digits import digits_split
from jobs.data.files import FileFormatError, read_cifar_batch, read_idx_split

SPLIT_SEED = 0
NORMALIZATIONS = ("minmax", "none", "zscore")
NOISY_DATASETS = ("moons", "spirals")  # the datasets whose `noise` means something


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensors field by field has no bool
class Dataset:
    name: str
    x_train: torch.Tensor  # float32, shape (N, *input_shape)
    y_train: torch.Tensor  # int64, shape (N,)
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    input_shape: tuple[int, ...]
    x_val: torch.Tensor | None = None  # held out of the training data (val_fraction > 0)
    y_val: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> Dataset:
        """A new Dataset with all its tensors on `device`."""
        return replace(
            self,
            x_train=self.x_train.to(device),
            y_train=self.y_train.to(device),
            x_test=self.x_test.to(device),
            y_test=self.y_test.to(device),
            x_val=None if self.x_val is None else self.x_val.to(device),
            y_val=None if self.y_val is None else self.y_val.to(device),
        )


# x_train, y_train, x_test, y_test as numpy arrays
_Split = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def load_dataset(
    name: str, *, data_root: str | None = None, normalize: str = "zscore", noise: float = 0.0,
    val_fraction: float = 0.0, val_seed: int = 0,
) -> Dataset:
    """Dataset `name` as float32 inputs shaped (N, *input_shape) and int64 labels, on the CPU.

    Images are first scaled to [0, 1] (pixel / 255; digits / 16). Then `normalize`:
    - "none": left as is.
    - "minmax": shifted and scaled to [0, 1] on the training part.
    - "zscore": shifted and scaled to mean 0, std 1 on the training part.
    Statistics come from the training part only and are applied to both parts. They are per
    channel over (N, H, W) for images (one channel for digits and MNIST, three for CIFAR-10)
    and per feature for flat datasets. A channel or feature constant on the training part is
    only shifted (its scale counts as 1), so it maps to 0 there.

    `noise` (moons and spirals only) is the std of Gaussian noise on the 2-D coordinates;
    `data_root` is read only by the datasets whose files live on disk. `val_fraction` of the
    training data is held out as the validation part (jobs.data.validation: stratified, seeded by
    `val_seed`) before the statistics are taken, so they come from what trains alone.
    """
    info = dataset_info(name)
    if normalize not in NORMALIZATIONS:
        raise DataError(f"unknown normalize {normalize!r}; valid: {', '.join(NORMALIZATIONS)}")
    if not (isinstance(noise, numbers.Real) and math.isfinite(noise) and noise >= 0):
        raise DataError(f"dataset {name!r}: noise must be a finite number >= 0, got {noise!r}")
    if noise and name not in NOISY_DATASETS:
        raise DataError(
            f"dataset {name!r} takes no noise (got noise={noise}); "
            f"noise applies to {', '.join(NOISY_DATASETS)}"
        )
    files = dataset_files(name, data_root)
    try:
        x_train, y_train, x_test, y_test = _load_arrays(name, files, float(noise))
    except FileFormatError as err:
        raise DataError(f"dataset {name!r}: {err}") from None

    # from_numpy shares memory: the arrays above are fresh and ours, so no copy is needed.
    x_train_t, x_test_t = torch.from_numpy(x_train), torch.from_numpy(x_test)
    y_train_t = torch.from_numpy(y_train)
    x_val_t = y_val_t = None
    if val_fraction > 0:
        from jobs.data.validation import stratified_split

        kept, held = stratified_split(y_train_t, val_fraction, val_seed)
        x_val_t, y_val_t = x_train_t[held], y_train_t[held]
        x_train_t, y_train_t = x_train_t[kept], y_train_t[kept]
    _normalize_in_place(x_train_t, [x_test_t] + ([x_val_t] if x_val_t is not None else []),
                        normalize, image=info.image)
    return Dataset(
        name=name,
        x_train=x_train_t,
        y_train=y_train_t,
        x_test=x_test_t,
        y_test=torch.from_numpy(y_test),
        num_classes=info.num_classes,
        input_shape=info.input_shape,
        x_val=x_val_t,
        y_val=y_val_t,
    )


def _load_arrays(name: str, files: dict[str, Path], noise: float) -> _Split:
    """The raw split: x float32 (N, *input_shape), images already in [0, 1]; y int64."""
    if name == "digits":
        return _digits()
    if name == "mnist1d":
        return tuple(array.copy() for array in _mnist1d_arrays())  # the cache stays pristine
    if name == "spirals":
        return _spirals(noise)
    if name == "moons":
        return _moons(noise)
    if name == "cifar10":
        return _cifar10(files)
    return _idx_images(files, DATASETS[name].num_classes)  # mnist, fashion_mnist


def _idx_images(files: dict[str, Path], num_classes: int) -> _Split:
    split = []
    for part in ("train", "t10k"):
        images, labels = read_idx_split(
            files[f"{part}-images-idx3-ubyte"],
            files[f"{part}-labels-idx1-ubyte"],
            image_size=(28, 28),
            num_classes=num_classes,
        )
        split += [_unit_scale(images[:, None], 255), labels]
    return tuple(split)


def _cifar10(files: dict[str, Path]) -> _Split:
    train = [read_cifar_batch(files[f"data_batch_{index}"]) for index in range(1, 6)]
    x_test, y_test = read_cifar_batch(files["test_batch"])
    return (
        _unit_scale(np.concatenate([images for images, _ in train]), 255),
        np.concatenate([labels for _, labels in train]),
        _unit_scale(x_test, 255),
        y_test,
    )


def _unit_scale(pixels: np.ndarray, max_value: float) -> np.ndarray:
    # One float32 allocation straight from the integer pixels (CIFAR-10 is 600 MB as float32).
    return np.divide(pixels, np.float32(max_value), dtype=np.float32)


def _digits() -> _Split:
    x_train, y_train, x_test, y_test = digits_split()  # read without importing sklearn
    return (_unit_scale(x_train[:, None], 16), y_train.copy(),
            _unit_scale(x_test[:, None], 16), y_test.copy())


@functools.lru_cache(maxsize=1)
def _mnist1d_arrays() -> _Split:
    """MNIST-1D's default dataset, generated (~1 s) once per process; read-only arrays."""
    # Slow import (matplotlib, requests), so only when asked. make_dataset generates; only
    # get_dataset would download, and it is never called.
    from mnist1d.data import get_dataset_args, make_dataset

    # make_dataset reseeds the global random and numpy RNGs (mnist1d.utils.set_seed): put back
    # whatever streams the job had seeded.
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    arrays = (
        data["x"].astype(np.float32),
        data["y"].astype(np.int64),
        data["x_test"].astype(np.float32),
        data["y_test"].astype(np.int64),
    )
    for array in arrays:
        array.setflags(write=False)
    return arrays


def _spiral_points(offset: float) -> tuple[np.ndarray, np.ndarray]:
    """The two-spirals points for i + offset, i = 0..96: class 0, then its negation class 1."""
    i = np.arange(97) + offset
    angle = i * np.pi / 16
    radius = 6.5 * (104 - i) / 104
    arm = np.stack([radius * np.sin(angle), radius * np.cos(angle)], axis=1)
    x = np.empty((2 * len(arm), 2))
    x[0::2], x[1::2] = arm, -arm  # interleaved as in the CMU benchmark file
    return x.astype(np.float32), np.tile(np.array([0, 1], dtype=np.int64), len(arm))


def _spirals(noise: float) -> _Split:
    # Test on the points halfway between the training points (i + 0.5), as Fairbank et al.,
    # "Deep learning in target space", do.
    x_train, y_train = _spiral_points(0.0)
    x_test, y_test = _spiral_points(0.5)
    if noise:
        rng = np.random.default_rng(SPLIT_SEED)
        x_train += rng.normal(0.0, noise, x_train.shape).astype(np.float32)
    return x_train, y_train, x_test, y_test


def _moons(noise: float) -> _Split:
    from sklearn.datasets import make_moons  # sklearn takes ~1 s to import: only when asked

    # One unshuffled set of 2000, split alternately: without noise the test points lie between
    # the training points (two independent clean draws would be the very same points).
    x, y = make_moons(n_samples=2000, shuffle=False, noise=noise, random_state=SPLIT_SEED)
    order = np.random.default_rng(SPLIT_SEED).permutation(1000)  # mix the classes
    x, y = x.astype(np.float32), y.astype(np.int64)
    return x[0::2][order], y[0::2][order], x[1::2][order], y[1::2][order]


def _normalize_in_place(
    x_train: torch.Tensor, others: list[torch.Tensor], normalize: str, *, image: bool
) -> None:
    """Scale the training part and `others` (test, validation) by the training part's
    statistics."""
    if normalize == "none":
        return
    # Reduce over everything but the channel (images) or the feature (flat data).
    dims = (0, *range(2, x_train.ndim)) if image else (0,)
    if normalize == "zscore":
        scale, shift = torch.std_mean(x_train, dim=dims, keepdim=True, correction=0)
    else:
        shift = x_train.amin(dim=dims, keepdim=True)
        scale = x_train.amax(dim=dims, keepdim=True) - shift
    scale = torch.where(scale > 0, scale, 1.0)
    for x in (x_train, *others):
        x.sub_(shift).div_(scale)
