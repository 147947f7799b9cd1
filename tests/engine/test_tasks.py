"""Embedded tasks: modular addition, parity, MNIST-1D (offline generation and its npz cache), dataset specs."""

import random

import numpy as np
import pytest
import torch

from landscape_core import tasks
from landscape_core.data import DatasetSpec, load_dataset


def test_modular_addition_covers_every_pair_once_with_correct_labels():
    p = 7
    Xtr, ytr, Xte, yte = tasks.modular_addition(p, 0.4, seed=3)
    X, y = torch.cat([Xtr, Xte]), torch.cat([ytr, yte])
    assert X.dtype == torch.int64 and X.shape == (p * p, 3)
    assert len(ytr) == round(0.4 * p * p)
    pairs = {(int(a), int(b)) for a, b, _ in X}
    assert pairs == {(a, b) for a in range(p) for b in range(p)}
    assert torch.equal(X[:, 2], torch.full((p * p,), p))  # the "=" token
    assert torch.equal(y, (X[:, 0] + X[:, 1]) % p)
    again = tasks.modular_addition(p, 0.4, seed=3)
    assert torch.equal(again[0], Xtr)
    assert not torch.equal(tasks.modular_addition(p, 0.4, seed=4)[0], Xtr)
    with pytest.raises(ValueError, match="train fraction"):
        tasks.modular_addition(p, 1.0)


def test_parity_labels_and_unique_strings():
    Xtr, ytr, Xte, yte = tasks.parity(8, 10_000, test_fraction=0.25, seed=1)
    X, y = torch.cat([Xtr, Xte]), torch.cat([ytr, yte])
    assert X.shape == (256, 8) and len(yte) == 64  # capped at 2^8 strings
    assert torch.equal(y, X.sum(1) % 2)
    assert len({tuple(r.tolist()) for r in X}) == 256
    Xs = tasks.parity(12, 300, seed=0)[0]
    assert len({tuple(r.tolist()) for r in Xs}) == len(Xs) == 225  # sampled without repetition


def test_mnist1d_generated_offline_cached_and_rng_untouched(tmp_path, monkeypatch):
    np.random.seed(123)
    random.seed(123)
    before = (np.random.get_state()[1].copy(), random.getstate())
    Xtr, ytr, Xte, yte = tasks.mnist1d(tmp_path)
    assert np.array_equal(np.random.get_state()[1], before[0]) and random.getstate() == before[1]
    assert Xtr.shape == (4000, 1, 40) and Xte.shape == (1000, 1, 40) and Xtr.dtype == torch.float32
    assert set(ytr.tolist()) == set(range(10))
    assert abs(float(torch.cat([Xtr, Xte]).std()) - 1.0) < 1e-3  # the generator standardises the data
    assert (tmp_path / "mnist1d-5000-42.npz").is_file()

    def boom():
        raise AssertionError("regenerated although the cache exists")

    monkeypatch.setattr(tasks, "_generate_mnist1d", boom)
    again = tasks.mnist1d(tmp_path)
    assert torch.equal(again[0], Xtr) and torch.equal(again[3], yte)


def test_mnist1d_corrupt_cache_is_regenerated(tmp_path, monkeypatch):
    (tmp_path / "mnist1d-5000-42.npz").write_bytes(b"not an npz")
    fake = {"x": np.zeros((10, 40), np.float32), "y": np.arange(10), "x_test": np.ones((4, 40), np.float32),
            "y_test": np.arange(4)}
    monkeypatch.setattr(tasks, "_generate_mnist1d", lambda: fake)
    Xtr, ytr, Xte, yte = tasks.mnist1d(tmp_path)
    assert Xtr.shape == (10, 1, 40) and torch.equal(yte, torch.arange(4))


def test_dataset_specs_of_the_tasks(monkeypatch, tmp_path):
    s = DatasetSpec(name="modular_addition")
    assert s.modulus == 97 and s.seq_len is None
    assert "modulus" in s.to_dict() and "seq_len" not in s.to_dict()
    assert set(DatasetSpec(name="digits").to_dict()) == {  # stored specs of the other datasets are unchanged
        "name", "seed", "train_size", "test_size", "n_samples", "noise", "test_fraction"}
    assert DatasetSpec(name="digits", modulus=5).modulus is None
    assert DatasetSpec.from_dict(DatasetSpec(name="parity", seq_len=6).to_dict()).seq_len == 6
    with pytest.raises(ValueError, match="modulus must be an integer in \\[2, 1000\\], got 1"):
        DatasetSpec(name="modular_addition", modulus=1)
    b = load_dataset({"name": "modular_addition", "modulus": 11, "test_fraction": 0.6})
    assert b.vocab_size == 12 and b.num_classes == 11 and b.input_shape == (3,)
    assert len(b.train[1]) == round(0.4 * 121)
    b = load_dataset({"name": "parity", "seq_len": 5, "n_samples": 32})
    assert b.vocab_size == 2 and b.num_classes == 2 and b.input_shape == (5,)
    monkeypatch.setenv("LANDSCAPE_DATA", str(tmp_path))
    fake = {"x": np.zeros((20, 40), np.float32), "y": np.arange(20) % 10, "x_test": np.ones((10, 40), np.float32),
            "y_test": np.arange(10)}
    monkeypatch.setattr(tasks, "_generate_mnist1d", lambda: fake)
    b = load_dataset({"name": "mnist1d", "seed": 5})
    assert b.input_shape == (1, 40) and b.num_classes == 10 and b.vocab_size is None
    assert (tmp_path / "mnist1d" / "mnist1d-5000-42.npz").is_file()
