"""CLI ``train`` and ``compare``: JSON output, saved runs, one-line errors with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from landscape_core.cli import main
from landscape_core.runs import load_run

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--dataset", "moons", "--n-samples", "200", "--noise", "0.2", "--width", "8", "--depth", "1",
        "--activation", "tanh", "--epochs", "2", "--batch-size", "30", "--lr", "0.1"]




def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse errors
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def test_train_json_has_the_documented_keys_and_saves_a_loadable_run(tmp_path, capsys):
    rc, out, _ = _cli(["train", *TINY, "--optimizer", "sam", "--rho", "0.1", "--snapshots", "3",
                       "--workspace", str(tmp_path), "--name", "cli-sam", "--json"], capsys)
    assert rc == 0
    res = json.loads(out)
    assert set(res) >= {"path", "name", "weights_hash", "final", "seconds"}
    assert set(res["final"]) == {"train_loss", "train_acc", "test_loss", "test_acc", "gen_gap", "acc_gap"}
    assert res["name"] == "cli-sam" and Path(res["path"]) == tmp_path / "cli-sam"
    run = load_run(res["path"])
    assert run.weights_hash == res["weights_hash"]
    cfg = run.meta["config"]
    assert (cfg["optimizer"], cfg["rho"], cfg["width"], cfg["depth"], cfg["epochs"]) == ("sam", 0.1, 8, 1, 2)
    assert run.meta["model"]["kwargs"]["activation"] == "tanh"
    assert res["grad_evals"] == 2 * res["steps"] == 2 * 2 * 5  # 150 examples / 30 per batch, 2 epochs
    assert res["final"]["gen_gap"] == pytest.approx(res["final"]["test_loss"] - res["final"]["train_loss"])
    assert len(run.trajectory()[1]) == 3


def test_train_out_folder_and_default_lr_per_optimizer(tmp_path, capsys):
    rc, out, _ = _cli(["train", *[a for a in TINY if a not in ("--lr", "0.1")], "--optimizer", "adam",
                       "--out", str(tmp_path / "mine"), "--json"], capsys)
    assert rc == 0
    res = json.loads(out)
    assert res["path"] == str(tmp_path / "mine")
    assert load_run(res["path"]).meta["config"]["lr"] == 1e-3


def test_compare_json_reports_accuracy_and_gaps_per_optimizer(tmp_path, capsys):
    rc, out, _ = _cli(["compare", *TINY, "--optimizers", "sgd,adam,sam", "--budget", "grad-evals",
                       "--out", str(tmp_path), "--json"], capsys)
    assert rc == 0
    res = json.loads(out)
    assert res["budget"] == "grad-evals"
    assert [r["optimizer"] for r in res["runs"]] == ["sgd", "adam", "sam"]
    for r in res["runs"]:
        assert set(r) >= {"optimizer", "path", "test_acc", "train_acc", "gen_gap", "acc_gap", "seconds_per_epoch"}
        assert 0.0 <= r["test_acc"] <= 1.0
        assert r["acc_gap"] == pytest.approx(r["train_acc"] - r["test_acc"])
        run = load_run(r["path"])
        assert run.meta["final"]["test_acc"] == r["test_acc"]
    steps = {r["optimizer"]: r["steps"] for r in res["runs"]}
    assert steps == {"sgd": 10, "adam": 10, "sam": 5}
    assert {r["grad_evals"] for r in res["runs"]} == {10}


@pytest.mark.parametrize("flags,needle", [
    (["--lr", "-1"], "lr must be > 0, got -1.0"),
    (["--batch-size", "99999"], "batch_size 99999 is larger than the 150 training examples"),
    (["--optimizer", "nope"], "invalid choice: 'nope'"),
    (["--epochs", "0"], "epochs must be >= 1, got 0"),
    (["--momentum", "2"], "momentum must be in [0, 1), got 2.0"),
    (["--dataset", "imagenet"], "invalid choice: 'imagenet'"),
    (["--name", "../x"], "invalid run name"),
])
def test_train_bad_flags_exit_2_with_one_line(tmp_path, capsys, flags, needle):
    rc, out, err = _cli(["train", *TINY, "--workspace", str(tmp_path), *flags, "--json"], capsys)
    assert rc == 2 and out == ""
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(("train ", "\r"))]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_compare_unknown_optimizer_exit_2(tmp_path, capsys):
    rc, out, err = _cli(["compare", *TINY, "--optimizers", "sgd,bogus", "--out", str(tmp_path)], capsys)
    assert rc == 2 and out == "" and err.count("\n") == 1 and "'bogus'" in err


def test_python_m_entry_point_prints_one_json_object(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LANDSCAPE_WORKSPACE": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "landscape_core", "train", *TINY, "--epochs", "1", "--json"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-500:]
    res = json.loads(proc.stdout)
    assert Path(res["path"]).parent == tmp_path and res["name"] == "moons-mlp-sgd-s0"
