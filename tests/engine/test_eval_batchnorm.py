"""Eval-mode BatchNorm with a written-out second derivative (``eval_batchnorm.py``): the Hessian operator
builds its gradient graphs through it, so its first and second derivatives are checked against finite
differences (``gradcheck`` / ``gradgradcheck``, float64) and the Hessians it gives against the dense
float64 Hessian of the native module."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from landscape_core.eval_batchnorm import EvalBatchNorm, _EvalBN, with_eval_batchnorm
from landscape_core.exact import dense_hessian
from landscape_core.functional import LossFunction
from landscape_core.hessian import hessian_operator

F64 = torch.float64


def _trained_like(bn: nn.modules.batchnorm._BatchNorm, g: torch.Generator) -> None:
    """Non-trivial affine parameters and running statistics (defaults would hide mean/scale mistakes)."""
    with torch.no_grad():
        bn.weight.copy_(0.5 + torch.rand(bn.weight.shape, generator=g, dtype=bn.weight.dtype))
        bn.bias.copy_(torch.randn(bn.bias.shape, generator=g, dtype=bn.bias.dtype))
        bn.running_mean.copy_(torch.randn(bn.running_mean.shape, generator=g, dtype=bn.running_mean.dtype))
        bn.running_var.copy_(0.5 + torch.rand(bn.running_var.shape, generator=g, dtype=bn.running_var.dtype))


@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 5), (3, 3, 4, 4), (2, 3, 2, 3, 2)], ids=["1d", "1d-seq", "2d", "3d"])
def test_first_and_second_derivatives_match_finite_differences(shape):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=F64, requires_grad=True)
    w = (0.5 + torch.rand(3, generator=g, dtype=F64)).requires_grad_(True)
    b = torch.randn(3, generator=g, dtype=F64, requires_grad=True)
    mean, var = torch.randn(3, generator=g, dtype=F64), 0.5 + torch.rand(3, generator=g, dtype=F64)

    def f(x, w, b):
        return _EvalBN.apply(x, w, b, mean, var, 1e-5)

    native = torch.batch_norm(x, w, b, mean, var, False, 0.0, 1e-5, True)
    assert torch.allclose(f(x, w, b), native, atol=1e-14)
    assert torch.autograd.gradcheck(f, (x, w, b))
    assert torch.autograd.gradgradcheck(f, (x, w, b))


def _bn_models(g: torch.Generator) -> dict[str, tuple[nn.Module, torch.Tensor]]:
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 3))
    conv = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 2, 3),
                         nn.BatchNorm2d(2), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 2 * 2, 3))
    out = {"mlp-bn1d": (mlp, torch.randn(20, 4, generator=g, dtype=F64)),
           "conv-bn2d": (conv, torch.randn(20, 2, 4, 4, generator=g, dtype=F64))}
    for m, _ in out.values():
        m.double().eval()
        for bn in m.modules():
            if isinstance(bn, nn.modules.batchnorm._BatchNorm):
                _trained_like(bn, g)
    return out


@pytest.mark.parametrize("name", ["mlp-bn1d", "conv-bn2d"])
@pytest.mark.parametrize("mode", ["retained", "rev_rev"])
def test_hessian_through_eval_batchnorm_equals_the_native_dense_hessian(name, mode):
    g = torch.Generator().manual_seed(1)
    model, X = _bn_models(g)[name]
    y = torch.randint(0, 3, (20,), generator=g)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lf = LossFunction(model, X, y, batch_size=8)  # batches 8, 8, 4 weighted by size
    H = dense_hessian(lf)  # vmap(jvp(grad)) through the native BatchNorm
    op = hessian_operator(lf, mode=mode)
    assert any(isinstance(m, EvalBatchNorm) for m in op._graph_lf.model.modules())  # the swapped path ran
    assert not any(isinstance(m, EvalBatchNorm) for m in lf.model.modules())  # the loss's own model is native
    D = op.dense()
    assert (D - H).abs().max() <= 1e-10 * H.abs().max()
    # a parameter subset (the BatchNorm's own block) through the same path
    names = [k for k in dict(model.named_parameters()) if k.startswith("1.")]
    blk = hessian_operator(lf, names=names, mode=mode)
    i0 = sum(p.numel() for k, p in model.named_parameters() if k.startswith("0."))
    assert (blk.dense() - H[i0:i0 + blk.dim, i0:i0 + blk.dim]).abs().max() <= 1e-10 * H.abs().max()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_swap_keeps_names_and_leaves_other_modules_alone():
    g = torch.Generator().manual_seed(2)
    model, _ = _bn_models(g)["conv-bn2d"]
    swapped = with_eval_batchnorm(model)
    assert swapped is not None and swapped is not model
    assert list(swapped.state_dict()) == list(model.state_dict())
    assert [type(m) for m in swapped.modules()].count(EvalBatchNorm) == 2
    assert not any(isinstance(m, EvalBatchNorm) for m in model.modules())
    assert with_eval_batchnorm(nn.Sequential(nn.Linear(2, 2))) is None  # nothing to swap
    train_bn = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))  # train mode: refused upstream, never swapped
    assert with_eval_batchnorm(train_bn) is None
    no_affine = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2, affine=False)).eval()
    assert with_eval_batchnorm(no_affine) is None
