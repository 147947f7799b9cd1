"""AppTest of pages/5_Loss_surface.py on the shipped digits-sgd run (small grids to stay fast)."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from dataclasses import replace

import numpy as np
import pytest

from landscape_core.functional import loss_function_for_run
from landscape_core.runs import checkpoints_dir, load_run
from ui import exports
from ui.figures import LIFT_FRACTION, figure_arrays

PAGE = "pages/5_Loss_surface.py"
RUN = checkpoints_dir() / "digits-sgd"


def _fig(at, key: str = "surf_fig") -> dict:
    charts = [c for c in at.get("plotly_chart") if c.proto.id and key in c.proto.id] or list(at.get("plotly_chart"))
    return json.loads(charts[-1].proto.spec)


def _small(at, **extra):
    at.session_state["surf_grid"] = 11
    at.session_state["surf_samples"] = 128
    for k, v in extra.items():
        at.session_state[k] = v
    return at


@pytest.fixture
def page(app_test):
    if not (RUN / "run.json").is_file():
        pytest.fail("shipped run checkpoints/digits-sgd is missing (run scripts/make_checkpoints.py)")
    return app_test(PAGE)


def test_centre_equals_loss_and_controls_change_figure(page):
    at = _small(page).run()
    assert not at.exception, [e.value for e in at.exception]
    fig = _fig(at)
    z = figure_arrays(fig, 0, "z")
    x = figure_arrays(fig, 0, "x")
    assert z.shape == (11, 11) and fig["data"][0]["type"] == "contour"
    # independent computation of the run's loss on the same subset (128 train examples, seed 0)
    expected, _ = loss_function_for_run(load_run(RUN), split="train", samples=128, seed=0).evaluate()
    # the batched grid evaluator sums in another order than evaluate(): float32 rounding, rel ~1e-5
    assert z[5, 5] == pytest.approx(expected, rel=1e-4)
    assert x.max() == pytest.approx(1.0)
    assert z.min() == pytest.approx(z[5, 5])  # a trained minimum: the centre is the lowest grid point

    # display-only: log colour gives log10 of the same grid
    at.toggle(key="surf_log").set_value(True).run()
    np.testing.assert_allclose(figure_arrays(_fig(at), 0, "z"), np.log10(z), rtol=1e-5)
    at.toggle(key="surf_log").set_value(False).run()

    # span slider: the grid now covers +/- 0.5
    at.slider(key="surf_span").set_value(0.5).run()
    fig2 = _fig(at)
    assert figure_arrays(fig2, 0, "x").max() == pytest.approx(0.5)
    z2 = figure_arrays(fig2, 0, "z")
    assert z2[5, 5] == pytest.approx(expected, rel=1e-4)
    assert z2.max() < z.max()  # a smaller neighbourhood of a minimum has lower loss at its edge

    # directions: gradient + random gives different axes and values
    at.selectbox(key="surf_kind").set_value("gradient").run()
    assert not at.exception
    fig3 = _fig(at)
    assert "-gradient" in json.dumps(fig3["layout"])
    assert not np.allclose(figure_arrays(fig3, 0, "z"), z2)

    # the page counts its full runs in session state (never on screen): five runs so far
    assert at.session_state["_count:page:surface"] == 5
    assert not any("Page run #" in c.value for c in at.caption)


def test_pca_trajectory_3d_and_exports(page):
    at = _small(page, surf_kind="pca").run()
    assert not at.exception, [e.value for e in at.exception]
    fig = _fig(at)
    names = [t.get("name") for t in fig["data"]]
    assert "trajectory" in names
    assert "PC1" in json.dumps(fig["layout"])
    at.radio(key="surf_view").set_value("3d").run()
    fig3 = _fig(at)
    assert fig3["data"][0]["type"] == "surface" and fig3["data"][1]["type"] == "scatter3d"
    # the trajectory is drawn on (1% of the z range above) the surface; its last snapshot is the final
    # point (0, 0), a grid node (the PCA box is aligned on 0), where the surface is the run's loss
    tz = figure_arrays(fig3, 1, "z")
    zs = figure_arrays(fig3, 0, "z")
    assert figure_arrays(fig3, 1, "x")[-1] == pytest.approx(0.0, abs=1e-6)
    lift = LIFT_FRACTION * float(zs.max() - zs.min())
    expected, _ = loss_function_for_run(load_run(RUN), split="train", samples=128, seed=0).evaluate()
    assert tz[-1] - lift == pytest.approx(expected, rel=1e-4)
    assert np.all(tz - lift >= zs.min() - 1e-6)
    # downloads: compute the same cached surface and read each payload back
    from ui import analysis

    meta = json.loads((RUN / "run.json").read_text())
    s = analysis.compute_surface_result(str(RUN), analysis.SurfaceSettings(directions="pca", grid=5, samples=64))
    z5 = np.load(io.BytesIO(exports.surface_npz_bytes(s)))
    assert z5["loss"].shape == (5, 5) and z5["trajectory_xy"].shape[1] == 2
    i0 = int(np.argmin(np.abs(z5["alphas"])))
    j0 = int(np.argmin(np.abs(z5["betas"])))
    assert z5["alphas"][i0] == pytest.approx(0.0, abs=1e-9) and z5["betas"][j0] == pytest.approx(0.0, abs=1e-9)
    assert z5["loss"][j0, i0] == pytest.approx(s.surface.center_loss, rel=1e-4)
    assert z5["trajectory_xy"][-1] == pytest.approx([0.0, 0.0], abs=1e-6)
    assert ET.fromstring(exports.surface_vtp_bytes(s)).find("PolyData/Piece").get("NumberOfPoints") == "25"
    png, (w, h) = exports.surface_png_bytes(s, scale=10)
    assert exports.read_png_size(png) == (w, h) == (50, 50)
    assert meta["weights_hash"]


def test_one_dimensional_and_compare(page):
    at = _small(page, surf_dims=1).run()
    assert not at.exception, [e.value for e in at.exception]
    fig = _fig(at)
    assert fig["data"][0]["type"] == "scatter"
    assert len(figure_arrays(fig, 0, "y")) == 11
    other = str(checkpoints_dir() / "digits-adam")
    at.radio(key="surf_dims").set_value(2).run()
    at.radio(key="surf_view").set_value("contour")
    at2 = at.multiselect(key="surf_compare").set_value([other]).run()
    assert not at2.exception, [e.value for e in at2.exception]
    fig2 = _fig(at2)
    contours = [t for t in fig2["data"] if t["type"] == "contour"]
    assert len(contours) == 2
    assert contours[0]["zmin"] == contours[1]["zmin"] and contours[0]["zmax"] == contours[1]["zmax"]


def test_empty_workspace_shows_guidance(app_test, empty_checkpoints):
    at = app_test(PAGE).run()
    assert not at.exception
    assert any("No runs yet" in i.value for i in at.info)
    assert not at.get("plotly_chart")


def test_plane_through_runs_and_coarse_preview(page):
    from ui import analysis

    others = [str(checkpoints_dir() / "digits-adam"), str(checkpoints_dir() / "digits-sam")]
    at = _small(page, surf_grid=13, surf_kind="runs", surf_others=others).run()
    assert not at.exception, [e.value for e in at.exception]
    fig = _fig(at)
    pts = {d["name"]: (d["x"][0], d["y"][0]) for d in fig["data"] if d.get("mode") == "markers+text"}
    assert set(pts) == {"digits-sgd", "digits-adam", "digits-sam"}
    assert pts["digits-sgd"] == pytest.approx((0.0, 0.0), abs=1e-9)
    # B sits on the first axis at its true Euclidean distance from A
    ta = load_run(RUN).model.state_dict()
    tb = load_run(others[0]).model.state_dict()
    dist = float(sum(((tb[k].double() - ta[k].double()) ** 2).sum() for k in ta)) ** 0.5
    assert pts["digits-adam"][0] == pytest.approx(dist, rel=1e-5) and abs(pts["digits-adam"][1]) < 1e-6 * dist
    # progressive refinement: the coarse 11 x 11 preview was computed (and cached) before the 13 x 13 grid
    info = analysis.run_summary(str(RUN))
    settings = analysis.SurfaceSettings(directions="runs", dims=2, span=1.0, samples=128, split="train", seed=0,
                                        runs=tuple(others))
    assert analysis.has_result("surface", str(RUN), info["weights_hash"], replace(settings, grid=11))
    assert analysis.has_result("surface", str(RUN), info["weights_hash"], replace(settings, grid=13))


def test_view_choice_survives_the_compute_button_stop(app_test):
    """A grid above AUTO_POINTS waits for Compute (the view is not drawn); the chosen view comes back."""
    at = app_test("pages/5_Loss_surface.py", timeout=300)
    at.session_state["surf_samples"] = 128
    at.run()
    at.radio(key="surf_view").set_value("3d").run()
    assert json.loads(at.get("plotly_chart")[-1].proto.spec)["data"][0]["type"] == "surface"
    at.slider(key="surf_grid").set_value(43).run()  # 43 x 43 > 41 x 41: waits for the button
    assert not any(r.key == "surf_view" for r in at.radio) and not at.get("plotly_chart")
    at.button(key="surf_compute").click().run()
    assert not at.exception
    assert at.radio(key="surf_view").value == "3d"
    assert json.loads(at.get("plotly_chart")[-1].proto.spec)["data"][0]["type"] == "surface"
    assert not at.get("progress")
