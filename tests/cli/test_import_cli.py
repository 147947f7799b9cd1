"""``python -m landscape_core import``: run folders from checkpoints, one-line errors with exit code 2."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from landscape_core.cli import main  # noqa: E402
from landscape_core.cli.import_ import parse_model_arg  # noqa: E402
from landscape_core.models import build_model, model_spec  # noqa: E402
from landscape_core.params import model_hash  # noqa: E402
from landscape_core.runs import load_run, save_run  # noqa: E402

MLP_ARGS = ["--model", "mlp", "--model-arg", "width=16", "--model-arg", "depth=2", "--model-arg", "activation=tanh"]


def _model(**kw):
    return build_model(model_spec("mlp", (1, 8, 8), 10, width=16, depth=2, activation="tanh", **kw), seed=0)


def _run_cli(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_parse_model_arg_json_values():
    assert parse_model_arg("width=64") == ("width", 64)
    assert parse_model_arg("batchnorm=true") == ("batchnorm", True)
    assert parse_model_arg("activation=tanh") == ("activation", "tanh")
    assert parse_model_arg("widths=[32,16]") == ("widths", [32, 16])
    assert parse_model_arg("lr=0.5") == ("lr", 0.5)


def test_import_pt_json_output(tmp_path, capsys):
    model = _model()
    f = tmp_path / "weights.pt"
    torch.save(model.state_dict(), f)
    out_dir = tmp_path / "ws"
    code, out, err = _run_cli(["import", str(f), *MLP_ARGS, "--dataset", "digits", "--name", "mine",
                               "--out", str(out_dir), "--json"], capsys)
    assert code == 0, err
    res = json.loads(out)
    assert res["name"] == "mine" and Path(res["path"]) == (out_dir / "mine").resolve()
    assert res["weights_hash"] == model_hash(model)
    run = load_run(res["path"])
    assert run.meta["model"]["kwargs"]["activation"] == "tanh"
    X, y = run.test_data
    with torch.no_grad():
        acc = float((run.model(X).argmax(1) == y).float().mean())
    assert res["test_acc"] == pytest.approx(acc)


def test_import_run_zip_keeps_its_own_spec_and_dataset(tmp_path, capsys):
    model = build_model(model_spec("mlp", (2,), 2, width=8, depth=1), seed=1)
    src = save_run(tmp_path / "src" / "moony", model, {"model": model_spec("mlp", (2,), 2, width=8, depth=1),
                                                      "dataset": {"name": "moons", "n_samples": 200}})
    z = tmp_path / "moony.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in src.iterdir():
            zf.write(f, f"moony/{f.name}")
    code, out, err = _run_cli(["import", str(z), "--out", str(tmp_path / "ws"), "--json"], capsys)
    assert code == 0, err
    res = json.loads(out)
    assert res["dataset"] == "moons" and res["weights_hash"] == model_hash(model) and res["name"] == "moony"
    assert load_run(res["path"]).meta["dataset"]["n_samples"] == 200


@pytest.mark.parametrize(
    "argv_tail,match",
    [
        (["--model", "mlp", "--model-arg", "width=32"], "shape mismatch"),
        (["--model", "resnet20"], "do not fit resnet20"),
        (["--model", "vit"], "unknown model 'vit'"),
        ([*MLP_ARGS, "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
        ([*MLP_ARGS, "--name", "../escape"], "invalid run name"),
        ([*MLP_ARGS, "--max-mb", "0.001"], "over the upload limit"),
        (["--model-arg", "width=16"], "--model-arg needs --model"),
        ([*MLP_ARGS, "--model-arg", "colour=red"], "does not build"),
    ],
)
def test_import_errors_are_one_line_exit_2(tmp_path, capsys, argv_tail, match):
    f = tmp_path / "weights.pt"
    torch.save(_model().state_dict(), f)
    out_dir = tmp_path / "ws"
    code, out, err = _run_cli(["import", str(f), *argv_tail, "--out", str(out_dir)], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and match in err, err
    assert not out_dir.exists() or [p for p in out_dir.iterdir()] == []
    assert not (tmp_path / "escape").exists()


def test_import_bad_files_exit_2(tmp_path, capsys):
    cases = {
        "empty.pt": b"",
        "notes.txt": b"hello",
        "renamed.pt": b"\x10\x00\x00\x00\x00\x00\x00\x00{" + b" " * 20,
        "trunc.safetensors": b"\x00\x01",
    }
    for name, data in cases.items():
        f = tmp_path / name
        f.write_bytes(data)
        code, out, err = _run_cli(["import", str(f), *MLP_ARGS, "--out", str(tmp_path / "ws")], capsys)
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, (name, err)
    code, _, err = _run_cli(["import", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "ws")], capsys)
    assert code == 2 and "no such file" in err


def test_import_subprocess_refuses_pickle_payload_without_traceback(tmp_path):
    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    buf = io.BytesIO()
    torch.save({"w": Evil()}, buf)
    f = tmp_path / "evil.pt"
    f.write_bytes(buf.getvalue())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "landscape_core", "import", str(f), *MLP_ARGS, "--out",
                        str(tmp_path / "ws")], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().startswith("error: ") and "not plain tensors" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert not marker.exists()
