"""AppTest: the Compare page trains optimizers from one start, reports budgets, curvature and curves."""

from __future__ import annotations

import json

from app_helpers import plotly_array

PAGE = "pages/2_Compare.py"


def test_opens_on_empty_workspace(app_test, empty_checkpoints):
    at = app_test(PAGE).run()
    assert not at.exception
    assert any("about" in c.value for c in at.caption)
    at.multiselect(key="cmp_opts").set_value([]).run()
    assert any("at least one optimizer" in i.value for i in at.info)


def test_equal_grad_evals_compare_sgd_and_sam(app_test, workspace_dir):
    at = app_test(PAGE, timeout=300).run()
    at.selectbox(key="cmp_dataset").set_value("moons").run()
    at.select_slider(key="cmp_n").set_value(200).run()
    at.select_slider(key="cmp_width").set_value(8).run()
    at.slider(key="cmp_depth").set_value(1).run()
    at.slider(key="cmp_epochs").set_value(2).run()
    at.multiselect(key="cmp_opts").set_value(["sgd", "sam"]).run()
    at.radio(key="cmp_budget").set_value("equal gradient evaluations").run()
    at.button(key="cmp_go").click().run()
    assert not at.exception, at.exception
    saved = sorted(p.name for p in workspace_dir.iterdir())
    assert len(saved) == 2 and saved[0].endswith("-sam") and saved[1].endswith("-sgd")
    df = at.dataframe[0].value
    sgd, sam = df[df.optimizer == "sgd"].iloc[0], df[df.optimizer == "sam"].iloc[0]
    assert sgd.grad_evals == sam.grad_evals == 2 * sam.steps
    assert sgd.steps == 2 * sam.steps
    assert (df.lambda_max > 0).all() and (df.trace_stderr > 0).all()
    # same initialisation: both trajectories start at the same point of the shared line/plane
    meta = {p.name: json.loads((workspace_dir / p.name / "run.json").read_text()) for p in workspace_dir.iterdir()}
    assert {m["config"]["init_seed"] for m in meta.values()} == {0}
    # the curve selector changes the plotted data
    curves = at.get("plotly_chart")[0]
    before = json.loads(curves.proto.spec)["data"][0]["y"]
    at.selectbox(key="cmp_metric").set_value("train_loss").run()
    after = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]["y"]
    name = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]["name"]
    assert after != before
    assert after == [h["train_loss"] for h in meta[name]["history"]]
    # with two runs the shared view is the line through both final points (t=0 first run, t=1 second)
    line = json.loads(at.get("plotly_chart")[1].proto.spec)
    xs = plotly_array(line["data"][0]["x"])
    assert min(xs) < 0 < 1 < max(xs)
