"""Deep learning in target space (Fairbank, Samothrakis and Citi, JMLR 2022) as a network type.

Each layer is parameterised by a target matrix T_l: targets for its pre-activation sums on a
fixed input batch Xbar, chosen once and never reshuffled. Every forward pass first "realises"
the targets: layer by layer over Xbar, A_l = [1 | xbar_l] and W_l = argmin ||A_l W - T_l||^2 +
lambda ||W||^2 (bias row first and regularised with the rest); then the ordinary network with
those weights runs on the given inputs. Only the targets are nn.Parameters, so an optimiser given
`model.parameters()` moves the targets, and autograd carries the loss through the solves.

As the authors' code (mikefairbank/dlts_paper_code) does it: SCU ("sequential cascade
untangling", the default) feeds the realised sums on, xbar_{l+1} = act(A_l W_l); OCU feeds the
targets, xbar_{l+1} = act(T_l). The last layer has no activation (logits). Conv layers hold one
target row per output pixel of each fixed-batch image, A_l being the image patches. Dropout acts
in the mini-batch network only, never on Xbar (the TF1 CNN script's default). The initial
projection sets T_l <- A_l W_l layer by layer, each layer then fed by the realisation of the
projected layers before it (ts_layers.initialise_targets_with_projection, which projects onto the
realised sums whatever the cascade).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from jobs.nn.activations import hidden_activation
from jobs.spec import JobSpec

FIXED_BATCH_SEED_OFFSET = 104729  # a random Xbar draws apart from the data order (seeded `seed`)
TRUNCATION = 2.0  # initial targets: normal truncated at 2 std, as tf.truncated_normal


def ridge_solve(inputs: torch.Tensor, targets: torch.Tensor, ridge: float) -> torch.Tensor:
    """argmin_W ||inputs W - targets||^2 + ridge ||W||^2, for inputs (m, n) and targets (m, k).

    Both branches of the closed form, each inverting the smaller Gram matrix, as
    tf.linalg.lstsq(fast=True) does: m >= n: (A^T A + ridge I)^-1 A^T T; m < n:
    A^T (A A^T + ridge I)^-1 T. Solved by Cholesky in float64: the Gram matrix squares A's
    condition number, up to (sigma_max^2 + ridge) / ridge; on the two-spirals net with ridge
    0.001 its hidden layers sit at 1.6e6 (measured), where a float32 solve keeps only 3-4 digits
    of the weights (2e-3 relative error measured after training) and fewer of their gradients.
    Its eigenvalues are >= ridge > 0, so the factor exists even when A is rank-deficient
    (duplicate rows, dead units). cholesky_ex does not raise (nor sync): NaN targets give NaN
    weights, and the training loop records the run as diverged. The weights come back in the
    inputs' dtype, the one the network computes in.
    """
    a = inputs.to(torch.float64)
    t = targets.to(torch.float64)
    rows, cols = a.shape
    if rows >= cols:
        gram = a.mT @ a + ridge * torch.eye(cols, dtype=a.dtype, device=a.device)
        factor = torch.linalg.cholesky_ex(gram).L
        weights = torch.cholesky_solve(a.mT @ t, factor)
    else:
        gram = a @ a.mT + ridge * torch.eye(rows, dtype=a.dtype, device=a.device)
        factor = torch.linalg.cholesky_ex(gram).L
        weights = a.mT @ torch.cholesky_solve(t, factor)
    return weights.to(inputs.dtype)


def with_bias_column(inputs: torch.Tensor) -> torch.Tensor:
    """[1 | inputs]: the bias is the first row of the solved weights."""
    return torch.cat([inputs.new_ones(inputs.shape[0], 1), inputs], dim=1)


@dataclass(frozen=True)
class ConvLayer:
    """One convolution of the study's CNN, stride 1, then 2x2 max pooling and the activation."""

    in_channels: int
    out_channels: int
    kernel_size: int
    padding: int
    out_height: int  # sums per image and channel: one target row per output pixel
    out_width: int
    spatial_dropout: bool  # Dropout2d on the sums before pooling (mini-batch network only)

    def patches(self, images: torch.Tensor) -> torch.Tensor:
        """(N*H'*W', C*k*k): each output pixel's receptive field, laid out as a conv kernel."""
        columns = F.unfold(images, self.kernel_size, padding=self.padding)  # (N, C*k*k, H'*W')
        return columns.transpose(1, 2).reshape(-1, columns.shape[1])

    def rows_to_maps(self, rows: torch.Tensor) -> torch.Tensor:
        """(N*H'*W', C') sums, one row per output pixel, back to (N, C', H', W') maps."""
        maps = rows.reshape(-1, self.out_height, self.out_width, self.out_channels)
        return maps.permute(0, 3, 1, 2)

    def kernel(self, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The solved (1 + C*k*k, C') matrix as a conv2d weight (C', C, k, k) and bias."""
        shape = (self.out_channels, self.in_channels, self.kernel_size, self.kernel_size)
        return weights[1:].mT.reshape(shape), weights[0]


def study_cnn_layers(input_shape: tuple[int, int, int]) -> tuple[ConvLayer, ...]:
    """The convolutions of models.CNN: conv 10 k5, pool, act; conv 20 k5, dropout, pool, act.

    Unpadded on inputs of 16 pixels and more, padded to keep the size on smaller ones, as there.
    """
    channels, height, width = input_shape
    padding = 0 if height >= 16 else 2
    layers = []
    for out_channels, spatial_dropout in ((10, False), (20, True)):
        height, width = height + 2 * padding - 4, width + 2 * padding - 4
        layers.append(ConvLayer(channels, out_channels, 5, padding, height, width,
                                spatial_dropout))
        channels, height, width = out_channels, height // 2, width // 2
    return tuple(layers)


class Realisation(NamedTuple):
    weights: list[torch.Tensor]  # per layer (1 + inputs, outputs), bias row first
    residuals: list[torch.Tensor] | None  # per layer ||A W - T||_F / ||T||_F, when measured


class TargetSpaceNet(nn.Module):
    """Conv layers (optional), then dense layers, all parameterised by their targets on Xbar.

    With shortcuts (dense layers only), each dense layer sees the input and every earlier dense
    layer's output, [1 | x | h_1 | ... | h_{l-1}], as models.MLP and the paper's two-spirals net.
    """

    def __init__(self, fixed_batch: torch.Tensor, convs: Sequence[ConvLayer],
                 widths: Sequence[int], *, activation: str, dropout: float, shortcuts: bool,
                 ridge: float, cascade: str, dense_init_std: float,
                 conv_init_std: float) -> None:
        super().__init__()
        # A buffer, so checkpoints carry Xbar and a resumed run realises on the very same rows.
        self.register_buffer("fixed_batch", fixed_batch)
        self.convs = tuple(convs)
        self.shortcuts = shortcuts
        self.ridge = ridge
        self.cascade = cascade
        self.act = hidden_activation(activation)
        self.dropout = dropout
        rows = fixed_batch.shape[0]
        shapes = [(rows * conv.out_height * conv.out_width, conv.out_channels, conv_init_std)
                  for conv in self.convs]
        shapes += [(rows, width, dense_init_std) for width in widths]
        self.targets = nn.ParameterList(
            nn.Parameter(nn.init.trunc_normal_(torch.empty(m, k), std=std, a=-TRUNCATION * std,
                                               b=TRUNCATION * std))
            for m, k, std in shapes
        )

    # -- the realisation network: targets -> weights, over the fixed batch ---------------------
    def _realise(self, *, measure: bool = False, project: bool = False) -> Realisation:
        weights: list[torch.Tensor] = []
        residuals: list[torch.Tensor] = []

        def solve(inputs: torch.Tensor, target: nn.Parameter) -> torch.Tensor:
            """Solve one layer; return the sums it passes on (realised for SCU, targets for OCU)."""
            design = with_bias_column(inputs)
            solved = ridge_solve(design, target, self.ridge)
            if project:
                target.copy_(design @ solved)
                solved = ridge_solve(design, target, self.ridge)
            weights.append(solved)
            sums = design @ solved  # what the network with these weights computes on Xbar
            if measure:
                residuals.append(torch.linalg.matrix_norm(sums - target)
                                 / torch.linalg.matrix_norm(target).clamp_min(1e-30))
            return sums if self.cascade == "scu" or project else target

        x = self.fixed_batch
        for conv, target in zip(self.convs, self.targets, strict=False):
            x = self.act(F.max_pool2d(conv.rows_to_maps(solve(conv.patches(x), target)), 2))
        features = [x.flatten(1)]
        *hidden, output = self.targets[len(self.convs):]
        for target in hidden:
            inputs = torch.cat(features, dim=1) if self.shortcuts else features[-1]
            features.append(self.act(solve(inputs, target)))
        solve(torch.cat(features, dim=1) if self.shortcuts else features[-1], output)
        return Realisation(weights, residuals if measure else None)

    # -- the ordinary network with the solved weights --------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for `x`; the weights are solved afresh from the current targets."""
        weights = self._realise().weights
        if not self.convs:
            x = x.flatten(1)
        for conv, solved in zip(self.convs, weights[:len(self.convs)], strict=True):
            kernel, bias = conv.kernel(solved)
            x = F.conv2d(x, kernel, bias, padding=conv.padding)
            if conv.spatial_dropout and self.dropout > 0:
                x = F.dropout2d(x, self.dropout, self.training)
            x = self.act(F.max_pool2d(x, 2))
        features = [x.flatten(1)]
        *hidden, output = weights[len(self.convs):]
        for solved in hidden:
            inputs = torch.cat(features, dim=1) if self.shortcuts else features[-1]
            outputs = self.act(torch.addmm(solved[0], inputs, solved[1:]))
            features.append(F.dropout(outputs, self.dropout, self.training)
                            if self.dropout > 0 else outputs)
        inputs = torch.cat(features, dim=1) if self.shortcuts else features[-1]
        return torch.addmm(output[0], inputs, output[1:])

    @torch.no_grad()
    def solved_weights(self) -> list[torch.Tensor]:
        """The weights the current targets realise, per layer (1 + inputs, outputs), bias first."""
        return self._realise().weights

    @torch.no_grad()
    def project_targets(self) -> None:
        """The initial projection: T_l <- A_l W_l, layer by layer over the fixed batch."""
        self._realise(project=True)

    @torch.no_grad()
    def realisation_residual(self) -> float:
        """Mean over layers of ||A_l W_l - T_l||_F / ||T_l||_F on the fixed batch.

        How far the targets are from sums the layers can realise: 0 when every target matrix
        lies in the span of its layer's inputs (up to the ridge shrinkage).
        """
        residuals = self._realise(measure=True).residuals
        return float(torch.stack(residuals).mean())


def choose_fixed_batch(spec: JobSpec, train_inputs: torch.Tensor) -> torch.Tensor:
    """Xbar on the CPU: the first ts_rows training inputs, a seeded random ts_rows of them (all
    when ts_rows >= N), or ts_rows random inputs with the training inputs' per-feature mean and
    std (Gaussian)."""
    n = train_inputs.shape[0]
    generator = torch.Generator().manual_seed(spec.seed + FIXED_BATCH_SEED_OFFSET)
    if spec.ts_batch == "first":
        return train_inputs[:spec.ts_rows].detach().cpu().clone()
    if spec.ts_batch == "random":
        chosen = torch.randperm(n, generator=generator)[:spec.ts_rows]
        return train_inputs[chosen.to(train_inputs.device)].detach().cpu()
    std, mean = torch.std_mean(train_inputs.detach(), dim=0, correction=0)
    noise = torch.randn((spec.ts_rows, *train_inputs.shape[1:]), generator=generator)
    return mean.cpu() + std.cpu() * noise


def build_target_space_model(spec: JobSpec, input_shape: tuple[int, ...], num_classes: int,
                             train_inputs: torch.Tensor) -> TargetSpaceNet:
    """The target-space version of spec's mlp or cnn, on the CPU, initial targets drawn from the
    global torch RNG (seed it first) and projected when spec.ts_projection."""
    fixed_batch = choose_fixed_batch(spec, train_inputs)
    if spec.model == "cnn":
        shape = input_shape if len(input_shape) == 3 else (1, *input_shape)
        convs = study_cnn_layers(shape)
        fixed_batch = fixed_batch.reshape(-1, *shape)
    else:
        convs = ()
        fixed_batch = fixed_batch.reshape(-1, math.prod(input_shape))
    model = TargetSpaceNet(
        fixed_batch, convs, (*spec.hidden, num_classes), activation=spec.activation,
        dropout=spec.dropout, shortcuts=spec.shortcuts, ridge=spec.ts_lambda,
        cascade=spec.ts_cascade, dense_init_std=spec.ts_init_std,
        conv_init_std=spec.ts_conv_init_std,
    )
    if spec.ts_projection:
        model.project_targets()
    return model
