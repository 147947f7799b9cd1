"""Helpers shared by the reliability tests (tiny models, zip builders, tree listings)."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import torch

from landscape_core.models import build_model, model_spec

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
