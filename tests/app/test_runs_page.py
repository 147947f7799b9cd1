"""AppTest: the Runs page lists runs, renames and deletes workspace runs, and copes with no runs."""

from __future__ import annotations

import io
import json
import zipfile

from ui.runs_ui import run_zip_bytes

PAGE = "pages/3_Runs.py"


def test_empty_workspace_guides_the_user(app_test, empty_checkpoints):
    at = app_test(PAGE).run()
    assert not at.exception
    assert any("Train" in i.value for i in at.info)
    assert len(at.dataframe) == 0


def test_lists_run_with_metrics(app_test, empty_checkpoints, tiny_run):
    at = app_test(PAGE).run()
    assert not at.exception
    df = at.dataframe[0].value
    assert list(df.index) == ["tiny-sgd"]
    meta = json.loads((tiny_run / "run.json").read_text())
    assert df.loc["tiny-sgd", "test_acc"] == meta["final"]["test_acc"]
    assert df.loc["tiny-sgd", "optimizer"] == "sgd"
    assert df.loc["tiny-sgd", "source"] == "workspace"


def test_rename_then_delete(app_test, empty_checkpoints, tiny_run, workspace_dir):
    at = app_test(PAGE).run()
    at.text_input(key="runs_new_name").set_value("renamed-run").run()
    at.button(key="runs_rename").click().run()
    assert not at.exception
    assert not tiny_run.exists()
    assert (workspace_dir / "renamed-run" / "run.json").is_file()
    assert list(at.dataframe[0].value.index) == ["renamed-run"]
    assert at.session_state["active_run"].endswith("renamed-run")

    # delete needs the confirmation box first
    assert at.button(key="runs_delete").disabled
    at.checkbox(key="runs_confirm_delete").check().run()
    at.button(key="runs_delete").click().run()
    assert not at.exception
    assert not (workspace_dir / "renamed-run").exists()
    assert any("No runs yet" in i.value for i in at.info)


def test_bad_rename_shows_one_line_error(app_test, empty_checkpoints, tiny_run):
    at = app_test(PAGE).run()
    at.text_input(key="runs_new_name").set_value("bad name/with slash").run()
    at.button(key="runs_rename").click().run()
    assert not at.exception
    assert len(at.error) == 1 and "invalid run name" in at.error[0].value
    assert "\n" not in at.error[0].value
    assert tiny_run.exists()


def test_make_active_and_zip(app_test, empty_checkpoints, tiny_run, workspace_dir):
    from landscape_core.training import TrainConfig, train

    other = train(TrainConfig(dataset={"name": "moons", "n_samples": 200}, width=4, depth=1, epochs=1,
                              batch_size=50, snapshots=0), out_dir=workspace_dir, name="other").path
    at = app_test(PAGE).run()
    at.selectbox(key="runs_selected").set_value("tiny-sgd").run()
    at.button(key="runs_make_active").click().run()
    assert at.session_state["active_run"] == str(tiny_run)
    at.selectbox(key="runs_selected").set_value("other").run()
    at.button(key="runs_make_active").click().run()
    assert at.session_state["active_run"] == str(other)
    names = zipfile.ZipFile(io.BytesIO(run_zip_bytes(str(tiny_run)))).namelist()
    assert any(n.endswith("run.json") for n in names) and any(n.endswith("model.safetensors") for n in names)
