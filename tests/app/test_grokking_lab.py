"""AppTest: Train / Compare offer the sequence and signal models and tasks (issue 15), refuse a mismatched
pair with one line, and the Train page's grokking lab draws a modular-addition run's curves and summary."""

from __future__ import annotations

import json

import numpy as np
import pytest
from app_helpers import chart_by_key, plotly_array

from landscape_core.data import DATASETS
from landscape_core.models import MODELS
from landscape_core.presets import GROKKING, grokking_config, grokking_summary
from landscape_core.training import train

TRAIN, COMPARE = "pages/1_Train.py", "pages/2_Compare.py"


def test_train_offers_every_registry_model_and_refuses_a_mismatch_once(app_test, workspace_dir):
    at = app_test(TRAIN, timeout=300).run()
    assert at.selectbox(key="train_model").options == list(MODELS)
    assert set(at.selectbox(key="train_dataset").options) == set(DATASETS)
    at.selectbox(key="train_dataset").set_value("parity").run()
    assert not at.exception, at.exception
    # the engine's one-line refusal, shown once; the hint names the token models
    assert len(at.error) == 1 and "dataset 'parity' has token inputs" in at.error[0].value
    assert any("transformer, lstm, gru" in c.value for c in at.caption)
    at.selectbox(key="train_model").set_value("lstm").run()
    assert len(at.error) == 0
    at.slider(key="train_par_len").set_value(6).run()  # 64 strings: 48 train
    at.select_slider(key="train_par_n").set_value(64).run()
    at.select_slider(key="train_rnn_width").set_value(16).run()
    at.slider(key="train_epochs").set_value(2).run()
    at.select_slider(key="train_bs").set_value(16).run()
    at.text_input(key="train_name").set_value("par-lstm").run()
    at.button(key="train_go").click().run()
    assert not at.exception, at.exception
    meta = json.loads((workspace_dir / "par-lstm" / "run.json").read_text())
    assert meta["model"]["name"] == "lstm" and meta["model"]["kwargs"]["width"] == 16
    assert meta["dataset"]["seq_len"] == 6 and meta["model"]["kwargs"]["vocab_size"] == 2
    assert len(meta["history"]) == 2


def test_mnist1d_with_cnn1d_and_transformer_widgets(app_test):
    at = app_test(TRAIN, timeout=300).run()
    at.selectbox(key="train_dataset").set_value("mnist1d").run()
    at.selectbox(key="train_model").set_value("cnn1d").run()
    assert not at.exception, at.exception
    assert len(at.error) == 0 and "train_c1_channels" in [s.key for s in at.select_slider]
    assert any("about" in c.value and "steps" in c.value for c in at.caption)  # timed a cnn1d step on mnist1d
    at.selectbox(key="train_model").set_value("lstm").run()
    assert len(at.error) == 1 and "model 'lstm' needs a token dataset" in at.error[0].value
    at.selectbox(key="train_dataset").set_value("modular_addition").run()
    at.selectbox(key="train_model").set_value("transformer").run()
    assert len(at.error) == 0
    at.select_slider(key="train_tf_width").set_value(16).run()
    at.select_slider(key="train_tf_heads").set_value(8).run()
    assert len(at.error) == 0  # 16 / 8 = 2 per head


def test_compare_trains_token_models_from_one_start(app_test, workspace_dir):
    at = app_test(COMPARE, timeout=300).run()
    assert at.selectbox(key="cmp_model").options == list(MODELS)
    at.selectbox(key="cmp_dataset").set_value("modular_addition").run()
    assert len(at.error) == 1 and "has token inputs" in at.error[0].value  # default model mlp
    at.selectbox(key="cmp_model").set_value("transformer").run()
    at.select_slider(key="cmp_mod_p").set_value(7).run()
    at.select_slider(key="cmp_tf_width").set_value(16).run()
    at.select_slider(key="cmp_tf_heads").set_value(2).run()
    at.slider(key="cmp_epochs").set_value(1).run()
    at.select_slider(key="cmp_bs").set_value(16).run()
    at.multiselect(key="cmp_opts").set_value(["sgd", "adam"]).run()
    assert len(at.error) == 0
    at.button(key="cmp_go").click().run()
    assert not at.exception, at.exception
    metas = [json.loads((p / "run.json").read_text()) for p in workspace_dir.iterdir()]
    assert sorted(m["config"]["optimizer"] for m in metas) == ["adam", "sgd"]
    assert {m["model"]["name"] for m in metas} == {"transformer"}
    assert {m["model"]["kwargs"]["heads"] for m in metas} == {2}
    df = at.dataframe[0].value
    assert len(df) == 2 and (df.lambda_max.notna()).all()


@pytest.fixture
def grok_run(workspace_dir):
    """A tiny grokking-lab run (p = 7, width 16, 60 full-batch AdamW steps) trained in the test."""
    cfg = grokking_config(modulus=7, train_fraction=0.6, width=16, heads=2, epochs=60, eval_every=5,
                          sharpness_every=20, sharpness_samples=16, snapshots=3, lr=1e-2)
    return train(cfg, out_dir=workspace_dir, name="grok-tiny").path


def test_grokking_view_draws_the_runs_curves_and_summary(app_test, grok_run):
    meta = json.loads((grok_run / "run.json").read_text())
    at = app_test(TRAIN, timeout=300)
    at.session_state["active_run"] = str(grok_run)
    at.run()
    assert not at.exception, at.exception
    fig = chart_by_key(at, "grok_curves")
    hist, sharp = meta["history"], meta["sharpness"]
    by_name = {t["name"]: t for t in fig["data"]}
    steps = [h["step"] for h in hist]
    assert plotly_array(by_name["train accuracy"]["x"]).tolist() == steps
    np.testing.assert_array_equal(plotly_array(by_name["test accuracy"]["y"]), [h["test_acc"] for h in hist])
    np.testing.assert_array_equal(plotly_array(by_name["weight norm"]["y"]), [h["weight_norm"] for h in hist])
    np.testing.assert_array_equal(plotly_array(by_name["λ_max"]["y"]), [r["lambda_max"] for r in sharp])
    assert plotly_array(by_name["λ_max"]["x"]).tolist() == [20, 40, 60]
    assert fig["layout"]["xaxis"]["type"] == "log"
    s = grokking_summary(hist)
    metrics = {m.label: m.value for m in at.metric}
    want = "not reached" if s["train_saturated_step"] is None else str(s["train_saturated_step"])
    assert metrics["train acc ≥ 99% at step"] == want
    assert metrics["final test accuracy"] == f"{s['final_test_acc']:.1%}"
    at.toggle(key="grok_logx").set_value(False).run()
    assert chart_by_key(at, "grok_curves")["layout"]["xaxis"]["type"] == "linear"


def test_grokking_preset_button_trains_the_preset(app_test, workspace_dir):
    at = app_test(TRAIN, timeout=600).run()
    at.select_slider(key="grok_steps").set_value(100).run()
    at.button(key="grok_go").click().run()
    assert not at.exception, at.exception
    meta = json.loads((workspace_dir / "grokking-p47-100steps" / "run.json").read_text())
    cfg = meta["config"]
    assert (cfg["optimizer"], cfg["weight_decay"], cfg["lr"], cfg["model"]) == ("adamw", 1.0, GROKKING["lr"],
                                                                                 "transformer")
    assert cfg["batch_size"] == round(0.5 * 47 * 47) and meta["dataset"]["modulus"] == 47
    assert (cfg["width"], cfg["depth"], cfg["heads"]) == (64, 1, 4)
    assert [r["step"] for r in meta["sharpness"]] == list(range(10, 101, 10))
    # the new run is active: its curves are drawn
    assert at.session_state["active_run"] == str(workspace_dir / "grokking-p47-100steps")
    at.run()
    assert chart_by_key(at, "grok_curves")["data"][0]["name"] == "train accuracy"
