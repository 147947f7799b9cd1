"""Hessian operator: matches the dense float64 torch.func.hessian in both HVP modes, batch weighting,
parameter subsets, determinism check, no mutation of the model."""

import pytest
import torch
from torch import nn

from landscape_core.exact import dense_hessian, exact_spectrum
from landscape_core.functional import LossFunction
from landscape_core.hessian import hessian_operator, parameter_groups
from landscape_core.operators import DenseOperator
from landscape_core.params import model_hash


def tiny(batchnorm: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    layers = [nn.Linear(4, 6)] + ([nn.BatchNorm1d(6)] if batchnorm else []) + [nn.Tanh(), nn.Linear(6, 3)]
    m = nn.Sequential(*layers)
    if batchnorm:  # non-trivial running statistics, then eval
        m.train()
        with torch.no_grad():
            m(torch.randn(64, 4) * 2 + 0.5)
    m.eval()
    X = torch.randn(20, 4)
    y = torch.randint(0, 3, (20,))
    return m, X, y


def reference_hessian(m, X, y):
    """Full-batch dense float64 Hessian written independently of the engine (torch.func.hessian)."""
    import copy

    model = copy.deepcopy(m).double().eval()
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    shapes = [(k, v.shape, v.numel()) for k, v in params.items()]

    def f(x):
        d, i = {}, 0
        for k, s, n in shapes:
            d[k] = x[i : i + n].reshape(s)
            i += n
        out = torch.func.functional_call(model, {**d, **buffers}, (X.double(),))
        return nn.functional.cross_entropy(out, y)

    flat = torch.cat([v.reshape(-1) for v in params.values()])
    return torch.func.hessian(f)(flat)


@pytest.mark.parametrize("batchnorm", [False, True])
@pytest.mark.parametrize("mode", ["retained", "fwd_rev", "rev_rev", "auto"])
def test_operator_matches_dense_hessian_with_batch_weighting(batchnorm, mode):
    m, X, y = tiny(batchnorm)
    H = reference_hessian(m, X, y)
    lf = LossFunction(m, X, y, batch_size=7, dtype=torch.float64)  # batches 7, 7, 6 weighted by size
    h0 = model_hash(m)
    op = hessian_operator(lf, mode=mode)
    assert op.shape == (H.shape[0], H.shape[0])
    V = torch.randn(op.dim, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(op.matmat(V), H @ V, atol=1e-12, rtol=1e-10)
    assert op.matvecs == 3
    assert model_hash(m) == h0


def test_dense_builds_full_matrix():
    m, X, y = tiny(True)
    H = reference_hessian(m, X, y)
    op = hessian_operator(LossFunction(m, X, y, batch_size=7, dtype=torch.float64))
    assert torch.allclose(op.dense(), H, atol=1e-12, rtol=1e-10)
    assert op.matvecs == op.dim == 4 * 6 + 6 + 6 + 6 + 6 * 3 + 3


def test_modes_agree_and_float32_close():
    m, X, y = tiny(True)
    lf = LossFunction(m, X, y, batch_size=5)
    V = torch.randn(63, 4, generator=torch.Generator().manual_seed(2))
    a = hessian_operator(lf, mode="fwd_rev").matmat(V)
    b = hessian_operator(lf, mode="rev_rev").matmat(V)
    c = hessian_operator(lf, mode="retained").matmat(V)
    assert a.dtype == c.dtype == torch.float32
    # float32 sums over ~20 examples x ~60 parameters: agreement to ~1e-6 relative of entries of size ~1
    assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(c, b, atol=1e-5)
    H = reference_hessian(m, X, y)
    assert torch.allclose(a.double(), H @ V.double(), atol=1e-4)


def test_dense_hessian_and_exact_spectrum():
    m, X, y = tiny()
    H = reference_hessian(m, X, y)
    lf = LossFunction(m, X, y, batch_size=3)
    assert torch.allclose(dense_hessian(lf), H, atol=1e-12)
    ev = exact_spectrum(lf)
    assert abs(ev - torch.linalg.eigvalsh(H).numpy()).max() < 1e-12


def test_exact_refuses_large_models():
    m = nn.Sequential(nn.Linear(100, 60), nn.Tanh(), nn.Linear(60, 3))
    lf = LossFunction(m, torch.randn(5, 100), torch.randint(0, 3, (5,)))
    with pytest.raises(ValueError, match="6243 parameters"):
        dense_hessian(lf)


def test_parameter_subset_is_diagonal_block():
    m, X, y = tiny()
    H = reference_hessian(m, X, y)
    lf = LossFunction(m, X, y, dtype=torch.float64)
    groups = parameter_groups([k for k, _ in m.named_parameters()])
    assert [g for g, _ in groups] == ["0", "2"]
    op = hessian_operator(lf, names=groups[1][1])
    n0 = 4 * 6 + 6
    assert op.dim == 6 * 3 + 3
    V = torch.randn(op.dim, 3, dtype=torch.float64)
    assert torch.allclose(op.matmat(V), H[n0:, n0:] @ V, atol=1e-12)


def test_operator_at_other_params_and_no_aliasing():
    m, X, y = tiny()
    lf = LossFunction(m, X, y, dtype=torch.float64)
    m2, _, _ = tiny()
    with torch.no_grad():
        for _, v in m2.named_parameters():
            v.add_(0.1)
    p = {k: v.detach().double().clone() for k, v in m2.named_parameters()}
    p_before = {k: v.clone() for k, v in p.items()}
    op = hessian_operator(lf, p)
    V = torch.randn(op.dim, 3, dtype=torch.float64)
    assert torch.allclose(op.matmat(V), reference_hessian(m2, X, y) @ V, atol=1e-12)
    assert all(torch.equal(p[k], p_before[k]) for k in p)


def test_determinism_check_refuses_train_mode():
    m, X, y = tiny(True)
    lf = LossFunction(m, X, y)
    lf.model.train()
    with pytest.raises(ValueError, match="BatchNorm module '1' is in train mode"):
        hessian_operator(lf)
    m = nn.Sequential(nn.Linear(4, 5), nn.Dropout(0.5), nn.Linear(5, 3))
    lf = LossFunction(m, X, y)
    lf.model.train()
    with pytest.raises(ValueError, match="dropout"):
        hessian_operator(lf)


def test_bad_inputs():
    m, X, y = tiny()
    lf = LossFunction(m, X, y)
    with pytest.raises(ValueError, match="nope"):
        hessian_operator(lf, names=["nope"])
    with pytest.raises(ValueError, match="mode"):
        hessian_operator(lf, mode="fast")
    op = hessian_operator(lf)
    with pytest.raises(ValueError, match="length"):
        op.matvec(torch.zeros(3))
    d = DenseOperator(torch.eye(3))
    d.matvec(torch.ones(3))
    assert d.matvecs == 1


class _Partial(nn.Module):
    """Two linear layers, one of them unused: its Hessian blocks are exactly zero."""

    def __init__(self):
        super().__init__()
        self.used = nn.Linear(3, 2)
        self.unused = nn.Linear(3, 2)

    def forward(self, x):
        return self.used(x)


def _partial_loss() -> tuple[LossFunction, torch.Tensor]:
    torch.manual_seed(1)
    m = _Partial().eval()
    X, y = torch.randn(9, 3), torch.randint(0, 2, (9,))
    lf = LossFunction(m, X, y, batch_size=4, dtype=torch.float64)
    return lf, dense_hessian(lf)


def test_unused_parameter_and_linear_loss_give_zero_blocks():
    lf, H = _partial_loss()
    for mode in ("retained", "fwd_rev", "rev_rev"):
        op = hessian_operator(lf, mode=mode)
        V = torch.randn(op.dim, 2, dtype=torch.float64)
        assert torch.allclose(op.matmat(V), H @ V, atol=1e-12)
        assert torch.count_nonzero(op.matmat(V)[8:]) == 0
        blk = hessian_operator(lf, names=["unused.weight"], mode=mode)
        assert torch.count_nonzero(blk.matvec(torch.ones(6, dtype=torch.float64))) == 0


def test_loss_function_cache_unchanged_by_estimates():
    from landscape_core.lanczos import lanczos
    from landscape_core.params import weights_hash
    from landscape_core.trace import hutchpp

    m, X, y = tiny(True)
    lf = LossFunction(m, X, y, batch_size=7)
    h_params, h_buf = weights_hash(lf.params0), weights_hash(lf.buffers)
    op = hessian_operator(lf)
    lanczos(op, k=2, max_iter=10, tol=1e-3)
    hutchpp(op, 9)
    assert weights_hash(lf.params0) == h_params and weights_hash(lf.buffers) == h_buf
    assert not lf.model.training


# -- retained gradient graphs ----------------------------------------------------------------------


@pytest.mark.parametrize("batchnorm", [False, True])
def test_retained_graph_reused_across_products_subsets_and_other_points(batchnorm):
    """The kept graph gives the exact dense Hessian on every product (not just the first), for a
    parameter subset (a diagonal block), at a point other than the trained weights, with eval-mode
    BatchNorm and uneven batches weighted by size; the model and the parameter dict are untouched."""
    m, X, y = tiny(batchnorm)
    h0 = model_hash(m)
    m2, _, _ = tiny(batchnorm)
    with torch.no_grad():
        for _, v in m2.named_parameters():
            v.mul_(1.3)
    p = {k: v.detach().double().clone() for k, v in m2.named_parameters()}
    p_before = {k: v.clone() for k, v in p.items()}
    H = reference_hessian(m2, X, y)
    lf = LossFunction(m, X, y, batch_size=8, dtype=torch.float64)  # batches 8, 8, 4
    op = hessian_operator(lf, p, mode="retained")
    gen = torch.Generator().manual_seed(3)
    for _ in range(4):
        v = torch.randn(op.dim, dtype=torch.float64, generator=gen)
        assert torch.allclose(op.matvec(v), H @ v, atol=1e-12, rtol=1e-10)
    assert op.mode == "retained" and op.matvecs == 4 and len(op._graphs) == 3
    last = [k for k, _ in m.named_parameters()][-2:]  # the output layer's weight and bias
    blk = hessian_operator(lf, p, names=last, mode="retained")
    n0 = H.shape[0] - blk.dim
    V = torch.randn(blk.dim, 3, dtype=torch.float64, generator=gen)
    assert torch.allclose(blk.matmat(V), H[n0:, n0:] @ V, atol=1e-12, rtol=1e-10)
    assert model_hash(m) == h0
    assert all(torch.equal(p[k], p_before[k]) for k in p)
    assert not lf.model.training


def test_auto_keeps_graphs_within_budget_and_falls_back_beyond():
    m, X, y = tiny(True)
    lf = LossFunction(m, X, y, batch_size=7, dtype=torch.float64)
    H = reference_hessian(m, X, y)
    v = torch.randn(63, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    op = hessian_operator(lf)
    assert op.mode == "auto"  # resolved at the first product
    assert torch.allclose(op.matvec(v), H @ v, atol=1e-12)
    assert op.mode == "retained"
    # at least the float64 input of the first layer for all 20 examples is saved (20 x 4 x 8 bytes)
    assert op.graph_bytes >= 20 * 4 * 8
    small = hessian_operator(lf, memory_budget=op.graph_bytes - 1)
    assert torch.allclose(small.matvec(v), H @ v, atol=1e-12)
    assert small.mode in ("fwd_rev", "rev_rev") and small._graphs is None and small.graph_bytes == 0
    # the measured choice is cached per (model, data size, device): a second operator reuses it
    again = hessian_operator(lf, memory_budget=0)
    again.matvec(v)
    assert again.mode == small.mode
    op.release()
    assert op._graphs is None and torch.allclose(op.matvec(v), H @ v, atol=1e-12)


def test_memory_budget_setting(monkeypatch):
    from landscape_core.hessian import DEFAULT_MEMORY_BUDGET, MEMORY_ENV, default_memory_budget

    monkeypatch.delenv(MEMORY_ENV, raising=False)
    assert default_memory_budget() == DEFAULT_MEMORY_BUDGET
    monkeypatch.setenv(MEMORY_ENV, "1.5")
    assert default_memory_budget() == int(1.5 * 2**20)
    monkeypatch.setenv(MEMORY_ENV, "lots")
    with pytest.raises(ValueError, match="lots"):
        default_memory_budget()
    m, X, y = tiny()
    with pytest.raises(ValueError, match="memory_budget"):
        hessian_operator(LossFunction(m, X, y), memory_budget=-1)


@pytest.mark.parametrize("batched", [False, True])
@pytest.mark.parametrize("mode", ["retained", "fwd_rev", "rev_rev"])
def test_matmat_block_equals_column_matvecs_and_dense_hessian(mode, batched):
    """A block of products (one graph per block, or one vmapped double backward) gives the same numbers
    as k single products and as the dense float64 Hessian, with multi-batch weighting and a parameter
    subset, and counts k matvecs."""
    m, X, y = tiny(True)
    H = reference_hessian(m, X, y)
    lf = LossFunction(m, X, y, batch_size=7, dtype=torch.float64)
    V = torch.randn(63, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    op = hessian_operator(lf, mode=mode, batched=batched)
    HV = op.matmat(V)
    assert op.matvecs == 5 and HV.shape == (63, 5)
    # float64, ~1e2 terms per entry: agreement to ~1e-14 relative, 1e-12 leaves room for summation order
    assert torch.allclose(HV, H @ V, atol=1e-12, rtol=1e-10)
    cols = torch.stack([hessian_operator(lf, mode=mode).matvec(V[:, j]) for j in range(5)], 1)
    assert torch.allclose(HV, cols, atol=1e-12, rtol=1e-10)
    # a parameter subset: the diagonal block of H (names 0.weight, 0.bias = first 30 entries)
    sub = hessian_operator(lf, names=["0.weight", "0.bias"], mode=mode, batched=batched)
    assert torch.allclose(sub.matmat(V[:30]), H[:30, :30] @ V[:30], atol=1e-12, rtol=1e-10)
    assert sub.matvecs == 5
    # one column goes through matvec
    assert torch.allclose(op.matmat(V[:, :1]), H @ V[:, :1], atol=1e-12, rtol=1e-10)
    assert op.matvecs == 6


@pytest.mark.parametrize("batched", [False, True])
def test_matmat_unused_parameter_zero_block(batched):
    lf, H = _partial_loss()
    V = torch.randn(16, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for mode in ("retained", "fwd_rev", "rev_rev"):
        HV = hessian_operator(lf, mode=mode, batched=batched).matmat(V)
        assert torch.allclose(HV, H @ V, atol=1e-12)
        assert torch.count_nonzero(HV[8:]) == 0
        blk = hessian_operator(lf, names=["unused.weight"], mode=mode, batched=batched)
        assert torch.count_nonzero(blk.matmat(torch.ones(6, 2, dtype=torch.float64))) == 0
