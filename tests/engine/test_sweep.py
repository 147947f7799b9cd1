"""Tests for landscape_core.sweep: grid expansion, keys, resumption without retraining, measures, parallel."""

import json
import math

import pytest
import torch

from landscape_core import training
from landscape_core.functional import loss_function_for_run
from landscape_core.params import model_hash
from landscape_core.runs import load_run
from landscape_core.sweep import COLUMNS, SweepSpec, load_sweep, measure_run, point_id, run_sweep

BASE = {"dataset": {"name": "digits", "train_size": 240, "test_size": 120}, "epochs": 1, "width": 16,
        "depth": 1, "snapshots": 0}
FAST = dict(samples=96, lanczos_iters=12, trace_probes=4, flatness_directions=3)


def small_spec(**kw):
    args = dict(base=BASE, lrs=(0.02, 0.2), batch_sizes=(32, 120), **FAST)
    args.update(kw)
    return SweepSpec(**args)


def test_grid_is_cartesian_product_and_validated():
    spec = SweepSpec(base=BASE, lrs=(0.01, 0.1, 0.5), batch_sizes=(32, 64), weight_decays=(0.0, 1e-4))
    cfgs = spec.configs()
    assert len(cfgs) == len(spec) == 12
    assert {(c.lr, c.batch_size, c.weight_decay) for c in cfgs} == {
        (lr, b, w) for lr in (0.01, 0.1, 0.5) for b in (32, 64) for w in (0.0, 1e-4)
    }
    assert all(c.epochs == 1 and c.width == 16 for c in cfgs)
    with pytest.raises(ValueError, match="lr"):
        SweepSpec(base=BASE, lrs=(0.1, -1.0))
    with pytest.raises(ValueError, match="unknown measure"):
        SweepSpec(base=BASE, measures=("lambda_max", "vibes"))
    with pytest.raises(ValueError, match="repeated"):
        SweepSpec(base=BASE, lrs=(0.1, 0.1))
    with pytest.raises(ValueError, match="unknown training settings"):
        SweepSpec(base={**BASE, "learning_rate": 0.1})
    assert SweepSpec.from_dict(spec.to_dict()) == spec


def test_point_ids_depend_on_config_and_measure_settings():
    a, b = SweepSpec(base=BASE, lrs=(0.1,), batch_sizes=(32,)), SweepSpec(base=BASE, lrs=(0.2,), batch_sizes=(32,))
    ca, cb = a.configs()[0].to_dict(), b.configs()[0].to_dict()
    s = a.measure_settings()
    assert point_id(ca, s) == point_id(dict(ca), dict(s))
    assert point_id(ca, s) != point_id(cb, s)
    assert point_id(ca, s) != point_id(ca, {**s, "samples": 128})


def test_sweep_resumes_without_retraining_finished_points(tmp_path, monkeypatch):
    calls = []
    real_train = training.train

    def counting_train(cfg, **kw):
        calls.append((cfg.lr, cfg.batch_size))
        return real_train(cfg, **kw)

    monkeypatch.setattr(training, "train", counting_train)
    spec = small_spec()
    out = tmp_path / "sweep"
    done_points = []

    def stop_after_two():
        return len(list((out / "points").glob("*.json"))) >= 2 if (out / "points").is_dir() else False

    first = run_sweep(spec, out_dir=out, should_stop=stop_after_two, n_boot=50,
                      progress=lambda f, m: done_points.append((f, m)))
    assert first.cancelled and len(first.rows) == 2 and first.computed == 2
    assert len(calls) == 2
    assert all(0.0 <= f <= 1.0 for f, _ in done_points)
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "points").glob("*.json")}

    second = run_sweep(spec, out_dir=out, n_boot=50)
    assert not second.cancelled and len(second.rows) == 4
    assert second.reused == 2 and second.computed == 2
    assert len(calls) == 4  # only the two missing points were trained
    assert len(set(calls)) == 4
    for name, t in mtimes.items():  # finished records untouched
        assert (out / "points" / name).stat().st_mtime_ns == t

    third = run_sweep(spec, out_dir=out, n_boot=50)
    assert len(calls) == 4 and third.reused == 4 and third.computed == 0
    assert [r["id"] for r in third.rows] == [r["id"] for r in second.rows]
    assert load_sweep(out).to_dict()["rows"] == third.to_dict()["rows"]

    # new measurement settings: the trained runs are reused, only the measures are recomputed
    fourth = run_sweep(small_spec(trace_probes=5), out_dir=out, n_boot=50)
    assert len(calls) == 4 and fourth.computed == 4

    table = second.table()
    assert list(table[0]) == list(COLUMNS)
    for row in table:
        for k in ("test_acc", "train_acc", "gen_gap", "lambda_max", "trace", "trace_stderr", "flatness"):
            assert isinstance(row[k], float) and math.isfinite(row[k]), (k, row)
        assert row["gen_gap"] == pytest.approx(row["test_loss"] - row["train_loss"])
        assert row["lambda_max"] > 0
    corr = second.to_dict()["correlations"]
    assert {(c["measure"], c["target"]) for c in corr} >= {("lambda_max", "test_acc"), ("trace", "gen_gap")}
    assert all(c["n"] == 4 for c in corr)
    json.dumps(second.to_dict())


def test_record_without_run_is_retrained_and_run_without_record_is_only_measured(tmp_path, monkeypatch):
    spec = small_spec(lrs=(0.05,), batch_sizes=(60,))
    out = tmp_path / "s"
    r1 = run_sweep(spec, out_dir=out, n_boot=10)
    rec = next((out / "points").glob("*.json"))
    rec.unlink()  # killed after training, before the record was written
    calls = []
    monkeypatch.setattr(training, "train", lambda *a, **k: calls.append(1))
    r2 = run_sweep(spec, out_dir=out, n_boot=10)
    assert calls == [] and r2.computed == 1
    assert r2.rows[0]["lambda_max"] == pytest.approx(r1.rows[0]["lambda_max"], rel=1e-9)


def test_measures_match_dense_hessian_and_do_not_touch_the_model(tmp_path):
    cfg = training.TrainConfig(dataset={"name": "moons", "n_samples": 120}, width=4, depth=1, epochs=2,
                               batch_size=30, lr=0.2, snapshots=0)
    res = training.train(cfg, path=tmp_path / "run")
    run = load_run(res.path)
    h0 = model_hash(run.model)
    settings = {"measures": ["lambda_max", "trace", "flatness", "per_layer"], "samples": 64,
                "lanczos_iters": 60, "trace_probes": 150, "flatness_radius": 0.05, "flatness_directions": 4,
                "seed": 0}
    m = measure_run(run, settings)
    assert model_hash(run.model) == h0
    lf = loss_function_for_run(run, samples=64, seed=0, dtype=torch.float64)
    names = list(lf.params0)
    flat = torch.cat([lf.params0[k].reshape(-1) for k in names])
    shapes = [lf.params0[k].shape for k in names]

    def f(v):
        parts, i = {}, 0
        for k, s in zip(names, shapes):
            n = math.prod(s)
            parts[k] = v[i : i + n].reshape(s)
            i += n
        return lf(parts)

    H = torch.func.hessian(f)(flat)
    ev = torch.linalg.eigvalsh(H)
    assert m["lambda_max"] == pytest.approx(float(ev[-1]), rel=1e-3)
    # Hutchinson with 150 probes: within 4 standard errors of the exact trace
    assert abs(m["trace"] - float(torch.trace(H))) <= 4 * m["trace_stderr"]
    # per-layer: the top eigenvalue of each diagonal block
    i = 0
    blocks = {}
    for k, s in zip(names, shapes):
        blocks.setdefault(k.rsplit(".", 1)[0], []).append((i, i + math.prod(s)))
        i += math.prod(s)
    for layer, spans in blocks.items():
        idx = torch.cat([torch.arange(a, b) for a, b in spans])
        top = float(torch.linalg.eigvalsh(H[idx][:, idx])[-1])
        assert m["per_layer"][layer] == pytest.approx(top, rel=1e-3)
    assert math.isfinite(m["flatness"]) and m["flatness_stderr"] > 0


def test_parallel_sweep_equals_sequential(tmp_path):
    spec = small_spec(lrs=(0.05,), batch_sizes=(40, 120), measures=("lambda_max",))
    seq = run_sweep(spec, out_dir=tmp_path / "a", n_boot=10)
    par = run_sweep(spec, out_dir=tmp_path / "b", n_jobs=2, n_boot=10)
    assert [r["id"] for r in seq.rows] == [r["id"] for r in par.rows]
    for a, b in zip(seq.rows, par.rows):
        assert a["test_acc"] == pytest.approx(b["test_acc"], abs=1e-6)
        assert a["lambda_max"] == pytest.approx(b["lambda_max"], rel=1e-4)


def test_dask_scheduler_sweep_equals_local(tmp_path):
    distributed = pytest.importorskip("distributed")
    spec = small_spec(lrs=(0.05,), batch_sizes=(60, 120), measures=("lambda_max", "flatness"))
    local = run_sweep(spec, out_dir=tmp_path / "local", n_boot=10)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        remote = run_sweep(spec, out_dir=tmp_path / "dask", scheduler=cluster.scheduler_address, n_boot=10)
    assert remote.computed == 2 and len(list((tmp_path / "dask" / "points").glob("*.json"))) == 2
    for a, b in zip(local.rows, remote.rows):
        assert a["id"] == b["id"]
        assert a["test_acc"] == pytest.approx(b["test_acc"], abs=1e-6)
        assert a["lambda_max"] == pytest.approx(b["lambda_max"], rel=1e-4)
        assert a["flatness"] == pytest.approx(b["flatness"], rel=1e-4, abs=1e-7)


def test_flatness_equals_the_perturbation_profile_at_that_radius(tmp_path):
    from landscape_core.flatness import perturbation_profile

    cfg = training.TrainConfig(dataset={"name": "moons", "n_samples": 100}, width=4, depth=1, epochs=1,
                               batch_size=25, snapshots=0)
    run = load_run(training.train(cfg, path=tmp_path / "r").path)
    m = measure_run(run, {"measures": ["flatness"], "samples": 50, "flatness_radius": 0.1,
                          "flatness_directions": 5, "seed": 3})
    prof = perturbation_profile(loss_function_for_run(run, samples=50, seed=3), radii=[0.1], n_directions=5, seed=3)
    assert m["flatness"] == pytest.approx(prof.mean_increase[0], rel=1e-9)
    assert m["flatness_stderr"] == pytest.approx(float(prof.raw[0].std(ddof=1)) / math.sqrt(5), rel=1e-9)
    assert m["lambda_max"] is None and m["trace"] is None
