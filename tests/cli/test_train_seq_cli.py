"""CLI ``train`` on the new models and datasets: Transformer on modular addition, LSTM on parity, MLP and
1-D CNN on MNIST-1D; flags --modulus, --seq-len, --test-fraction, --heads, --full-batch, --eval-every."""

from __future__ import annotations

import json

import numpy as np

from landscape_core import tasks
from landscape_core.cli import main
from landscape_core.runs import load_run


def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse errors
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def test_transformer_on_modular_addition_full_batch_adamw(tmp_path, capsys):
    rc, out, err = _cli(["train", "--dataset", "modular_addition", "--modulus", "7", "--test-fraction", "0.5",
                         "--model", "transformer", "--width", "8", "--heads", "2", "--depth", "1",
                         "--optimizer", "adamw", "--weight-decay", "1.0", "--full-batch", "--epochs", "5",
                         "--eval-every", "2", "--sharpness-every", "2", "--sharpness-samples", "8",
                         "--snapshots", "3", "--workspace", str(tmp_path), "--name", "ma", "--json"], capsys)
    assert rc == 0, err
    res = json.loads(out)
    run = load_run(res["path"])
    cfg = run.meta["config"]
    assert cfg["batch_size"] == 24 and cfg["optimizer"] == "adamw" and cfg["weight_decay"] == 1.0  # 49 pairs * 0.5
    assert run.meta["dataset"]["modulus"] == 7
    assert run.meta["model"]["kwargs"] == {"input_shape": [3], "num_classes": 7, "width": 8, "depth": 1, "heads": 2,
                                           "vocab_size": 8}
    assert [r["epoch"] for r in run.meta["history"]] == [2, 4, 5]  # every 2 epochs and the last
    assert all(r["weight_norm"] > 0 and r["sharpness"] is not None for r in run.meta["history"])
    assert res["steps"] == 5


def test_lstm_on_parity(tmp_path, capsys):
    rc, out, err = _cli(["train", "--dataset", "parity", "--seq-len", "5", "--n-samples", "32", "--model", "lstm",
                         "--width", "8", "--depth", "1", "--optimizer", "adam", "--batch-size", "8", "--epochs", "2",
                         "--workspace", str(tmp_path), "--json"], capsys)
    assert rc == 0, err
    run = load_run(json.loads(out)["path"])
    assert run.meta["model"]["name"] == "lstm" and run.meta["dataset"]["seq_len"] == 5
    assert run.train_data[0].shape == (24, 5)


def test_mlp_and_cnn1d_on_mnist1d(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(0)  # a small stand-in for the generator (the real one is tested in test_tasks)
    fake = {"x": rng.normal(size=(60, 40)).astype(np.float32), "y": np.arange(60) % 10,
            "x_test": rng.normal(size=(20, 40)).astype(np.float32), "y_test": np.arange(20) % 10}
    monkeypatch.setattr(tasks, "_generate_mnist1d", lambda: fake)
    monkeypatch.setenv("LANDSCAPE_DATA", str(tmp_path / "data"))
    for model in ("mlp", "cnn1d"):
        rc, out, err = _cli(["train", "--dataset", "mnist1d", "--data-seed", "11", "--model", model, "--channels", "4",
                             "--width", "8", "--epochs", "1", "--batch-size", "20", "--workspace", str(tmp_path),
                             "--json"], capsys)
        assert rc == 0, err
        run = load_run(json.loads(out)["path"])
        assert run.meta["model"]["kwargs"]["input_shape"] == [1, 40]
    assert (tmp_path / "data" / "mnist1d" / "mnist1d-5000-42.npz").is_file()


def test_token_model_on_image_data_is_a_one_line_error(tmp_path, capsys):
    rc, out, err = _cli(["train", "--model", "transformer", "--epochs", "1", "--workspace", str(tmp_path)], capsys)
    assert rc == 2
    assert "needs a token dataset" in err and "'digits'" in err and err.count("\n") == 1
