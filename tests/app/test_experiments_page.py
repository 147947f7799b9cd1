"""AppTests for pages/10_Experiments.py: a small sweep with progress, scatter and tau; resume; presets; report."""

import json

from app_helpers import make_tiny_run

from landscape_core import training

PAGE = "pages/10_Experiments.py"


def _small_grid(at, lrs, bss):
    at.multiselect(key="sw_lrs").set_value(lrs)
    at.multiselect(key="sw_bs").set_value(bss)
    at.slider(key="sw_epochs").set_value(1)
    at.select_slider(key="sw_width").set_value(8)
    at.slider(key="sw_depth").set_value(1)
    at.select_slider(key="sw_samples").set_value(64)
    at.selectbox(key="sw_train_size").set_value(300)
    return at.run()


def test_page_renders_three_tabs(app_test):
    at = app_test(PAGE).run()
    assert not at.exception
    assert [t.label for t in at.tabs] == ["Sweep lab", "Presets", "Report"]
    assert {b.key for b in at.button} >= {"sw_start", "pr_run_adam-vs-sgd", "pr_run_sgd-sam-adam", "rep_build"}


def test_sweep_runs_shows_scatter_and_tau_then_resumes(app_test, workspace_dir, monkeypatch):
    calls = []
    real = training.train

    def counting(cfg, **kw):
        calls.append((cfg.lr, cfg.batch_size))
        return real(cfg, **kw)

    monkeypatch.setattr(training, "train", counting)
    at = _small_grid(app_test(PAGE).run(), [0.05, 0.5], [64])
    at.button(key="sw_start").click().run()
    assert not at.exception
    assert len(calls) == 2
    assert not at.get("progress")  # the bar is cleared when done; a one-line summary replaces it
    assert any("2/2 points" in c.value and "2 computed now" in c.value for c in at.caption)
    assert (workspace_dir / "sweeps" / "digits-lr-bs" / "sweep.json").is_file()
    assert len(list((workspace_dir / "sweeps" / "digits-lr-bs" / "points").glob("*.json"))) == 2

    # a bigger grid in the same sweep folder: the two finished points are reused, only 2 new ones train
    at = _small_grid(at, [0.05, 0.5], [64, 128])
    assert any("2 already finished" in c.value for c in at.caption)
    at.button(key="sw_start").click().run()
    assert not at.exception
    assert len(calls) == 4 and set(calls[2:]) == {(0.05, 128), (0.5, 128)}
    assert not at.get("progress")
    assert any("4/4 points" in c.value and "2 reused" in c.value for c in at.caption)
    table = at.dataframe[0].value
    assert len(table) == 4 and {"lr", "batch_size", "test_acc", "lambda_max", "gen_gap"} <= set(table.columns)
    charts = at.get("plotly_chart")
    assert len(charts) >= 2  # scatter + batch-size effect
    scatter = json.loads(charts[0].proto.spec)["data"]
    assert sum(len(t["x"]) if isinstance(t["x"], list) else 2 for t in scatter) == 4
    tau_lines = [m.value for m in at.markdown if "Kendall" in m.value]
    assert tau_lines and "n = 4" in tau_lines[0] and "CI" in tau_lines[0]

    # switching the plotted pair updates the tau sentence
    at.selectbox(key="sw_plot_target").set_value("gen_gap").run()
    assert any("generalization gap" in m.value and "Kendall" in m.value for m in at.markdown)


def test_preset_button_gives_table_and_surfaces(app_test, monkeypatch):
    from landscape_core import presets

    monkeypatch.setattr(presets, "BASE", {**presets.BASE, "width": 8, "depth": 1, "snapshots": 0})
    at = app_test(PAGE).run()
    at.slider(key="pr_epochs").set_value(1)
    at.select_slider(key="pr_grid").set_value(5)
    at.radio(key="pr_budget").set_value("grad-evals")
    at.run()
    at.button(key="pr_run_sgd-sam-adam").click().run()
    assert not at.exception
    assert not at.get("progress")  # cleared when done
    assert any("equal gradient evaluations" in i.value for i in at.info)
    df = next(d.value for d in at.dataframe if "configuration" in d.value.columns)
    assert list(df["optimizer"]) == ["sgd", "sam", "adam"]
    assert df["test_acc"].between(0, 1).all() and (df["lambda_max"] > 0).all()
    sam = df[df["optimizer"] == "sam"].iloc[0]
    assert sam["grad_evals"] == 2 * sam["steps"]


def test_report_tab_builds_downloadable_html(app_test, workspace_dir, empty_checkpoints):
    make_tiny_run(workspace_dir, "tiny-a")
    make_tiny_run(workspace_dir, "tiny-b", optimizer="adam")
    at = app_test(PAGE).run()
    assert at.multiselect(key="rep_runs").options == ["tiny-a (workspace)", "tiny-b (workspace)"]
    paths = sorted(str(p) for p in workspace_dir.iterdir() if (p / "run.json").is_file())
    at.multiselect(key="rep_runs").set_value(paths)
    at.select_slider(key="rep_samples").set_value(128)
    at.select_slider(key="rep_grid").set_value(11)
    at.run()
    at.button(key="rep_build").click().run()
    assert not at.exception
    rep = at.session_state["report"]
    assert rep["sections"] == ["settings", "metrics", "curves", "surfaces", "spectra", "trajectories", "connectivity"]
    assert rep["html"].startswith("<!DOCTYPE html>") and 'id="connectivity"' in rep["html"]
    assert {"metrics", "settings", "surfaces", "spectra"} <= set(rep["tables"])
    assert not at.get("progress")
    assert any("report ready" in c.value for c in at.caption)
