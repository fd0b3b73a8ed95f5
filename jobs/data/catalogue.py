"""The datasets tvo knows, and where those read from disk keep their files: known without
loading anything (no torch), so a grid's settings and files are checked before any job runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jobs.data.files import find_file


class DataError(Exception):
    """Bad dataset request: message is one line, names the dataset/path and what would be valid."""


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    input_shape: tuple[int, ...]  # per sample: (C, H, W) for images, (features,) otherwise
    image: bool  # True when samples are images (C, H, W): a cnn can take them
    needs_root: bool  # True when the files are read from data_root
    summary: str  # one line for help text
    train_size: int = 0  # training samples before the validation split (for cost estimates)
    test_size: int = 0


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo("digits", 10, (1, 8, 8), image=True, needs_root=False,
                    summary="sklearn 8x8 handwritten digits; 1347 train / 450 test (stratified)",
                    train_size=1347, test_size=450),
        DatasetInfo("mnist1d", 10, (40,), image=False, needs_root=False,
                    summary="MNIST-1D signals of length 40, generated offline; 4000 train / "
                            "1000 test",
                    train_size=4000, test_size=1000),
        DatasetInfo("spirals", 2, (2,), image=False, needs_root=False,
                    summary="two-spirals benchmark (Lang & Witbrock 1988); 194 train / 194 "
                            "interleaved test points; noise: std added to training points",
                    train_size=194, test_size=194),
        DatasetInfo("moons", 2, (2,), image=False, needs_root=False,
                    summary="sklearn two moons; 1000 train / 1000 test; noise: std of the "
                            "coordinate noise",
                    train_size=1000, test_size=1000),
        DatasetInfo("mnist", 10, (1, 28, 28), image=True, needs_root=True,
                    summary="MNIST 28x28 digits from data_root/MNIST/raw; 60000 train / "
                            "10000 test",
                    train_size=60000, test_size=10000),
        DatasetInfo("fashion_mnist", 10, (1, 28, 28), image=True, needs_root=True,
                    summary="Fashion-MNIST 28x28 clothing from data_root/FashionMNIST/raw; "
                            "60000 train / 10000 test",
                    train_size=60000, test_size=10000),
        DatasetInfo("cifar10", 10, (3, 32, 32), image=True, needs_root=True,
                    summary="CIFAR-10 32x32 colour images from data_root/cifar-10-batches-py; "
                            "50000 train / 10000 test",
                    train_size=50000, test_size=10000),
    )
}


@dataclass(frozen=True)
class FileLayout:
    folder: str  # relative to data_root, as torchvision lays it out
    files: tuple[str, ...]
    gz_allowed: bool


IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
FILE_LAYOUTS = {
    "mnist": FileLayout("MNIST/raw", IDX_FILES, gz_allowed=True),
    "fashion_mnist": FileLayout("FashionMNIST/raw", IDX_FILES, gz_allowed=True),
    "cifar10": FileLayout(
        "cifar-10-batches-py",
        tuple(f"data_batch_{index}" for index in range(1, 6)) + ("test_batch",),
        gz_allowed=False,
    ),
}

def check_dataset_files(name: str, data_root: str | None) -> None:
    """Raise DataError when `name` is unknown or its files are missing under `data_root`.

    Cheap (looks at file names only), so a grid can check every job before the first runs.
    """
    dataset_files(name, data_root)


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; valid datasets: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def dataset_files(name: str, data_root: str | None) -> dict[str, Path]:
    """File name -> the path to read, for the datasets read from disk; {} for the others.
    DataError when `name` is unknown or a file is missing."""
    dataset_info(name)
    layout = FILE_LAYOUTS.get(name)
    if layout is None:
        return {}
    if not data_root:
        suffix = "[.gz]" if layout.gz_allowed else ""
        holds = ", ".join(file_name + suffix for file_name in layout.files)
        raise DataError(
            f"dataset {name!r} reads its files from data_root; "
            f"pass data_root=DIR where DIR/{layout.folder}/ holds {holds}"
        )
    folder = Path(data_root).expanduser() / layout.folder
    found = {}
    for file_name in layout.files:
        path = find_file(folder / file_name, gz_allowed=layout.gz_allowed)
        if path is None:
            or_gz = " (or .gz)" if layout.gz_allowed else ""
            raise DataError(
                f"dataset {name!r}: missing {folder / file_name}{or_gz} under data_root={data_root}"
            )
        found[file_name] = path
    return found
