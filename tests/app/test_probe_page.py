"""Probe page: each accepted upload kind becomes an active workspace run; bad uploads give one-line errors."""

from __future__ import annotations

import io
import json

import pytest
import torch
from safetensors.torch import save as st_save

from landscape_core.runs import load_run
from ui.runs_ui import run_zip_bytes
from ui.upload_ui import mlp_spec, process_upload

PAGE = "pages/4_Probe_checkpoint.py"


def _state(run_path):
    return {k: v.contiguous() for k, v in load_run(run_path).model.state_dict().items()}


def _upload_kinds(run_path) -> dict[str, bytes]:
    state = _state(run_path)
    buf = io.BytesIO()
    torch.save(state, buf)
    return {"w.safetensors": st_save(state), "w.pt": buf.getvalue(), "run.zip": run_zip_bytes(str(run_path))}


@pytest.mark.parametrize("fname", ["w.safetensors", "w.pt", "run.zip"])
def test_process_upload_accepts_each_kind(tiny_run, workspace_dir, fname):
    data = _upload_kinds(tiny_run)[fname]
    spec = None if fname.endswith(".zip") else mlp_spec(8, 1, "relu", False)
    out = process_upload(fname, data, model_spec=spec, dataset={"name": "moons", "n_samples": 200})
    assert out.ok, out.message
    run = load_run(out.path)
    assert run.weights_hash == json.loads((tiny_run / "run.json").read_text())["weights_hash"]
    assert str(workspace_dir.resolve()) in str(run.path.resolve())


def test_process_upload_refuses_bad_input_in_one_line(tiny_run):
    state = _state(tiny_run)
    cases = {
        ("junk.safetensors", b"this is not a tensor file"): None,
        ("w.safetensors", st_save(state)): mlp_spec(16, 1, "relu", False),  # wrong width
        ("w.txt", st_save(state)): None,
    }
    for (fname, data), spec in cases.items():
        out = process_upload(fname, data, model_spec=spec, dataset={"name": "moons", "n_samples": 200})
        assert not out.ok and out.path is None
        assert out.message and "\n" not in out.message and "Traceback" not in out.message


def test_page_empty_then_upload_safetensors(app_test, empty_checkpoints, tiny_run, workspace_dir):
    at = app_test(PAGE).run()
    assert not at.exception
    assert any("Accepted" in c.value for c in at.caption)
    at.file_uploader(key="probe_file").set_value(("w.safetensors", _upload_kinds(tiny_run)["w.safetensors"],
                                                  "application/octet-stream")).run()
    assert not at.exception
    # the architecture was read off the shapes: width 8, one hidden layer
    assert at.number_input(key="probe_width").value == 8 and at.number_input(key="probe_depth").value == 1
    at.selectbox(key="probe_dataset").set_value("moons").run()
    at.text_input(key="probe_name").set_value("probed").run()
    at.button(key="probe_go").click().run()
    assert not at.exception
    assert len(at.success) == 1 and "probed" in at.success[0].value
    assert at.session_state["active_run"].endswith("probed")
    assert (workspace_dir / "probed" / "run.json").is_file()


def test_page_bad_upload_shows_error(app_test, empty_checkpoints):
    at = app_test(PAGE).run()
    at.file_uploader(key="probe_file").set_value(("bad.pt", b"\x80\x04not really a pickle", "application/octet-stream"))
    at.run()
    assert not at.exception
    assert len(at.error) == 1 and "\n" not in at.error[0].value
    assert not [b for b in at.button if b.key == "probe_go"]


def test_page_wrong_architecture_shows_error(app_test, empty_checkpoints, tiny_run, workspace_dir):
    at = app_test(PAGE).run()
    at.file_uploader(key="probe_file").set_value(("w.pt", _upload_kinds(tiny_run)["w.pt"], "application/octet-stream"))
    at.run()
    at.number_input(key="probe_width").set_value(9).run()
    at.button(key="probe_go").click().run()
    assert not at.exception
    assert len(at.error) == 1
    assert not any(p.name != "tiny-sgd" for p in workspace_dir.iterdir() if not p.name.startswith("."))


def test_page_with_shipped_runs_keeps_default_active_run(app_test):
    at = app_test(PAGE).run()
    assert not at.exception
    assert at.session_state["active_run"].endswith("digits-sgd")
    assert "digits-sgd" in at.sidebar.caption[0].value
