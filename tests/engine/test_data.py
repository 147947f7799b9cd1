"""Datasets: digits split and scaling, synthetic sets, analysis subsets, spec validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from landscape_core.data import DatasetSpec, analysis_subset, load_dataset


def test_digits_split_is_stratified_scaled_and_seeded():
    from sklearn.datasets import load_digits

    b = load_dataset("digits")
    (Xtr, ytr), (Xte, yte) = b.train, b.test
    assert Xtr.shape == (1347, 1, 8, 8) and Xte.shape == (450, 1, 8, 8)
    assert Xtr.dtype == torch.float32 and ytr.dtype == torch.int64
    assert b.input_shape == (1, 8, 8) and b.num_classes == 10
    full = np.bincount(load_digits().target) / 1797
    for y in (ytr, yte):
        prop = torch.bincount(y, minlength=10).numpy() / len(y)
        assert np.abs(prop - full).max() < 2.0 / len(y)  # each class within a couple of examples
    # per-pixel standardisation on the training split: mean 0, std <= 1 (floor 0.1 for flat pixels)
    flat = Xtr.reshape(len(Xtr), -1).double()
    assert flat.mean(0).abs().max() < 1e-5
    assert float(flat.std(0, unbiased=False).max()) < 1.0
    # exactly the raw pixels / 16 of a stratified split, standardised with train statistics (+0.1 floor)
    from sklearn.model_selection import train_test_split

    d = load_digits()
    raw_tr, _, y_raw, _ = train_test_split(d.data / 16.0, d.target, test_size=0.25, random_state=0,
                                           stratify=d.target)
    expected = (raw_tr - raw_tr.mean(0)) / (raw_tr.std(0) + 0.1)
    np.testing.assert_allclose(flat.numpy(), expected, rtol=1e-4, atol=1e-5)  # float32 statistics
    assert np.array_equal(ytr.numpy(), y_raw)
    again = load_dataset({"name": "digits", "seed": 0})
    assert torch.equal(again.train[0], Xtr) and torch.equal(again.test[1], yte)
    other = load_dataset({"name": "digits", "seed": 1})
    assert not torch.equal(other.train[1], ytr)
    assert len(other.train[1]) == 1347


def test_digits_size_caps_are_stratified_subsets():
    b = load_dataset({"name": "digits", "train_size": 200, "test_size": 50})
    assert len(b.train[1]) == 200 and len(b.test[1]) == 50
    counts = torch.bincount(b.train[1], minlength=10)
    assert int(counts.min()) >= 19 and int(counts.max()) <= 21


@pytest.mark.parametrize("name,classes", [("moons", 2), ("circles", 2), ("spirals", 3)])
def test_synthetic_shapes_and_classes(name, classes):
    b = load_dataset({"name": name, "n_samples": 300, "noise": 0.1})
    (Xtr, ytr), (Xte, yte) = b.train, b.test
    n_total = len(ytr) + len(yte)
    assert n_total == (300 if name != "spirals" else 300 // 3 * 3)
    assert Xtr.shape[1:] == (2,) and b.input_shape == (2,) and b.num_classes == classes
    assert set(torch.unique(torch.cat([ytr, yte])).tolist()) == set(range(classes))
    X = torch.cat([Xtr, Xte]).double()
    assert torch.allclose(X.mean(0), torch.zeros(2, dtype=torch.float64), atol=1e-5)  # standardised
    assert torch.allclose(X.std(0, unbiased=False), torch.ones(2, dtype=torch.float64), atol=1e-4)


def _loo_1nn_error(X: torch.Tensor, y: torch.Tensor) -> float:
    d = torch.cdist(X, X)
    d.fill_diagonal_(float("inf"))
    return float((y[d.argmin(1)] != y).float().mean())


@pytest.mark.parametrize("name,clean_max", [("moons", 0.0), ("spirals", 0.01)])
def test_noise_blurs_the_classes(name, clean_max):
    clean = load_dataset({"name": name, "n_samples": 600, "noise": 0.0})
    noisy = load_dataset({"name": name, "n_samples": 600, "noise": 0.6})
    e_clean = _loo_1nn_error(*clean.train)
    e_noisy = _loo_1nn_error(*noisy.train)
    # noiseless curves: a point's nearest neighbour is on its own arm (spirals: except at the centre)
    assert e_clean <= clean_max
    assert e_noisy > 0.05


def test_analysis_subset_deterministic_and_stratified():
    y = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    X = torch.arange(100.0).unsqueeze(1)
    Xa, ya = analysis_subset(X, y, 20, seed=3)
    Xb, yb = analysis_subset(X, y, 20, seed=3)
    assert torch.equal(Xa, Xb) and torch.equal(ya, yb)
    assert torch.bincount(ya).tolist() == [12, 6, 2]
    assert torch.equal(y[Xa.squeeze(1).long()], ya)  # rows stay paired with their labels
    Xc, _ = analysis_subset(X, y, 20, seed=4)
    assert not torch.equal(Xa, Xc)
    Xall, yall = analysis_subset(X, y, None)
    assert Xall is X and yall is y
    assert analysis_subset(X, y, 500)[0] is X
    with pytest.raises(ValueError, match="-2"):
        analysis_subset(X, y, -2)


@pytest.mark.parametrize("kw,match", [
    (dict(name="imagenet"), "imagenet"),
    (dict(train_size=0), "train_size must be >= 1, got 0"),
    (dict(test_size=-5), "-5"),
    (dict(noise=-1.0), "noise"),
    (dict(n_samples=3), "n_samples must be >= 8, got 3"),
    (dict(test_fraction=0.99), "0.99"),
])
def test_dataset_spec_rejects_bad_values(kw, match):
    with pytest.raises(ValueError, match=match):
        DatasetSpec(**kw)


def test_spec_dict_round_trip():
    s = DatasetSpec(name="moons", seed=4, n_samples=100, noise=0.3)
    assert DatasetSpec.from_dict(s.to_dict()) == s
    assert "root" not in s.to_dict()
