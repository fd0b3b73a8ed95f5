"""JobSpec: validation with one-line errors, canonical form and stable job ids."""

from __future__ import annotations

import pytest

from jobs.spec import JobSpec, SpecError


def test_same_settings_give_the_same_id_whatever_their_spelling():
    a = JobSpec.from_dict({"lr": "0.5", "hidden": "[64,64]", "strategy": "fixed(c=0.9,nc=0.1)",
                           "loss": "mse", "output": "sigmoid"})
    b = JobSpec.from_dict({"lr": 0.5, "hidden": [64, 64], "loss": "mse", "output": "sigmoid",
                           "strategy": "fixed(nc=0.1, c=0.9, normalize=false)"})
    assert a.job_id == b.job_id
    assert len(a.job_id) == 12 and int(a.job_id, 16) >= 0
    assert a.strategy == "fixed(c=0.9, nc=0.1, normalize=false)"


def test_a_different_setting_gives_a_different_id_but_data_root_does_not():
    base = JobSpec()
    assert base.replace(seed=1).job_id != base.job_id
    assert base.replace(lr=0.2).job_id != base.job_id
    mnist = JobSpec(dataset="mnist", data_root="/here")
    assert mnist.replace(data_root="/elsewhere").job_id == mnist.job_id


def test_the_id_is_stable_across_versions_of_the_code():
    # Pinned: changing the canonical form silently would orphan every finished job on disk.
    spec = JobSpec.from_dict({"dataset": "digits", "seed": 3, "epochs": 5})
    assert spec.canonical()["seed"] == 3
    assert spec.job_id == JobSpec.from_dict(spec.to_dict()).job_id


@pytest.mark.parametrize(("values", "message"), [
    ({"lrr": 1}, "unknown setting 'lrr' (did you mean 'lr'?); valid settings: activation, "),
    ({"lr": "abc"}, "setting 'lr' got 'abc'; expected a number > 0"),
    ({"lr": 0}, "setting 'lr' got '0'; expected a number > 0"),
    ({"activation": "sigmod"},
     "setting 'activation' got 'sigmod'; expected one of sigmoid, tanh, lecun_tanh, relu, "
     "leaky_relu"),
    ({"dropout": 1.5}, "setting 'dropout' got '1.5'; expected a number in [0, 1)"),
    ({"epochs": "2.5"}, "setting 'epochs' got '2.5'; expected an integer >= 0"),
    ({"hidden": "[0]"},
     "setting 'hidden' got '[0]'; expected a list of positive integers like [128] or [64,64]"),
    ({"nesterov": "maybe"}, "setting 'nesterov' got 'maybe'; expected true or false"),
    ({"loss": "ce", "output": "sigmoid"},
     "loss=ce needs output=softmax (got output=sigmoid); use loss=mse or loss=bce with other "
     "outputs"),
    ({"loss": "bce", "output": "tanh"},
     "loss=bce needs outputs in (0, 1): output=sigmoid or softmax (got output=tanh)"),
    ({"strategy": "fixed"},
     "strategy fixed(c=0.9, nc=0.1, normalize=false) gives targets summing to 1.8 per row, but "
     "loss=ce needs non-negative targets that sum to 1; use normalize=true where the strategy "
     "has it, or loss=mse/bce"),
    ({"strategy": "fixd"}, "unknown strategy 'fixd' (did you mean 'fixed'?); valid strategies: "),
    ({"strategy": "fixed(d=1)"},
     "strategy 'fixed' has no parameter 'd'; its parameters: c, nc, normalize"),
    ({"model": "cnn", "dataset": "spirals"},
     "model=cnn needs an image dataset (digits, mnist, fashion_mnist, cifar10); got "
     "dataset=spirals"),
    ({"dataset": "mnist"},
     "dataset=mnist reads its files from disk; pass data_root=DIR (nothing is downloaded)"),
    ({"nesterov": True}, "nesterov=true needs momentum > 0 (e.g. momentum=0.9)"),
])
def test_bad_settings_are_one_line_errors_naming_the_key(values, message):
    with pytest.raises(SpecError) as caught:
        JobSpec.from_dict(values)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_normalised_fixed_targets_pair_with_cross_entropy():
    spec = JobSpec.from_dict({"strategy": "fixed(c=0.9, nc=0.1, normalize=true)"})
    assert spec.strategy_name == "fixed"
