"""CLI: ``connect``, ``flatness`` and ``noise`` on tiny runs written in the test (JSON keys, errors, exit codes)."""

import json

import pytest
import torch
from torch import nn

from landscape_core.cli import main
from landscape_core.data import DatasetSpec, load_dataset
from landscape_core.models import build_model, model_spec
from landscape_core.params import weights_hash
from landscape_core.runs import load_run, read_meta, save_run

DS = DatasetSpec(name="moons", n_samples=80, seed=0)




def _save(folder, name, *, width=8, seed=0, activation="relu"):
    data = load_dataset(DS)
    spec = model_spec("mlp", data.input_shape, data.num_classes, width=width, depth=1, activation=activation)
    model = build_model(spec, seed=seed)
    X, y = data.train
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(40):
        opt.zero_grad()
        nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
    return save_run(folder / name, model.eval(), {"model": spec, "dataset": DS.to_dict()})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    ws = tmp_path_factory.mktemp("ws")
    return ws, _save(ws, "ra", seed=0), _save(ws, "rb", seed=1), _save(ws, "rw", width=5, seed=2)


def _json(capsys, argv):
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1
    return json.loads(lines[0])


def test_connect_linear_json(runs, capsys):
    ws, ra, rb, _ = runs
    h = weights_hash(load_run(ra).model.state_dict())
    d = _json(capsys, ["connect", str(ra), str(rb), "--points", "5", "--samples", "all", "--json"])
    assert {"barrier", "barrier_t", "ts", "loss", "accuracy", "endpoints", "curve"} <= d.keys()
    assert d["curve"] == "linear" and d["ts"] == [0.0, 0.25, 0.5, 0.75, 1.0] and len(d["loss"]) == 5
    assert d["endpoints"]["a"]["loss"] == d["loss"][0]
    assert d["barrier"] >= 0.0 and d["barrier"] == pytest.approx(
        max(v - ((1 - t) * d["loss"][0] + t * d["loss"][-1]) for t, v in zip(d["ts"], d["loss"]))
    )
    assert read_meta(ra)["weights_hash"] == h


def test_connect_bezier_json_and_workspace_lookup(runs, capsys, monkeypatch):
    ws, ra, rb, _ = runs
    monkeypatch.setenv("LANDSCAPE_WORKSPACE", str(ws))
    d = _json(capsys, ["connect", "ra", "rb", "--curve", "bezier", "--points", "5", "--steps", "20", "--json"])
    assert d["curve"] == "bezier" and len(d["loss"]) == 5
    assert d["plane"] is not None and len(d["plane"]["curve"]) == 5
    assert "linear" in d and len(d["train_history"]) >= 1
    assert d["run_a"].endswith("ra")


def test_connect_mismatched_runs_exit_2_with_one_line(runs, capsys):
    ws, ra, _, rw = runs
    rc = main(["connect", str(ra), str(rw), "--json"])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "different model specs" in lines[0]


def test_connect_unknown_run_exit_2(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("LANDSCAPE_WORKSPACE", str(tmp_path))
    rc = main(["connect", "no-such-run-a", "no-such-run-b"])
    _, err = capsys.readouterr()
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "no-such-run-a" in err


def test_flatness_json(runs, capsys):
    _, ra, _, _ = runs
    d = _json(capsys, [
        "flatness", str(ra), "--radii", "0.05", "0.2", "--directions", "3", "--basin-directions", "2",
        "--ascent-steps", "2", "--samples", "all", "--json",
    ])
    assert {"profile", "epsilon_sharpness", "adaptive_sharpness", "basin_radius", "loss"} <= d.keys()
    assert d["profile"]["radii"] == [0.05, 0.2] and len(d["profile"]["mean_increase"]) == 2
    lo, m, hi = d["profile"]["ci_low"][1], d["profile"]["mean_increase"][1], d["profile"]["ci_high"][1]
    assert lo <= m <= hi


def test_flatness_invariance_flag(runs, capsys):
    _, ra, _, _ = runs
    d = _json(capsys, ["flatness", str(ra), "--radii", "0.1", "--directions", "2", "--basin-directions", "2",
                       "--ascent-steps", "2", "--invariance", "--json"])
    names = {r["name"] for r in d["invariance"]["measures"]}
    assert {"adaptive sharpness", "epsilon-sharpness", "lambda_max"} <= names


def test_noise_json_and_errors(runs, capsys):
    _, ra, _, _ = runs
    d = _json(capsys, ["noise", str(ra), "--b-small", "4", "--b-big", "32", "--batches", "5", "--per-layer", "--json"])
    assert {"b_simple", "ci", "g2", "trace_sigma", "per_layer"} <= d.keys()
    assert len(d["ci"]) == 2 and d["settings"]["b_big"] == 32
    d = _json(capsys, ["noise", str(ra), "--batches", "3", "--sweep", "4", "16", "--json"])
    assert d["settings"]["b_big"] == 60  # default min(512, N) on the 60 training examples
    assert d["sweep"]["batch_sizes"] == [4, 16]
    rc = main(["noise", str(ra), "--b-big", "1000"])
    _, err = capsys.readouterr()
    assert rc == 2 and "1000" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exc:  # argparse-level validation exits directly
        main(["noise", str(ra), "--batches", "1"])
    _, err = capsys.readouterr()
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1 and "--batches" in err
