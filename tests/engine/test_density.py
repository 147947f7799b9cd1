"""SLQ spectral density: normalisation, first moment = trace / n, exact nodes with full Lanczos."""

import numpy as np
import pytest
import torch

from landscape_core.density import slq_density, smooth
from landscape_core.operators import DiagonalOperator


def sym(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    lam = torch.cat([torch.tensor([20.0, 10.0]), torch.randn(n - 2, generator=g)]).double()
    return (Q * lam) @ Q.T, lam


def test_density_integrates_to_one_and_first_moment_diagonal():
    d = torch.linspace(-1, 5, 80).double()
    r = slq_density(DiagonalOperator(d), num_probes=3, lanczos_steps=30, seed=0)
    assert np.isclose(np.trapezoid(r.density, r.grid), 1.0, atol=1e-4)
    # with Rademacher probes z^T D z = tr(D) exactly, so the first moment is exactly tr/n
    m1 = np.trapezoid(r.grid * r.density, r.grid)
    assert np.isclose(m1, float(d.mean()), atol=1e-4)
    for th, w in zip(r.ritz_values, r.ritz_weights):
        assert np.isclose(w.sum(), 1.0) and th.min() >= -1 - 1e-9 and th.max() <= 5 + 1e-9
    assert r.matvecs == 3 * 30


def test_first_moment_matches_trace_within_stderr():
    A, lam = sym(40, seed=1)
    r = slq_density(A, num_probes=60, lanczos_steps=20, seed=2)
    per_probe = np.array([(th * w).sum() for th, w in zip(r.ritz_values, r.ritz_weights)])
    m1 = np.trapezoid(r.grid * r.density, r.grid)
    assert np.isclose(m1, per_probe.mean(), rtol=1e-4, atol=1e-4)
    se = per_probe.std(ddof=1) / np.sqrt(len(per_probe))
    assert abs(m1 - float(lam.mean())) < 4 * se


def test_full_lanczos_recovers_spectrum_and_outliers():
    A, lam = sym(40, seed=3)
    r = slq_density(A, num_probes=1, lanczos_steps=40, seed=0)
    assert np.allclose(np.sort(r.ritz_values[0]), np.sort(lam.numpy()), atol=1e-8)
    # the isolated outlier at 20 carries mass: density near 20 is positive, zero in the gap
    assert r.density[np.argmin(np.abs(r.grid - 20))] > 0
    assert r.density[np.argmin(np.abs(r.grid - 15))] < 1e-8


def test_smooth_can_resmooth_without_matvecs():
    d = torch.linspace(0, 1, 50).double()
    r = slq_density(DiagonalOperator(d), num_probes=2, lanczos_steps=10, sigma=0.05, grid_size=300)
    assert np.isclose(r.sigma, 0.05 * (max(x.max() for x in r.ritz_values) - min(x.min() for x in r.ritz_values)))
    grid = np.linspace(-1, 2, 2000)
    dens = smooth(r.ritz_values, r.ritz_weights, grid, sigma=0.01)
    assert np.isclose(np.trapezoid(dens, grid), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="sigma"):
        smooth(r.ritz_values, r.ritz_weights, grid, sigma=0)
    assert set(r.to_dict()) >= {"grid", "density", "ritz_values", "ritz_weights", "sigma"}


def test_lockstep_probes_give_the_same_density_as_sequential(monkeypatch):
    import landscape_core.density as density
    from landscape_core.operators import DenseOperator

    A, _ = sym(40, seed=2)
    op = DenseOperator(A)
    a = slq_density(op, num_probes=3, lanczos_steps=15, seed=5)
    assert op.matvecs == 45
    monkeypatch.setattr(density, "LOCKSTEP_BYTES", 0)  # one probe after the other
    b = slq_density(A, num_probes=3, lanczos_steps=15, seed=5)
    for x, y in zip(a.ritz_values + a.ritz_weights, b.ritz_values + b.ritz_weights):
        np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-12)  # float64, 40-term dot products
    np.testing.assert_allclose(a.density, b.density, rtol=1e-9, atol=1e-12)
