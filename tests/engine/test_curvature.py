"""analyze_hessian: the high-level result against the dense float64 Hessian, per-layer blocks, runs."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from landscape_core.analyses.hessian import analyze_hessian
from landscape_core.exact import dense_hessian
from landscape_core.functional import LossFunction
from landscape_core.models import build_model, model_spec
from landscape_core.params import model_hash
from landscape_core.runs import load_run, save_run


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).eval()
    X, y = torch.randn(20, 4), torch.randint(0, 3, (20,))
    lf = LossFunction(m, X, y, batch_size=7, dtype=torch.float64)
    H = dense_hessian(lf)
    return m, lf, H


def test_analyze_matches_exact_and_per_layer_sums_to_trace(tiny):
    m, lf, H = tiny
    h0 = model_hash(m)
    ev = torch.linalg.eigvalsh(H).flip(0)
    seen = []
    r = analyze_hessian(lf, top_k=3, trace_probes=40, per_layer=True, exact=True, density=True,
                        density_probes=2, lanczos_steps=20, progress=lambda f, msg: seen.append(f))
    assert np.allclose(r.eigenvalues, ev[:3].numpy(), rtol=1e-6)
    assert np.allclose(r.exact_eigenvalues, ev.numpy(), atol=1e-10)
    tr = float(H.trace())
    # the whole 51-parameter trace is estimated ("auto" on a plain MLP: exact GGN trace + 40 probes of
    # H - G): within its standard error
    assert r.trace["method"] == "ggn-cv" and abs(r.trace["mean"] - tr) < 4 * r.trace["stderr"] + 1e-12
    # its probes are forward passes of H - G, not products: counted as probes, 0 HVPs in the totals
    assert r.trace["probes"] == 40 and r.trace["matvecs"] == 0 and r.breakdown["matvecs"]["trace"] == 0
    # the blocks (30 and 21 parameters <= 40 probes) are computed exactly: they sum to tr(H)
    names = [d["name"] for d in r.per_layer]
    assert names == ["0", "2"] and [d["numel"] for d in r.per_layer] == [30, 21]
    assert abs(sum(d["trace"] for d in r.per_layer) - tr) < 1e-10
    blocks = [H[:30, :30], H[30:, 30:]]
    for d, B in zip(r.per_layer, blocks):
        assert abs(d["lambda_max"] - float(torch.linalg.eigvalsh(B)[-1])) < 1e-6 * abs(d["lambda_max"])
    assert r.condition["source"] == "exact" and r.condition["has_negative"]
    assert np.isclose(r.condition["lambda_max"], float(ev[0]))
    assert np.isclose(r.condition["lambda_min"], float(ev[-1]))
    assert np.isclose(np.trapezoid(r.density["density"], r.density["grid"]), 1.0, atol=1e-3)
    assert seen[-1] == 1.0 and all(0 <= f <= 1 for f in seen)
    json.dumps(r.to_dict())
    assert model_hash(m) == h0


def test_stochastic_per_layer_traces_sum_to_trace_within_stderr(tiny):
    _, lf, H = tiny
    r = analyze_hessian(lf, top_k=1, trace_probes=12, trace_method="hutchinson", per_layer=True, smallest=False)
    se = np.sqrt(sum(d["trace_stderr"] ** 2 for d in r.per_layer))
    assert all(d["trace_method"] == "hutchinson" for d in r.per_layer)
    assert abs(sum(d["trace"] for d in r.per_layer) - float(H.trace())) < 4 * se
    # only the top-k was asked for (smallest=False): the condition summary makes no claim about lambda_min
    assert r.condition["source"] == "top-k" and r.condition["ratio"] is None and r.trace["method"] == "hutchinson"
    k = analyze_hessian(lf, top_k=1, trace_probes=30, trace_method="krylov-hutch++", smallest=False)
    assert k.trace["method"] == "krylov-hutch++" and k.trace["matvecs"] == 30
    assert abs(k.trace["mean"] - float(H.trace())) < 4 * k.trace["stderr"] + 1e-9
    with pytest.raises(ValueError, match="unknown trace method 'exact'"):
        analyze_hessian(lf, trace_method="exact")


def test_analyze_run_folder(tmp_path):
    spec = model_spec("mlp", [2], 2, width=5, depth=1, activation="tanh")
    model = build_model(spec, seed=0)
    meta = {"model": spec, "dataset": {"name": "moons", "n_samples": 80, "seed": 0}}
    path = save_run(tmp_path / "tiny-run", model, meta)
    run = load_run(path)
    h0 = model_hash(run.model)
    r = analyze_hessian(run, top_k=2, trace_probes=5, samples=30, seed=1)
    assert r.settings["examples"] == 30 and r.num_params == 2 * 5 + 5 + 5 * 2 + 2
    lf = LossFunction(run.model, *_subset(run, 30, 1), batch_size=1024, dtype=torch.float64)
    ev = torch.linalg.eigvalsh(dense_hessian(lf)).flip(0)[:2].numpy()
    assert np.allclose(r.eigenvalues, ev, rtol=1e-4)
    assert model_hash(run.model) == h0
    with pytest.raises(ValueError, match="top_k must be between 1 and the number of parameters 27, got 28"):
        analyze_hessian(run, top_k=28, samples=30)
    with pytest.raises(ValueError, match="samples"):
        analyze_hessian(run, samples=0)


def _subset(run, n, seed):
    from landscape_core.data import analysis_subset

    return analysis_subset(*run.train_data, n, seed=seed)


def test_cost_estimate_multiplies_unit_costs(tiny):
    import re

    from landscape_core.analyses.cost import estimate_cost

    m, lf, _ = tiny
    h0 = model_hash(m)
    c = estimate_cost(lf, forwards=10, gradients=2, hvps=120, repeats=2)
    assert c.per_forward > 0 and c.per_gradient > 0 and c.per_hvp > 0
    assert np.isclose(c.seconds_total, 10 * c.per_forward + 2 * c.per_gradient + 120 * c.per_hvp + c.setup)
    assert re.match(r"^~[0-9.]+ (us|ms|s|min|h) \(120 HVPs x [0-9.]+ (us|ms|s) \+ 2 gradients x .* \+ 10 forwards x ",
                    c.describe())
    assert c.counts == {"forwards": 10, "gradients": 2, "hvps": 120}
    none = estimate_cost(lf)
    assert none.seconds_total == 0 and none.per_hvp is None and "nothing" in none.describe()
    json.dumps(c.to_dict())
    with pytest.raises(ValueError, match="hvps"):
        estimate_cost(lf, hvps=-1)
    assert model_hash(m) == h0


def test_planned_hvps_and_analysis_cost(tiny):
    from landscape_core.analyses.cost import estimate_analysis_cost
    from landscape_core.analyses.hessian import planned_hvps

    _, lf, _ = tiny
    assert planned_hvps(1000, top_k=5, trace=True, trace_probes=50, smallest=False) == 25 + 50
    assert planned_hvps(1000, top_k=5, trace=False, density=True, density_probes=4, lanczos_steps=60,
                        smallest=True) == 25 + 50 + 240
    assert planned_hvps(10, top_k=2, trace_probes=50, smallest=True) == 10 + 10 + 10
    assert planned_hvps(10, top_k=2, trace_probes=50) == 10 + 10  # the smallest eigenvalue only when asked
    c = estimate_analysis_cost(lf, top_k=3, trace_probes=20, smallest=False)
    assert c.counts["hvps"] == 25 + 20 and np.isclose(c.seconds_total, 45 * c.per_hvp + c.setup)
    with pytest.raises(ValueError, match="unknown analysis setting 'topk'"):
        estimate_analysis_cost(lf, topk=3)
