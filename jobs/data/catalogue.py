"""The datasets tvo knows, as plain data (no torch, no numpy): their shapes, classes and sizes,
for validating settings and estimating what a job costs before anything is loaded."""

from __future__ import annotations

from dataclasses import dataclass

NOISY_DATASETS = ("moons", "spirals")  # the datasets whose `noise` means something


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
