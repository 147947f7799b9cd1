"""Run folders: save/load round trip, atomic writes, list/delete/rename, hash check, zip export."""

from __future__ import annotations

import json
import zipfile

import pytest
import torch

from landscape_core import runs as runs_mod
from landscape_core.functional import LossFunction
from landscape_core.params import model_hash
from landscape_core.runs import (
    RunError,
    cleanup_partial,
    delete_run,
    export_zip,
    list_runs,
    load_run,
    read_meta,
    rename_run,
    save_run,
)
from landscape_core.training import TrainConfig, train


@pytest.fixture(scope="module")
def trained():
    cfg = TrainConfig(dataset={"name": "moons", "n_samples": 160, "noise": 0.2}, width=8, depth=1,
                      activation="tanh", lr=0.1, batch_size=20, epochs=2, snapshots=3)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(cfg)
    finally:
        torch.set_num_threads(n)


def _save(trained, path):
    return save_run(path, trained.model, {**trained.meta, "name": path.name}, trained.trajectory)


def test_save_load_round_trip_same_hash_and_test_accuracy(tmp_path, trained):
    p = _save(trained, tmp_path / "r1")
    run = load_run(p)
    assert run.weights_hash == model_hash(trained.model) == model_hash(run.model)
    assert not run.model.training
    _, acc = LossFunction(run.model, *run.test_data).evaluate()
    assert acc == trained.final["test_acc"] == run.meta["final"]["test_acc"]
    snaps, steps = run.trajectory()
    ref, ref_steps = trained.trajectory
    assert torch.equal(steps, ref_steps) and all(torch.equal(snaps[k], ref[k]) for k in ref)
    assert run.meta["history"] == json.loads(json.dumps(trained.history))
    with pytest.raises(RunError, match="already exists"):
        _save(trained, p)


def test_failing_save_leaves_nothing_visible(tmp_path, trained, monkeypatch):
    def broken(tensors, filename, *a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(runs_mod, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        _save(trained, tmp_path / "half")
    assert list_runs(tmp_path, include_shipped=False) == []
    assert list(tmp_path.iterdir()) == []  # the temporary folder was removed too


def test_interrupted_save_is_invisible_and_cleaned_up(tmp_path, trained):
    good = _save(trained, tmp_path / "good")
    tmp = tmp_path / ".tmp-half-abc"
    tmp.mkdir()
    (tmp / "run.json").write_text(json.dumps(read_meta(good)))
    assert [r.name for r in list_runs(tmp_path, include_shipped=False)] == ["good"]
    assert cleanup_partial(tmp_path) == 1 and not tmp.exists()


def test_list_delete_rename(tmp_path, trained):
    a, b = _save(trained, tmp_path / "a"), _save(trained, tmp_path / "b")
    names = [r.name for r in list_runs(tmp_path, include_shipped=False)]
    assert names == ["a", "b"]
    shipped = {r.name for r in list_runs(tmp_path) if r.source == "shipped"}
    assert {"digits-sgd", "digits-sam", "moons-tiny"} <= shipped
    new = rename_run(a, "c", workspace=tmp_path)
    assert new == (tmp_path / "c").resolve() and read_meta(new)["name"] == "c" and not a.exists()
    assert load_run(new).weights_hash == model_hash(trained.model)
    with pytest.raises(RunError, match="already exists"):
        rename_run(b, "c", workspace=tmp_path)
    with pytest.raises(ValueError, match="invalid run name"):
        rename_run(b, "../evil", workspace=tmp_path)
    delete_run(b, workspace=tmp_path)
    assert [r.name for r in list_runs(tmp_path, include_shipped=False)] == ["c"]
    outside = _save(trained, tmp_path.parent / f"{tmp_path.name}-outside")
    with pytest.raises(RunError, match="only runs inside the workspace"):
        delete_run(outside, workspace=tmp_path)


def test_corrupted_weights_detected_by_hash(tmp_path, trained):
    p = _save(trained, tmp_path / "r")
    f = p / "model.safetensors"
    raw = bytearray(f.read_bytes())
    raw[-3] ^= 0xFF  # flip bits inside the last tensor's data
    f.write_bytes(bytes(raw))
    with pytest.raises(RunError, match="do not match the hash"):
        load_run(p)
    assert load_run(p, verify=False).weights_hash != model_hash(load_run(p, verify=False).model)


def test_export_zip_has_relative_entries_with_the_run_files(tmp_path, trained):
    p = _save(trained, tmp_path / "ws" / "r")
    (p / ".hidden").write_text("leftover")
    z = export_zip(p, tmp_path / "out" / "r.zip")
    with zipfile.ZipFile(z) as zf:
        names = sorted(zf.namelist())
        assert names == ["model.safetensors", "run.json", "trajectory.safetensors"]
        assert all(not n.startswith("/") and ".." not in n for n in names)
        for n in names:
            assert zf.read(n) == (p / n).read_bytes()
    assert [q.name for q in (tmp_path / "out").iterdir()] == ["r.zip"]
    with pytest.raises(RunError, match="not a run folder"):
        export_zip(tmp_path / "ws", tmp_path / "x.zip")
