"""AppTest of pages/7_Trajectory.py on the shipped digits-sgd run (which stores trajectory snapshots)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from app_helpers import chart_by_key as _chart

from landscape_core.analyses.trajectory import project_trajectory
from landscape_core.functional import loss_function_for_run
from landscape_core.runs import checkpoints_dir, load_run
from ui import exports
from ui.figures import figure_arrays

PAGE = "pages/7_Trajectory.py"
RUN = checkpoints_dir() / "digits-sgd"




def test_projection_residuals_and_losses(app_test):
    if not (RUN / "run.json").is_file():
        pytest.fail("shipped run checkpoints/digits-sgd is missing")
    at = app_test(PAGE, timeout=300)
    at.session_state["active_run"] = str(RUN)
    at.session_state["traj_samples"] = 128
    at.session_state["traj_grid"] = 11
    at.run()
    assert not at.exception, [e.value for e in at.exception]

    run = load_run(RUN)
    ref = project_trajectory(run, samples=128, split="train", seed=0)
    final_loss, _ = loss_function_for_run(run, samples=128, seed=0).evaluate()

    losses = _chart(at, "traj_losses")
    true = figure_arrays(losses, 0, "y").astype(np.float64)
    plane = figure_arrays(losses, 1, "y").astype(np.float64)
    np.testing.assert_allclose(true, ref.true_loss, rtol=1e-5)
    np.testing.assert_allclose(plane, ref.plane_loss, rtol=1e-4)
    assert true[-1] == pytest.approx(final_loss, rel=1e-5)
    assert plane[-1] == pytest.approx(final_loss, rel=1e-4)  # the final point is on the plane
    res = figure_arrays(_chart(at, "traj_residual"), 0, "y").astype(np.float64)
    np.testing.assert_allclose(res, ref.extent_residual, atol=1e-6)
    # the shipped digits runs lie close to their plane: no off-plane warning, the reason stated instead
    assert not at.warning and any("warnings above 25% / 10%" in c.value for c in at.caption)
    assert res[-1] == pytest.approx(0.0, abs=1e-6)

    surf = _chart(at, "traj_surface")
    assert surf["data"][0]["type"] == "contour"
    tr = [t for t in surf["data"] if t.get("name") == "trajectory"][0]
    np.testing.assert_allclose(figure_arrays({"data": [tr]}, 0, "x"), ref.coords[:, 0], rtol=1e-4, atol=1e-6)
    var = figure_arrays(_chart(at, "traj_variance"), 0, "y").astype(np.float64)
    np.testing.assert_allclose(var[:2], 100 * ref.explained_variance_ratio, rtol=1e-4)
    assert np.all(np.diff(var) <= 1e-6)  # ratios come sorted

    # display-only controls change the figure
    at.radio(key="traj_view").set_value("3d").run()
    assert _chart(at, "traj_surface")["data"][0]["type"] == "surface"
    at.toggle(key="traj_log").set_value(False).run()
    assert _chart(at, "traj_losses")["layout"]["yaxis"]["type"] == "linear"

    # the path table export reads back
    csv = exports.table_csv_bytes([{"step": int(s), "true_loss": float(t)} for s, t in zip(ref.steps, ref.true_loss)])
    back = np.genfromtxt(io.BytesIO(csv), delimiter=",", names=True)
    np.testing.assert_allclose(back["true_loss"], ref.true_loss, rtol=1e-9)


def test_run_without_trajectory_explains(app_test, tmp_path, workspace_dir):
    from landscape_core.models import build_model, model_spec
    from landscape_core.runs import save_run

    spec = model_spec("mlp", (2,), 2, width=4, depth=1)
    path = save_run(workspace_dir / "no-traj", build_model(spec, seed=0),
                    {"model": spec, "dataset": {"name": "moons"}})
    at = app_test(PAGE)
    at.session_state["active_run"] = str(path)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("no trajectory" in i.value for i in at.info)


def test_empty_workspace(app_test, empty_checkpoints):
    at = app_test(PAGE).run()
    assert not at.exception
    assert any("No runs yet" in i.value for i in at.info)
