"""SharpnessTracker: lambda_max equals the dense top eigenvalue; Adam's preconditioned sharpness; no
change to the training model (weights, buffers, train mode)."""

import numpy as np
import pytest
import torch
from torch import nn

from landscape_core.exact import dense_hessian
from landscape_core.functional import LossFunction
from landscape_core.params import model_hash
from landscape_core.sharpness import SharpnessTracker, preconditioned_threshold, stability_threshold


def tiny():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3)).double()
    X, y = torch.randn(24, 4, dtype=torch.float64), torch.randint(0, 3, (24,))
    m.train()
    m(X)  # non-trivial BN running statistics
    return m, X, y


def test_lambda_max_matches_dense_and_model_untouched():
    m, X, y = tiny()
    h0 = model_hash(m)
    tr = SharpnessTracker(X, y, every=5, lr=0.1, optimizer="sgd", momentum=0.9, iters=63, samples=1000)
    assert tr.maybe_measure(3, m, None) is None
    rec = tr.maybe_measure(10, m, None)
    H = dense_hessian(LossFunction(m, X, y))
    top = float(torch.linalg.eigvalsh(H)[-1])
    assert abs(rec["lambda_max"] - top) < 1e-6 * abs(top)
    assert rec["step"] == 10 and np.isclose(rec["threshold"], (2 + 2 * 0.9) / 0.1) and rec["threshold_applies"]
    assert "preconditioned_lambda_max" not in rec
    assert model_hash(m) == h0 and m.training and m[1].training
    # warm start from the previous eigenvector: the same point converges in fewer matvecs
    rec2 = tr.maybe_measure(15, m, None)
    assert rec2["matvecs"] < rec["matvecs"] and abs(rec2["lambda_max"] - top) < 1e-6 * abs(top)
    assert len(tr.history) == 2


def test_adam_preconditioned_sharpness():
    m, X, y = tiny()
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(m(X), y).backward()
        opt.step()
    m.eval()
    h0 = model_hash(m)
    tr = SharpnessTracker(X, y, every=1, lr=0.01, optimizer="adam", iters=63, samples=1000)
    rec = tr.maybe_measure(3, m, opt)
    assert model_hash(m) == h0
    H = dense_hessian(LossFunction(m, X, y))
    b1, b2 = 0.9, 0.999
    P = []
    for p in m.parameters():
        st = opt.state[p]
        t = float(st["step"])
        P.append(((1 - b1**t) * ((st["exp_avg_sq"] / (1 - b2**t)).sqrt() + 1e-8)).reshape(-1))
    s = torch.cat(P).rsqrt()
    pre = float(torch.linalg.eigvalsh(s[:, None] * H * s[None, :])[-1])
    assert abs(rec["preconditioned_lambda_max"] - pre) < 1e-6 * abs(pre)
    assert np.isclose(rec["preconditioned_threshold"], 38 / 0.01)
    assert np.isclose(rec["threshold"], 2 / 0.01) and rec["threshold_applies"] is False
    assert abs(rec["lambda_max"] - float(torch.linalg.eigvalsh(H)[-1])) < 1e-6 * rec["lambda_max"]


def test_thresholds_and_bad_args():
    assert stability_threshold(0.1) == 20.0 and np.isclose(preconditioned_threshold(0.1), 380.0)
    m, X, y = tiny()
    with pytest.raises(ValueError, match="every"):
        SharpnessTracker(X, y, every=0, lr=0.1, optimizer="sgd")
    with pytest.raises(ValueError, match="lr"):
        SharpnessTracker(X, y, every=1, lr=0.0, optimizer="sgd")
