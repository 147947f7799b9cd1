"""``python -m landscape_core surface``: JSON keys and values, exports, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from torch import nn

from landscape_core.cli import main
from landscape_core.data import DatasetSpec, load_dataset
from landscape_core.export import load_npz
from landscape_core.functional import loss_function_for_run
from landscape_core.models import build_model, model_spec
from landscape_core.runs import load_run, save_run


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LANDSCAPE_CACHE", str(tmp_path / "cache"))


def _make_run(folder, seed=0):
    spec = model_spec("mlp", (64,), 10, width=8, depth=1)
    m = build_model(spec, seed=seed)
    X, y = load_dataset("digits").train
    opt = torch.optim.SGD(m.parameters(), lr=0.3)
    snaps = {n: [] for n, _ in m.named_parameters()}
    for _ in range(6):
        opt.zero_grad()
        nn.functional.cross_entropy(m(X[:200]), y[:200]).backward()
        opt.step()
        for n, p in m.named_parameters():
            snaps[n].append(p.detach().clone())
    traj = ({n: torch.stack(v) for n, v in snaps.items()}, torch.arange(6))
    meta = {"model": spec, "dataset": DatasetSpec("digits").to_dict()}
    return save_run(folder, m.eval(), meta, traj)


@pytest.fixture(scope="module")
def run_path(tmp_path_factory):
    return _make_run(tmp_path_factory.mktemp("runs") / "tiny")


def _json(capsys, argv):
    assert main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    return json.loads(out[0])


def test_surface_json_values_and_exports(capsys, run_path, tmp_path):
    npz, vtp = tmp_path / "s.npz", tmp_path / "s.vtp"
    d = _json(capsys, ["surface", str(run_path), "--grid", "5", "--samples", "64", "--seed", "3",
                       "--out", str(npz), "--vtp", str(vtp), "--json"])
    for key in ("grid", "seconds", "center_loss", "min_loss", "directions", "out", "vtp", "cached"):
        assert key in d
    assert d["grid"] == [5, 5] and d["points"] == 25 and d["cached"] is False
    run = load_run(run_path)
    ref_loss, ref_acc = loss_function_for_run(run, split="train", samples=64).evaluate()
    assert d["center_loss"] == pytest.approx(ref_loss, rel=1e-6)
    assert d["center_accuracy"] == pytest.approx(ref_acc)
    assert d["min_loss"] <= d["center_loss"] + 1e-6 <= d["max_loss"] + 1e-6
    assert d["directions"]["kind"] == "random" and d["directions"]["seed"] == 3
    assert d["directions"]["normalization"] == "filter" and d["directions"]["ignore_1d"] is True
    assert d["alpha_range"] == [-1.0, 1.0] and d["samples"] == 64
    s = load_npz(d["out"])
    assert s.loss.shape == (5, 5) and s.loss[2, 2] == pytest.approx(ref_loss, rel=1e-5)
    assert float(np.min(s.loss)) == pytest.approx(d["min_loss"])
    piece = ET.parse(d["vtp"]).getroot().find("PolyData/Piece")
    assert piece.get("NumberOfPoints") == "25" and piece.get("NumberOfPolys") == "32"
    # the same call again comes from the cache
    again = _json(capsys, ["surface", str(run_path), "--grid", "5", "--samples", "64", "--seed", "3", "--json"])
    assert again["cached"] is True and again["center_loss"] == d["center_loss"]


def test_surface_1d_pca_test_split_and_settings(capsys, run_path):
    d = _json(capsys, ["surface", str(run_path), "--dims", "1", "--directions", "pca", "--grid", "7",
                       "--samples", "all", "--split", "test", "--keep-1d", "--normalization", "layer", "--json"])
    run = load_run(run_path)
    ref = loss_function_for_run(run, split="test", samples=None).evaluate()[0]
    assert d["grid"] == [7] and d["beta_range"] is None
    assert d["center_loss"] == pytest.approx(ref, rel=1e-6)
    assert d["directions"]["kind"] == "pca" and len(d["directions"]["explained_variance"]) == 1
    assert d["samples"] == len(run.test_data[1])
    assert 0 <= d["trajectory_max_relative_residual"] <= 1


def test_line_through_two_runs(capsys, run_path, tmp_path):
    other = _make_run(tmp_path / "other", seed=1)
    d = _json(capsys, ["surface", str(run_path), "--dims", "1", "--through", str(other), "--grid", "9",
                       "--samples", "64", "--json"])
    assert d["directions"]["kind"] == "runs"
    assert [p["run"] for p in d["run_points"]] == ["tiny", "other"]
    assert [p["coords"] for p in d["run_points"]] == [[0.0], [1.0]]
    lo, hi = d["alpha_range"]
    assert lo < 0.0 and hi > 1.0  # both runs inside the plotted range
    ref = loss_function_for_run(load_run(run_path), samples=64).evaluate()[0]
    assert d["center_loss"] == pytest.approx(ref, rel=1e-6)


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--grid", "1"], "grid"),
        (["--span", "0"], "span"),
        (["--directions", "sideways"], "directions"),
        (["--dims", "1", "--vtp", "x.vtp"], "vtp"),
    ],
)
def test_bad_input_is_one_line_error(capsys, run_path, extra, needle):
    try:
        rc = main(["surface", str(run_path), *extra, "--json"])
    except SystemExit as e:  # argparse-level errors exit directly
        rc = e.code
    assert rc == 2
    cap = capsys.readouterr()
    lines = [ln for ln in cap.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], cap.err
    assert cap.out == ""


def test_grid_one_in_a_real_process(run_path):
    proc = subprocess.run([sys.executable, "-m", "landscape_core", "surface", str(run_path), "--grid", "1", "--json"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "grid" in lines[0], proc.stderr


def test_unknown_run_names_the_run(capsys):
    assert main(["surface", "no-such-run-xyz", "--json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-such-run-xyz" in err[0]
