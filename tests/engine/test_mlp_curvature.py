"""Closed-form MLP curvature (``mlp_curvature.py``), the ``"analytic"`` HVP mode, the GGN control-variate
trace and the determinism whitelist, against dense float64 references (``dense_hessian`` and the GGN's
columns from ``ggn_operator``).

Tolerances: the float64 checks allow ``1e-10`` relative to the scale of the quantity compared (the
observed errors are ~1e-16 relative, a few ulps of the accumulation); the float32 check bounds the
rounding of float32 accumulations (see its comment)."""

import numpy as np
import pytest
import torch
from torch import nn

from landscape_core import mlp_curvature as mlp_mod
from landscape_core.analyses.hessian import analyze_hessian, ggn_cv_trace
from landscape_core.determinism import check_deterministic
from landscape_core.exact import dense_hessian
from landscape_core.functional import LossFunction
from landscape_core.ggn import ggn_operator
from landscape_core.hessian import hessian_operator
from landscape_core.lanczos import lanczos
from landscape_core.mlp_chain import ACT_FORWARD, parse_chain
from landscape_core.mlp_curvature import mlp_curvature
from landscape_core.model_chain import chain_leaves
from landscape_core.models import MLP
from landscape_core.trace import control_variate_trace, hutchinson

F64 = torch.float64
RTOL = 1e-10  # float64: relative to the scale of the compared quantity (observed ~1e-16)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def assert_close(a: torch.Tensor, b: torch.Tensor, scale: float, rtol: float = RTOL) -> None:
    err = float((a.double() - b.double()).abs().max())
    assert err <= rtol * scale, f"max error {err:.3g} > {rtol:g} x scale {scale:.3g}"


def chain_model(act: nn.Module, out: int) -> nn.Sequential:
    """Flatten, Linear(6,5), act, Linear(5,4), act (the *same* instance twice), eval Dropout, Linear(4,out)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 5), act, nn.Linear(5, 4), act, nn.Dropout(0.3),
                         nn.Linear(4, out)).to(F64).eval()


def chain_data(loss: str):
    g = gen(0)
    X = 1.5 * torch.randn(20, 2, 3, generator=g, dtype=F64)  # x1.5: Softplus(beta=2, threshold=3) hits both branches
    y = torch.randint(0, 3, (20,), generator=g) if loss == "cross_entropy" else torch.randn(20, 2, generator=g, dtype=F64)
    return X, y


def dense_ggn(lf: LossFunction, names=None) -> torch.Tensor:
    """The GGN from the autograd GGN operator's columns (independent of mlp_curvature)."""
    G = ggn_operator(lf, names=names, dtype=F64, mode="rev").dense()  # "auto" would be the closed form
    return 0.5 * (G + G.T)


def offsets(lf: LossFunction) -> dict[str, slice]:
    """Slices of each parameter in the flat vector of all parameters (``named_parameters`` order)."""
    out, i = {}, 0
    for k, v in lf.params0.items():
        out[k] = slice(i, i + v.numel())
        i += v.numel()
    return out


ACTIVATIONS = {
    "tanh": lambda: nn.Tanh(),
    "sigmoid": lambda: nn.Sigmoid(),
    "relu": lambda: nn.ReLU(),
    "leaky_relu": lambda: nn.LeakyReLU(0.1),
    "elu": lambda: nn.ELU(0.7),
    "gelu": lambda: nn.GELU(),
    "softplus": lambda: nn.Softplus(beta=2, threshold=3),
    "identity": lambda: nn.Identity(),
}


# -- 1. every supported activation x loss against the dense Hessian and GGN ---------------------------
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("act_name", list(ACTIVATIONS))
def test_analytic_matches_dense_hessian_and_ggn(act_name, loss):
    act = ACTIVATIONS[act_name]()
    m = chain_model(act, 3 if loss == "cross_entropy" else 2)
    X, y = chain_data(loss)
    lf = LossFunction(m, X, y, batch_size=8, loss=loss)  # batches of 8, 8, 4 weighted by size
    assert [len(b[1]) for b in lf.batches] == [8, 8, 4]

    # the data exercise both sides of every piecewise activation (and Softplus's linear branch)
    with torch.no_grad():
        y1 = m[1](m[0](X))
    assert (y1 > 0).any() and (y1 < 0).any()
    if act_name == "softplus":
        assert (2 * y1 > 3).any() and (2 * y1 <= 3).any()

    H = dense_hessian(lf)
    G = dense_ggn(lf)
    n = H.shape[0]
    hs = float(H.abs().max())
    # H - G is far from zero: the residual and GGN checks below are not vacuous
    assert float((H - G).abs().max()) > 1e-2 * hs

    # (a) the "analytic" operator: single products and a block of 3
    op = hessian_operator(lf, mode="analytic")
    assert op.mode == "analytic"
    g = gen(1)
    v = torch.randn(n, generator=g, dtype=F64)
    V = torch.randn(n, 3, generator=g, dtype=F64)
    assert_close(op.matvec(v), H @ v, hs * float(v.abs().sum()))
    assert_close(op.matmat(V), H @ V, hs * float(V.abs().sum(0).max()))
    assert op.mode == "analytic" and op.matvecs == 4
    mc = op.analytic
    assert mc is not None and mc.names == list(lf.params0)  # chain order = parameter order here
    assert mc.state_bytes > 0

    # "auto" takes the analytic path on this model
    auto = hessian_operator(lf)
    auto.resolve()
    assert auto.mode == "analytic" and auto.analytic is not None
    assert_close(auto.matvec(v), H @ v, hs * float(v.abs().sum()))

    # (b) the exact GGN trace, split over parameters = traces of G's diagonal blocks
    parts = mc.ggn_trace_parts()
    assert list(parts) == mc.names
    gd = float(G.diagonal().abs().sum())
    assert abs(sum(parts.values()) - float(G.trace())) <= RTOL * gd
    for name, sl in offsets(lf).items():
        assert abs(parts[name] - float(G[sl, sl].trace())) <= RTOL * gd, name

    # (c) z^T (H - G) z for a block of probes; (d) G Z
    Z = torch.randn(5, n, generator=g, dtype=F64)
    rq = mc.residual_quadratic(Z)
    assert rq.dtype == F64 and rq.shape == (5,)
    ref = ((Z @ (H - G)) * Z).sum(1)
    assert_close(rq, ref, float((H - G).abs().max()) * float(Z.abs().sum(1).max()) ** 2)
    assert_close(mc.products(Z, ggn=True), Z @ G, float(G.abs().max()) * float(Z.abs().sum(1).max()))
    assert_close(mc.products(Z), Z @ H, hs * float(Z.abs().sum(1).max()))


# -- 2. parameter subsets, in the order given ---------------------------------------------------------
def test_parameter_subset_and_reversed_order():
    m = chain_model(nn.Tanh(), 3)
    X, y = chain_data("cross_entropy")
    lf = LossFunction(m, X, y, batch_size=8)
    H = dense_hessian(lf)
    hs = float(H.abs().max())
    off = offsets(lf)
    idx = {k: torch.arange(s.start, s.stop) for k, s in off.items()}

    op = hessian_operator(lf, names=["3.weight", "3.bias"], mode="analytic")
    cols = torch.cat([idx["3.weight"], idx["3.bias"]])
    A = op.dense()
    assert op.mode == "analytic" and A.shape == (24, 24)
    assert_close(A, H[cols][:, cols], hs)

    # the names order defines the vector order: a reversed subset is the permuted block
    rev = ["6.bias", "3.bias", "1.weight"]
    cols = torch.cat([idx[k] for k in rev])
    op = hessian_operator(lf, names=rev, mode="analytic")
    A = op.dense()
    assert op.mode == "analytic" and A.shape == (3 + 4 + 30,) * 2
    assert_close(A, H[cols][:, cols], hs)
    # residual quadratic forms through the operator's own order (zero outside the subset)
    G = dense_ggn(lf, names=rev)
    Z = torch.randn(4, op.dim, generator=gen(2), dtype=F64)
    assert_close(op.analytic_rows(Z, "residual_quadratic"), ((Z @ (A - G)) * Z).sum(1),
                 hs * float(Z.abs().sum(1).max()) ** 2)

    # ggn_cv_trace on a block is unbiased for the block's trace: 100 seeds x 16 probes, 4 standard errors
    means = np.array([ggn_cv_trace(op, 16, seed=s).mean for s in range(100)])
    se = means.std(ddof=1) / np.sqrt(len(means))
    assert abs(means.mean() - float(A.trace())) < 4 * se


def test_other_point_release_dtype_and_budget():
    torch.manual_seed(3)
    m = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3, bias=False))
    g = gen(3)
    X, y = torch.randn(20, 4, generator=g), torch.randint(0, 3, (20,), generator=g)
    lf32 = LossFunction(m, X, y, batch_size=8)  # float32 model, float64 operator
    pt = {"0.weight": torch.randn(5, 4, generator=g)}  # a partial point: other entries from params0
    op = hessian_operator(lf32, pt, mode="analytic", dtype=F64)
    H = dense_hessian(lf32, pt)
    A = op.dense()
    assert A.dtype == F64 and op.analytic.names == ["0.weight", "0.bias", "2.weight"]
    assert_close(A, H, float(H.abs().max()))
    # release drops the state; the next product rebuilds it with the same numbers
    v = torch.randn(op.dim, generator=g, dtype=F64)
    before = op.matvec(v)
    op.release()
    assert op.analytic is None and op.graph_bytes == 0
    assert torch.equal(op.matvec(v), before) and op.analytic is not None
    # "auto" takes the analytic state only within the memory budget
    op0 = hessian_operator(lf32, memory_budget=0)
    op0.resolve()
    assert op0.mode in ("rev_rev", "fwd_rev") and op0.analytic is None


# -- 3. models that are not plain chains fall back to autograd -----------------------------------------
class CustomNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 5), nn.Linear(5, 3)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


def _tied():
    shared = nn.Linear(5, 5)
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), shared, nn.Tanh(), shared, nn.Tanh(), nn.Linear(5, 3))


NON_PLAIN = {
    "batchnorm_mlp": lambda: MLP((4,), 3, width=5, depth=1, activation="tanh", batchnorm=True),
    "leading_activation": lambda: nn.Sequential(nn.Tanh(), nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)),
    "trailing_activation": lambda: nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3), nn.Tanh()),
    "doubled_activation": lambda: nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Tanh(), nn.Linear(5, 3)),
    "custom_module": CustomNet,
    "gelu_tanh": lambda: nn.Sequential(nn.Linear(4, 5), nn.GELU(approximate="tanh"), nn.Linear(5, 3)),
    "tied_weights": _tied,
}


@pytest.mark.parametrize("kind", list(NON_PLAIN))
def test_non_plain_models_fall_back(kind):
    torch.manual_seed(4)
    m = NON_PLAIN[kind]()
    if kind == "batchnorm_mlp":  # non-trivial running statistics
        m.train()
        with torch.no_grad():
            m(2 * torch.randn(64, 4) + 0.5)
    g = gen(4)
    X, y = torch.randn(20, 4, generator=g, dtype=F64), torch.randint(0, 3, (20,), generator=g)
    lf = LossFunction(m, X, y, batch_size=8, dtype=F64)
    # the chain parser refuses all but the tied weights (parsed, then declined: "2.weight" is no parameter);
    # the forward self-check would catch a misparse too, so the parser is asserted on its own
    assert (parse_chain(lf.model) is None) == (kind != "tied_weights")
    assert mlp_curvature(lf) is None
    H = dense_hessian(lf)
    op = hessian_operator(lf)
    op.resolve()
    assert op.mode == "retained" and op.analytic is None
    V = torch.randn(op.dim, 3, generator=g, dtype=F64)
    assert_close(op.matmat(V), H @ V, float(H.abs().max()) * float(V.abs().sum(0).max()))
    assert ggn_cv_trace(op, 8) is None
    with pytest.raises(ValueError, match="mode 'analytic' needs a plain MLP"):
        hessian_operator(lf, mode="analytic").resolve()
    with pytest.raises(ValueError, match="mode 'analytic' needs a plain MLP"):
        hessian_operator(lf, mode="analytic").matvec(V[:, 0])


# -- 4. the self-check: a forward that disagrees with the model's loss is declined -------------------
def _tanh_lf():
    torch.manual_seed(5)
    m = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    g = gen(5)
    X, y = torch.randn(20, 4, generator=g, dtype=F64), torch.randint(0, 3, (20,), generator=g)
    return LossFunction(m, X, y, batch_size=8, dtype=F64)


def test_self_check_declines_a_misread_forward(monkeypatch):
    lf = _tanh_lf()
    assert mlp_curvature(lf) is not None
    H = dense_hessian(lf)
    # a wrong tanh in the analytic forward (the derivatives would be consistent with it)
    monkeypatch.setitem(ACT_FORWARD, nn.Tanh, lambda mod, y: torch.tanh(1.001 * y))
    assert mlp_curvature(lf) is None
    op = hessian_operator(lf)
    op.resolve()
    assert op.mode == "retained"
    V = torch.randn(op.dim, 2, generator=gen(6), dtype=F64)
    assert_close(op.matmat(V), H @ V, float(H.abs().max()) * float(V.abs().sum(0).max()))


def test_self_check_declines_broadcasting_mse_targets():
    # (N, 1) targets with a 1-output net: the engine's loss 0.5 * mean((out.squeeze(-1) - y)^2) broadcasts
    # to N x N; the analytic forward (per-example residuals) disagrees, so it declines.
    torch.manual_seed(6)
    m = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 1))
    g = gen(6)
    X, y = torch.randn(20, 4, generator=g, dtype=F64), torch.randn(20, generator=g, dtype=F64)
    assert mlp_curvature(LossFunction(m, X, y, loss="mse", dtype=F64)) is not None
    lf = LossFunction(m, X, y[:, None], loss="mse", dtype=F64)
    assert mlp_curvature(lf) is None
    op = hessian_operator(lf)
    op.resolve()
    assert op.mode == "retained"
    H = dense_hessian(lf)
    v = torch.randn(op.dim, generator=g, dtype=F64)
    assert_close(op.matvec(v), H @ v, float(H.abs().max()) * float(v.abs().sum()))


# -- 5. a module used twice in a Sequential appears twice -------------------------------------------
def test_chain_leaves_keeps_a_shared_activation():
    act = nn.Tanh()
    lin1, lin2, lin3 = nn.Linear(3, 4), nn.Linear(4, 4), nn.Linear(4, 2)
    leaves = chain_leaves(nn.Sequential(lin1, act, lin2, act, lin3))
    assert [p for p, _ in leaves] == ["0", "1", "2", "3", "4"]
    assert [m for _, m in leaves] == [lin1, act, lin2, act, lin3]
    assert leaves[1][1] is leaves[3][1] is act


# -- 6. traces ---------------------------------------------------------------------------------------
def clusters():
    """Three well-separated Gaussian clusters in 4-D, 60 points (a separable problem)."""
    g = gen(0)
    centers = 3 * torch.randn(3, 4, generator=g, dtype=F64)
    y = torch.arange(60) % 3
    return centers[y] + torch.randn(60, 4, generator=g, dtype=F64), y


def tiny_lf(steps: int) -> LossFunction:
    """Linear(4,8)-Tanh-Linear(8,3), float64, after ``steps`` full-batch gradient steps (lr 0.5)."""
    X, y = clusters()
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).to(F64)
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(m(X), y).backward()
        opt.step()
    return LossFunction(m.eval(), X, y, batch_size=25)


@pytest.fixture(scope="module")
def trained():
    lf = tiny_lf(300)  # training loss ~0.004
    H = dense_hessian(lf)
    return lf, H, dense_ggn(lf)


def rademacher_std(M: torch.Tensor) -> float:
    """Exact per-probe std of z^T M z for Rademacher z and symmetric M: sqrt(2 sum_{i != j} M_ij^2)."""
    off = M - torch.diag(M.diagonal())
    return float(torch.sqrt(2 * (off**2).sum()))


def test_ggn_cv_stderr_is_honest():
    # At initialisation the residual z^T (H - G) z is nearly symmetric (skewness ~0.1), so the t-statistic of
    # 16 probes behaves like Student's t(15): P(|t| > 5) ~ 2e-4 per seed. (On the trained model the
    # residual is skewed, ~0.5, and 16-probe t-statistics have heavier tails: max |z| ~ 4.8 over 20 seeds.)
    lf = tiny_lf(0)
    tr = float(dense_hessian(lf).trace())
    op = hessian_operator(lf)
    z = []
    for s in range(20):
        r = ggn_cv_trace(op, 16, seed=s)
        assert r.method == "ggn-cv" and r.matvecs == 16 and len(r.estimates) == 16
        assert np.isclose(r.stderr, np.std(r.estimates, ddof=1) / 4)
        z.append((r.mean - tr) / r.stderr)
    z = np.array(z)
    assert np.all(np.abs(z) < 5)
    assert abs(z.mean()) < 1.0  # the mean of 20 t(15) values has sd ~0.24
    assert 0.3 < np.mean(z**2) < 3.0


def test_ggn_cv_unbiased_and_variance_reduction(trained):
    lf, H, G = trained
    tr = float(H.trace())
    op = hessian_operator(lf)
    means = np.array([ggn_cv_trace(op, 16, seed=s).mean for s in range(200)])
    se = means.std(ddof=1) / np.sqrt(len(means))
    assert abs(means.mean() - tr) < 4 * se

    # Variance reduction after training: the exact per-probe spreads (Rademacher) are
    # sqrt(2 sum_{i!=j} (H-G)_ij^2) = 0.20 for the control variate and sqrt(2 sum_{i!=j} H_ij^2) = 0.94 for
    # plain Hutchinson, a ratio of 0.21 on this model (at initialisation it is 0.94: G is not yet close to H);
    # 0.5 leaves a > 2x margin.
    sd_cv, sd_h = rademacher_std(H - G), rademacher_std(H)
    assert sd_cv / sd_h < 0.5
    cv = ggn_cv_trace(op, 256, seed=0)
    hu = hutchinson(op, 256, seed=0)
    # the observed per-probe spreads match the exact ones (sd of a 256-sample std ~5%; 25% allowed)
    assert abs(cv.estimates.std(ddof=1) / sd_cv - 1) < 0.25
    assert abs(hu.estimates.std(ddof=1) / sd_h - 1) < 0.25
    assert cv.estimates.std() / hu.estimates.std() < 0.5  # observed 0.23
    assert cv.stderr < 0.5 * hu.stderr


def test_ggn_cv_target_rel_stderr_stops_at_first_block_boundary(trained):
    lf, H, _ = trained
    op = hessian_operator(lf)
    r = ggn_cv_trace(op, 1000, seed=0, target_rel_stderr=0.01)
    n = r.matvecs
    assert n == len(r.estimates) and n % 8 == 0 and n < 1000  # blocks of min_probes = 8, stopped early
    assert r.stderr <= 0.01 * abs(r.mean)
    # no earlier block boundary met the target (a standard-error rule, checked at every block)
    for k in range(8, n, 8):
        x = r.estimates[:k]
        assert np.std(x, ddof=1) / np.sqrt(k) > 0.01 * abs(x.mean())
    # the same probes as a fixed budget with the same seed
    full = ggn_cv_trace(op, n, seed=0)
    assert np.array_equal(full.estimates, r.estimates)
    assert abs(r.mean - float(H.trace())) < 4 * r.stderr
    # an unreachable target uses the whole budget
    r2 = ggn_cv_trace(op, 20, seed=0, target_rel_stderr=1e-9)
    assert r2.matvecs == 20


def sym(n: int, seed: int) -> torch.Tensor:
    A = torch.randn(n, n, generator=gen(seed), dtype=F64)
    return 0.5 * (A + A.T)


def test_control_variate_trace_on_dense_matrices():
    n = 40
    A = sym(n, 7) + 3 * torch.eye(n, dtype=F64)
    trA = float(A.trace())

    # B = A: the difference is zero, the estimate is exactly tr(A) with zero standard error
    r = control_variate_trace(trA, lambda Z: ((Z @ (A - A)) * Z).sum(1), n, num_probes=24, seed=0, dtype=F64)
    assert r.mean == trA and r.stderr == 0.0 and r.matvecs == 24 and np.all(r.estimates == trA)

    # B = A + E: estimates are tr(B) + z^T (A - B) z for the probes handed to quads (Rademacher rows)
    E = 0.05 * sym(n, 8)
    B = A + E
    seen: list[torch.Tensor] = []

    def quads(Z):
        seen.append(Z.clone())
        return ((Z @ (A - B)) * Z).sum(1)

    r = control_variate_trace(float(B.trace()), quads, n, num_probes=20, min_probes=8, seed=1, dtype=F64)
    assert [z.shape for z in seen] == [(8, n), (8, n), (4, n)]
    Z = torch.cat(seen)
    assert torch.all(Z.abs() == 1)
    ref = float(B.trace()) + ((Z @ (A - B)) * Z).sum(1).numpy()
    assert np.allclose(r.estimates, ref, rtol=0, atol=RTOL * trA)
    assert np.isclose(r.mean, ref.mean(), rtol=0, atol=RTOL * trA)
    assert np.allclose(r.running_mean, np.cumsum(ref) / np.arange(1, 21), rtol=0, atol=RTOL * trA)

    # unbiased for tr(A) over seeds; the per-probe spread is that of E alone, sqrt(2 sum_{i!=j} E_ij^2)
    runs = [control_variate_trace(float(B.trace()), lambda Z: ((Z @ (A - B)) * Z).sum(1), n, num_probes=16,
                                  seed=s, dtype=F64) for s in range(200)]
    means = np.array([x.mean for x in runs])
    assert abs(means.mean() - trA) < 4 * means.std(ddof=1) / np.sqrt(len(means))
    spread = np.concatenate([x.estimates for x in runs]).std(ddof=1)
    assert abs(spread / rademacher_std(E) - 1) < 0.1  # 3200 probes: sd of the sample std ~2%
    assert spread < 0.2 * rademacher_std(A)

    with pytest.raises(ValueError, match="num_probes"):
        control_variate_trace(trA, quads, n, num_probes=1)
    with pytest.raises(ValueError, match="target_rel_stderr"):
        control_variate_trace(trA, quads, n, target_rel_stderr=0.0)


# -- 7. analyze_hessian's trace method choice --------------------------------------------------------
def test_analyze_hessian_ggn_cv_needs_plain_mlp():
    torch.manual_seed(8)
    m = MLP((4,), 3, width=6, depth=1, activation="tanh", batchnorm=True)
    m.train()
    with torch.no_grad():
        m(torch.randn(64, 4) + 0.5)
    g = gen(8)
    lf = LossFunction(m, torch.randn(30, 4, generator=g), torch.randint(0, 3, (30,), generator=g), dtype=F64)
    assert hessian_operator(lf).dim == 63 > 20  # the trace is estimated, not computed by unit vectors
    with pytest.raises(ValueError, match="ggn-cv"):
        analyze_hessian(lf, top_k=1, trace_probes=20, trace_method="ggn-cv")
    r = analyze_hessian(lf, top_k=1, trace_probes=20, trace_method="auto")
    assert r.trace["method"] == "krylov-hutch++" and r.settings["hvp_mode"] == "retained"
    # a plain MLP: "auto" is the GGN control variate on the analytic operator
    lf2 = tiny_lf(0)
    r2 = analyze_hessian(lf2, top_k=1, trace_probes=20, trace_method="auto")
    assert r2.trace["method"] == "ggn-cv" and r2.settings["hvp_mode"] == "analytic"
    assert abs(r2.trace["mean"] - float(dense_hessian(lf2).trace())) < 4 * r2.trace["stderr"]


# -- 8. determinism: the whitelist skip keeps the protection for custom modules --------------------
class Noisy(nn.Module):
    def forward(self, x):
        return x + 1e-3 * torch.randn_like(x)


class NoisyLinear(nn.Linear):  # a subclass of a whitelisted type is not whitelisted
    def forward(self, x):
        out = super().forward(x)
        return out + 1e-3 * torch.randn_like(out)


def _xy():
    g = gen(9)
    return torch.randn(16, 4, generator=g), torch.randint(0, 3, (16,), generator=g)


@pytest.mark.parametrize("model", [
    lambda: nn.Sequential(nn.Linear(4, 5), Noisy(), nn.Tanh(), nn.Linear(5, 3)),
    lambda: nn.Sequential(NoisyLinear(4, 5), nn.Tanh(), nn.Linear(5, 3)),
], ids=["noise_module", "noisy_linear_subclass"])
def test_custom_random_module_is_refused(model):
    lf = LossFunction(model(), *_xy())
    with pytest.raises(ValueError, match="not deterministic"):
        check_deterministic(lf)
    with pytest.raises(ValueError, match="not deterministic"):
        hessian_operator(lf)


def test_builtin_layers_skip_the_two_evaluations_but_not_the_mode_scan(monkeypatch):
    X, y = _xy()
    calls = []
    real_call = LossFunction.__call__
    # counted on the loss closure, not with a forward hook: a hooked module is (rightly) off the whitelist
    monkeypatch.setattr(LossFunction, "__call__", lambda self, p: (calls.append(1), real_call(self, p))[1])
    lf = LossFunction(nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)), X, y)
    check_deterministic(lf)  # passes
    assert calls == []  # built-in layers only: no loss evaluation
    # a deterministic custom module is evaluated twice and passes
    check_deterministic(LossFunction(CustomNet(), X, y))
    assert len(calls) == 2
    # train-mode dropout / BatchNorm are still refused on built-in-only models
    lf3 = LossFunction(nn.Sequential(nn.Linear(4, 5), nn.Dropout(0.3), nn.Tanh(), nn.Linear(5, 3)), X, y)
    lf3.model[1].train()
    with pytest.raises(ValueError, match="dropout module '1' is in train mode"):
        check_deterministic(lf3)
    lf4 = LossFunction(nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 3)), X, y)
    lf4.model[1].train()
    with pytest.raises(ValueError, match="BatchNorm module '1' is in train mode"):
        check_deterministic(lf4)


# -- 9. float32 on the shipped digits MLP ------------------------------------------------------------
def test_float32_analytic_agrees_with_retained_on_digits():
    from landscape_core.runs import checkpoints_dir, load_run

    run = load_run(checkpoints_dir() / "digits-sgd")
    X, y = run.train_data
    lf = LossFunction(run.model, X[:256], y[:256], batch_size=96)  # float32, batches 96, 96, 64
    assert lf.dtype == torch.float32
    ana = hessian_operator(lf, mode="analytic")
    ret = hessian_operator(lf, mode="retained")
    V = torch.randn(ana.dim, 4, generator=gen(10))
    a, b = ana.matmat(V).double(), ret.matmat(V).double()
    assert ana.mode == "analytic" and ret.mode == "retained"
    # Both are float32 evaluations of the same arithmetic in different orders. Each output entry is a sum of
    # N=256 per-example terms after ~2 x depth (4 layers) matmuls of inner size K <= 64; float32 rounding
    # errors accumulate like sqrt(depth * K) * eps32 ~ 16 * 1.2e-7 ~ 2e-6 relative per operand (observed
    # 1.9e-6 to 2.6e-6 in 2-norm). 1e-4 leaves a ~40x margin for cancellation and the batch sums.
    rel = (a - b).norm(dim=0) / b.norm(dim=0)
    assert float(rel.max()) <= 1e-4
    # top-5 eigenvalues: float32 analytic vs the float64 retained operator (observed agreement ~1e-6)
    ref = hessian_operator(lf, mode="retained", dtype=F64)
    ea = lanczos(ana, 5, tol=1e-6, seed=0)
    er = lanczos(ref, 5, tol=1e-6, seed=0)
    assert ea.converged and er.converged
    assert np.allclose(np.asarray(ea.eigenvalues), np.asarray(er.eigenvalues), rtol=1e-4, atol=0)


def test_ggn_cv_with_an_explicit_hvp_mode_and_hooked_modules_are_checked():
    """ggn-cv works whatever HVP mode the Lanczos part uses (it builds its own closed-form state), and a
    forward hook that adds noise takes a built-in-only model off the determinism whitelist."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    X, y = torch.randn(30, 4), torch.randint(0, 3, (30,))
    lf = LossFunction(m, X, y, dtype=torch.float64)
    tr = float(torch.trace(dense_hessian(lf)))
    r = analyze_hessian(lf, top_k=1, trace_probes=20, trace_method="ggn-cv", mode="retained")
    assert r.trace["method"] == "ggn-cv" and r.settings["hvp_mode"] == "retained"
    assert abs(r.trace["mean"] - tr) < 5 * r.trace["stderr"] + 1e-12
    m[0].register_forward_hook(lambda mod, i, o: o + 1e-3 * torch.randn_like(o))
    with pytest.raises(ValueError, match="not deterministic"):
        check_deterministic(LossFunction(m, X, y))


def test_ggn_and_fisher_operators_take_the_closed_form_for_plain_mlps():
    """``ggn_operator`` / the exact Fisher pick ``"analytic"`` on a plain MLP and equal the autograd GGN
    (dense, float64), also on a reordered parameter subset; ``mode="analytic"`` on a BatchNorm MLP refuses."""
    from landscape_core.fisher import fisher_operator

    X, y = chain_data("cross_entropy")
    m = nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).double().eval()
    lf = LossFunction(m, X, y, batch_size=8)
    G_ref = dense_ggn(lf)
    g, f = ggn_operator(lf), fisher_operator(lf)
    assert g.mode == "analytic" and f.mode == "analytic"
    scale = G_ref.abs().max()
    assert (g.dense() - G_ref).abs().max() <= 1e-10 * scale
    assert (f.dense() - G_ref).abs().max() <= 1e-10 * scale
    names = ["3.bias", "1.weight"]
    sub = ggn_operator(lf, names=names)
    ref = ggn_operator(lf, names=names, mode="rev").dense()
    assert sub.mode == "analytic" and (sub.dense() - ref).abs().max() <= 1e-10 * scale
    bn = LossFunction(MLP((6,), 3, width=4, depth=1, batchnorm=True).double().eval(), X.reshape(20, 6), y)
    with pytest.raises(ValueError, match="needs a plain MLP"):
        ggn_operator(bn, mode="analytic")


@pytest.mark.parametrize("block", [False, True], ids=["rows", "block"])
def test_block_and_row_by_row_forms_agree_with_dense(monkeypatch, block):
    """Both ways of handling ``k`` rows (the ``(n, k, width)`` block form CUDA uses, row by row on CPU; see
    ``BLOCK_ROWS``) give the dense Hessian, GGN and ``H - G`` quadratic forms."""
    monkeypatch.setitem(mlp_mod.BLOCK_ROWS, "cpu", block)
    X, y = chain_data("cross_entropy")
    m = nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4), nn.GELU(), nn.Linear(4, 3)).double().eval()
    lf = LossFunction(m, X, y, batch_size=8)
    H, G = dense_hessian(lf), dense_ggn(lf)
    mc = mlp_curvature(lf)
    Z = torch.randn(3, mc.dim, generator=gen(5), dtype=F64)
    scale = H.abs().max()
    assert (mc.products(Z) - Z @ H).abs().max() <= 1e-10 * scale
    assert (mc.products(Z, ggn=True) - Z @ G).abs().max() <= 1e-10 * scale
    assert (mc.residual_quadratic(Z) - torch.einsum("ki,ij,kj->k", Z, H - G, Z)).abs().max() <= 1e-10 * scale * Z.shape[1]
