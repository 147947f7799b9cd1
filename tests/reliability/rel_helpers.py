"""Helpers shared by the reliability tests (tiny models, zip builders, tree listings)."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import torch

from landscape_core.models import build_model, model_spec
from landscape_core.params import weights_hash

DIGITS_MLP = {"width": 16, "depth": 2, "activation": "tanh"}


def digits_spec(**kw) -> dict:
    return model_spec("mlp", (1, 8, 8), 10, **{**DIGITS_MLP, **kw})


def digits_model(seed: int = 0, **kw) -> torch.nn.Module:
    return build_model(digits_spec(**kw), seed=seed)


def zip_folder(folder: Path, *, prefix: str | None = None, extra: dict[str, bytes] | None = None) -> bytes:
    """Zip a run folder's files (under ``prefix/`` when given) plus ``extra`` raw entries."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(folder.iterdir()):
            if f.is_file():
                zf.write(f, f"{prefix}/{f.name}" if prefix else f.name)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


def state_bytes_pt(state: dict, **kw) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf, **kw)
    return buf.getvalue()


def state_bytes_safetensors(state: dict) -> bytes:
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in state.items()})


def tree_listing(root: Path) -> set[str]:
    """Every path under ``root`` (hidden ones included), relative, for before/after comparisons."""
    return {os.path.relpath(os.path.join(d, n), root) for d, dirs, files in os.walk(root) for n in dirs + files}


# --- workers for multi-process tests (top-level so that 'spawn' children can import them) ---------
def save_runs_worker(ws: str, prefix: str, n: int, seed0: int) -> list[str]:
    """Save ``n`` tiny runs named ``prefix-j`` into ``ws``; return their weights hashes."""
    from landscape_core.runs import save_run

    torch.set_num_threads(1)
    hashes = []
    for j in range(n):
        model = digits_model(seed=seed0 + j)
        meta = {"model": digits_spec(), "dataset": {"name": "digits"}}
        save_run(Path(ws) / f"{prefix}-{j}", model, meta)
        hashes.append(weights_hash(model.state_dict()))
    return hashes


def collide_worker(ws: str, name: str, seed: int) -> str:
    """All workers save to the same folder name: exactly one may win, the others must fail cleanly."""
    from landscape_core.runs import save_run

    torch.set_num_threads(1)
    try:
        save_run(Path(ws) / name, digits_model(seed=seed), {"model": digits_spec(), "dataset": {"name": "digits"}})
        return "ok"
    except (OSError, RuntimeError) as e:
        return type(e).__name__


def import_worker(ws: str, data: bytes) -> str:
    """Import the same upload (same file name) concurrently: every import must get its own run."""
    from landscape_core.uploads import import_upload

    torch.set_num_threads(1)
    spec = {"name": "mlp", "kwargs": dict(DIGITS_MLP)}
    return str(import_upload("same.pt", data, workspace=ws, model_spec=spec))


#: Figures of the soak test, repeated in pytest's terminal summary (see conftest.py).
SOAK_REPORT: list[str] = []


def app_session_worker(root: str, page: str, workspace: str, active_run: str, i: int, n: int):
    """One AppTest session in its own process (AppTest's widget registry is not thread-safe, so
    concurrent sessions are separate processes here; real browser tabs on one server are covered in
    tests/browser/test_app_pages.py::test_two_tabs_keep_their_own_session_state)."""
    os.environ["LANDSCAPE_WORKSPACE"] = workspace
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(root) / page), default_timeout=120)
    at.session_state["active_run"] = active_run
    at.session_state[f"marker_{i}"] = i
    at.run()
    at.run()
    keys = {f"marker_{j}" for j in range(n) if f"marker_{j}" in at.session_state}
    return len(at.exception), at.session_state["active_run"], keys
