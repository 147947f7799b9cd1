"""SAM / ASAM: perturbation norms, exact restore, rho=0 == base optimizer, quadratic, BatchNorm statistics."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from landscape_core.optimizers import make_optimizer, make_schedule, schedule_factor
from landscape_core.sam import SAM, bn_stats_frozen


def _model(seed: int = 0, bn: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    layers = [nn.Linear(5, 7)] + ([nn.BatchNorm1d(7)] if bn else []) + [nn.Tanh(), nn.Linear(7, 3)]
    return nn.Sequential(*layers).double()


def _data(seed: int = 1, n: int = 16):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def _grads(model, X, y):
    model.zero_grad()
    nn.functional.cross_entropy(model(X), y).backward()
    return [p.grad.detach().clone() for p in model.parameters()]


def test_sam_perturbation_norm_equals_rho_and_points_along_gradient():
    model, (X, y) = _model(), _data()
    old = [p.detach().clone() for p in model.parameters()]
    g = _grads(model, X, y)
    gnorm = math.sqrt(sum(float((t**2).sum()) for t in g))
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.07, lr=0.1)
    opt.first_step()
    e = [p.detach() - o for p, o in zip(model.parameters(), old)]
    assert math.sqrt(sum(float((t**2).sum()) for t in e)) == pytest.approx(0.07, rel=1e-12)
    for ei, gi in zip(e, g):
        torch.testing.assert_close(ei, 0.07 * gi / gnorm, rtol=1e-10, atol=1e-14)


def test_asam_adaptive_norm_equals_rho_and_matches_formula():
    model, (X, y) = _model(), _data()
    eta = 0.01
    old = [p.detach().clone() for p in model.parameters()]
    g = _grads(model, X, y)
    T = [o.abs() + eta for o in old]
    tg_norm = math.sqrt(sum(float(((t * gi) ** 2).sum()) for t, gi in zip(T, g)))
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.5, adaptive=True, eta=eta, lr=0.1)
    opt.first_step()
    e = [p.detach() - o for p, o in zip(model.parameters(), old)]
    # ||T^-1 e|| = rho, while the plain norm ||e|| is not rho
    assert math.sqrt(sum(float(((ei / t) ** 2).sum()) for ei, t in zip(e, T))) == pytest.approx(0.5, rel=1e-10)
    assert math.sqrt(sum(float((ei**2).sum()) for ei in e)) != pytest.approx(0.5, rel=1e-3)
    for ei, t, gi in zip(e, T, g):
        torch.testing.assert_close(ei, 0.5 * t * t * gi / tg_norm, rtol=1e-9, atol=1e-14)


class _Recorder(torch.optim.SGD):
    """SGD that records the weights and gradients it sees when stepping."""

    seen: list = []

    def step(self, closure=None):
        _Recorder.seen.append(
            ([p.detach().clone() for g in self.param_groups for p in g["params"]],
             [p.grad.detach().clone() for g in self.param_groups for p in g["params"]])
        )
        return super().step(closure)


def test_second_step_restores_weights_exactly_and_uses_gradient_at_perturbed_point():
    model, (X, y) = _model(), _data()
    old = [p.detach().clone() for p in model.parameters()]
    _Recorder.seen = []
    opt = SAM(model.parameters(), _Recorder, rho=0.3, lr=0.1)
    _grads(model, X, y)
    opt.first_step(zero_grad=True)
    perturbed = [p.detach().clone() for p in model.parameters()]
    g_pert = _grads(model, X, y)
    opt.second_step()
    weights_seen, grads_seen = _Recorder.seen[0]
    for w, o in zip(weights_seen, old):
        assert torch.equal(w, o)  # bit-exact restore, no w + e - e round-off
    for gs, gp in zip(grads_seen, g_pert):
        assert torch.equal(gs, gp)
    for w, o, gp, pp in zip(model.parameters(), old, g_pert, perturbed):
        assert not torch.equal(pp, o)
        torch.testing.assert_close(w.detach(), o - 0.1 * gp, rtol=0, atol=1e-15)


@pytest.mark.parametrize("name,kw", [("sgd", dict(lr=0.1, momentum=0.9)), ("adam", dict(lr=0.01))])
def test_rho_zero_is_the_base_optimizer_bit_for_bit(name, kw):
    m1, (X, y) = _model(), _data()
    m2 = copy.deepcopy(m1)
    base = make_optimizer(name, m1.parameters(), **kw)
    sam = make_optimizer("sam" if name == "sgd" else "sam-adam", m2.parameters(), rho=0.0, **kw)
    assert isinstance(sam, SAM) and not sam.perturbs
    g = torch.Generator().manual_seed(3)
    for _ in range(6):
        idx = torch.randperm(len(y), generator=g)[:8]

        def closure(m=m2, idx=idx):
            loss = nn.functional.cross_entropy(m(X[idx]), y[idx])
            loss.backward()
            return loss

        base.zero_grad()
        nn.functional.cross_entropy(m1(X[idx]), y[idx]).backward()
        base.step()
        sam.step(closure)
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p1, p2)
    assert not torch.equal(next(m1.parameters()), next(_model().parameters()))  # it did move


def test_step_with_closure_equals_manual_first_and_second_step():
    m1, (X, y) = _model(), _data()
    m2 = copy.deepcopy(m1)
    o1 = SAM(m1.parameters(), torch.optim.SGD, rho=0.1, lr=0.05, momentum=0.9)
    o2 = SAM(m2.parameters(), torch.optim.SGD, rho=0.1, lr=0.05, momentum=0.9)

    def closure():
        loss = nn.functional.cross_entropy(m1(X), y)
        loss.backward()
        return loss

    for _ in range(3):
        loss = o1.step(closure)
        o2.zero_grad()
        ref = nn.functional.cross_entropy(m2(X), y)
        ref.backward()
        o2.first_step(zero_grad=True)
        nn.functional.cross_entropy(m2(X), y).backward()
        o2.second_step(zero_grad=True)
        assert float(loss.detach()) == float(ref.detach())
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p1, p2)


def test_sam_on_quadratic_matches_closed_form_step_and_converges():
    A = torch.tensor([1.0, 10.0], dtype=torch.float64)
    w = torch.tensor([1.0, 1.0], dtype=torch.float64, requires_grad=True)
    lr, rho = 0.05, 0.01
    opt = SAM([w], torch.optim.SGD, rho=rho, lr=lr)

    def closure():
        loss = 0.5 * (A * w * w).sum()
        loss.backward()
        return loss

    w0 = w.detach().clone()
    opt.step(closure)
    g0 = A * w0
    expected = w0 - lr * A * (w0 + rho * g0 / g0.norm())  # grad of 0.5 w'Aw at w0 + e
    torch.testing.assert_close(w.detach(), expected, rtol=1e-14, atol=1e-15)
    for _ in range(400):
        opt.step(closure)
    # SAM's normalised ascent keeps ||e|| = rho, so it settles within O(rho) of the minimum
    assert float(0.5 * (A * w.detach() ** 2).sum()) < 1e-3 * float(0.5 * (A * w0 * w0).sum())
    assert float(w.detach().norm()) < 2 * rho


def test_batchnorm_statistics_move_once_per_sam_step():
    model, (X, y) = _model(bn=True), _data()
    model.train()
    bn = model[1]
    h = model[0](X).detach()  # first pass is at the unperturbed weights
    expected_mean = 0.9 * torch.zeros(7, dtype=torch.float64) + 0.1 * h.mean(0)
    expected_var = 0.9 * torch.ones(7, dtype=torch.float64) + 0.1 * h.var(0, unbiased=True)
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.5, lr=0.1)
    passes = [0]

    def closure():
        with bn_stats_frozen(model) if passes[0] else torch.enable_grad():
            loss = nn.functional.cross_entropy(model(X), y)
            loss.backward()
        passes[0] += 1
        return loss

    opt.step(closure)
    assert passes[0] == 2
    assert int(bn.num_batches_tracked) == 1
    torch.testing.assert_close(bn.running_mean, expected_mean, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(bn.running_var, expected_var, rtol=1e-12, atol=1e-14)


def test_bn_stats_frozen_restores_buffers_even_with_cumulative_momentum():
    model, (X, _) = _model(bn=True), _data()
    model[1].momentum = None
    model.train()
    model(X)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with bn_stats_frozen(model):
        model(X * 3 + 1)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_bad_settings_raise():
    p = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="rho"):
        SAM(p, torch.optim.SGD, rho=-0.1, lr=0.1)
    with pytest.raises(ValueError, match="nope"):
        make_optimizer("nope", p, lr=0.1)
    with pytest.raises(ValueError, match="-1"):
        make_optimizer("sgd", p, lr=-1)
    with pytest.raises(ValueError, match="schedule"):
        schedule_factor("linear", 0, 10)


def test_schedules_per_step():
    assert [schedule_factor("step", s, 100) for s in (0, 49, 50, 74, 75, 99)] == [1, 1, 0.1, 0.1, 0.01, 0.01]
    assert schedule_factor("cosine", 0, 100) == 1.0
    assert schedule_factor("cosine", 50, 100) == pytest.approx(0.5)
    assert schedule_factor("cosine", 100, 100) == pytest.approx(0.0, abs=1e-15)
    p = [nn.Parameter(torch.zeros(2))]
    opt = make_optimizer("sam", p, lr=0.2, rho=0.05)
    sched = make_schedule("step", opt, 4)
    lrs = []
    for _ in range(4):
        lrs.append(opt.base_optimizer.param_groups[0]["lr"])
        opt.step(lambda: (p[0] ** 2).sum().backward() or (p[0] ** 2).sum())
        sched.step()
    assert lrs == pytest.approx([0.2, 0.2, 0.02, 0.002])


def test_state_dict_round_trip_resumes_identically():
    m1, (X, y) = _model(), _data()
    o1 = SAM(m1.parameters(), torch.optim.SGD, rho=0.1, lr=0.05, momentum=0.9)

    def closure_for(m):
        def closure():
            loss = nn.functional.cross_entropy(m(X), y)
            loss.backward()
            return loss
        return closure

    o1.step(closure_for(m1))
    m2 = copy.deepcopy(m1)
    o2 = SAM(m2.parameters(), torch.optim.SGD, rho=0.7, lr=1.0, momentum=0.9)
    o2.load_state_dict(copy.deepcopy(o1.state_dict()))
    assert o2.param_groups[0]["rho"] == 0.1 and o2.base_optimizer.param_groups[0]["lr"] == 0.05
    for _ in range(2):
        o1.step(closure_for(m1))
        o2.step(closure_for(m2))
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p1, p2)  # momentum buffers came along


@pytest.mark.parametrize("adaptive", [False, True])
def test_mixed_dtype_group_takes_the_per_tensor_path_with_the_same_formula(adaptive):
    a = nn.Parameter(torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64))
    b = nn.Parameter(torch.tensor([[1.5, -0.25]], dtype=torch.float32))
    ga = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
    gb = torch.tensor([[0.4, 0.05]], dtype=torch.float32)
    a.grad, b.grad = ga.clone(), gb.clone()
    old_a, old_b = a.detach().clone(), b.detach().clone()
    opt = SAM([a, b], torch.optim.SGD, rho=0.2, adaptive=adaptive, eta=0.01, lr=0.1)
    opt.first_step()
    ta = old_a.abs() + 0.01 if adaptive else torch.ones(3, dtype=torch.float64)
    tb = (old_b.abs() + 0.01 if adaptive else torch.ones(1, 2)).double()
    norm = torch.sqrt(((ta * ga) ** 2).sum() + ((tb * gb.double()) ** 2).sum())
    # float32 part of the norm limits the agreement to float32 precision
    torch.testing.assert_close(a.detach() - old_a, 0.2 * ta * ta * ga / norm, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close((b.detach() - old_b).double(), 0.2 * tb * tb * gb.double() / norm,
                               rtol=1e-5, atol=1e-7)
    opt.second_step()
    assert torch.equal(a.detach(), old_a - 0.1 * ga) and torch.allclose(b.detach(), old_b - 0.1 * gb)
