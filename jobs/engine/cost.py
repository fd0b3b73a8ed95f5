"""What a job costs, estimated from its settings alone (no torch, no data loaded): the work it
trains (for stacks that end together) and the memory a member holds (for stacks that fit a
device). Estimates, good to a small factor: they rank and divide work, they do not time it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from jobs.data.catalogue import DATASETS
from jobs.spec import JobSpec

FLOAT_BYTES = 4
EVAL_CHUNK_SAMPLES = 1 << 16  # member-samples per evaluation forward (jobs.engine.stack_model)
OPTIMIZER_STATES = {"sgd": 1, "rmsprop": 2, "adam": 2, "adamw": 2}  # tensors per parameter
CONV_CHANNELS = (10, 20)  # the study's CNN (jobs.nn.models.CNN)
CONV_KERNEL = 5


@dataclass(frozen=True)
class _Shape:
    """The settings a job's work depends on (a JobSpec has them all)."""

    dataset: str
    model: str
    hidden: tuple[int, ...]
    shortcuts: bool
    epochs: int = 0
    eval_every: int = 1
    val_fraction: float = 0.0


def layer_widths(spec: JobSpec | _Shape) -> list[tuple[int, int]]:
    """(inputs, outputs) of each dense layer of the job's network."""
    info = DATASETS[spec.dataset]
    if spec.model == "cnn":
        inputs = _cnn_features(info.input_shape)
    else:
        inputs = math.prod(info.input_shape)
    layers = []
    width_in, seen = inputs, inputs
    for width in spec.hidden:
        layers.append((seen if spec.shortcuts else width_in, width))
        width_in, seen = width, seen + width
    layers.append((seen if spec.shortcuts else width_in, info.num_classes))
    return layers


def _cnn_features(input_shape: tuple[int, ...]) -> int:
    side = input_shape[1]
    padding = 0 if side >= 16 else 2
    for _ in CONV_CHANNELS:
        side = (side + 2 * padding - CONV_KERNEL + 1) // 2
    return CONV_CHANNELS[-1] * side * side


def _conv_flops(spec: JobSpec | _Shape) -> int:
    """Multiply-adds of the convolutions per sample (0 for an MLP)."""
    if spec.model != "cnn":
        return 0
    channels, side = DATASETS[spec.dataset].input_shape[0], DATASETS[spec.dataset].input_shape[1]
    padding = 0 if side >= 16 else 2
    total = 0
    for out_channels in CONV_CHANNELS:
        out_side = side + 2 * padding - CONV_KERNEL + 1
        total += out_side * out_side * out_channels * channels * CONV_KERNEL * CONV_KERNEL
        channels, side = out_channels, out_side // 2
    return total


def parameters(spec: JobSpec | _Shape) -> int:
    """The network's parameter count."""
    dense = sum(inputs * outputs + outputs for inputs, outputs in layer_widths(spec))
    if spec.model != "cnn":
        return dense
    channels = DATASETS[spec.dataset].input_shape[0]
    conv = 0
    for out_channels in CONV_CHANNELS:
        conv += out_channels * (channels * CONV_KERNEL * CONV_KERNEL + 1)
        channels = out_channels
    return dense + conv


def training_work(spec: JobSpec) -> float:
    """Multiply-adds of the whole job: forward and backward (3x a forward) over its training
    samples every epoch, and a forward over its test and validation samples at each evaluation."""
    return _training_work(spec.dataset, spec.model, spec.hidden, spec.shortcuts, spec.epochs,
                          spec.eval_every, spec.val_fraction)


@functools.lru_cache(maxsize=4096)  # a grid of 100,000 jobs has a handful of kinds
def _training_work(dataset: str, model: str, hidden: tuple[int, ...], shortcuts: bool,
                   epochs: int, eval_every: int, val_fraction: float) -> float:
    spec = _Shape(dataset, model, hidden, shortcuts, epochs, eval_every, val_fraction)
    info = DATASETS[spec.dataset]
    forward = parameters(spec) + _conv_flops(spec)
    train = info.train_size * (1 - spec.val_fraction)
    evaluations = spec.epochs // max(spec.eval_every, 1) + 1
    evaluated = info.test_size + info.train_size * spec.val_fraction
    return spec.epochs * train * 3 * forward + evaluations * evaluated * forward


def member_bytes(spec: JobSpec) -> int:
    """Device memory one member of a stack holds while it trains: its parameters, their
    gradients and optimiser states; its share of a batch's activations (kept for the backward);
    the epoch's inputs in its own order; its share of an evaluation forward."""
    info = DATASETS[spec.dataset]
    weights = parameters(spec) * (2 + OPTIMIZER_STATES.get(spec.optimizer, 2))
    batch = spec.batch_size or info.train_size
    widths = sum(outputs for _, outputs in layer_widths(spec)) + math.prod(info.input_shape)
    if spec.model == "cnn":
        widths += _conv_flops(spec) // (CONV_KERNEL * CONV_KERNEL)  # the feature maps, roughly
    activations = 3 * batch * widths  # inputs, pre-activations and outputs of every layer
    epoch_inputs = info.train_size * math.prod(info.input_shape)
    evaluation = min(info.test_size, EVAL_CHUNK_SAMPLES) * info.num_classes * 4
    return FLOAT_BYTES * (weights + activations + epoch_inputs + evaluation)
