"""AppTest of pages/8_Mode_connectivity.py on the shipped digits-sgd and digits-adam runs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from app_helpers import chart_by_key as _chart

from landscape_core.functional import loss_function_for_run
from landscape_core.params import detached_params
from landscape_core.runs import checkpoints_dir, load_run
from ui import analysis, exports
from ui.figures import figure_arrays

PAGE = "pages/8_Mode_connectivity.py"
A = checkpoints_dir() / "digits-sgd"
B = checkpoints_dir() / "digits-adam"




def test_linear_and_bezier_paths(app_test):
    for p in (A, B):
        if not (p / "run.json").is_file():
            pytest.fail(f"shipped run {p.name} is missing")
    at = app_test(PAGE, timeout=300)
    at.session_state["active_run"] = str(A)
    at.session_state["conn_b"] = str(B)
    for k, v in {"conn_samples": 128, "conn_points": 11, "conn_steps": 20, "conn_plane_grid": 11}.items():
        at.session_state[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]

    run_a, run_b = load_run(A), load_run(B)
    lf = loss_function_for_run(run_a, samples=128, seed=0)
    ta, tb = lf.params0, detached_params(run_b.model)
    la, lb = lf.evaluate(ta)[0], lf.evaluate(tb)[0]
    mid = lf.evaluate({k: 0.5 * ta[k] + 0.5 * tb[k] for k in ta})[0]

    fig = _chart(at, "conn_paths")
    t = figure_arrays(fig, 0, "x").astype(np.float64)
    loss = figure_arrays(fig, 0, "y").astype(np.float64)
    assert len(t) == 11 and t[0] == 0 and t[-1] == pytest.approx(1.0)
    assert loss[0] == pytest.approx(la, rel=1e-5) and loss[-1] == pytest.approx(lb, rel=1e-5)
    assert loss[5] == pytest.approx(mid, rel=1e-5)
    barrier = max(loss - ((1 - t) * loss[0] + t * loss[-1]))
    metric = {m.label: m.value for m in at.metric}
    assert float(metric["linear barrier"]) == pytest.approx(max(barrier, 0.0), abs=1e-4 * max(1.0, barrier))
    assert metric["Bezier barrier"] == "not trained"

    # display-only: accuracy along the path
    at.radio(key="conn_metric").set_value("accuracy").run()
    acc = figure_arrays(_chart(at, "conn_paths"), 0, "y")
    assert acc[0] == pytest.approx(lf.evaluate(ta)[1], abs=1e-6)
    at.radio(key="conn_metric").set_value("loss").run()

    # Bezier curve, its plane and the runs' coordinates in it
    at.button(key="conn_bezier_btn").click().run()
    assert not at.exception, [e.value for e in at.exception]
    fig2 = _chart(at, "conn_paths")
    assert [d["name"] for d in fig2["data"]] == ["linear", "Bezier"]
    bz = figure_arrays(fig2, 1, "y")
    assert bz[0] == pytest.approx(la, rel=1e-5) and bz[-1] == pytest.approx(lb, rel=1e-5)  # endpoints fixed
    plane = _chart(at, "conn_plane")
    assert plane["data"][0]["type"] == "contour"
    pts = {d["name"]: (d["x"][0], d["y"][0]) for d in plane["data"] if d.get("mode") == "markers+text"}
    dist = float(sum(((tb[k].double() - ta[k].double()) ** 2).sum() for k in ta)) ** 0.5
    assert pts["A (digits-sgd)"] == pytest.approx((0.0, 0.0), abs=1e-9)
    assert pts["B (digits-adam)"][0] == pytest.approx(dist, rel=1e-5)
    assert pts["B (digits-adam)"][1] == pytest.approx(0.0, abs=1e-6 * dist)
    curve = [d for d in plane["data"] if d.get("name") == "Bezier curve"][0]
    cx = figure_arrays({"data": [curve]}, 0, "x")
    assert cx[0] == pytest.approx(0.0, abs=1e-6 * dist) and cx[-1] == pytest.approx(dist, rel=1e-5)
    # the plane surface at A (the origin, a corner-padded grid) is close to L_A: check through the export
    settings = analysis.ConnectivitySettings(curve="bezier", n_points=11, samples=128, split="train", seed=0,
                                             bezier_steps=20, bezier_lr=0.01, plane_grid=11)
    res, plane_surface = analysis.cached_connectivity(str(A), run_a.weights_hash, str(B), run_b.weights_hash, settings)
    assert res.curve == "bezier" and plane_surface.center_loss == pytest.approx(la, rel=1e-5)
    z = np.load(io.BytesIO(exports.surface_npz_bytes(plane_surface)))
    assert z["loss"].shape == (11, 11)
    assert float(z["center_loss"]) == pytest.approx(la, rel=1e-5)  # the plane's origin is run A


def test_run_b_is_offered_only_among_compatible_runs(app_test):
    at = app_test(PAGE, timeout=300)
    at.session_state["active_run"] = str(A)
    at.session_state["conn_b"] = str(checkpoints_dir() / "moons-tiny")  # stale incompatible choice
    at.session_state["conn_samples"] = 128
    at.session_state["conn_points"] = 5
    at.run()
    assert not at.exception and not at.error
    b = at.selectbox(key="conn_b")
    names = {o.split(" (")[0] for o in b.options}  # options are labels "name (source, test acc ...)"
    assert "moons-tiny" not in names  # other architecture and data
    assert {"digits-adam", "digits-sam", "digits-sgd-sharp"} <= names and "digits-sgd" not in names
    assert b.value != str(A) and "moons" not in b.value


def test_run_without_a_compatible_partner_explains(app_test):
    at = app_test(PAGE, timeout=300)
    at.session_state["active_run"] = str(checkpoints_dir() / "moons-tiny")  # the only moons run
    at.run()
    assert not at.exception and not at.error
    assert not at.get("progress")  # nothing started
    msg = " ".join(i.value for i in at.info)
    assert "No other run has the architecture and data of **moons-tiny**" in msg and "width=16" in msg


def test_empty_workspace(app_test, empty_checkpoints):
    at = app_test(PAGE).run()
    assert not at.exception
    assert any("No runs yet" in i.value for i in at.info)
