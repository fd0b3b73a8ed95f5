"""Tests for jobs.data.datasets: shapes, fixed splits, normalisation, on-disk formats, errors."""

from __future__ import annotations

import math
import os
import pickle
import random
import re
import socket
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
import torch

from jobs.data import catalogue, datasets
from jobs.data.datasets import DATASETS, DataError, check_dataset_files, load_dataset
from jobs.data.files import IDX_UBYTE_IMAGES, IDX_UBYTE_LABELS
from tests.datafiles import idx_bytes, write_cifar, write_idx, write_mnist

BUILT_IN = sorted(name for name, info in DATASETS.items() if not info.needs_root)
SIZES = {"digits": (1347, 450), "mnist1d": (4000, 1000), "spirals": (194, 194),
         "moons": (1000, 1000)}


def raises_exactly(message: str):
    return pytest.raises(DataError, match=f"^{re.escape(message)}$")


def reduced_dims(data: datasets.Dataset) -> tuple[int, ...]:
    """The dims statistics are taken over: all but the channel (images) or the feature."""
    return (0, 2, 3) if DATASETS[data.name].image else (0,)


# --- registry and built-in datasets ---------------------------------------------------------

def test_registry_lists_every_dataset_with_a_consistent_shape():
    assert set(DATASETS) == {"digits", "mnist1d", "spirals", "moons", "mnist", "fashion_mnist",
                             "cifar10"}
    for name, info in DATASETS.items():
        assert info.name == name
        assert info.image == (len(info.input_shape) == 3)
        assert info.summary and "\n" not in info.summary
    assert {name for name, info in DATASETS.items() if info.needs_root} == {
        "mnist", "fashion_mnist", "cifar10"} == set(catalogue.FILE_LAYOUTS)
    assert DATASETS["digits"].input_shape == (1, 8, 8)
    assert DATASETS["cifar10"].input_shape == (3, 32, 32)


@pytest.mark.parametrize("name", BUILT_IN)
def test_built_in_dataset_shapes_dtypes_and_classes(name):
    data = load_dataset(name)
    info = DATASETS[name]
    n_train, n_test = SIZES[name]
    assert (data.name, data.num_classes, data.input_shape) == (name, info.num_classes,
                                                               info.input_shape)
    assert data.x_train.shape == (n_train, *info.input_shape)
    assert data.x_test.shape == (n_test, *info.input_shape)
    assert data.y_train.shape == (n_train,) and data.y_test.shape == (n_test,)
    assert data.x_train.dtype == data.x_test.dtype == torch.float32
    assert data.y_train.dtype == data.y_test.dtype == torch.int64
    for labels in (data.y_train, data.y_test):
        assert labels.unique().tolist() == list(range(info.num_classes))


@pytest.mark.parametrize("name", BUILT_IN)
def test_built_in_datasets_are_deterministic_and_ignore_the_global_seeds(name):
    loads = []
    for seed in (1, 2):
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        loads.append(load_dataset(name, noise=0.1 if name in datasets.NOISY_DATASETS else 0.0))
    first, second = loads
    for field in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(first, field), getattr(second, field)), field


@pytest.mark.parametrize("name", BUILT_IN)
def test_loading_leaves_the_global_rngs_alone(name):
    if name == "mnist1d":
        datasets._mnist1d_arrays.cache_clear()  # generating is what reseeds numpy
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    python_state, numpy_state, torch_state = (random.getstate(), np.random.get_state(),
                                              torch.get_rng_state())
    load_dataset(name)
    assert random.getstate() == python_state
    assert np.array_equal(np.random.get_state()[1], numpy_state[1])
    assert np.random.get_state()[2:] == numpy_state[2:]
    assert torch.equal(torch.get_rng_state(), torch_state)


def test_mnist1d_is_generated_without_network(monkeypatch):
    expected = load_dataset("mnist1d", normalize="none")
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    datasets._mnist1d_arrays.cache_clear()
    np.random.seed(123)
    generated = load_dataset("mnist1d", normalize="none")
    assert attempts == []
    assert torch.equal(generated.x_train, expected.x_train)
    assert torch.equal(generated.y_test, expected.y_test)


def test_mnist1d_cache_hands_out_copies():
    first = load_dataset("mnist1d", normalize="none")
    first.x_train.fill_(0.0)
    assert load_dataset("mnist1d", normalize="none").x_train.abs().sum() > 0


def test_digits_split_is_stratified_75_25():
    data = load_dataset("digits")
    train_counts = torch.bincount(data.y_train).float()
    test_counts = torch.bincount(data.y_test).float()
    share = test_counts / (train_counts + test_counts)
    assert torch.all((share - 0.25).abs() < 0.01)



def test_digits_are_sklearns_images_in_its_split_without_importing_sklearn():
    """The pixels and the shipped row order equal load_digits() split by train_test_split, and
    a worker that loads digits never imports sklearn (~1.1 s of CPU)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    expected = train_test_split(digits.images, digits.target, test_size=0.25,
                                stratify=digits.target, random_state=datasets.SPLIT_SEED)
    x_train, x_test, y_train, y_test = expected
    data = load_dataset("digits", normalize="none")
    assert torch.equal(data.x_train, torch.from_numpy(x_train[:, None] / 16).float())
    assert torch.equal(data.x_test, torch.from_numpy(x_test[:, None] / 16).float())
    assert data.y_train.tolist() == y_train.tolist() and data.y_test.tolist() == y_test.tolist()

    code = ("import sys; from jobs.data.datasets import load_dataset; load_dataset('digits'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy')))")
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True).stdout
    assert imported == "[]\n"

def test_dataset_to_moves_every_tensor_into_a_new_dataset():
    data = load_dataset("spirals")
    moved = data.to("meta")
    assert moved is not data and data.x_train.device.type == "cpu"
    for field in ("x_train", "y_train", "x_test", "y_test"):
        assert getattr(moved, field).device.type == "meta"
        assert getattr(moved, field).shape == getattr(data, field).shape
    assert (moved.name, moved.num_classes, moved.input_shape) == (data.name, data.num_classes,
                                                                  data.input_shape)


# --- spirals and moons ----------------------------------------------------------------------

def spiral_point(i: float) -> tuple[float, float]:
    angle = i * math.pi / 16
    radius = 6.5 * (104 - i) / 104
    return radius * math.sin(angle), radius * math.cos(angle)


def test_spirals_follow_the_cmu_benchmark_formula():
    data = load_dataset("spirals", normalize="none")
    assert len(data.x_train) == len(data.x_test) == 194
    assert data.x_train[0].tolist() == [0.0, 6.5] and data.y_train[0] == 0
    expected_train, expected_test = [], []
    for i in range(97):
        x, y = spiral_point(i)
        expected_train += [(x, y), (-x, -y)]
        x, y = spiral_point(i + 0.5)
        expected_test += [(x, y), (-x, -y)]
    assert torch.allclose(data.x_train, torch.tensor(expected_train), atol=1e-6)
    assert torch.allclose(data.x_test, torch.tensor(expected_test), atol=1e-6)
    assert data.y_train.tolist() == data.y_test.tolist() == [0, 1] * 97
    assert torch.allclose(data.x_test[-2], torch.tensor(spiral_point(96.5)))


def test_spirals_noise_moves_training_points_only():
    clean = load_dataset("spirals", normalize="none")
    noisy = load_dataset("spirals", normalize="none", noise=0.2)
    offsets = noisy.x_train - clean.x_train
    assert 0.15 < offsets.std().item() < 0.25
    assert torch.equal(noisy.x_test, clean.x_test)
    assert torch.equal(noisy.y_train, clean.y_train)


def test_clean_moons_lie_on_their_half_circles_and_test_points_are_new():
    data = load_dataset("moons", normalize="none")
    for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        outer, inner = x[y == 0], x[y == 1]
        assert torch.allclose(outer.norm(dim=1), torch.ones(len(outer)), atol=1e-5)
        shifted = inner - torch.tensor([1.0, 0.5])
        assert torch.allclose(shifted.norm(dim=1), torch.ones(len(inner)), atol=1e-5)
    train_points = {tuple(point) for point in data.x_train.tolist()}
    assert not train_points & {tuple(point) for point in data.x_test.tolist()}
    assert torch.bincount(data.y_train).tolist() == [500, 500]


def test_moons_noise_is_applied():
    clean = load_dataset("moons", normalize="none")
    noisy = load_dataset("moons", normalize="none", noise=0.1)
    assert 0.05 < (noisy.x_train - clean.x_train).std().item() < 0.15
    assert torch.equal(noisy.y_train, clean.y_train)


# --- normalisation --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["digits", "mnist1d", "moons"])
def test_zscore_uses_training_statistics_only(name):
    raw = load_dataset(name, normalize="none")
    data = load_dataset(name, normalize="zscore")
    dims = reduced_dims(raw)
    std, mean = torch.std_mean(raw.x_train, dim=dims, keepdim=True, correction=0)
    assert torch.allclose(data.x_test, (raw.x_test - mean) / std, atol=1e-5)
    if name != "moons":  # clean moons are symmetric: train and test statistics coincide
        test_std, test_mean = torch.std_mean(raw.x_test, dim=dims, keepdim=True, correction=0)
        assert not torch.allclose(data.x_test, (raw.x_test - test_mean) / test_std, atol=1e-5)
    train_std, train_mean = torch.std_mean(data.x_train, dim=dims, correction=0)
    assert torch.allclose(train_mean, torch.zeros_like(train_mean), atol=1e-5)
    assert torch.allclose(train_std, torch.ones_like(train_std), atol=1e-4)


@pytest.mark.parametrize("name", ["digits", "mnist1d", "moons"])
def test_minmax_maps_the_training_part_to_unit_range(name):
    raw = load_dataset(name, normalize="none")
    data = load_dataset(name, normalize="minmax")
    dims = reduced_dims(raw)
    low = raw.x_train.amin(dim=dims, keepdim=True)
    high = raw.x_train.amax(dim=dims, keepdim=True)
    assert torch.allclose(data.x_test, (raw.x_test - low) / (high - low), atol=1e-6)
    assert torch.all(data.x_train.amin(dim=dims) == 0)
    assert torch.allclose(data.x_train.amax(dim=dims), torch.tensor(1.0))


def test_images_are_scaled_to_unit_range_before_normalisation():
    data = load_dataset("digits", normalize="none")
    assert data.x_train.min() == 0 and data.x_train.max() == 1
    assert torch.equal(data.x_train * 16, (data.x_train * 16).round())


def test_constant_features_map_to_zero():
    x_train = torch.tensor([[3.0, 1.0], [3.0, 2.0]])
    for normalize in ("zscore", "minmax"):
        train, test = x_train.clone(), torch.tensor([[3.0, 1.5]])
        datasets._normalize_in_place(train, [test], normalize, image=False)
        assert train[:, 0].tolist() == [0.0, 0.0] and test[0, 0] == 0.0
        assert torch.isfinite(train).all()


def test_unknown_normalize_names_the_valid_ones():
    with raises_exactly("unknown normalize 'l2'; valid: minmax, none, zscore"):
        load_dataset("digits", normalize="l2")


def test_noise_is_refused_where_it_means_nothing_and_when_negative():
    with raises_exactly("dataset 'digits' takes no noise (got noise=0.1); "
                        "noise applies to moons, spirals"):
        load_dataset("digits", noise=0.1)
    with raises_exactly("dataset 'moons': noise must be a finite number >= 0, got -1"):
        load_dataset("moons", noise=-1)
    with raises_exactly("dataset 'spirals': noise must be a finite number >= 0, got nan"):
        load_dataset("spirals", noise=float("nan"))
    assert load_dataset("moons", noise=np.float32(0.1)).x_train.shape == (1000, 2)


# --- errors for names and files -------------------------------------------------------------

def test_unknown_dataset_lists_the_valid_ones():
    message = ("unknown dataset 'foo'; valid datasets: cifar10, digits, fashion_mnist, mnist, "
               "mnist1d, moons, spirals")
    with raises_exactly(message):
        load_dataset("foo")
    with raises_exactly(message):
        check_dataset_files("foo", None)


def test_built_in_datasets_need_no_files():
    for name in BUILT_IN:
        check_dataset_files(name, None)


def test_missing_data_root_says_what_to_pass():
    message = ("dataset 'mnist' reads its files from data_root; pass data_root=DIR where "
               "DIR/MNIST/raw/ holds train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
               "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]")
    with raises_exactly(message):
        check_dataset_files("mnist", None)
    with raises_exactly(message):
        load_dataset("mnist")
    with raises_exactly("dataset 'cifar10' reads its files from data_root; pass data_root=DIR "
                        "where DIR/cifar-10-batches-py/ holds data_batch_1, data_batch_2, "
                        "data_batch_3, data_batch_4, data_batch_5, test_batch"):
        check_dataset_files("cifar10", None)


def test_missing_file_is_named(tmp_path):
    write_mnist(tmp_path, "MNIST")
    (tmp_path / "MNIST/raw/t10k-labels-idx1-ubyte.gz").unlink()
    with raises_exactly(f"dataset 'mnist': missing {tmp_path}/MNIST/raw/t10k-labels-idx1-ubyte "
                        f"(or .gz) under data_root={tmp_path}"):
        check_dataset_files("mnist", str(tmp_path))
    with raises_exactly(f"dataset 'cifar10': missing {tmp_path}/cifar-10-batches-py/data_batch_1 "
                        f"under data_root={tmp_path}"):
        load_dataset("cifar10", data_root=str(tmp_path))


# --- IDX files (MNIST, Fashion-MNIST) -------------------------------------------------------

@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"),
                                              ("fashion_mnist", "FashionMNIST")])
def test_idx_files_plain_and_gzipped_round_trip(tmp_path, name, folder):
    arrays = write_mnist(tmp_path, folder)
    check_dataset_files(name, str(tmp_path))
    data = load_dataset(name, data_root=str(tmp_path), normalize="none")
    assert data.x_train.shape == (5, 1, 28, 28) and data.x_test.shape == (3, 1, 28, 28)
    assert np.array_equal((data.x_train[:, 0] * 255).round().numpy(),
                          arrays["train-images-idx3-ubyte"])
    assert np.array_equal((data.x_test[:, 0] * 255).round().numpy(),
                          arrays["t10k-images-idx3-ubyte"])
    assert data.y_train.tolist() == [0, 9, 3, 3, 7] and data.y_test.tolist() == [1, 2, 8]
    assert data.y_train.dtype == torch.int64 and data.x_train.dtype == torch.float32


def test_plain_idx_file_wins_over_its_gz(tmp_path):
    write_mnist(tmp_path, "MNIST")
    write_idx(tmp_path / "MNIST/raw/t10k-labels-idx1-ubyte", np.array([4, 4, 4]), IDX_UBYTE_LABELS,
              gz=False)
    assert load_dataset("mnist", data_root=str(tmp_path)).y_test.tolist() == [4, 4, 4]


def test_data_root_may_start_with_a_tilde(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    write_mnist(tmp_path, "MNIST")
    assert len(load_dataset("mnist", data_root="~").y_train) == 5


@pytest.mark.parametrize(("file_name", "content", "problem"), [
    ("train-images-idx3-ubyte", idx_bytes(np.zeros(5), IDX_UBYTE_LABELS),
     "magic 0x00000801, expected 0x00000803"),
    ("train-images-idx3-ubyte", idx_bytes(np.zeros((5, 28, 28)), IDX_UBYTE_IMAGES)[:-1],
     "header says 5x28x28 = 3920 bytes of data, file holds 3919"),
    ("train-images-idx3-ubyte", idx_bytes(np.zeros((5, 28, 27)), IDX_UBYTE_IMAGES),
     "images are 28x27, expected 28x28"),
    ("train-labels-idx1-ubyte", idx_bytes(np.array([0, 1, 10, 2, 3]), IDX_UBYTE_LABELS),
     "label 10 outside 0..9"),
    ("train-labels-idx1-ubyte", b"\x00\x00", "2 bytes, too short for an IDX header"),
])
def test_corrupt_idx_file_is_named(tmp_path, file_name, content, problem):
    write_mnist(tmp_path, "MNIST")
    path = tmp_path / "MNIST/raw" / file_name
    path.write_bytes(content)
    with raises_exactly(f"dataset 'mnist': corrupt file {path}: {problem}"):
        load_dataset("mnist", data_root=str(tmp_path))


def test_idx_image_and_label_counts_must_agree(tmp_path):
    write_mnist(tmp_path, "MNIST")
    labels = tmp_path / "MNIST/raw/train-labels-idx1-ubyte"
    write_idx(labels, np.array([1, 2]), IDX_UBYTE_LABELS, gz=False)
    images = tmp_path / "MNIST/raw/train-images-idx3-ubyte"
    with raises_exactly(f"dataset 'mnist': {images} holds 5 images but {labels} holds 2 labels"):
        load_dataset("mnist", data_root=str(tmp_path))


def test_damaged_gzip_is_named(tmp_path):
    write_mnist(tmp_path, "MNIST")
    path = tmp_path / "MNIST/raw/t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataError, match=f"^dataset 'mnist': cannot read {re.escape(str(path))}: "):
        load_dataset("mnist", data_root=str(tmp_path))


# --- CIFAR-10 pickles -----------------------------------------------------------------------

@pytest.mark.parametrize("python2_style", [True, False])
def test_cifar_batches_round_trip_channel_major(tmp_path, python2_style):
    data, labels = write_cifar(tmp_path, python2_style=python2_style)
    check_dataset_files("cifar10", str(tmp_path))
    loaded = load_dataset("cifar10", data_root=str(tmp_path), normalize="none")
    assert loaded.x_train.shape == (10, 3, 32, 32) and loaded.x_test.shape == (3, 3, 32, 32)
    pixels = torch.cat([loaded.x_train, loaded.x_test]) * 255
    assert np.array_equal(pixels.round().numpy().reshape(13, 3072), data)
    # channel-major: the first 1024 bytes are the red plane, row by row
    assert pixels[0, 0, 0, 1].round() == data[0, 1] and pixels[0, 1, 0, 0].round() == data[0, 1024]
    assert torch.cat([loaded.y_train, loaded.y_test]).tolist() == labels.tolist()


def test_cifar_zscore_is_per_channel_from_training_images(tmp_path):
    write_cifar(tmp_path)
    raw = load_dataset("cifar10", data_root=str(tmp_path), normalize="none")
    data = load_dataset("cifar10", data_root=str(tmp_path))
    std, mean = torch.std_mean(raw.x_train, dim=(0, 2, 3), keepdim=True, correction=0)
    assert mean.shape == (1, 3, 1, 1)
    assert torch.allclose(data.x_test, (raw.x_test - mean) / std, atol=1e-5)


class _RunsCodeWhenUnpickled:
    def __reduce__(self):
        return (os.getcwd, ())


def test_cifar_pickle_with_foreign_globals_is_refused(tmp_path):
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py/data_batch_3"
    path.write_bytes(pickle.dumps({b"data": _RunsCodeWhenUnpickled(), b"labels": []}))
    with pytest.raises(DataError, match=re.escape(
            f"dataset 'cifar10': corrupt file {path}: not a CIFAR-10 batch pickle "
            f"(refusing to load global posix.getcwd)")):
        load_dataset("cifar10", data_root=str(tmp_path))


@pytest.mark.parametrize(("batch", "problem"), [
    ({b"labels": [1]}, "expected a dict with b'data' and b'labels'"),
    ({b"data": np.zeros((2, 3000), np.uint8), b"labels": [1, 2]},
     "b'data' is not an N x 3072 uint8 array"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]},
     "2 images but b'labels' is not 2 integers"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, -1]}, "label -1 outside 0..9"),
])
def test_corrupt_cifar_batch_is_named(tmp_path, batch, problem):
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py/test_batch"
    path.write_bytes(pickle.dumps(batch))
    with raises_exactly(f"dataset 'cifar10': corrupt file {path}: {problem}"):
        load_dataset("cifar10", data_root=str(tmp_path))


def test_truncated_cifar_pickle_is_named(tmp_path):
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py/data_batch_1"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match=re.escape(
            f"dataset 'cifar10': corrupt file {path}: not a CIFAR-10 batch pickle (")):
        load_dataset("cifar10", data_root=str(tmp_path))
