"""Loss closures: batch-size-weighted averaging, purity, eval mode."""

import pytest
import torch
from torch import nn

from landscape_core.functional import LossFunction
from landscape_core.params import model_hash


def _data(n=23, d=5, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, k, (n,), generator=g)


def _model(bn=False):
    torch.manual_seed(0)
    layers = [nn.Linear(5, 7)] + ([nn.BatchNorm1d(7)] if bn else []) + [nn.Tanh(), nn.Linear(7, 3)]
    return nn.Sequential(*layers)


@pytest.mark.parametrize("bs", [1, 4, 7, 22, 23, 100])
def test_batched_loss_equals_full_batch_loss(bs):
    X, y = _data()
    m = _model()
    full = nn.functional.cross_entropy(m(X), y)
    f = LossFunction(m, X, y, batch_size=bs, dtype=torch.float64)
    assert float(f(f.params0)) == pytest.approx(float(full), rel=1e-6)
    g_full = LossFunction(m, X, y, dtype=torch.float64).gradient()
    g_b = f.gradient()
    for k in g_full:
        torch.testing.assert_close(g_b[k], g_full[k], rtol=1e-10, atol=1e-12)


def test_weights_of_batches_sum_to_one_and_short_last_batch_counts_for_its_size():
    X, y = _data(n=10)
    f = LossFunction(_model(), X, y, batch_size=4)
    ws = [w for *_, w in f.iter_batches()]
    assert ws == pytest.approx([0.4, 0.4, 0.2])


def test_model_untouched_and_eval_mode_used():
    X, y = _data()
    m = _model(bn=True).train()
    h = model_hash(m)
    f = LossFunction(m, X, y, batch_size=5)
    f(f.params0)
    f.evaluate()
    f.gradient()
    assert model_hash(m) == h and m.training  # caller's model unchanged, still in train mode
    m.eval()
    torch.testing.assert_close(float(f(f.params0)), float(nn.functional.cross_entropy(m(X), y)))


def test_evaluate_accuracy_and_bad_inputs():
    X, y = _data()
    m = _model()
    loss, acc = LossFunction(m, X, y).evaluate()
    assert acc == pytest.approx(float((m(X).argmax(1) == y).float().mean()))
    with pytest.raises(ValueError, match="rows"):
        LossFunction(m, X, y[:-1])
    with pytest.raises(ValueError, match="batch_size"):
        LossFunction(m, X, y, batch_size=0)


def test_dataset_root_is_never_taken_from_stored_metadata():
    from landscape_core.data import DatasetSpec

    spec = DatasetSpec.from_dict({"name": "digits", "root": "/etc", "seed": 3})
    assert spec.root is None and spec.seed == 3


def test_auto_batch_size_balanced_under_a_cap():
    from landscape_core.functional import auto_batch_size

    assert auto_batch_size(1347, 64) == 1347  # digits: one batch (was 1024 + 323)
    assert auto_batch_size(10000, 784) == 3334  # MNIST: cap 4096 -> 3 balanced batches
    assert auto_batch_size(5000, 3 * 32 * 32) == 1250  # CIFAR: cap 2**22 // 3072 = 1365 -> 4 x 1250
    assert auto_batch_size(5, 10**9) == 5  # the lower bound of the cap never exceeds n
    assert auto_batch_size(1000, 10**9) == 63  # cap 64 -> 16 batches of 63 (the last 55)
    with pytest.raises(ValueError, match="n=0"):
        auto_batch_size(0, 10)
