"""Deep learning in target space: the ridge solve, the cascades, the projection, the fixed batch,
the solved weights in the ordinary networks, and whole jobs (resume, strategies, spirals)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jobs.data.datasets import load_dataset
from jobs.engine.train import run_job
from jobs.nn.models import CNN, MLP, build_model
from jobs.nn.target_space import TargetSpaceNet, choose_fixed_batch, ridge_solve, with_bias_column
from jobs.spec import JobSpec, SpecError
from tests import rundir_view

SPIRALS_NET = {"dataset": "spirals", "normalize": "none", "hidden": [5, 5, 5],
               "activation": "tanh", "shortcuts": True, "optimizer": "adam", "lr": 0.01,
               "batch_size": 0, "ts_rows": 194, "method": "target_space"}
NOT_COMPARED = ["epoch_seconds", "samples_per_second"]  # timings


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These problems are tiny: a second thread only adds OpenMP barriers, which spin for long
    on a shared, busy machine (seconds per test instead of fractions)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def ridge_by_lstsq(a: np.ndarray, t: np.ndarray, ridge: float) -> np.ndarray:
    """The ridge solution as ordinary least squares on A stacked over sqrt(ridge) I."""
    cols = a.shape[1]
    stacked = np.vstack([a, np.sqrt(ridge) * np.eye(cols)])
    padded = np.vstack([t, np.zeros((cols, t.shape[1]))])
    return np.linalg.lstsq(stacked, padded, rcond=None)[0]


def tiny_net(cascade: str, *, rows: int = 12, widths=(4, 3, 2), shortcuts: bool = False,
             seed: int = 0, fixed_batch: torch.Tensor | None = None) -> TargetSpaceNet:
    torch.manual_seed(seed)
    if fixed_batch is None:
        fixed_batch = torch.randn(rows, 3)
    return TargetSpaceNet(fixed_batch, (), widths, activation="tanh", dropout=0.0,
                          shortcuts=shortcuts, ridge=0.01, cascade=cascade, dense_init_std=1.0,
                          conv_init_std=0.1)


# -- the ridge solve -----------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(30, 6), (6, 30), (8, 8)], ids=["tall", "wide", "square"])
@pytest.mark.parametrize("ridge", [1e-3, 0.5])
def test_ridge_solve_matches_least_squares_on_the_augmented_system(shape, ridge):
    rng = np.random.default_rng(1)
    a, t = rng.normal(size=shape), rng.normal(size=(shape[0], 3))
    expected = ridge_by_lstsq(a, t, ridge)
    solved = ridge_solve(torch.from_numpy(a), torch.from_numpy(t), ridge)
    assert solved.dtype == torch.float64
    np.testing.assert_allclose(solved.numpy(), expected, rtol=1e-9, atol=1e-11)


def test_ridge_solve_in_float32_is_accurate_on_ill_conditioned_inputs():
    # Raw spiral-like coordinates next to a near-copy of a column: the Gram matrix's condition
    # number is far past float32's; the float64 solve still returns float32 weights that match.
    rng = np.random.default_rng(2)
    x = rng.uniform(-6.5, 6.5, size=(194, 2))
    a = np.column_stack([np.ones(194), x, x[:, 0] + 1e-4 * rng.normal(size=194)])
    t = rng.normal(size=(194, 5))
    expected = ridge_by_lstsq(a.astype(np.float32).astype(np.float64), t.astype(np.float32),
                              1e-3)
    solved = ridge_solve(torch.tensor(a, dtype=torch.float32),
                         torch.tensor(t, dtype=torch.float32), 1e-3)
    assert solved.dtype == torch.float32
    np.testing.assert_allclose(solved.numpy(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(9, 4), (4, 9)], ids=["tall", "wide"])
def test_gradients_flow_through_the_solve(shape):
    torch.manual_seed(0)
    a = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    t = torch.randn(shape[0], 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, t: ridge_solve(a, t, 0.1), (a, t))


@pytest.mark.parametrize("rows", [40, 4], ids=["tall", "wide"])
def test_rank_deficient_fixed_batch_solves_and_trains(rows):
    # Every row twice (and, for "wide", fewer distinct rows than columns): A is rank-deficient
    # in both branches; the ridge keeps the Gram matrix positive definite.
    torch.manual_seed(0)
    distinct = torch.randn(rows // 2, 30)
    net = tiny_net("scu", widths=(6, 2), fixed_batch=torch.cat([distinct, distinct]))
    net.project_targets()
    x, labels = torch.randn(16, 30), torch.randint(0, 2, (16,))
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(net(x), labels)
        optimizer.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in net.parameters())
        optimizer.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert all(torch.isfinite(w).all() for w in net.solved_weights())


def test_nan_targets_give_nan_logits_not_an_exception():
    # The training loop turns a NaN loss into a "diverged" result; the solve must not raise.
    net = tiny_net("scu")
    with torch.no_grad():
        net.targets[0][0, 0] = float("nan")
    assert torch.isnan(net(torch.randn(5, 3))).all()


# -- the cascades and the projection -------------------------------------------------------------

def test_scu_feeds_realised_sums_and_ocu_feeds_the_targets():
    scu, ocu = tiny_net("scu"), tiny_net("ocu")  # same seed: the same targets and fixed batch
    for a, b in zip(scu.targets, ocu.targets, strict=True):
        assert torch.equal(a, b)
    first = with_bias_column(scu.fixed_batch)
    w1 = ridge_solve(first, scu.targets[0], scu.ridge)
    scu_second = with_bias_column(torch.tanh(first @ w1))
    ocu_second = with_bias_column(torch.tanh(ocu.targets[0]))
    scu_weights, ocu_weights = scu.solved_weights(), ocu.solved_weights()
    torch.testing.assert_close(scu_weights[0], ocu_weights[0])  # the input layer is shared
    torch.testing.assert_close(scu_weights[1], ridge_solve(scu_second, scu.targets[1], 0.01))
    torch.testing.assert_close(ocu_weights[1], ridge_solve(ocu_second, ocu.targets[1], 0.01))
    assert not torch.allclose(scu_weights[1], ocu_weights[1], atol=1e-3)
    x = torch.randn(7, 3)
    assert not torch.allclose(scu(x), ocu(x), atol=1e-3)


@pytest.mark.parametrize("shortcuts", [False, True])
def test_projection_stores_the_realised_sums_layer_by_layer(shortcuts):
    net = tiny_net("scu", shortcuts=shortcuts)
    initial = [t.detach().clone() for t in net.targets]
    before = net.realisation_residual()
    assert before > 0.5  # random targets are far from realisable
    net.project_targets()
    # By hand: each layer's target becomes A_l W_l, the next layer then fed by the realisation
    # of the projected targets (weights solved again from them).
    features = [net.fixed_batch]
    for layer, (target, stored) in enumerate(zip(initial, net.targets, strict=True)):
        design = with_bias_column(torch.cat(features, 1) if shortcuts else features[-1])
        projected = design @ ridge_solve(design, target, net.ridge)
        torch.testing.assert_close(stored, projected, rtol=0, atol=0)
        sums = design @ ridge_solve(design, projected, net.ridge)
        features.append(sums if layer == len(initial) - 1 else torch.tanh(sums))
    assert net.realisation_residual() < before / 10  # what is left is the ridge's shrinkage


def test_only_the_targets_are_parameters_and_the_fixed_batch_never_moves():
    net = tiny_net("scu")
    fixed = net.fixed_batch.clone()
    assert [id(p) for p in net.parameters()] == [id(t) for t in net.targets]
    assert "fixed_batch" in net.state_dict()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    before = [t.detach().clone() for t in net.targets]
    loss = F.cross_entropy(net(torch.randn(8, 3)), torch.randint(0, 2, (8,)))
    loss.backward()
    optimizer.step()
    assert torch.equal(net.fixed_batch, fixed)
    assert all(not torch.equal(a, b) for a, b in zip(before, net.targets, strict=True))


# -- the ordinary networks run with the solved weights ---------------------------------------------

def load_solved(model: torch.nn.Module, weights: list[torch.Tensor]) -> None:
    """Copy solved (1 + inputs, outputs) matrices into a weight-space model's layers in order."""
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)]
    with torch.no_grad():
        for layer, solved in zip(layers, weights, strict=True):
            layer.bias.copy_(solved[0])
            layer.weight.copy_(solved[1:].mT.reshape(layer.weight.shape))


@pytest.mark.parametrize(("shortcuts", "hidden", "cascade"), [
    (False, (5, 4), "scu"), (True, (5, 4), "scu"), (True, (5, 4), "ocu"), (False, (), "scu")])
def test_mlp_with_the_solved_weights_gives_the_same_logits(shortcuts, hidden, cascade):
    spec = JobSpec.from_dict({**SPIRALS_NET, "shortcuts": shortcuts, "hidden": list(hidden),
                              "ts_cascade": cascade})
    data = load_dataset("spirals", normalize="none")
    torch.manual_seed(0)
    net = build_model(spec, data.input_shape, 2, train_inputs=data.x_train).eval()
    mlp = MLP(2, hidden, 2, "tanh", 0.0, shortcuts).eval()
    load_solved(mlp, net.solved_weights())
    with torch.no_grad():
        torch.testing.assert_close(net(data.x_test), mlp(data.x_test))


@pytest.mark.parametrize("cascade", ["scu", "ocu"])
@pytest.mark.parametrize(("shape", "pixels"), [((1, 8, 8), (8 * 8, 4 * 4)),
                                               ((1, 28, 28), (24 * 24, 8 * 8))],
                         ids=["padded", "unpadded"])
def test_cnn_with_the_solved_weights_gives_the_same_logits(shape, pixels, cascade):
    # One target row per output pixel of each fixed-batch image, per conv layer.
    torch.manual_seed(0)
    inputs = torch.rand(6, *shape)
    spec = JobSpec.from_dict({"dataset": "digits", "model": "cnn", "hidden": [7],
                              "method": "target_space", "ts_rows": 4, "ts_lambda": 0.1,
                              "ts_cascade": cascade})
    net = build_model(spec, shape, 10, train_inputs=inputs).eval()
    assert [tuple(t.shape) for t in net.targets] == [
        (4 * pixels[0], 10), (4 * pixels[1], 20), (4, 7), (4, 10)]
    cnn = CNN(shape, (7,), 10, "relu", 0.0).eval()
    load_solved(cnn, net.solved_weights())
    with torch.no_grad():
        torch.testing.assert_close(net(inputs), cnn(inputs))


# -- the fixed batch ------------------------------------------------------------------------------

def test_fixed_batch_choices():
    inputs = torch.arange(200.0).reshape(50, 4)
    spec = JobSpec.from_dict({"ts_rows": 10, "method": "target_space"})
    assert torch.equal(choose_fixed_batch(spec, inputs), inputs[:10])
    assert torch.equal(choose_fixed_batch(spec.replace(ts_rows=80), inputs), inputs)
    chosen = choose_fixed_batch(spec.replace(ts_batch="random"), inputs)
    rows = (chosen[:, 0] / 4).long()
    assert torch.equal(chosen, inputs[rows]) and len(set(rows.tolist())) == 10
    assert torch.equal(chosen, choose_fixed_batch(spec.replace(ts_batch="random"), inputs))
    other = choose_fixed_batch(spec.replace(ts_batch="random", seed=1), inputs)
    assert not torch.equal(chosen, other)
    every = choose_fixed_batch(spec.replace(ts_batch="random", ts_rows=50), inputs)
    assert sorted((every[:, 0] / 4).long().tolist()) == list(range(50))
    noise = choose_fixed_batch(spec.replace(ts_batch="noise", ts_rows=4000), inputs)
    assert noise.shape == (4000, 4)
    std, mean = torch.std_mean(inputs, dim=0, correction=0)
    torch.testing.assert_close(noise.mean(0), mean, rtol=0, atol=0.1 * std.max())
    torch.testing.assert_close(noise.std(0), std, rtol=0.05, atol=0)


# -- settings -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("settings", "message"), [
    ({"l1": 0.01}, "l1 and weight_decay penalise weights; with method=target_space the weights "
                   "are solved by ridge least squares: use ts_lambda"),
    ({"weight_decay": 0.01}, "l1 and weight_decay penalise weights; with method=target_space "
                             "the weights are solved by ridge least squares: use ts_lambda"),
    ({"ts_lambda": 0}, "setting 'ts_lambda' got '0'; expected a number > 0"),
])
def test_target_space_refuses_weight_penalties_and_a_zero_ridge(settings, message):
    with pytest.raises(SpecError) as error:
        JobSpec.from_dict({"method": "target_space", **settings})
    assert str(error.value) == message


# -- whole jobs -----------------------------------------------------------------------------------

def metrics(grid_dir: Path) -> list[dict]:
    return rundir_view.all_rows(grid_dir, drop=tuple(NOT_COMPARED))


def test_resume_after_an_interruption_equals_an_uninterrupted_run(tmp_path):
    spec = JobSpec.from_dict({**SPIRALS_NET, "epochs": 12, "eval_every": 3, "lr": 0.03})
    assert run_job(spec, tmp_path / "whole").state == "done"

    class Interrupted(Exception):
        pass

    def interrupt(epoch: int, epochs: int, row: dict) -> None:
        if epoch == 9:  # after the checkpoint of epoch 6, before that of epoch 9
            raise Interrupted

    first = run_job(spec, tmp_path / "resumed", progress=interrupt, checkpoint_seconds=0)
    assert first.state == "failed" and "Interrupted" in first.error
    assert rundir_view.all_rows(tmp_path / "resumed") == []
    assert run_job(spec, tmp_path / "resumed").state == "done"
    assert rundir_view.record(tmp_path / "resumed", spec.job_id).attempts == 2
    assert "resumed after epoch 6" in rundir_view.all_logs(tmp_path / "resumed")
    whole, resumed = metrics(tmp_path / "whole"), metrics(tmp_path / "resumed")
    assert [row["epoch"] for row in whole] == [0, 3, 6, 9, 12]
    assert resumed == whole
    assert all(row["ts_residual"] > 0 for row in whole)


def test_spirals_in_target_space_reach_high_train_accuracy(tmp_path):
    spec = JobSpec.from_dict({**SPIRALS_NET, "epochs": 300, "eval_every": 300, "lr": 0.03})
    result = run_job(spec, tmp_path / "spirals")
    assert result.state == "done", result.error
    last = metrics(tmp_path / "spirals")[-1]
    assert last["train_acc"] >= 0.95
    assert last["test_acc"] >= 0.9


def test_output_targets_come_from_the_strategy(tmp_path):
    # With mse on sigmoid outputs against fixed(c=0.9, nc=0.1), the logged loss is the one
    # against those templates, and training lowers it.
    settings = {**SPIRALS_NET, "loss": "mse", "output": "sigmoid",
                "strategy": "fixed(c=0.9, nc=0.1)", "epochs": 60, "eval_every": 60}
    spec = JobSpec.from_dict(settings)
    assert run_job(spec, tmp_path / "fixed").state == "done"
    rows = metrics(tmp_path / "fixed")
    data = load_dataset("spirals", normalize=spec.normalize, val_fraction=spec.val_fraction,
                        val_seed=spec.val_seed)  # the training part the job saw
    torch.manual_seed(spec.seed)
    net = build_model(spec, data.input_shape, 2, train_inputs=data.x_train).eval()
    with torch.no_grad():
        outputs = torch.sigmoid(net(data.x_test))
    templates = torch.tensor([[0.9, 0.1], [0.1, 0.9]])
    expected = ((outputs - templates[data.y_test]) ** 2).mean(1).mean()
    assert rows[0]["test_loss"] == pytest.approx(float(expected), rel=1e-5)
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]


def test_cnn_in_target_space_trains_on_digits(tmp_path):
    spec = JobSpec.from_dict({"dataset": "digits", "model": "cnn", "hidden": [16],
                              "method": "target_space", "ts_rows": 20, "ts_lambda": 0.1,
                              "optimizer": "adam", "lr": 0.01, "batch_size": 128, "epochs": 2,
                              "dropout": 0.2})
    result = run_job(spec, tmp_path / "cnn")
    assert result.state == "done", result.error
    rows = metrics(tmp_path / "cnn")
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert rows[-1]["test_acc"] > 0.15
