"""AppTest: diverged runs are said so (Train, sidebar, Runs, analysis pages); state fixes of issue 16."""

from __future__ import annotations

import json


def _train_digits_lr1(app_test, workspace_dir):
    at = app_test("pages/1_Train.py", timeout=300).run()
    at.select_slider(key="train_lr_False").set_value(1.0).run()
    at.slider(key="train_epochs").set_value(5).run()
    at.text_input(key="train_name").set_value("lr1").run()
    at.button(key="train_go").click().run()
    assert not at.exception, at.exception
    return at, workspace_dir / "lr1"


def test_diverged_run_red_line_sidebar_runs_and_analysis_banner(app_test, workspace_dir):
    at, run = _train_digits_lr1(app_test, workspace_dir)
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "diverged" and len(meta["history"]) < 5  # stopped early
    errors = [e.value for e in at.error]
    assert errors == [f"{meta['health']['message']} Run **lr1** is saved and marked **diverged**."]
    assert "SGD at lr=1, batch size 64" in errors[0]
    assert not any("Saved run" in s.value for s in at.success)
    # the sidebar, drawn before training, shows the new active run and its mark
    side = [c.value for c in at.sidebar.caption]
    assert any("Active run: **lr1**" in c and "diverged" in c for c in side), side
    assert at.session_state["active_run"] == str(run)

    runs = app_test("pages/3_Runs.py").run()
    table = runs.dataframe[0].value
    assert table.loc["lr1", "status"] == "diverged" and table.loc["digits-sgd", "status"] == "ok"

    curv = app_test("pages/6_Curvature.py", timeout=300)
    curv.session_state["active_run"] = str(run)
    curv.run()
    assert not curv.exception
    banners = [e.value for e in curv.error]
    assert len(banners) == 1 and "Run **lr1** is marked **diverged**" in banners[0]
    shipped = app_test("pages/6_Curvature.py").run()  # a healthy run: no banner
    assert not shipped.error


def test_healthy_training_updates_the_sidebar(app_test, workspace_dir):
    at = app_test("pages/1_Train.py").run()
    assert any("Active run: **digits-sgd**" in c.value for c in at.sidebar.caption)
    at.selectbox(key="train_dataset").set_value("moons").run()
    at.select_slider(key="train_width").set_value(8).run()
    at.slider(key="train_epochs").set_value(2).run()
    at.text_input(key="train_name").set_value("fresh").run()
    at.button(key="train_go").click().run()
    assert not at.exception
    assert [c.value for c in at.sidebar.caption if c.value.startswith("Active run")] == ["Active run: **fresh**"]
    assert any("Saved run **fresh**" in s.value for s in at.success) and not at.error


def test_image_model_on_moons_errors_once(app_test):
    at = app_test("pages/1_Train.py").run()
    at.selectbox(key="train_dataset").set_value("moons").run()
    for model in ("cnn", "resnet20"):
        at.selectbox(key="train_model").set_value(model).run()
        assert [e.value for e in at.error] == [f"{model} needs image input (C, H, W), got input shape (2,)"]
        assert at.button(key="train_go").disabled  # so it cannot show the same error a second time
