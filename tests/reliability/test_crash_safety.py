"""Crash safety: a save or a training run that dies half-way (exception, SIGKILL) never leaves a partial
run visible, and ``cleanup_partial`` + ``list_runs`` recover on the next start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from rel_helpers import digits_model, digits_spec, tree_listing

import landscape_core.runs as runs
from landscape_core.params import model_hash
from landscape_core.runs import cleanup_partial, list_runs, load_run, save_run

ROOT = Path(__file__).resolve().parents[2]
META = {"model": digits_spec(), "dataset": {"name": "digits"}}


def _hidden(ws: Path) -> list[str]:
    return sorted(p.name for p in ws.iterdir() if p.name.startswith("."))


# ------------------------------------------------------------------ exceptions mid-write
@pytest.mark.parametrize("fail_on_call", [1, 2])
def test_save_file_raising_mid_write_leaves_nothing(workspace, monkeypatch, fail_on_call):
    """The 1st call writes the weights, the 2nd the trajectory: a failure in either leaves no run."""
    real = runs.save_file
    calls = []

    def flaky(tensors, filename, *a, **k):
        calls.append(filename)
        if len(calls) == fail_on_call:
            Path(filename).write_bytes(b"\x00" * 100)  # a half-written file...
            raise OSError("disk full (simulated)")  # ...then the failure
        return real(tensors, filename, *a, **k)

    monkeypatch.setattr(runs, "save_file", flaky)
    model = digits_model()
    snaps = {k: v.detach()[None].repeat(2, *([1] * v.ndim)) for k, v in model.named_parameters()}
    with pytest.raises(OSError, match="disk full"):
        save_run(workspace / "r", model, META, trajectory=(snaps, [0, 1]))
    assert len(calls) == fail_on_call
    assert tree_listing(workspace) == set()
    assert list_runs(workspace, include_shipped=False) == []
    monkeypatch.setattr(runs, "save_file", real)
    save_run(workspace / "r", model, META)
    assert load_run(workspace / "r").weights_hash == model_hash(model)


def test_overwrite_failing_between_renames_keeps_the_old_run(workspace, monkeypatch):
    model_old, model_new = digits_model(seed=1), digits_model(seed=2)
    save_run(workspace / "r", model_old, META)
    real = os.replace
    calls = []

    def flaky(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # old run moved aside, new one not yet in place
            raise OSError("power cut (simulated)")
        return real(src, dst)

    monkeypatch.setattr(runs.os, "replace", flaky)
    with pytest.raises(OSError, match="power cut"):
        save_run(workspace / "r", model_new, META, overwrite=True)
    monkeypatch.setattr(runs.os, "replace", real)
    assert load_run(workspace / "r").weights_hash == model_hash(model_old)
    assert _hidden(workspace) == []


def test_cleanup_restores_an_old_run_orphaned_by_a_kill_mid_overwrite(workspace):
    """SIGKILL between the two renames of an overwrite leaves ``.old-r-xxxxxxxx`` and no ``r``."""
    model = digits_model(seed=1)
    save_run(workspace / "r", model, META)
    os.replace(workspace / "r", workspace / ".old-r-0123abcd")  # the state the kill leaves behind
    (workspace / ".tmp-r-zzzz").mkdir()  # and the new run's unfinished temp folder
    assert list_runs(workspace, include_shipped=False) == []
    assert cleanup_partial(workspace) == 2
    assert [r.name for r in list_runs(workspace, include_shipped=False)] == ["r"]
    assert load_run(workspace / "r").weights_hash == model_hash(model)
    assert _hidden(workspace) == []


# ------------------------------------------------------------------ SIGKILL in a child process
def _start(code: str, workspace: Path, marker: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(Path(__file__).parent)]),
           "LANDSCAPE_WORKSPACE": str(workspace), "MARKER": str(marker), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _kill_when(proc: subprocess.Popen, marker: Path, timeout: float = 120) -> None:
    t0 = time.monotonic()
    while not marker.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"child ended before the marker (rc={proc.returncode}): {err.decode()[-2000:]}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            raise AssertionError("child never reached the marker")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def test_sigkill_while_saving_leaves_no_visible_run_and_cleanup_recovers(workspace, tmp_path):
    marker = tmp_path / "writing"
    code = """
        import os, time
        from pathlib import Path
        import landscape_core.runs as runs
        from rel_helpers import digits_model, digits_spec
        real = runs.save_file
        def slow(tensors, filename, *a, **k):
            real(tensors, filename, *a, **k)              # the weights are on disk...
            Path(os.environ["MARKER"]).write_text("x")    # ...tell the parent...
            time.sleep(600)                               # ...and get killed before run.json
        runs.save_file = slow
        ws = Path(os.environ["LANDSCAPE_WORKSPACE"])
        runs.save_run(ws / "victim", digits_model(), {"model": digits_spec(), "dataset": {"name": "digits"}})
    """
    proc = _start(code, workspace, marker)
    _kill_when(proc, marker)
    leftovers = _hidden(workspace)
    assert len(leftovers) == 1 and leftovers[0].startswith(".tmp-victim-")
    assert not (workspace / "victim").exists()
    assert list_runs(workspace, include_shipped=False) == []
    # next start: clean up, then the same name can be saved
    assert cleanup_partial(workspace) == 1
    assert tree_listing(workspace) == set()
    save_run(workspace / "victim", digits_model(), META)
    assert [r.name for r in list_runs(workspace, include_shipped=False)] == ["victim"]


def test_sigkill_during_training_leaves_no_visible_run(workspace, tmp_path):
    marker = tmp_path / "training"
    code = """
        import os
        from pathlib import Path
        from landscape_core.training import TrainConfig, train
        ws = Path(os.environ["LANDSCAPE_WORKSPACE"])
        def progress(info):
            if info["step"] >= 20:  # atomic, so the parent never reads a half-written marker
                tmp = Path(os.environ["MARKER"] + ".tmp")
                tmp.write_text(str(info["step"]))
                os.replace(tmp, os.environ["MARKER"])
        cfg = TrainConfig(dataset={"name": "moons", "n_samples": 400}, width=8, depth=1, batch_size=4,
                          epochs=10_000, snapshots=4)
        train(cfg, out_dir=ws, name="killed", progress=progress)
    """
    proc = _start(code, workspace, marker)
    _kill_when(proc, marker)
    assert int(marker.read_text()) >= 20
    assert list_runs(workspace, include_shipped=False) == []
    assert not (workspace / "killed").exists()
    cleanup_partial(workspace)
    assert tree_listing(workspace) == set()
