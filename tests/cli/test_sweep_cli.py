"""CLI tests for ``sweep`` (9-point grid on digits, resumable) and ``preset`` (both presets, reduced epochs)."""

import json
import math

import pytest

from landscape_core.cli import main
from landscape_core.presets import COLUMNS as PRESET_COLUMNS
from landscape_core.sweep import COLUMNS

SWEEP = ["sweep", "--lrs", "0.01,0.1,0.5", "--batch-sizes", "32,128,512", "--epochs", "1", "--dataset", "digits",
         "--width", "16", "--depth", "1", "--samples", "128", "--trace-probes", "4", "--flatness-directions", "3",
         "--n-boot", "200"]


def _json_out(capsys):
    out, err = capsys.readouterr()
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1, out
    return json.loads(lines[0]), err


def test_nine_point_sweep_then_resume(tmp_path, capsys):
    out_dir = tmp_path / "sweep"
    assert main([*SWEEP, "--out", str(out_dir), "--json"]) == 0
    res, err = _json_out(capsys)
    assert res["total"] == 9 and res["finished"] == 9 and res["computed"] == 9 and res["reused"] == 0
    assert "point 9/9" in err  # progress on stderr, per point
    rows = res["rows"]
    assert len(rows) == 9 and list(rows[0]) == list(COLUMNS)
    assert {(r["lr"], r["batch_size"]) for r in rows} == {(a, b) for a in (0.01, 0.1, 0.5) for b in (32, 128, 512)}
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) >= 8
    for r in ok:
        for k in ("test_acc", "train_acc", "gen_gap", "acc_gap", "lambda_max", "trace", "trace_stderr", "flatness",
                  "seconds_per_epoch"):
            assert r[k] is not None and math.isfinite(r[k]), (k, r)
        assert 0.0 <= r["test_acc"] <= 1.0
        assert r["gen_gap"] == pytest.approx(r["test_loss"] - r["train_loss"])
    corr = {(c["measure"], c["target"]): c for c in res["correlations"]}
    assert set(corr) == {(m, t) for m in ("lambda_max", "trace", "flatness") for t in ("test_acc", "gen_gap", "acc_gap")}
    c = corr[("lambda_max", "test_acc")]
    assert c["n"] == len(ok) and -1 <= c["ci_low"] <= c["tau"] <= c["ci_high"] <= 1
    assert 0 <= c["p_value"] <= 1
    records = sorted((out_dir / "points").glob("*.json"))
    assert len(records) == 9
    stamps = {p.name: p.stat().st_mtime_ns for p in records}
    runs_before = sorted(p.name for p in (out_dir / "runs").iterdir())

    # same command again: every point is reused, nothing retrained or re-measured
    assert main([*SWEEP, "--out", str(out_dir), "--json"]) == 0
    again, _ = _json_out(capsys)
    assert again["reused"] == 9 and again["computed"] == 0
    assert again["rows"] == rows
    assert {p.name: p.stat().st_mtime_ns for p in (out_dir / "points").glob("*.json")} == stamps
    assert sorted(p.name for p in (out_dir / "runs").iterdir()) == runs_before

    # readable table without --json
    assert main([*SWEEP, "--out", str(out_dir)]) == 0
    text = capsys.readouterr().out
    assert "lambda_max" in text and "tau" in text and "reused: 9" in text


def test_sweep_bad_input_is_one_line_error(tmp_path, capsys):
    assert main(["sweep", "--lrs", "0.1,-2", "--batch-sizes", "32", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lr" in err[0]
    with pytest.raises(SystemExit):
        main(["sweep", "--lrs", "a,b", "--out", str(tmp_path / "y")])
    assert main(["sweep", "--lrs", "0.1", "--batch-sizes", "32", "--measures", "vibes", "--out",
                 str(tmp_path / "z")]) == 2
    assert "unknown measure" in capsys.readouterr().err


@pytest.mark.parametrize("name,budget", [("adam-vs-sgd", "steps"), ("sgd-sam-adam", "grad-evals")])
def test_presets_produce_finite_tables(tmp_path, capsys, name, budget):
    assert main(["preset", name, "--out", str(tmp_path / name), "--epochs", "2", "--budget", budget,
                 "--samples", "128", "--grid", "5", "--json"]) == 0
    res, err = _json_out(capsys)
    assert err.strip()  # progress went to stderr
    rows = res["rows"]
    assert len(rows) == 3 and list(rows[0]) == list(PRESET_COLUMNS)
    for r in rows:
        for k in ("test_acc", "train_acc", "lambda_max", "trace", "gen_gap", "seconds_per_epoch"):
            assert isinstance(r[k], float) and math.isfinite(r[k]), (k, r)
        assert r["lambda_max"] > 0
    assert set(res["surfaces"]) == {r["configuration"] for r in rows}
    for s in res["surfaces"].values():
        assert s["grid"] == [5, 5]
        assert all(v is not None and math.isfinite(v) for row in s["loss"] for v in row)
    first = rows[0]
    if budget == "steps":
        assert "equal optimizer steps" in res["statement"]
        assert len({r["steps"] for r in rows}) == 1
    else:
        assert "equal gradient evaluations" in res["statement"]
        assert len({r["grad_evals"] for r in rows}) == 1
        sam = next(r for r in rows if r["optimizer"] == "sam")
        assert sam["steps"] * 2 == sam["grad_evals"] == first["steps"]
    if name == "adam-vs-sgd":
        assert [r["optimizer"] for r in rows] == ["adam", "sgd", "sgd"]
        assert rows[0]["lr"] == 1e-3 and rows[2]["weight_decay"] > rows[1]["weight_decay"]
        assert rows[1]["lr"] > rows[2]["lr"]


def test_killed_sweep_resumes_from_finished_points(tmp_path, capsys):
    import os
    import signal
    import subprocess
    import sys
    import time

    out_dir = tmp_path / "killed"
    cmd = ["sweep", "--lrs", "0.02,0.1", "--batch-sizes", "16,32", "--epochs", "2", "--train-size", "300",
           "--width", "16", "--depth", "1", "--samples", "64", "--trace-probes", "3", "--flatness-directions", "2",
           "--n-boot", "20", "--out", str(out_dir), "--json"]
    proc = subprocess.Popen([sys.executable, "-m", "landscape_core", *cmd], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    points = out_dir / "points"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if points.is_dir() and len(list(points.glob("*.json"))) >= 2:
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finished = len(list(points.glob("*.json")))
    assert finished >= 2
    assert main(cmd) == 0
    res, _ = _json_out(capsys)
    assert res["reused"] == finished and res["computed"] == 4 - finished and res["finished"] == 4
    assert len([p for p in (out_dir / "runs").iterdir() if not p.name.startswith(".")]) == 4


def test_preset_configs_share_init_and_mnist_needs_a_local_copy(tmp_path, monkeypatch):
    from landscape_core.presets import mnist_available, preset_configs, preset_datasets

    entries = preset_configs("sgd-sam-adam", budget="grad-evals", epochs=3)
    cfgs = [c for _, c, _ in entries]
    assert len({(c.init_seed, c.seed, c.width, c.depth, c.batch_size) for c in cfgs}) == 1
    steps = entries[0][2]["reference_steps"]
    assert all(c.max_grad_evals == steps for c in cfgs)
    assert [i["steps"] for _, _, i in entries] == [steps, steps // 2, steps]
    monkeypatch.setenv("LANDSCAPE_DATA", str(tmp_path / "data"))
    assert not mnist_available() and preset_datasets() == ["digits"]
    with pytest.raises(ValueError, match="local copy"):
        preset_configs("adam-vs-sgd", dataset="mnist")
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(b"")
    assert mnist_available() and preset_datasets() == ["digits", "mnist"]
    with pytest.raises(ValueError, match="unknown preset"):
        preset_configs("sgd-vs-everything")
