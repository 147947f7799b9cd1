"""AppTest: the Train page trains a tiny model into the workspace, reports errors in one line."""

from __future__ import annotations

import json

from ui.training_figures import compare_curves, learning_curves, sharpness_figure

PAGE = "pages/1_Train.py"


def _tiny(at):
    at.selectbox(key="train_dataset").set_value("moons").run()
    at.select_slider(key="train_n").set_value(200).run()
    at.select_slider(key="train_width").set_value(8).run()
    at.slider(key="train_depth").set_value(1).run()
    at.slider(key="train_epochs").set_value(2).run()
    return at


def test_page_opens_on_empty_workspace(app_test, empty_checkpoints):
    at = app_test(PAGE).run()
    assert not at.exception
    assert any("Estimated" in c.value or "about" in c.value for c in at.caption)


def test_tiny_training_creates_active_run(app_test, workspace_dir):
    at = _tiny(app_test(PAGE).run())
    at.text_input(key="train_name").set_value("my-moons").run()
    at.button(key="train_go").click().run()
    assert not at.exception, at.exception
    run = workspace_dir / "my-moons"
    meta = json.loads((run / "run.json").read_text())
    assert meta["config"]["epochs"] == 2 and meta["dataset"]["name"] == "moons"
    assert len(meta["history"]) == 2
    assert at.session_state["active_run"] == str(run)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["test accuracy"] == f"{meta['final']['test_acc']:.1%}"
    spec = at.get("plotly_chart")[-1].proto.spec
    data = json.loads(spec)["data"]
    test_loss = [t for t in data if t["name"] == "test loss"][0]
    assert test_loss["y"] == [h["test_loss"] for h in meta["history"]]


def test_sharpness_tracking_plots_lambda_max_against_2_over_lr(app_test, workspace_dir):
    at = _tiny(app_test(PAGE).run())
    at.toggle(key="train_sharp").set_value(True).run()
    at.select_slider(key="train_sharp_k").set_value(5).run()
    at.slider(key="train_epochs").set_value(4).run()  # 12 steps: measured at steps 5 and 10
    at.button(key="train_go").click().run()
    assert not at.exception, at.exception
    meta = json.loads(next(workspace_dir.iterdir()).joinpath("run.json").read_text())
    recs = meta["sharpness"]
    assert len(recs) >= 2 and all(r["lambda_max"] > 0 for r in recs)
    spec = json.loads(at.get("plotly_chart")[-1].proto.spec)
    assert spec["data"][0]["y"] == [r["lambda_max"] for r in recs]
    assert spec["layout"]["shapes"][0]["y0"] == 2.0 / meta["config"]["lr"]


def test_settings_change_the_estimate_and_bad_dataset_errors(app_test):
    at = app_test(PAGE).run()
    at.slider(key="train_epochs").set_value(2).run()
    c2 = [c.value for c in at.caption if "steps" in c.value][0]
    at.slider(key="train_epochs").set_value(4).run()
    c4 = [c.value for c in at.caption if "steps" in c.value][0]
    n2 = int(c2.split("(")[1].split(" ")[0])
    n4 = int(c4.split("(")[1].split(" ")[0])
    assert n4 == 2 * n2
    at.selectbox(key="train_opt").set_value("sam").run()
    assert any("2 gradient evaluations" in c.value for c in at.caption)
    at.selectbox(key="train_dataset").set_value("cifar10").run()
    assert not at.exception
    assert len(at.error) == 1 and "cifar10" in at.error[0].value
    assert "train_go" not in [b.key for b in at.button]  # nothing to train on


def test_invalid_setting_shows_error_and_saves_nothing(app_test, workspace_dir):
    at = _tiny(app_test(PAGE).run())  # 200 moons -> 150 training examples
    at.select_slider(key="train_bs").set_value(256).run()
    at.button(key="train_go").click().run()
    assert not at.exception
    assert len(at.error) == 1 and "batch_size 256" in at.error[0].value
    assert list(workspace_dir.iterdir()) == []


def test_figures_carry_the_data():
    hist = [{"epoch": 1, "train_loss": 1.0, "test_loss": 1.2, "train_acc": 0.5, "test_acc": 0.4},
            {"epoch": 2, "train_loss": 0.5, "test_loss": 0.7, "train_acc": 0.8, "test_acc": 0.7}]
    fig = learning_curves(hist)
    assert [t.name for t in fig.data] == ["train loss", "train acc", "test loss", "test acc"]
    assert list(fig.data[3].y) == [0.4, 0.7]
    sf = sharpness_figure([{"step": 10, "lambda_max": 3.0}, {"step": 20, "lambda_max": 5.0}], lr=0.5)
    assert list(sf.data[0].y) == [3.0, 5.0]
    assert sf.layout.shapes[0].y0 == 4.0  # 2 / lr
    cf = compare_curves({"a-sgd": hist, "a-sam": hist}, metric="test_acc")
    assert [t.name for t in cf.data] == ["a-sgd", "a-sam"] and cf.data[0].line.color != cf.data[1].line.color
