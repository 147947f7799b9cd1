"""Trace estimators: unbiasedness over seeds, 1/sqrt(N) error decay, honest standard errors,
Hutch++ beating Hutchinson on a low-rank-dominated operator, exact trace of a tiny MLP Hessian."""

import numpy as np
import pytest
import torch
from torch import nn

from landscape_core.exact import dense_hessian
from landscape_core.functional import LossFunction
from landscape_core.hessian import hessian_operator
from landscape_core.params import model_hash
from landscape_core.trace import hutchinson, hutchinson_to_stderr, hutchpp


def sym(n=30, seed=0, top=()):
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    lam = torch.randn(n, generator=g, dtype=torch.float64)
    lam[: len(top)] = torch.tensor(top, dtype=torch.float64)
    return (Q * lam) @ Q.T


@pytest.mark.parametrize("distribution", ["rademacher", "gaussian"])
def test_hutchinson_unbiased_and_error_decays(distribution):
    A = sym(30, seed=1)
    tr = float(A.trace())
    errs = {}
    for N in (4, 64):
        runs = [hutchinson(A, N, distribution=distribution, seed=s) for s in range(100)]
        means = np.array([r.mean for r in runs])
        assert all(r.matvecs == N for r in runs)
        # the grand mean converges to the exact trace: tolerance from its standard error
        se = means.std(ddof=1) / np.sqrt(len(means))
        assert abs(means.mean() - tr) < 4 * se
        errs[N] = np.sqrt(np.mean((means - tr) ** 2))
    # RMS error shrinks like 1/sqrt(N): 16x the probes -> ~4x smaller
    assert 2.5 < errs[4] / errs[64] < 6.0


def test_hutchinson_stderr_is_honest():
    A = sym(30, seed=2)
    tr = float(A.trace())
    z = np.array([(r.mean - tr) / r.stderr for r in (hutchinson(A, 30, seed=s) for s in range(300))])
    assert 0.7 < np.mean(z**2) < 1.4
    assert np.mean(np.abs(z) < 2) > 0.88


def test_running_mean_and_estimates():
    A = sym(10, seed=3)
    r = hutchinson(A, 5, seed=0)
    assert len(r.estimates) == 5 and np.isclose(r.running_mean[-1], r.mean)
    assert np.isclose(r.stderr, np.std(r.estimates, ddof=1) / np.sqrt(5))
    d = r.to_dict()
    assert set(d) >= {"mean", "stderr", "matvecs", "estimates", "running_mean"}


def test_hutchpp_beats_hutchinson_on_low_rank_dominated_operator():
    A = sym(200, seed=4, top=(300.0, 250.0, 200.0, 150.0, 100.0, 80.0, 60.0, 40.0))
    tr = float(A.trace())
    e_h = [hutchinson(A, 60, seed=s).mean - tr for s in range(40)]
    pp = [hutchpp(A, 60, seed=s) for s in range(40)]
    e_pp = [r.mean - tr for r in pp]
    assert all(r.matvecs == 60 for r in pp)
    rms_h, rms_pp = np.sqrt(np.mean(np.square(e_h))), np.sqrt(np.mean(np.square(e_pp)))
    assert rms_pp < rms_h / 5
    # Hutch++ is unbiased as well and its stderr is of the right size
    assert abs(np.mean(e_pp)) < 4 * np.std(e_pp, ddof=1) / np.sqrt(len(e_pp))
    z = np.array([e / r.stderr for e, r in zip(e_pp, pp)])
    assert 0.4 < np.mean(z**2) < 2.5


def test_krylov_hutchpp_unbiased_and_better_than_random_sketch():
    A = sym(200, seed=4, top=(300.0, 250.0, 200.0, 150.0, 100.0, 80.0, 60.0, 40.0))
    tr = float(A.trace())
    kr = [hutchpp(A, 60, sketch="krylov", seed=s) for s in range(40)]
    assert all(r.matvecs == 60 and r.method == "krylov-hutch++" for r in kr)
    e_kr = np.array([r.mean - tr for r in kr])
    e_pp = np.array([hutchpp(A, 60, seed=s).mean - tr for s in range(40)])
    assert abs(e_kr.mean()) < 4 * e_kr.std(ddof=1) / np.sqrt(len(e_kr))
    assert np.sqrt(np.mean(e_kr**2)) < np.sqrt(np.mean(e_pp**2))
    z = e_kr / np.array([r.stderr for r in kr])
    assert 0.4 < np.mean(z**2) < 2.5


def test_hutchpp_exact_for_low_rank():
    g = torch.Generator().manual_seed(5)
    U = torch.randn(50, 4, generator=g, dtype=torch.float64)
    A = U @ U.T
    for sketch in ("random", "krylov"):
        r = hutchpp(A, 15, sketch=sketch)
        assert abs(r.mean - float(A.trace())) < 1e-9 * float(A.trace())
        assert r.stderr < 1e-9


def test_hutchinson_to_stderr_stops_on_target():
    A = sym(30, seed=6)
    r = hutchinson_to_stderr(A, target_stderr=0.5, max_probes=5000, seed=0)
    assert r.stderr <= 0.5 and 10 <= r.matvecs < 5000
    r2 = hutchinson_to_stderr(A, target_stderr=1e-9, max_probes=20, seed=0)
    assert r2.matvecs == 20


def test_trace_of_mlp_hessian_operator():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).eval()
    X, y = torch.randn(20, 4), torch.randint(0, 3, (20,))
    lf = LossFunction(m, X, y, batch_size=7, dtype=torch.float64)
    h0 = model_hash(m)
    tr = float(dense_hessian(lf).trace())
    r = hutchinson(hessian_operator(lf), 25, seed=0)
    assert abs(r.mean - tr) < 4 * r.stderr
    assert model_hash(m) == h0


def test_bad_arguments():
    A = torch.eye(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="num_probes"):
        hutchinson(A, 0)
    with pytest.raises(ValueError, match="distribution"):
        hutchinson(A, 3, distribution="uniform")
    with pytest.raises(ValueError, match="num_matvecs >= 3"):
        hutchpp(A, 2)


class _BlockCounter:
    """A dense operator that records how many columns each product had."""

    def __init__(self, A):
        from landscape_core.operators import DenseOperator

        self.op = DenseOperator(A)
        self.widths: list[int] = []
        orig = self.op.matmat

        def matmat(V):
            self.widths.append(V.shape[1])
            return orig(V)

        self.op.matmat = matmat


def test_probes_go_in_blocks_and_match_single_probe_formula():
    from landscape_core import trace

    A = sym(30, seed=3)
    c = _BlockCounter(A)
    r = hutchinson(c.op, 20, seed=7)
    assert c.widths == [trace.BLOCK, 20 - trace.BLOCK] and r.matvecs == 20
    gen = torch.Generator().manual_seed(7)  # the same probes, drawn one at a time
    zs = [torch.randint(0, 2, (30, 1), generator=gen, dtype=torch.int8).double()[:, 0] * 2 - 1 for _ in range(20)]
    np.testing.assert_allclose(r.estimates, [float(z @ A @ z) for z in zs], rtol=1e-12, atol=1e-12)
    # stopping rule unchanged: min_probes in one block, then one probe per decision
    c2 = _BlockCounter(A)
    s = hutchinson_to_stderr(c2.op, 1e-9, 14, min_probes=10, seed=7)
    assert c2.widths == [10] and s.matvecs == 14
    np.testing.assert_allclose(s.estimates, r.estimates[:14], rtol=1e-12, atol=1e-12)
    c3 = _BlockCounter(A)
    k = hutchpp(c3.op, 24, sketch="krylov", sketch_size=4, seed=1)
    assert c3.widths == [trace.BLOCK, 20 - trace.BLOCK] and k.matvecs == 24  # 4 Lanczos steps, 20 probes
