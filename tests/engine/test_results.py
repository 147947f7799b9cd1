"""Every engine result survives ``to_dict()`` -> JSON -> ``from_dict()`` -> ``to_dict()`` unchanged.

The results come from real (tiny) computations on the shipped ``moons-tiny`` run, so the dicts carry the
shapes, ``None``s and nested results the app and the CLI see.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from landscape_core.analyses.connectivity import ConnectivityResult, connect_runs
from landscape_core.analyses.cost import CostEstimate, plan_surface
from landscape_core.analyses.flatness import FlatnessResult, flatness_summary
from landscape_core.analyses.hessian import CurvatureResult, analyze_hessian
from landscape_core.analyses.invariance import InvarianceResult, invariance_demo
from landscape_core.analyses.noise import gradient_noise_scale, noise_vs_batch_size
from landscape_core.analyses.resolve import loss_function
from landscape_core.analyses.study import EstimatorStudy, SampleBudget, estimator_study, sample_budget
from landscape_core.analyses.surface import SurfaceResult, compute_surface
from landscape_core.analyses.trajectory import project_trajectory
from landscape_core.connectivity import BezierResult, PathResult, bezier_curve
from landscape_core.density import DensityResult, slq_density
from landscape_core.directions import DirectionSet
from landscape_core.flatness import BasinRadius, PerturbationProfile, SharpnessResult
from landscape_core.hessian import hessian_operator
from landscape_core.models import MLP
from landscape_core.noise import NoiseResult, NoiseSweep
from landscape_core.runs import checkpoints_dir, load_run
from landscape_core.stats import KendallResult, kendall_tau
from landscape_core.surface import Surface
from landscape_core.trace import TraceResult, hutchinson
from landscape_core.trajectory import TrajectoryProjection

RUN = checkpoints_dir() / "moons-tiny"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LANDSCAPE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def run():
    return load_run(RUN)


def _json(d: dict) -> str:
    return json.dumps(d, sort_keys=True, default=str)


def _round_trip(obj, cls=None):
    cls = cls or type(obj)
    d = obj.to_dict()
    back = cls.from_dict(json.loads(json.dumps(d, default=str)))
    assert isinstance(back, cls)
    assert _json(back.to_dict()) == _json(d)
    return back


def test_curvature_surface_and_trajectory_round_trip(run):
    h = _round_trip(analyze_hessian(run, top_k=2, trace_probes=5, samples=64, density=True, density_probes=1,
                                    lanczos_steps=8, per_layer=True))
    assert isinstance(h, CurvatureResult) and len(h.eigenvalues) == 2
    s = compute_surface(run, dims=2, directions="pca", grid=5, samples=64)
    back = _round_trip(s)
    assert isinstance(back, SurfaceResult) and isinstance(back.trajectory, TrajectoryProjection)
    np.testing.assert_array_equal(back.surface.loss, s.surface.loss)
    assert back.surface.directions.labels == s.surface.directions.labels
    one = compute_surface(run, dims=1, directions="random", grid=5, samples=64)
    assert _round_trip(one.surface, Surface).betas is None
    t = _round_trip(project_trajectory(run, samples=64))
    np.testing.assert_array_equal(t.coords, project_trajectory(run, samples=64).coords)
    _round_trip(s.surface.directions, DirectionSet)


def test_connectivity_round_trip(run):
    a, b = checkpoints_dir() / "digits-sgd", checkpoints_dir() / "digits-sam"
    res = connect_runs(a, b, curve="bezier", n_points=5, samples=32, bezier_steps=3, plane_grid=3)
    assert isinstance(res.plane_surface, Surface)
    back = _round_trip(res)
    assert isinstance(back, ConnectivityResult) and isinstance(back.path, PathResult)
    np.testing.assert_array_equal(back.plane_surface.loss, res.plane_surface.loss)
    assert back.barrier == pytest.approx(res.barrier)
    lf = loss_function(run, samples=32)
    bez = bezier_curve(lf, lf.params0, lf.params0, steps=2, n_points=3)
    _round_trip(bez, BezierResult)


def test_flatness_invariance_and_noise_round_trip(run):
    f = flatness_summary(run, samples=64, radii=(0.05,), n_directions=2, ascent_steps=2, basin_directions=2)
    back = _round_trip(f)
    assert isinstance(back, FlatnessResult)
    for part, cls in ((f.profile, PerturbationProfile), (f.epsilon_sharpness, SharpnessResult),
                      (f.basin, BasinRadius)):
        _round_trip(part, cls)
    torch.manual_seed(0)
    X = torch.randn(40, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (40,))
    model = MLP((3,), 2, width=4, depth=1, activation="relu").to(torch.float64).eval()
    inv = _round_trip(invariance_demo(model, X, y, radii=(0.1,), n_directions=2, ascent_steps=2))
    assert isinstance(inv, InvarianceResult)
    assert all(r.invariant == (r.relative_change < r.tolerance) for r in inv.measures)
    _round_trip(gradient_noise_scale(run, samples=64, b_small=4, b_big=16, n_batches=3, n_bootstrap=10,
                                     per_layer=True), NoiseResult)
    _round_trip(noise_vs_batch_size(run, (4, 8, 16), samples=64, n_batches=3, n_bootstrap=10), NoiseSweep)


def test_estimator_results_round_trip(run):
    op = hessian_operator(loss_function(run, samples=32))
    _round_trip(hutchinson(op, 4, seed=0), TraceResult)
    _round_trip(slq_density(op, num_probes=1, lanczos_steps=5, seed=0), DensityResult)
    _round_trip(estimator_study(run, samples=32, lanczos_steps=4, probes=3), EstimatorStudy)
    _round_trip(sample_budget(run, (16, 32), (0,)), SampleBudget)
    _round_trip(plan_surface(run, grid=3, samples=32), CostEstimate)
    tau = kendall_tau([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0], n_boot=20)
    back = _round_trip(tau, KendallResult)
    assert math.isclose(back.tau, tau.tau)
