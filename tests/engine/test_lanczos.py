"""Lanczos and power iteration against dense float64 Hessians and known-spectrum operators."""

import numpy as np
import pytest
import torch
from torch import nn

from landscape_core.exact import dense_hessian
from landscape_core.functional import LossFunction
from landscape_core.hessian import hessian_operator
from landscape_core.lanczos import condition_number, lanczos
from landscape_core.operators import DiagonalOperator
from landscape_core.params import model_hash
from landscape_core.power import power_iteration


@pytest.fixture(scope="module")
def mlp_hessian():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).eval()
    X, y = torch.randn(20, 4), torch.randint(0, 3, (20,))
    lf = LossFunction(m, X, y, batch_size=7, dtype=torch.float64)
    H = dense_hessian(lf)
    return m, lf, H, torch.linalg.eigvalsh(H)


def test_top5_matches_eigvalsh(mlp_hessian):
    m, lf, H, ev = mlp_hessian
    h0 = model_hash(m)
    op = hessian_operator(lf)
    r = lanczos(op, k=5, tol=1e-10)
    exact = ev.flip(0)[:5]
    rel = ((r.eigenvalues - exact).abs() / exact.abs()).max()
    assert rel <= 1e-6
    assert r.converged and r.matvecs == op.matvecs and r.iterations <= op.dim
    # reported residuals are the true ||H v - lambda v||
    Hv = H @ r.eigenvectors
    true_res = (Hv - r.eigenvectors * r.eigenvalues).norm(dim=0)
    assert torch.allclose(true_res, r.residuals, atol=1e-9)
    assert torch.allclose(r.eigenvectors.T @ r.eigenvectors, torch.eye(5, dtype=torch.float64), atol=1e-10)
    assert model_hash(m) == h0


def test_smallest_finds_negative_eigenvalue(mlp_hessian):
    _, _, H, ev = mlp_hessian
    assert ev[0] < 0  # this tiny net is not at a minimum
    r = lanczos(H, k=2, which="smallest", tol=1e-10)
    assert torch.allclose(r.eigenvalues, ev[:2], rtol=1e-8, atol=1e-12)
    r = lanczos(H, k=3, which="both", tol=1e-10)
    assert torch.allclose(r.eigenvalues, torch.stack([ev[-1], ev[-2], ev[0]]), atol=1e-10)
    mag = ev[ev.abs().argsort(descending=True)][:3]
    r = lanczos(H, k=3, which="magnitude", tol=1e-10)
    assert torch.allclose(r.eigenvalues, mag, atol=1e-10)


def test_no_ghost_duplicates_with_large_gap():
    # one isolated top eigenvalue 100 and the rest in [0, 1]: full reorthogonalisation must not
    # report 100 twice, however long the Krylov space grows
    d = torch.cat([torch.tensor([100.0]), torch.linspace(0, 1, 399)]).double()
    r = lanczos(DiagonalOperator(d), k=3, tol=1e-10, max_iter=120)
    assert abs(r.eigenvalues[0] - 100) < 1e-9
    assert abs(r.eigenvalues[1] - 1.0) < 1e-6 and r.eigenvalues[1] < 1.0 + 1e-9


def test_repeated_and_clustered_top_eigenvalues():
    rest = torch.linspace(0, 1, 45).double()
    d = torch.cat([torch.tensor([50.0, 50.0, 49.999]).double(), rest])
    r = lanczos(DiagonalOperator(d), k=4, tol=1e-10)
    assert torch.allclose(r.eigenvalues, torch.tensor([50.0, 50.0, 49.999, 1.0]).double(), atol=1e-8)
    # the two copies of 50 are distinct eigenvectors, not one vector twice
    V = r.eigenvectors
    assert torch.allclose(V.T @ V, torch.eye(4, dtype=torch.float64), atol=1e-8)


def test_warm_start_uses_fewer_matvecs(mlp_hessian):
    _, _, H, _ = mlp_hessian
    cold = lanczos(H, k=1, tol=1e-8)
    warm = lanczos(H, k=1, tol=1e-8, v0=cold.eigenvectors[:, 0])
    assert warm.matvecs < cold.matvecs and abs(warm.eigenvalues[0] - cold.eigenvalues[0]) < 1e-10


def test_lanczos_float32_dense_tensor():
    g = torch.Generator().manual_seed(3)
    Q, _ = torch.linalg.qr(torch.randn(200, 200, generator=g, dtype=torch.float64))
    lam = torch.cat([torch.tensor([10.0, 7.0, 5.0]), torch.rand(197, generator=g)]).double()
    A = (Q * lam) @ Q.T
    r = lanczos(A.float(), k=3, tol=1e-5)
    assert torch.allclose(r.eigenvalues, torch.tensor([10.0, 7.0, 5.0], dtype=torch.float64), rtol=1e-5)


def test_power_iteration_top_and_negative_dominant():
    d = torch.tensor([3.0, -1.0, 0.5, 2.0, -0.2]).double()
    r = power_iteration(DiagonalOperator(d), k=2, tol=1e-8, max_iter=5000)
    assert torch.allclose(r.eigenvalues, torch.tensor([3.0, 2.0]).double(), atol=1e-6)
    d = torch.tensor([-5.0, 1.0, 2.0, 0.3]).double()
    r = power_iteration(DiagonalOperator(d), k=1, tol=1e-8, max_iter=5000)
    assert abs(r.eigenvalues[0] + 5.0) < 1e-6 and r.converged
    assert r.residuals[0] <= 1e-8 * 5.0 + 1e-12


def test_power_iteration_matches_dense(mlp_hessian):
    _, lf, H, ev = mlp_hessian
    r = power_iteration(H, k=2, tol=1e-6, max_iter=3000)
    top = ev[ev.abs().argsort(descending=True)][:2]
    assert torch.allclose(r.eigenvalues, top, rtol=1e-5)


def test_bad_arguments():
    A = torch.eye(4, dtype=torch.float64)
    with pytest.raises(ValueError, match="k must be between 1 and the operator size 4, got 5"):
        lanczos(A, k=5)
    with pytest.raises(ValueError, match="which"):
        lanczos(A, k=1, which="top")
    with pytest.raises(ValueError, match="k must be"):
        power_iteration(A, k=0)


def test_condition_number():
    c = condition_number([4.0, 2.0, 0.5, -1.0])
    assert c["lambda_max"] == 4.0 and c["lambda_min_positive"] == 0.5 and c["ratio"] == 8.0
    assert c["has_negative"] and np.isclose(c["negative_mass"], 1.0 / 7.5)
    c = condition_number([-1.0, -2.0])
    assert c["ratio"] is None and c["negative_mass"] == 1.0


def test_value_tol_stops_earlier_with_accurate_eigenvalues():
    """Known spectrum 1..200 plus a well-separated top: the quadratic bound |lambda - theta| <= r^2/gap
    lets the eigenvalues stop earlier, and they still meet the requested accuracy."""
    ev = torch.cat([torch.linspace(0.0, 1.0, 200, dtype=torch.float64), torch.tensor([3.0, 4.0, 5.0], dtype=torch.float64)])
    A = torch.diag(ev)
    full = lanczos(A, 3, tol=1e-10)
    fast = lanczos(A, 3, tol=1e-10, value_tol=1e-10)
    assert fast.matvecs < full.matvecs
    assert np.allclose(fast.eigenvalues.numpy(), [5.0, 4.0, 3.0], rtol=0, atol=1e-10 * 5.0)
    assert np.allclose(full.eigenvalues.numpy(), [5.0, 4.0, 3.0], rtol=0, atol=1e-10 * 5.0)
    with pytest.raises(ValueError, match="value_tol"):
        lanczos(A, 3, value_tol=0.0)


def test_ritz_values_bound_the_smallest_eigenvalue_for_free():
    ev = torch.linspace(-2.0, 10.0, 300, dtype=torch.float64)
    r = lanczos(torch.diag(ev), 2, tol=1e-8)
    assert r.ritz_values is not None and len(r.ritz_values) == r.iterations
    assert torch.all(r.ritz_values[1:] >= r.ritz_values[:-1])  # ascending
    # Cauchy interlacing: the smallest Ritz value is >= lambda_min, and the top ones match
    assert float(r.ritz_values[0]) >= -2.0 - 1e-12
    assert float(r.ritz_values[-1]) == pytest.approx(10.0, abs=1e-7)


def test_lockstep_tridiagonals_equal_separate_runs_including_early_breakdown():
    from landscape_core.lanczos import lanczos_tridiagonal, lanczos_tridiagonals
    from landscape_core.operators import DenseOperator

    g = torch.Generator().manual_seed(4)
    Q, _ = torch.linalg.qr(torch.randn(12, 12, generator=g, dtype=torch.float64))
    A = (Q * torch.linspace(-2, 5, 12, dtype=torch.float64)) @ Q.T
    V0 = torch.randn(12, 3, generator=g, dtype=torch.float64)
    V0[:, 1] = Q[:, 0] + Q[:, 3]  # lies in a 2-dimensional invariant subspace: breaks down after 2 steps
    op = DenseOperator(A)
    block = lanczos_tridiagonals(op, V0, 8)
    assert op.matvecs == 8 + 2 + 8
    for p in range(3):
        a, b = lanczos_tridiagonal(A, V0[:, p], 8)
        assert len(block[p][0]) == len(a) and len(block[p][1]) == len(b)
        # same arithmetic column by column; matmat vs matvec may differ in the last bits only
        np.testing.assert_allclose(block[p][0], a, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(block[p][1], b, rtol=1e-12, atol=1e-12)
    assert len(block[1][0]) == 2  # the invariant-subspace start stopped at its breakdown
    with pytest.raises(ValueError, match="zero"):
        lanczos_tridiagonals(A, torch.zeros(12, 2, dtype=torch.float64), 3)
