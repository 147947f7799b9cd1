"""Hostile and broken uploads through the engine (landscape_core.uploads): each bad input is refused
with a one-line UploadError, nothing runs, and nothing is written (inside or outside the workspace)."""

from __future__ import annotations

import io
import math
import stat
import zipfile
from pathlib import Path

import pytest
import torch
from rel_helpers import (
    digits_model,
    digits_spec,
    state_bytes_pt,
    state_bytes_safetensors,
    tree_listing,
    zip_folder,
)

from landscape_core.models import build_model, model_spec
from landscape_core.params import model_hash, weights_hash
from landscape_core.runs import list_runs, load_run, read_meta
from landscape_core.uploads import (
    ACCEPTED_SUFFIXES,
    UploadError,
    guess_model_spec,
    import_upload,
    inspect_upload,
)

SPEC_ARGS = {"name": "mlp", "kwargs": {"width": 16, "depth": 2, "activation": "tanh"}}


def refused(tmp_path: Path, workspace: Path, fn, match: str) -> UploadError:
    """Call ``fn``; it must raise a one-line UploadError matching ``match`` and write nothing anywhere."""
    before = tree_listing(tmp_path)
    with pytest.raises(UploadError, match=match) as info:
        fn()
    msg = str(info.value)
    assert "\n" not in msg and msg and len(msg) < 400, msg
    assert tree_listing(tmp_path) == before, "a refused upload left files behind"
    assert list_runs(workspace, include_shipped=False) == []
    return info.value


# ---------------------------------------------------------------- accepted inputs (the control group)
@pytest.mark.parametrize("prefix", [None, "tiny"])
def test_run_zip_roundtrip_keeps_weights_meta_and_trajectory(tiny_run, workspace, prefix):
    original = load_run(tiny_run)
    path = import_upload("tiny.zip", zip_folder(tiny_run, prefix=prefix), workspace=workspace)
    assert path.parent == workspace.resolve()
    run = load_run(path)
    assert run.weights_hash == original.weights_hash
    assert model_hash(run.model) == model_hash(original.model)
    snaps, steps = run.trajectory()
    assert steps.tolist() == [0, 5, 10]
    ref, _ = original.trajectory()
    assert all(torch.equal(snaps[k], ref[k]) for k in ref)
    assert run.meta["source"] == "upload" and run.meta["upload"]["kind"] == "run_zip"
    assert [r.path for r in list_runs(workspace, include_shipped=False)] == [path]
    # the extraction folder is gone
    assert [p.name for p in workspace.iterdir()] == [path.name]


def test_app_export_zip_roundtrip(tiny_run, workspace):
    """The zip the Runs page offers for download (ui.runs_ui.run_zip_bytes) imports back unchanged."""
    from ui import runs_ui

    data = runs_ui.run_zip_bytes(str(tiny_run))
    path = import_upload("tiny.zip", data, workspace=workspace)
    assert load_run(path).weights_hash == read_meta(tiny_run)["weights_hash"]


@pytest.mark.parametrize("kind", ["safetensors", "pt", "pth", "pt-legacy", "pt-wrapped"])
def test_state_dict_uploads_accepted_with_same_hash(workspace, kind):
    model = digits_model(seed=3)
    state = model.state_dict()
    if kind == "safetensors":
        fname, data = "w.safetensors", state_bytes_safetensors(state)
    elif kind == "pt-legacy":
        fname, data = "w.pt", state_bytes_pt(dict(state), _use_new_zipfile_serialization=False)
    elif kind == "pt-wrapped":
        fname, data = "w.pt", state_bytes_pt({"state_dict": dict(state), "epoch": 3, "note": "hi"})
    else:
        fname, data = f"w.{kind}", state_bytes_pt(dict(state))
    path = import_upload(fname, data, workspace=workspace, model_spec=SPEC_ARGS, dataset="digits")
    run = load_run(path)
    assert run.weights_hash == model_hash(model)
    assert run.meta["model"] == digits_spec()  # input shape / classes filled in from the dataset
    final = run.meta["final"]
    assert 0.0 <= final["test_acc"] <= 1.0 and math.isfinite(final["test_loss"])


def test_module_prefix_is_stripped_and_gives_same_hash(workspace):
    model = digits_model(seed=1)
    wrapped = {f"module.{k}": v for k, v in model.state_dict().items()}
    path = import_upload("dp.pt", state_bytes_pt(wrapped), workspace=workspace, model_spec=SPEC_ARGS)
    run = load_run(path)
    assert run.weights_hash == model_hash(model)
    assert run.meta["upload"]["prefix_stripped"] == "module."
    X, _ = run.test_data
    with torch.no_grad():
        assert torch.equal(run.model(X[:5]), model.eval()(X[:5]))


def test_upload_given_as_path_and_as_file_like(workspace, tmp_path):
    model = digits_model(seed=2)
    f = tmp_path / "weights.safetensors"
    f.write_bytes(state_bytes_safetensors(model.state_dict()))
    p1 = import_upload(f.name, f, workspace=workspace, model_spec=SPEC_ARGS)
    p2 = import_upload(f.name, io.BytesIO(f.read_bytes()), workspace=workspace, model_spec=SPEC_ARGS)
    assert p1 != p2 and read_meta(p1)["weights_hash"] == read_meta(p2)["weights_hash"] == model_hash(model)


def test_inspect_guesses_mlp_and_dataset():
    model = build_model(model_spec("mlp", (1, 8, 8), 10, widths=[32, 16], activation="relu"), seed=0)
    info = inspect_upload("x.pt", state_bytes_pt(model.state_dict()))
    assert info["kind"] == "pt" and info["num_tensors"] == 6
    assert info["num_params"] == sum(p.numel() for p in model.parameters())
    assert info["guessed_model"] == {"name": "mlp", "kwargs": {"activation": "relu", "batchnorm": False,
                                                               "widths": [32, 16]}}
    assert info["guessed_dataset"] == "digits"
    spec, ds = guess_model_spec(digits_model().state_dict())
    assert spec["kwargs"]["width"] == 16 and spec["kwargs"]["depth"] == 2 and ds == "digits"


def test_guessed_spec_rebuilds_the_uploaded_shapes(workspace):
    model = build_model(model_spec("cnn", (1, 8, 8), 10, channels=4, batchnorm=True), seed=0)
    info = inspect_upload("c.safetensors", state_bytes_safetensors(model.state_dict()))
    assert info["guessed_model"]["name"] == "cnn" and info["guessed_dataset"] == "digits"
    path = import_upload("c.safetensors", state_bytes_safetensors(model.state_dict()), workspace=workspace,
                         model_spec=info["guessed_model"], dataset=info["guessed_dataset"])
    assert read_meta(path)["weights_hash"] == model_hash(model)


def test_bare_state_dict_is_matched_and_the_assumed_activation_is_stated(tmp_path, workspace):
    """Without an architecture the shapes give it (mlp 64-16-16-10 on digits); the activation cannot be
    read from weights: the default (relu) is used and the report says so. require_spec keeps the old refusal."""
    from landscape_core.uploads import import_checkpoint

    data = state_bytes_pt(digits_model().state_dict())
    rep = import_checkpoint("w.pt", data, workspace=workspace)
    assert rep.architecture == "mlp" and rep.model_spec["kwargs"]["activation"] == "relu"
    assert any("not visible in the weights" in n and "relu" in n for n in rep.notes)
    assert rep.dataset["name"] == "digits" and not rep.renamed
    tanh = import_checkpoint("w.pt", data, workspace=workspace, activation="tanh")
    assert digits_spec()["kwargs"].items() <= tanh.model_spec["kwargs"].items()
    assert read_meta(tanh.path)["weights_hash"] == model_hash(digits_model())
    e = refused(tmp_path, workspace / "none", lambda: import_upload("w.pt", data, workspace=workspace / "none",
                                                                     require_spec=True), "needs an architecture")
    assert "width=16" in str(e)


# ---------------------------------------------------------------- code execution attempts
class _WritesMarker:
    """Unpickling this object would call ``open(marker, "w")``: it creates a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("legacy", [False, True])
def test_pickle_that_would_run_code_is_refused_and_never_runs(tmp_path, workspace, legacy):
    marker = tmp_path / "PWNED"
    payload = {"net.1.weight": torch.zeros(2), "evil": _WritesMarker(marker)}
    data = state_bytes_pt(payload, _use_new_zipfile_serialization=not legacy)
    # sanity: plain pickle WOULD run it (so the test can fail)
    assert not marker.exists()
    refused(tmp_path, workspace, lambda: import_upload("evil.pt", data, workspace=workspace, model_spec=SPEC_ARGS),
            "not plain tensors")
    refused(tmp_path, workspace, lambda: inspect_upload("evil.pth", data), "not plain tensors")
    assert not marker.exists()


def test_pickle_marker_control_runs_under_plain_unpickling(tmp_path):
    """Control for the test above: torch.load WITHOUT weights_only would create the marker."""
    marker = tmp_path / "PWNED"
    data = state_bytes_pt({"evil": _WritesMarker(marker)})
    torch.load(io.BytesIO(data), weights_only=False)  # unsafe-on-purpose: control for the RCE test
    assert marker.exists()


def test_torchscript_archive_is_refused(tmp_path, workspace):
    scripted = torch.jit.script(torch.nn.Linear(3, 2))
    buf = io.BytesIO()
    torch.jit.save(scripted, buf)
    data = buf.getvalue()
    refused(tmp_path, workspace, lambda: import_upload("m.pt", data, workspace=workspace, model_spec=SPEC_ARGS),
            "TorchScript")
    refused(tmp_path, workspace, lambda: import_upload("m.zip", data, workspace=workspace), "TorchScript")


@pytest.mark.parametrize("payload", [torch.zeros(3), [torch.zeros(3)], {"a": 1}, {}], ids=["tensor", "list", "int", "empty"])
def test_non_state_dict_payloads_are_refused(tmp_path, workspace, payload):
    data = state_bytes_pt(payload)
    refused(tmp_path, workspace, lambda: import_upload("w.pt", data, workspace=workspace, model_spec=SPEC_ARGS),
            "not a state dict|empty dict|holds a")


# ---------------------------------------------------------------- zip attacks
def _zip(entries: dict[str, bytes], *, method=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_zip_bomb_is_refused_before_extraction(tmp_path, workspace, tiny_run, monkeypatch):
    import landscape_core.upload_zip as up

    bomb = _zip({"run.json": (tiny_run / "run.json").read_bytes(), "model.safetensors": bytes(64 * 2**20)})
    assert len(bomb) < 200_000  # 64 MB of zeros compress ~1000x
    extracted = []
    monkeypatch.setattr(up, "_extract_member", lambda *a, **k: extracted.append(a) or 1 / 0)
    e = refused(tmp_path, workspace, lambda: import_upload("bomb.zip", bomb, workspace=workspace), "zip bomb")
    assert "expands" in str(e) and extracted == []


def test_zip_total_uncompressed_size_limit(tmp_path, workspace, tiny_run):
    g = torch.Generator().manual_seed(0)
    low_entropy = torch.randint(0, 2, (3 * 2**20,), generator=g, dtype=torch.uint8).numpy().tobytes()
    data = _zip({"run.json": (tiny_run / "run.json").read_bytes(), "model.safetensors": low_entropy})
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo("model.safetensors")
    assert info.file_size / info.compress_size < 50  # not a ratio problem: a plain size problem
    limit = len(data) + 10
    assert info.file_size > 2 * limit  # the zip itself is under the limit, its content is not
    refused(tmp_path, workspace, lambda: import_upload("r.zip", data, workspace=workspace, max_bytes=limit),
            "would expand")


@pytest.mark.parametrize("bad_name", ["../evil.txt", "../../run.json", "/tmp/abs/run.json", "run/../../model.safetensors",
                                      "C:/x/run.json", "a\\..\\run.json"])
def test_zip_path_traversal_is_refused_and_writes_nothing_outside(tmp_path, workspace, tiny_run, bad_name):
    data = zip_folder(tiny_run, extra={bad_name: b"owned"})
    parent = tmp_path.parent
    before_parent = {p.name for p in parent.iterdir()}
    refused(tmp_path, workspace, lambda: import_upload("t.zip", data, workspace=workspace),
            "absolute|escapes|not allowed|unexpected")
    assert {p.name for p in parent.iterdir()} == before_parent
    assert not Path("/tmp/abs").exists()
    assert not any(p.name == "evil.txt" for p in tmp_path.rglob("*"))


def test_zip_symlink_entry_is_refused(tmp_path, workspace, tiny_run):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.write(tiny_run / "run.json", "run.json")
        link = zipfile.ZipInfo("model.safetensors")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    refused(tmp_path, workspace, lambda: import_upload("l.zip", buf.getvalue(), workspace=workspace), "symbolic link")


def test_zip_unknown_duplicate_nested_and_missing_entries(tmp_path, workspace, tiny_run):
    rj = (tiny_run / "run.json").read_bytes()
    mf = (tiny_run / "model.safetensors").read_bytes()
    cases = {
        "unexpected file": {"run.json": rj, "model.safetensors": mf, "payload.py": b"import os"},
        "several folders": {"a/run.json": rj, "b/model.safetensors": mf},
        "top level or in one folder": {"a/b/run.json": rj, "a/b/model.safetensors": mf},
        "no model.safetensors": {"run.json": rj},
        "no run.json": {"model.safetensors": mf},
    }
    for match, entries in cases.items():
        data = _zip(entries)
        refused(tmp_path, workspace, lambda d=data: import_upload("r.zip", d, workspace=workspace), match)
    many = {f"x{i}/": b"" for i in range(20)}
    refused(tmp_path, workspace, lambda: import_upload("r.zip", _zip(many), workspace=workspace), "entries")


def test_zip_with_tampered_weights_or_bad_run_json(tmp_path, workspace, tiny_run):
    import json

    meta = json.loads((tiny_run / "run.json").read_text())
    other = state_bytes_safetensors(digits_model(seed=9).state_dict())
    tampered = _zip({"run.json": json.dumps(meta).encode(), "model.safetensors": other})
    refused(tmp_path, workspace, lambda: import_upload("r.zip", tampered, workspace=workspace), "hash")
    mf = (tiny_run / "model.safetensors").read_bytes()
    for bad, match in [
        ({**meta, "format_version": 99}, "format version"),
        ({**meta, "model": {"name": "vit", "kwargs": {}}}, "unknown model"),
        ({**meta, "model": {"name": "mlp", "kwargs": {**meta["model"]["kwargs"], "width": 10**9}}}, "do not fit"),
        ({**meta, "model": {"name": "mlp", "kwargs": {**meta["model"]["kwargs"], "colour": "red"}}}, "does not build"),
        ({**meta, "model": {"name": "mlp", "kwargs": {"widths": list(range(1, 500))}}}, "at most"),
        ({**meta, "dataset": {"name": "imagenet"}}, "dataset"),
    ]:
        data = _zip({"run.json": json.dumps(bad).encode(), "model.safetensors": mf})
        refused(tmp_path, workspace, lambda d=data: import_upload("r.zip", d, workspace=workspace), match)
    data = _zip({"run.json": b"{not json", "model.safetensors": mf})
    refused(tmp_path, workspace, lambda: import_upload("r.zip", data, workspace=workspace), "not valid JSON")


def test_zip_dataset_root_is_dropped(workspace, tiny_run):
    """A hostile run.json cannot point data loading (or torchvision's downloader) at another folder."""
    import json

    meta = json.loads((tiny_run / "run.json").read_text())
    meta["dataset"] = {"name": "digits", "seed": 0, "root": "/etc"}
    data = _zip({"run.json": json.dumps(meta).encode(), "model.safetensors": (tiny_run / "model.safetensors").read_bytes()})
    path = import_upload("r.zip", data, workspace=workspace)
    assert "root" not in read_meta(path)["dataset"]


def test_hostile_names_stay_inside_the_workspace(tmp_path, workspace):
    data = state_bytes_pt(digits_model().state_dict())
    path = import_upload("../../../escape.pt", data, workspace=workspace, model_spec=SPEC_ARGS)
    assert path.parent == workspace.resolve() and path.name == "escape"
    for bad in ("../evil", "/abs", "a/b", ".hidden", ""):
        with pytest.raises(UploadError, match="invalid run name"):
            import_upload("w.pt", data, workspace=workspace, model_spec=SPEC_ARGS, name=bad)
    assert not (tmp_path / "evil").exists()


# ---------------------------------------------------------------- broken files
def _valid_files(tiny_run) -> dict[str, bytes]:
    state = digits_model().state_dict()
    return {
        "w.pt": state_bytes_pt(dict(state)),
        "w.safetensors": state_bytes_safetensors(state),
        "r.zip": zip_folder(tiny_run),
        "legacy.pth": state_bytes_pt(dict(state), _use_new_zipfile_serialization=False),
    }


@pytest.mark.parametrize("fname", ["w.pt", "w.safetensors", "r.zip", "legacy.pth"])
@pytest.mark.parametrize("frac", [0.5, 0.97])
def test_truncated_files_are_refused(tmp_path, workspace, tiny_run, fname, frac):
    data = _valid_files(tiny_run)[fname]
    cut = data[: int(len(data) * frac)]
    refused(tmp_path, workspace, lambda: import_upload(fname, cut, workspace=workspace, model_spec=SPEC_ARGS),
            "truncated|corrupt|not a valid zip|renamed")


@pytest.mark.parametrize("fname", ["w.pt", "w.pth", "w.safetensors", "r.zip"])
def test_empty_files_are_refused(tmp_path, workspace, fname):
    refused(tmp_path, workspace, lambda: import_upload(fname, b"", workspace=workspace, model_spec=SPEC_ARGS),
            "file is empty")


@pytest.mark.parametrize("fname", ["weights.txt", "weights", "model.pkl", "model.h5", "run.tar.gz", "w.PT.exe"])
def test_wrong_extension_lists_accepted_kinds(tmp_path, workspace, fname):
    data = state_bytes_pt(digits_model().state_dict())
    e = refused(tmp_path, workspace, lambda: import_upload(fname, data, workspace=workspace, model_spec=SPEC_ARGS),
                "unsupported file type")
    assert all(s in str(e) for s in ACCEPTED_SUFFIXES)


@pytest.mark.parametrize(
    "fname,source,looks",
    [("w.pt", "w.safetensors", "safetensors"), ("w.safetensors", "w.pt", "zip archive"),
     ("w.zip", "w.safetensors", "safetensors"), ("w.safetensors", "r.zip", "zip archive"),
     ("w.pth", "text", "none of the accepted"), ("w.zip", "legacy.pth", "legacy PyTorch pickle")],
)
def test_renamed_files_are_detected_by_magic_number(tmp_path, workspace, tiny_run, fname, source, looks):
    files = {**_valid_files(tiny_run), "text": b"hello, I am a text file\n" * 10}
    data = files[source]
    e = refused(tmp_path, workspace, lambda: import_upload(fname, data, workspace=workspace, model_spec=SPEC_ARGS),
                "renamed or corrupt")
    assert looks in str(e)


def test_run_zip_renamed_to_pt_is_explained(tmp_path, workspace, tiny_run):
    data = zip_folder(tiny_run)
    refused(tmp_path, workspace, lambda: import_upload("r.pt", data, workspace=workspace, model_spec=SPEC_ARGS),
            "run zip exported by the app")


def test_file_over_the_size_limit(tmp_path, workspace):
    data = state_bytes_pt(digits_model().state_dict())
    f = tmp_path / "big.pt"
    f.write_bytes(data)
    for src in (data, f):
        refused(tmp_path, workspace,
                lambda s=src: import_upload("big.pt", s, workspace=workspace, model_spec=SPEC_ARGS, max_bytes=1000),
                "over the upload limit")


# ---------------------------------------------------------------- wrong weights
def test_valid_file_for_another_architecture(tmp_path, workspace):
    cnn = build_model(model_spec("cnn", (1, 8, 8), 10, channels=4), seed=0)
    data = state_bytes_safetensors(cnn.state_dict())
    e = refused(tmp_path, workspace,
                lambda: import_upload("cnn.safetensors", data, workspace=workspace, model_spec=SPEC_ARGS),
                r"do not fit mlp\(width=16, depth=2, activation=tanh\)")
    assert "the file has 2 conv layers, mlp has 0" in str(e) and "features." in str(e)


def test_moons_weights_against_digits_dataset(tmp_path, workspace):
    moons = build_model(model_spec("mlp", (2,), 2, width=16, depth=2, activation="tanh"), seed=0)
    data = state_bytes_pt(moons.state_dict())
    refused(tmp_path, workspace, lambda: import_upload("m.pt", data, workspace=workspace, model_spec=SPEC_ARGS),
            r"shape mismatch net\.1\.weight: file \(16, 2\) vs model \(16, 64\)")
    path = import_upload("m.pt", data, workspace=workspace, model_spec=SPEC_ARGS, dataset="moons")
    assert read_meta(path)["weights_hash"] == model_hash(moons)


def test_model_that_does_not_match_the_dataset(tmp_path, workspace):
    data = state_bytes_pt(digits_model().state_dict())
    spec = {"name": "mlp", "kwargs": {**SPEC_ARGS["kwargs"], "input_shape": [1, 8, 8], "num_classes": 10}}
    refused(tmp_path, workspace,
            lambda: import_upload("w.pt", data, workspace=workspace, model_spec=spec, dataset="moons"),
            "dataset 'moons' has input")


def test_mismatched_shapes(tmp_path, workspace):
    data = state_bytes_pt(digits_model().state_dict())
    wide = {"name": "mlp", "kwargs": {**SPEC_ARGS["kwargs"], "width": 32}}
    e = refused(tmp_path, workspace, lambda: import_upload("w.pt", data, workspace=workspace, model_spec=wide),
                "shape mismatch")
    assert "file (16, 64) vs model (32, 64)" in str(e)


def test_extra_and_missing_keys(tmp_path, workspace):
    state = dict(digits_model().state_dict())
    state.pop("net.3.bias")
    state["head.extra"] = torch.zeros(3)
    data = state_bytes_safetensors(state)
    e = refused(tmp_path, workspace,
                lambda: import_upload("w.safetensors", data, workspace=workspace, model_spec=SPEC_ARGS),
                "missing keys net.3.bias; unexpected keys head.extra")
    assert "\n" not in str(e)


def test_missing_batchnorm_buffers_are_required(tmp_path, workspace):
    model = digits_model(batchnorm=True)
    state = {k: v for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    spec = {"name": "mlp", "kwargs": {**SPEC_ARGS["kwargs"], "batchnorm": True}}
    e = refused(tmp_path, workspace,
                lambda: import_upload("bn.pt", state_bytes_pt(state), workspace=workspace, model_spec=spec),
                "missing keys")
    assert "running_mean" in str(e)
    path = import_upload("bn.pt", state_bytes_pt(dict(model.state_dict())), workspace=workspace, model_spec=spec)
    assert read_meta(path)["weights_hash"] == model_hash(model)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_nan_and_inf_weights_are_refused(tmp_path, workspace, bad, fmt):
    state = {k: v.clone() for k, v in digits_model().state_dict().items()}
    state["net.3.weight"][0, 0] = bad
    data = state_bytes_pt(state) if fmt == "pt" else state_bytes_safetensors(state)
    refused(tmp_path, workspace,
            lambda: import_upload(f"w.{fmt}", data, workspace=workspace, model_spec=SPEC_ARGS),
            r"NaN or Inf values in net\.3\.weight")


def test_float64_weights_are_cast_and_int_for_float_refused(tmp_path, workspace):
    model = digits_model(seed=4)
    state64 = {k: v.double() for k, v in model.state_dict().items()}
    path = import_upload("w.pt", state_bytes_pt(state64), workspace=workspace, model_spec=SPEC_ARGS)
    assert read_meta(path)["weights_hash"] == weights_hash({k: v.float() for k, v in state64.items()})
    ints = {k: v.long() for k, v in model.state_dict().items()}
    with pytest.raises(UploadError, match="dtype mismatch"):
        import_upload("i.pt", state_bytes_pt(ints), workspace=workspace, model_spec=SPEC_ARGS)


def test_upload_does_not_touch_global_rng(workspace):
    data = state_bytes_pt(digits_model().state_dict())
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    import_upload("w.pt", data, workspace=workspace, model_spec=SPEC_ARGS)
    assert torch.equal(torch.rand(3), expected)


def test_inspect_run_zip_reports_its_metadata(tiny_run):
    info = inspect_upload("tiny.zip", zip_folder(tiny_run, prefix="tiny"))
    assert info["kind"] == "run_zip" and info["guessed_model"] == digits_spec()
    assert info["guessed_dataset"] == "digits" and info["meta"]["weights_hash"] == read_meta(tiny_run)["weights_hash"]
    assert info["num_params"] == sum(p.numel() for p in digits_model().parameters())
