"""Probe page: each accepted upload kind becomes an active workspace run; bad uploads give one-line errors."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save as st_save

from landscape_core.runs import load_run
from ui.runs_ui import run_zip_bytes
from ui.upload_ui import mlp_spec, process_upload

PAGE = "pages/4_Probe_checkpoint.py"
ROOT = Path(__file__).resolve().parents[2]


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


# ------------------------------------------------- checkpoints as people have them, through the real widget
# The models are built here from real nn.Modules in their own layouts (tests/reliability/foreign_models.py)
# and uploaded through AppTest's file_uploader; the imported run must give the original's logits.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))
from foreign_models import (  # noqa: E402
    FC3,
    CifarResNet20,
    HFClassifier,
    LightningLike,
    TinyTransformer,
    onnx_bytes,
    randomise_batchnorm,
    sequential_mlp,
)

OCTET = "application/octet-stream"


def _pt(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _npz(X: np.ndarray, y: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, X=X.astype(np.float32), y=y)
    return buf.getvalue()


def _seeded(fn, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return fn().eval()


def _transformer() -> torch.nn.Module:
    m = _seeded(TinyTransformer, 0)
    with torch.no_grad():  # LayerNorm starts at ones/zeros: make every parameter distinct
        for p in m.parameters():
            p.add_(0.1 * torch.randn(p.shape))
    return m


def _format_case(case: str):
    """``(file name, bytes, original module, data file or None, activation to choose, format words)``."""
    g = np.random.default_rng(0)
    if case == "fc3.safetensors":
        m = _seeded(FC3, 1)
        return "fc3.safetensors", st_save({k: v.contiguous() for k, v in m.state_dict().items()}), m, None, "tanh", \
            "safetensors"
    if case == "sequential.pt":
        m = _seeded(sequential_mlp, 0)
        return "mlp.pt", _pt(m.state_dict()), m, None, None, "PyTorch state dict"
    if case == "lightning.ckpt":
        m = _seeded(LightningLike, 2)
        ckpt = {"epoch": 3, "global_step": 120, "state_dict": dict(m.state_dict()),
                "hyper_parameters": {"width": 10, "lr": 0.1}}
        return "epoch=3-step=120.ckpt", _pt(ckpt), m, None, None, "Lightning"
    if case == "dataparallel.th":
        m = _seeded(sequential_mlp, 3)
        return "model_best.th", _pt(torch.nn.DataParallel(m).state_dict()), m, None, None, "prefix 'module.'"
    if case == "pytorch_model.bin":
        m = _seeded(HFClassifier, 4)
        return "pytorch_model.bin", _pt(m.state_dict()), m, None, "gelu", "PyTorch"
    if case == "resnet20-optionA.th":
        m = randomise_batchnorm(_seeded(lambda: CifarResNet20(option="A", head="linear"), 7))
        data = ("cifar-like.npz", _npz(g.normal(size=(24, 3, 8, 8)), g.integers(0, 10, 24)))
        return "resnet20-a.th", _pt({"state_dict": m.state_dict(), "best_prec1": 91.7}), m, data, None, \
            "weights under 'state_dict'"
    if case == "transformer.onnx":
        m = _transformer()
        data = ("seqs.npz", _npz(g.normal(size=(16, 5, 4)), g.integers(0, 3, 16)))
        return "tiny-transformer.onnx", onnx_bytes(m, torch.zeros(2, 5, 4)), m, data, None, "ONNX"
    raise KeyError(case)


FORMATS = ["fc3.safetensors", "sequential.pt", "lightning.ckpt", "dataparallel.th", "pytorch_model.bin",
           "resnet20-optionA.th", "transformer.onnx"]


def _upload(at, fname: str, data: bytes, own: tuple[str, bytes] | None = None, act: str | None = None):
    at.file_uploader(key="probe_file").set_value((fname, data, OCTET)).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    if own is not None:
        at.file_uploader(key="probe_data").set_value((own[0], own[1], OCTET)).run()
    if act is not None:
        at.selectbox(key="probe_act").set_value(act).run()
    at.button(key="probe_go").click().run()
    assert not at.exception
    return at


def _mapping(at) -> list[dict]:
    df = at.dataframe[-1].value  # the report's key-mapping table is the page's last table
    assert list(df.columns) == ["file key", "model key", "shape"]
    return df.to_dict("records")


@pytest.mark.parametrize("case", FORMATS)
def test_page_imports_each_format_and_shows_what_was_detected(app_test, empty_checkpoints, workspace_dir, case):
    fname, data, original, own, act, fmt_words = _format_case(case)
    at = _upload(app_test(PAGE).run(), fname, data, own, act)
    assert not at.error, [e.value for e in at.error]
    assert len(at.success) == 1
    path = at.session_state["active_run"]
    assert Path(path).parent == workspace_dir.resolve()
    report = " ".join(m.value for m in at.markdown)
    assert fmt_words in report and "**Parameters**" in report
    n_params = sum(p.numel() for p in original.parameters())
    assert f"{n_params:,}" in report
    rows = _mapping(at)
    run = load_run(path)
    if case != "transformer.onnx":  # a state dict: every file tensor mapped once, with its shape
        src = {k.removeprefix("module.").removeprefix("model."): tuple(v.shape)
               for k, v in original.state_dict().items()}
        assert {r["file key"].removeprefix("model.") for r in rows} == set(src)
        assert all(r["shape"] == str(src[r["file key"].removeprefix("model.")]) for r in rows)
        assert [r["model key"] for r in rows] == list(run.model.state_dict())
    X, _ = run.train_data
    with torch.no_grad():  # same float32 operations in the same order: a few ulps at most
        assert (run.model(X) - original(X)).abs().max().item() <= 1e-5
    if own is not None:
        assert own[0] in report  # "your data cifar-like.npz ..."


def test_page_fc3_mapping_rows_and_csv_data(app_test, empty_checkpoints, workspace_dir):
    """fc1/fc2/fc3 onto the registry MLP (Flatten, Linear, act, Linear, act, Linear); data from a .csv
    whose label column is named ``digit``."""
    m = _seeded(FC3, 1)
    g = np.random.default_rng(3)
    X, y = g.normal(size=(30, 64)), g.integers(0, 10, 30)
    csv = "digit," + ",".join(f"p{i}" for i in range(64)) + "\n" + "\n".join(
        f"{c}," + ",".join(f"{v:.6f}" for v in row) for c, row in zip(y, X)) + "\n"
    at = app_test(PAGE).run()
    at.file_uploader(key="probe_file").set_value(("fc3.safetensors", st_save(m.state_dict()), OCTET)).run()
    assert at.text_input(key="probe_widths").value == "12, 8"  # widths read off the shapes
    at.file_uploader(key="probe_data").set_value(("mine.csv", csv.encode(), "text/csv")).run()
    at.text_input(key="probe_label").set_value("digit").run()
    at.button(key="probe_go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    rows = _mapping(at)
    model_keys = [k for k in load_run(at.session_state["active_run"]).model.state_dict()]
    assert [(r["file key"], r["model key"], r["shape"]) for r in rows] == [
        ("fc1.weight", model_keys[0], "(12, 64)"), ("fc1.bias", model_keys[1], "(12,)"),
        ("fc2.weight", model_keys[2], "(8, 12)"), ("fc2.bias", model_keys[3], "(8,)"),
        ("fc3.weight", model_keys[4], "(10, 8)"), ("fc3.bias", model_keys[5], "(10,)")]
    assert "mine.csv" in " ".join(mk.value for mk in at.markdown)
    assert any("not visible in the weights" in c.value or "not stored in the weights" in c.value for c in at.caption)


def test_page_analyse_button_makes_the_import_active(app_test, empty_checkpoints, workspace_dir):
    m = _seeded(sequential_mlp, 0)
    at = _upload(app_test(PAGE).run(), "mlp.pt", _pt(m.state_dict()))
    path = at.session_state["active_run"]
    at.session_state["active_run"] = None  # the user looked at another run meanwhile
    at.button(key="probe_open_6_Curvature").click().run()
    assert not at.exception
    assert at.session_state["active_run"] == path
    assert any("active run" in i.value for i in at.info)  # pages are not registered in AppTest: no switch


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _refusal(case: str, tmp_path: Path):
    """``(file, bytes, own data or None, expected message)`` of a refused upload through the real widget."""
    fc3 = _seeded(FC3, 1).state_dict()
    if case == "pickle-in-ckpt":
        return "evil.ckpt", _pt({"state_dict": dict(fc3), "callbacks": _Evil(tmp_path / "PWNED")}), None, \
            "not plain tensors"
    if case == "safetensors-named-th":
        return "w.th", st_save(dict(fc3)), None, "renamed or corrupt"
    if case == "junk-onnx":
        return "m.onnx", b"\x08\x07junk that is no protobuf graph", None, "ONNX"
    if case == "partial-match":
        return "w.pt", _pt({k: v for k, v in fc3.items() if k != "fc2.bias"}), None, "do not fit"
    if case == "data-wrong-shape":
        g = np.random.default_rng(0)
        return "w.pt", _pt(dict(fc3)), ("d.npz", _npz(g.normal(size=(8, 3)), g.integers(0, 2, 8))), "shape"
    if case == "csv-without-label":
        return "w.pt", _pt(dict(fc3)), ("d.csv", b"a,b\n1,2\n"), "no label column"
    raise KeyError(case)


@pytest.mark.parametrize("case", ["pickle-in-ckpt", "safetensors-named-th", "junk-onnx", "partial-match",
                                  "data-wrong-shape", "csv-without-label"])
def test_page_refusals_are_one_red_line_and_write_nothing(app_test, empty_checkpoints, workspace_dir, tmp_path,
                                                          case):
    fname, data, own, match = _refusal(case, tmp_path)
    at = app_test(PAGE).run()
    at.file_uploader(key="probe_file").set_value((fname, data, OCTET)).run()
    if not at.error:  # refused on import, not on inspection
        if own is not None:
            at.file_uploader(key="probe_data").set_value((own[0], own[1], OCTET)).run()
        at.button(key="probe_go").click().run()
    assert not at.exception
    assert len(at.error) == 1, [e.value for e in at.error]
    msg = at.error[0].value
    assert match in msg and "\n" not in msg.strip() and "Traceback" not in msg, msg
    assert [p.name for p in workspace_dir.iterdir()] == []  # no run, no temp folder
    assert not (tmp_path / "PWNED").exists()


def test_runs_page_lists_the_import_with_its_file_and_format(app_test, empty_checkpoints, tiny_run, workspace_dir):
    m = _seeded(sequential_mlp, 0)
    out = process_upload("model_best.th", _pt(torch.nn.DataParallel(m).state_dict()))
    assert out.ok, out.message
    at = app_test("pages/3_Runs.py").run()
    assert not at.exception
    df = at.dataframe[0].value
    origin = dict(zip(df.index, df["origin"]))
    assert origin == {"tiny-sgd": "trained", "model_best": "imported model_best.th (pt)"}


def test_page_flags_the_shipped_tanh_weights_imported_as_relu(app_test, empty_checkpoints):
    """The shipped digits MLP is tanh; imported with the default relu it reaches far less than its 97% test
    accuracy. The import succeeds, but the page says so and names the activation that restores it."""
    data = (ROOT / "checkpoints" / "digits-sgd" / "model.safetensors").read_bytes()
    at = _upload(app_test(PAGE).run(), "digits.safetensors", data, act="relu")
    assert len(at.success) == 1 and not at.error
    warnings = " ".join(w.value for w in at.warning)
    assert "Suspect import" in warnings and "tanh" in warnings, warnings
    at2 = _upload(app_test(PAGE).run(), "digits.safetensors", data, act="tanh")
    assert not any("Suspect import" in w.value for w in at2.warning)
