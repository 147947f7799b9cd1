"""The one cost planner: counts come from the analyses themselves, times from measured units."""

from __future__ import annotations

import pytest

from landscape_core.analyses.cost import plan_connectivity, plan_hessian, plan_surface, plan_units
from landscape_core.analyses.hessian import planned_hvps
from landscape_core.analyses.resolve import loss_function
from landscape_core.hessian import parameter_groups
from landscape_core.runs import checkpoints_dir, load_run


@pytest.fixture(scope="module")
def run():
    return load_run(checkpoints_dir() / "moons-tiny")


def test_hessian_plan_uses_planned_hvps(run):
    lf = loss_function(run, samples=32)
    n = sum(v.numel() for v in lf.params0.values())
    layers = len(parameter_groups(list(lf.params0)))
    settings = {"top_k": 3, "trace_probes": 7, "density": True, "density_probes": 2, "lanczos_steps": 9,
                "per_layer": True, "trace_method": "hutchinson", "split": "train", "seed": 0}
    est = plan_hessian(run, samples=32, **settings)
    expected = planned_hvps(n, top_k=3, trace_probes=7, density=True, density_probes=2, lanczos_steps=9,
                            per_layer=True, num_layers=layers)
    assert est.counts == {"forwards": 0, "gradients": 0, "hvps": expected}
    assert est.seconds_total == pytest.approx(expected * est.per_hvp + est.setup)
    with pytest.raises(ValueError, match="unknown analysis setting 'topk'"):
        plan_hessian(run, topk=3)


def test_surface_and_connectivity_plans_count_their_work(run):
    s = plan_surface(run, grid=7, dims=2, surfaces=3, samples=32, directions="pca", span=0.5)
    assert s.counts["forwards"] == 3 * 49 and s.seconds_total == pytest.approx(147 * s.per_forward)
    assert plan_surface(run, grid=7, dims=1, samples=32).counts["forwards"] == 7
    lin = plan_connectivity(run, n_points=11, samples=32)
    assert lin.counts == {"forwards": 11, "gradients": 0, "hvps": 0}
    # Bezier: linear path + curve (2 x 11), plane 5 x 5; 10 steps on batches of 16 of 32 examples = 5 gradients
    bez = plan_connectivity(run, n_points=11, curve="bezier", bezier_steps=10, bezier_batch_size=16, plane_grid=5,
                            samples=32, bezier_lr=0.1)
    assert bez.counts == {"forwards": 22 + 25, "gradients": 5, "hvps": 0}
    with pytest.raises(ValueError, match="unknown surface setting"):
        plan_surface(run, grid=5, gird=5)
    assert plan_units(run, forwards=2, hvps=3, samples=32).counts == {"forwards": 2, "gradients": 0, "hvps": 3}
