"""GGN, Fisher (exact, Monte-Carlo) and empirical Fisher operators against dense float64 matrices built
independently (torch.func.jacrev / hessian / per-example autograd) on tiny models; estimators on each."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from landscape_core.curvature_operators import OPERATOR_KINDS, PSD_KINDS, curvature_operator
from landscape_core.density import slq_density
from landscape_core.fisher import EmpiricalFisherOperator, MCFisherOperator, empirical_fisher_operator
from landscape_core.functional import LossFunction
from landscape_core.ggn import GGNOperator, ggn_operator
from landscape_core.hessian import hessian_operator
from landscape_core.lanczos import lanczos
from landscape_core.params import model_hash
from landscape_core.power import power_iteration
from landscape_core.trace import hutchinson

# float64 products of ~100-entry matrices: rounding ~1e-15 relative; 1e-10 leaves room for sums.
TOL = dict(atol=1e-11, rtol=1e-9)


def tiny(batchnorm: bool = False, seed: int = 0, outputs: int = 3, n: int = 20):
    torch.manual_seed(seed)
    layers = [nn.Linear(4, 5)] + ([nn.BatchNorm1d(5)] if batchnorm else []) + [nn.Tanh(), nn.Linear(5, outputs)]
    m = nn.Sequential(*layers)
    if batchnorm:  # non-trivial running statistics, then eval
        m.train()
        with torch.no_grad():
            m(torch.randn(64, 4) * 2 + 0.5)
    m.eval()
    X = torch.randn(n, 4)
    y = torch.randint(0, outputs, (n,)) if outputs > 1 else torch.randn(n)
    return m, X, y


class Reference:
    """Dense float64 quantities of (model, X, y) written without the engine."""

    def __init__(self, m, X, y, names=None):
        self.model = copy.deepcopy(m).double().eval()
        full = {k: v.detach() for k, v in self.model.named_parameters()}
        self.buffers = {k: v.detach() for k, v in self.model.named_buffers()}
        names = list(full) if names is None else names
        self.var = {k: full[k] for k in names}
        self.fixed = {k: v for k, v in full.items() if k not in self.var}
        self.X = X.double()
        self.y = y if not y.is_floating_point() else y.double()
        self.flat = torch.cat([v.reshape(-1) for v in self.var.values()])

    def unflat(self, x):
        d, i = {}, 0
        for k, v in self.var.items():
            d[k] = x[i : i + v.numel()].reshape(v.shape)
            i += v.numel()
        return d

    def outputs(self, x, X=None):
        X = self.X if X is None else X
        return torch.func.functional_call(self.model, {**self.fixed, **self.unflat(x), **self.buffers}, (X,))

    def loss(self, x):
        return nn.functional.cross_entropy(self.outputs(x), self.y)

    def hessian(self):
        return torch.func.hessian(self.loss)(self.flat)

    def jacobian(self):
        return torch.func.jacrev(self.outputs)(self.flat)  # (N, C, P)

    def ggn(self):
        J = self.jacobian()
        p = torch.softmax(self.outputs(self.flat), -1)
        N = len(self.y)
        G = torch.zeros(J.shape[-1], J.shape[-1], dtype=torch.float64)
        for i in range(N):
            Hi = (torch.diag(p[i]) - torch.outer(p[i], p[i])) / N
            G += J[i].T @ Hi @ J[i]
        return G

    def residual(self):
        """sum_{i,k} dL/dz_ik * Hessian of z_ik: the part of the Hessian the GGN leaves out."""
        z = self.outputs(self.flat).detach().requires_grad_(True)
        (c,) = torch.autograd.grad(nn.functional.cross_entropy(z, self.y), z)
        return torch.func.hessian(lambda x: (c * self.outputs(x)).sum())(self.flat)

    def example_grad(self, i, label):
        x = self.flat.clone().requires_grad_(True)
        out = self.outputs(x, self.X[i : i + 1])
        (g,) = torch.autograd.grad(nn.functional.cross_entropy(out, torch.tensor([label])), x)
        return g

    def empirical_fisher(self):
        gs = [self.example_grad(i, int(self.y[i])) for i in range(len(self.y))]
        return sum(torch.outer(g, g) for g in gs) / len(gs)

    def fisher_by_enumeration(self):
        """1/N sum_i sum_c p_ic g_i(c) g_i(c)^T: the expectation over the model's labels, written out."""
        p = torch.softmax(self.outputs(self.flat), -1).detach()
        F = torch.zeros(len(self.flat), len(self.flat), dtype=torch.float64)
        for i in range(len(self.y)):
            for c in range(p.shape[1]):
                g = self.example_grad(i, c)
                F += p[i, c] * torch.outer(g, g)
        return F / len(self.y)


@pytest.mark.parametrize("batchnorm", [False, True])
@pytest.mark.parametrize("mode", ["fwd", "rev", "auto"])
def test_ggn_matches_dense_reference_with_batch_weighting(batchnorm, mode):
    m, X, y = tiny(batchnorm)
    h0 = model_hash(m)
    ref = Reference(m, X, y)
    lf = LossFunction(m, X, y, batch_size=7, dtype=torch.float64)  # batches 7, 7, 6 weighted by size
    op = ggn_operator(lf, mode=mode)
    # "auto": the closed form of mlp_curvature for the plain MLP, autograd with BatchNorm
    assert op.mode == ("rev" if batchnorm else "analytic") if mode == "auto" else op.mode == mode
    G = op.dense()
    assert op.matvecs == op.dim
    assert torch.allclose(G, ref.ggn(), **TOL)
    assert model_hash(m) == h0


def test_ggn_is_psd_and_hessian_minus_ggn_is_the_residual_term():
    m, X, y = tiny(seed=3)
    ref = Reference(m, X, y)
    lf = LossFunction(m, X, y, batch_size=6, dtype=torch.float64)
    G = ggn_operator(lf).dense()
    H = hessian_operator(lf).dense()
    R = ref.residual()
    assert R.abs().max() > 1e-3 * H.abs().max()  # the residual is not negligible here: the test can fail
    assert torch.allclose(H - G, R, **TOL)
    ev = torch.linalg.eigvalsh(G)
    assert ev.min() >= -1e-12 * ev.max()
    assert torch.linalg.eigvalsh(H).min() < -1e-6 * ev.max()  # the Hessian itself is indefinite here


def test_ggn_equals_hessian_for_a_linear_model():
    torch.manual_seed(0)
    m = nn.Linear(4, 3).eval()
    X, y = torch.randn(15, 4), torch.randint(0, 3, (15,))
    lf = LossFunction(m, X, y, batch_size=4, dtype=torch.float64)
    assert torch.allclose(ggn_operator(lf).dense(), hessian_operator(lf).dense(), **TOL)


def test_parameter_subset_is_the_matching_block():
    m, X, y = tiny(batchnorm=True)
    names = ["3.weight", "3.bias"]
    lf = LossFunction(m, X, y, batch_size=8, dtype=torch.float64)
    sub = Reference(m, X, y, names=names)
    for kind, ref in (("ggn", sub.ggn()), ("empirical-fisher", sub.empirical_fisher())):
        op = curvature_operator(kind, lf, names=names)
        assert op.dim == 5 * 3 + 3
        assert torch.allclose(op.dense(), ref, **TOL)
    for kind in OPERATOR_KINDS:  # every kind: the subset operator is the block of the full one
        full = curvature_operator(kind, lf, seed=3).dense()
        block = curvature_operator(kind, lf, names=names, seed=3).dense()
        assert torch.allclose(block, full[-18:, -18:], **TOL)  # names are the last 18 entries


def test_exact_fisher_equals_the_expectation_over_model_labels_and_the_ggn():
    m, X, y = tiny(n=12)
    ref = Reference(m, X, y)
    lf = LossFunction(m, X, y, batch_size=5, dtype=torch.float64)
    F = curvature_operator("fisher", lf).dense()
    assert torch.allclose(F, ref.fisher_by_enumeration(), **TOL)
    assert torch.allclose(F, ggn_operator(lf).dense(), **TOL)


@pytest.mark.parametrize("method", ["per_example", "output"])
def test_empirical_fisher_is_the_mean_of_per_example_outer_products(method):
    m, X, y = tiny(batchnorm=True, seed=1)
    ref = Reference(m, X, y)
    lf = LossFunction(m, X, y, batch_size=7, dtype=torch.float64)
    op = empirical_fisher_operator(lf, method=method)
    E = ref.empirical_fisher()
    assert torch.allclose(op.dense(), E, **TOL)
    assert not torch.allclose(E, ref.ggn(), atol=1e-3)  # a different matrix from the Fisher off a minimum


def test_empirical_fisher_without_cache_gives_the_same_products(monkeypatch):
    m, X, y = tiny()
    lf = LossFunction(m, X, y, batch_size=7, dtype=torch.float64)
    monkeypatch.setattr("landscape_core.fisher.CACHE_ENTRIES", 0)
    op = EmpiricalFisherOperator(lf)
    assert op._cache is None
    v = torch.randn(op.dim, dtype=torch.float64)
    assert torch.allclose(op.matvec(v), Reference(m, X, y).empirical_fisher() @ v, **TOL)


def test_mc_fisher_is_unbiased_over_seeds():
    """The mean of v^T F_mc v over independent seeds converges to v^T F v (within a few standard errors)."""
    m, X, y = tiny(n=16)
    lf = LossFunction(m, X, y, batch_size=6, dtype=torch.float64)
    F = ggn_operator(lf).dense()
    V = torch.randn(F.shape[0], 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    exact = torch.einsum("ij,ik,kj->j", V, F, V)
    draws = torch.stack([torch.einsum("ij,ij->j", V, MCFisherOperator(lf, seed=s).matmat(V)) for s in range(300)])
    mean, se = draws.mean(0), draws.std(0) / np.sqrt(len(draws))
    assert torch.all(se < 0.1 * exact)  # informative: the test resolves the quadratic forms to 10%
    assert torch.all((mean - exact).abs() < 4.5 * se)  # 4.5 sigma: false failure odds ~1e-5 per column
    one = torch.einsum("ij,ij->j", V, MCFisherOperator(lf, seed=0).matmat(V))
    assert not torch.allclose(one, exact, rtol=1e-3)  # a single draw is not the Fisher


def test_mc_fisher_seed_is_reproducible_and_samples_average():
    m, X, y = tiny(n=10)
    lf = LossFunction(m, X, y, batch_size=4, dtype=torch.float64)
    v = torch.randn(sum(p.numel() for p in m.parameters()), dtype=torch.float64)
    a = MCFisherOperator(lf, seed=7, samples=4)
    assert torch.equal(a.matvec(v), a.matvec(v))  # labels drawn once: one fixed matrix
    assert torch.equal(a.matvec(v), MCFisherOperator(lf, seed=7, samples=4).matvec(v))
    D = a.dense()
    assert torch.allclose(D, D.T, **TOL)
    assert torch.linalg.eigvalsh(D).min() >= -1e-12 * torch.linalg.eigvalsh(D).max()


def test_mse_ggn_and_mc_fisher():
    m, X, y = tiny(outputs=1, n=14)
    lf = LossFunction(m, X, y, batch_size=5, loss="mse", dtype=torch.float64)
    ref = Reference(m, X, y)
    J = ref.jacobian()[:, 0, :]  # (N, P)
    G_ref = J.T @ J / len(y)  # 0.5 * mean squared error: H_out = 1/N per example
    assert torch.allclose(ggn_operator(lf).dense(), G_ref, **TOL)
    v = torch.randn(G_ref.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    draws = torch.tensor([float(v @ MCFisherOperator(lf, seed=s).matvec(v)) for s in range(300)])
    exact = float(v @ G_ref @ v)
    assert abs(draws.mean() - exact) < 4.5 * draws.std() / np.sqrt(len(draws))


def test_float32_operators_agree_with_float64():
    m, X, y = tiny()
    lf = LossFunction(m, X, y, batch_size=7)
    ref = Reference(m, X, y)
    for kind, R in (("ggn", ref.ggn()), ("empirical-fisher", ref.empirical_fisher())):
        op = curvature_operator(kind, lf)
        assert op.dtype == torch.float32
        # float32 sums of ~100 terms: ~1e-6 relative to the matrix scale
        assert torch.allclose(op.dense().double(), R, atol=1e-5 * float(R.abs().max()), rtol=0)
        op64 = curvature_operator(kind, lf, dtype=torch.float64)
        assert torch.allclose(op64.dense(), R, **TOL)


@pytest.mark.parametrize("kind", list(OPERATOR_KINDS))
def test_every_estimator_runs_on_every_operator(kind):
    m, X, y = tiny(seed=2)
    lf = LossFunction(m, X, y, batch_size=7, dtype=torch.float64)
    op = curvature_operator(kind, lf, seed=1)
    A = op.dense()
    assert torch.allclose(A, A.T, **TOL)
    ev = torch.linalg.eigvalsh(A)
    if kind in PSD_KINDS:
        assert ev.min() >= -1e-12 * ev.max()
    top = lanczos(op, 3, tol=1e-10)
    assert np.allclose(top.eigenvalues.numpy(), ev.flip(0)[:3].numpy(), rtol=1e-8, atol=1e-12)
    pw = power_iteration(op, 1, tol=1e-6, max_iter=3000)
    assert abs(float(pw.eigenvalues[0]) - float(ev.abs().max())) <= 1e-3 * float(ev.abs().max())
    tr = hutchinson(op, 200, seed=0)
    assert abs(tr.mean - float(ev.sum())) < 5 * tr.stderr
    dens = slq_density(op, num_probes=2, lanczos_steps=20)
    assert np.isfinite(dens.density).all() and dens.density.sum() > 0


def test_factory_errors_and_determinism_check():
    m, X, y = tiny(batchnorm=True)
    lf = LossFunction(m, X, y)
    with pytest.raises(ValueError, match="unknown curvature operator 'newton'"):
        curvature_operator("newton", lf)
    with pytest.raises(ValueError, match="samples"):
        curvature_operator("fisher-mc", lf, mc_samples=0)
    lf.model.train()
    for kind in OPERATOR_KINDS:
        with pytest.raises(ValueError, match="train mode"):
            curvature_operator(kind, lf)
    assert isinstance(curvature_operator("ggn", lf, check=False), GGNOperator)
