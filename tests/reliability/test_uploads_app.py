"""Hostile uploads through the app: ``ui.upload_ui.process_upload`` (the Probe page's import function) and the
Probe page itself in AppTest, with ``st.file_uploader`` replaced by a stub that hands the page our bytes
(AppTest cannot drive the real uploader; the browser test covers the widget)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
import streamlit as st
import torch
from rel_helpers import digits_model, state_bytes_pt, state_bytes_safetensors, tree_listing, zip_folder
from streamlit.testing.v1 import AppTest

from landscape_core.models import build_model, model_spec
from landscape_core.params import model_hash
from landscape_core.runs import checkpoints_dir, list_runs, load_run, read_meta, save_run
from ui.upload_ui import process_upload

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
SPEC = {"name": "mlp", "width": 16, "depth": 2, "activation": "tanh", "batchnorm": False}


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _torchscript() -> bytes:
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(torch.nn.Linear(3, 2)), buf)
    return buf.getvalue()


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for k, v in entries.items():
            zf.writestr(k, v)
    return buf.getvalue()


def _hostile_case(tmp_path: Path, tiny_run: Path, case: str) -> tuple[str, bytes, str]:
    """``(filename, bytes, expected message fragment)`` of one hostile upload (built only when asked)."""
    state = {k: v.clone() for k, v in digits_model().state_dict().items()}

    def nan_state() -> dict:
        s = {k: v.clone() for k, v in state.items()}
        s["net.1.weight"][0, 0] = float("nan")
        return s

    def extra_missing() -> dict:
        s = dict(state)
        s.pop("net.3.bias")
        s["head.extra"] = torch.zeros(2)
        return s

    def cnn() -> dict:
        return build_model(model_spec("cnn", (1, 8, 8), 10, channels=4), seed=0).state_dict()

    rj = (tiny_run / "run.json").read_bytes()
    cases = {
        "pickle-rce": lambda: ("evil.pt", state_bytes_pt({"w": _Evil(tmp_path / "PWNED")}), "not plain tensors"),
        "torchscript": lambda: ("m.pt", _torchscript(), "TorchScript"),
        "zip-bomb": lambda: ("bomb.zip", _zip({"run.json": rj, "model.safetensors": bytes(32 * 2**20)}), "zip bomb"),
        "zip-traversal": lambda: ("t.zip", zip_folder(tiny_run, extra={"../../evil.txt": b"x"}), "escapes"),
        "zip-absolute": lambda: ("a.zip", zip_folder(tiny_run, extra={"/tmp/evil.txt": b"x"}), "absolute"),
        "truncated": lambda: ("w.pt", state_bytes_pt(state)[:-500], "truncated"),
        "empty": lambda: ("w.safetensors", b"", "empty"),
        "wrong-extension": lambda: ("w.txt", state_bytes_pt(state), "unsupported file type"),
        "renamed": lambda: ("w.pt", state_bytes_safetensors(state), "renamed or corrupt"),
        "other-architecture": lambda: ("c.safetensors", state_bytes_safetensors(cnn()), "do not fit"),
        "shape-mismatch": lambda: ("w.pt", state_bytes_pt({**state, "net.1.weight": torch.zeros(16, 32)}),
                                   "shape mismatch"),
        "extra-missing-keys": lambda: ("w.pt", state_bytes_pt(extra_missing()),
                                       "missing keys net.3.bias; unexpected keys head.extra"),
        "nan": lambda: ("w.pt", state_bytes_pt(nan_state()), "NaN or Inf"),
    }
    return cases[case]()


CASES = ["pickle-rce", "torchscript", "zip-bomb", "zip-traversal", "zip-absolute", "truncated", "empty",
         "wrong-extension", "renamed", "other-architecture", "shape-mismatch", "extra-missing-keys", "nan"]


@pytest.mark.parametrize("case", CASES)
def test_process_upload_refuses_hostile_input(tmp_path, workspace, tiny_run, case):
    fname, data, match = _hostile_case(tmp_path, tiny_run, case)
    before = tree_listing(tmp_path.parent)
    out = process_upload(fname, data, model_spec=SPEC, dataset="digits", workspace_path=workspace)
    assert out.ok is False and out.path is None
    assert match in out.message and "\n" not in out.message and "Traceback" not in out.message, out.message
    assert tree_listing(tmp_path.parent) == before  # nothing written anywhere (workspace, tmp, parent)
    assert not (tmp_path / "PWNED").exists()
    assert list_runs(workspace, include_shipped=False) == []


def test_process_upload_accepts_module_prefix_with_same_hash(workspace):
    model = digits_model(seed=5)
    data = state_bytes_pt({f"module.{k}": v for k, v in model.state_dict().items()})
    out = process_upload("dp.pt", data, model_spec=SPEC, dataset="digits", workspace_path=workspace)
    assert out.ok, out.message
    assert Path(out.path).parent == workspace.resolve()
    assert load_run(out.path).weights_hash == model_hash(model)


def test_process_upload_of_a_run_zip_keeps_its_dataset_settings(workspace, src_dir):
    """The page passes the dataset *name*; the run's own spec (sizes, noise) must survive the import."""
    spec = model_spec("mlp", (2,), 2, width=8, depth=1)
    model = build_model(spec, seed=0)
    src = save_run(src_dir / "moony", model, {"model": spec, "dataset": {"name": "moons", "n_samples": 200,
                                                                       "noise": 0.3}})
    out = process_upload("moony.zip", zip_folder(src, prefix="moony"), dataset="moons", workspace_path=workspace)
    assert out.ok, out.message
    ds = read_meta(out.path)["dataset"]
    assert ds["n_samples"] == 200 and ds["noise"] == 0.3
    assert load_run(out.path).weights_hash == model_hash(model)


# ------------------------------------------------------------------ the Probe page with a stubbed uploader
class _FakeUpload:
    def __init__(self, name: str, data: bytes) -> None:
        self.name, self._data, self.size, self.type = name, data, len(data), "application/octet-stream"

    def getvalue(self) -> bytes:
        return self._data

    def read(self) -> bytes:
        return self._data


@pytest.fixture
def probe_page(monkeypatch):
    holder: dict = {"file": None}
    # the checkpoint widget gets our file; the optional data upload stays empty
    monkeypatch.setattr(st, "file_uploader", lambda *a, **k: holder["file"] if k.get("key") == "probe_file" else None)
    st.cache_data.clear()

    def make(name: str, data: bytes) -> AppTest:
        holder["file"] = _FakeUpload(name, data)
        at = AppTest.from_file(str(ROOT / "pages/4_Probe_checkpoint.py"), default_timeout=120)
        at.session_state["active_run"] = str(checkpoints_dir() / "moons-tiny")
        return at

    return make


def _texts(at: AppTest) -> str:
    parts = [e.value for e in at.error] + [e.value for e in at.success] + [m.value for m in at.markdown]
    return " ".join(str(p) for p in parts)


def test_probe_page_refuses_a_pickle_payload_without_running_it(probe_page, tmp_path, workspace):
    marker = tmp_path / "PWNED"
    at = probe_page("evil.pt", state_bytes_pt({"w": _Evil(marker)}))
    at.run()
    assert not at.exception
    assert at.error and "not plain tensors" in at.error[0].value
    assert not marker.exists()
    assert list_runs(workspace, include_shipped=False) == []
    assert not [b for b in at.button if b.key == "probe_go"]  # refused before the import button appears


@pytest.mark.parametrize("case", ["torchscript", "zip-bomb", "zip-traversal", "truncated", "renamed"])
def test_probe_page_shows_one_line_errors(probe_page, tmp_path, workspace, tiny_run, case):
    fname, data, match = _hostile_case(tmp_path, tiny_run, case)
    at = probe_page(fname, data)
    at.run()
    assert not at.exception
    assert at.error and match in at.error[0].value and "\n" not in at.error[0].value.strip()
    assert list_runs(workspace, include_shipped=False) == []


def test_probe_page_imports_a_valid_state_dict_and_activates_it(probe_page, workspace):
    model = digits_model(seed=11)
    at = probe_page("mine.pt", state_bytes_pt(dict(model.state_dict())))
    at.run()
    assert not at.exception and not at.error
    at.selectbox(key="probe_act").set_value("tanh")  # the activation is not visible in the weights
    at.run()
    at.button(key="probe_go").click()
    at.run()
    assert not at.exception and not at.error, _texts(at)
    runs = list_runs(workspace, include_shipped=False)
    assert [r.name for r in runs] == ["mine"]
    assert at.session_state["active_run"] == str(runs[0].path)
    assert load_run(runs[0].path).weights_hash == model_hash(model)


def test_probe_page_wrong_architecture_is_one_line_error(probe_page, workspace):
    at = probe_page("mine.pt", state_bytes_pt(dict(digits_model().state_dict())))
    at.run()
    at.number_input(key="probe_width").set_value(32)
    at.run()
    at.button(key="probe_go").click()
    at.run()
    assert not at.exception
    assert at.error and "shape mismatch" in at.error[0].value
    assert list_runs(workspace, include_shipped=False) == []
