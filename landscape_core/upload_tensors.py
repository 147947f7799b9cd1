"""Safe tensor loading for uploads: safetensors, weights-only ``torch.load``, wrappers and prefixes.

``.pt/.pth/.th/.bin/.ckpt`` payloads are read only with ``torch.load(..., weights_only=True,
map_location="cpu")`` (PyTorch's restricted unpickler: tensors and plain containers, no arbitrary
globals, so a payload whose ``__reduce__`` would run code is refused). Wrappers such as
``{"state_dict"|"model"|"model_state_dict"|"net": ...}`` (Lightning ``.ckpt`` included) are unwrapped;
leading ``module.`` (DataParallel), ``_orig_mod.`` (torch.compile) and ``model.`` prefixes stripped;
sparse, quantized and NaN/Inf tensors refused. Also the contents of a checked run zip (``run.json``,
weights, trajectory, an imported run's own data).
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .graph_import import GRAPH_FILE
from .runs import MODEL_FILE, RUN_JSON, TRAJ_FILE
from .upload_files import STRIP_PREFIXES, WRAPPER_KEYS, UploadError, short_list, sniff
from .upload_zip import check_torch_zip, parse_run_json
from .user_data import DATA_FILE, UserDataSpec, arrays_sha256, bundle_from_arrays


# --- loading tensors ---------------------------------------------------------------------------
def _load_safetensors(buf: bytes) -> dict[str, Tensor]:
    from safetensors.torch import load

    n = int.from_bytes(buf[:8], "little") if len(buf) >= 8 else 0
    if len(buf) < 8 or n > len(buf) - 8:
        raise UploadError("safetensors file is truncated (header runs past the end of the file)")
    try:
        return dict(load(buf))
    except Exception as e:  # SafetensorError and friends: corrupt header or data
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UploadError(f"safetensors file is corrupt or truncated: {msg[:160]}") from None


def _unwrap_state_dict(obj: Any) -> tuple[dict[str, Tensor], str | None]:
    """A plain ``{name: Tensor}`` dict and the wrapper key it came from (``None``: not wrapped).

    Wrappers are ``{"state_dict"|"model_state_dict"|"model"|"net"|...: {...}, ...}``; a Lightning
    ``.ckpt`` is one (weights under ``state_dict``; ``epoch``, ``optimizer_states``,
    ``hyper_parameters``, ``callbacks``... are ignored, and were read weights-only like the rest).
    """
    if isinstance(obj, nn.Module):  # cannot happen with weights_only, but be explicit
        raise UploadError("the file holds a whole pickled module; upload model.state_dict() instead")
    if not isinstance(obj, Mapping):
        raise UploadError(f"the checkpoint holds a {type(obj).__name__}, not a state dict (name -> tensor)")
    if obj and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        return dict(obj), None
    for key in WRAPPER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner and all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in inner.items()
        ):
            return dict(inner), key
    if not obj:
        raise UploadError("the checkpoint holds an empty dict; no weights found")
    bad = [f"{k}={type(v).__name__}" for k, v in obj.items() if not isinstance(v, Tensor)]
    raise UploadError(
        f"the checkpoint dict is not a state dict (non-tensor entries: {short_list([str(b) for b in bad])}); "
        f"save model.state_dict()"
    )


def _load_pt(buf: bytes, max_bytes: int) -> tuple[dict[str, Tensor], str | None]:
    if sniff(buf) == "zip":
        check_torch_zip(buf, max_bytes)
    try:
        obj = torch.load(io.BytesIO(buf), weights_only=True, map_location="cpu")
    except UploadError:
        raise
    except Exception as e:  # UnpicklingError (forbidden global), RuntimeError (corrupt/truncated), EOFError...
        text = str(e).strip()
        if "weights_only" in text or "Unsupported global" in text or "Unpickler" in type(e).__name__:
            m = re.search(r"(?:Unsupported global|GLOBAL)[: ]+(?:GLOBAL )?([\w.]+)", text)
            what = f" ({m.group(1)})" if m else ""
            hint = ""
            if m and m.group(1).startswith(("lightning", "pytorch_lightning")):
                hint = "; for a Lightning checkpoint save plain values in hyper_parameters, or torch.save(model.state_dict())"
            raise UploadError(
                f"the checkpoint contains Python objects that are not plain tensors{what}; refused for safety "
                f"(only weights_only state dicts are accepted){hint}"
            ) from None
        raise UploadError(f"the .pt file is corrupt or truncated ({type(e).__name__})") from None
    return _unwrap_state_dict(obj)


def clean_state(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], str | None]:
    """Detached CPU dense tensors, with common ``module.``/``_orig_mod.``/``model.`` prefixes stripped."""
    out: dict[str, Tensor] = {}
    for k, v in state.items():
        if not isinstance(v, Tensor):
            raise UploadError(f"entry {k!r} is not a tensor")
        if v.layout != torch.strided or v.is_quantized:
            raise UploadError(f"tensor {k!r} is sparse or quantized; only dense tensors are accepted")
        out[k] = v.detach().to("cpu").contiguous()
    stripped = None
    changed = True
    while changed:  # e.g. "module._orig_mod." (DDP around torch.compile), "model." (Lightning attribute)
        changed = False
        for prefix in STRIP_PREFIXES:
            if out and all(k.startswith(prefix) and len(k) > len(prefix) for k in out):
                out = {k[len(prefix) :]: v for k, v in out.items()}
                stripped = prefix if stripped is None else stripped + prefix
                changed = True
    return out, stripped


def check_finite(state: Mapping[str, Tensor]) -> None:
    """Refuse NaN / Inf in any floating-point tensor, naming the first few."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise UploadError(f"weights contain NaN or Inf values in {short_list(bad)}")


def load_state(kind: str, buf: bytes, max_bytes: int) -> tuple[dict[str, Tensor], str | None]:
    """``(state dict, wrapper key)`` of a safetensors or ``torch.save`` upload (weights-only)."""
    if kind == "safetensors":
        return _load_safetensors(buf), None
    return _load_pt(buf, max_bytes)


def zip_user_data(ds: Mapping[str, Any], blob: bytes | None) -> tuple[Any, dict, bytes]:
    """The own data of a re-uploaded run: ``data.npz`` read without pickle, hash-checked against run.json."""
    if blob is None:
        raise UploadError(f"run zip uses its own data but has no {DATA_FILE}")
    try:
        spec = UserDataSpec.from_dict(ds)
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("X_train", "y_train", "X_test", "y_test")}
    except (KeyError, ValueError, TypeError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise UploadError(f"{DATA_FILE} / its spec in the zip is not valid ({type(e).__name__})") from None
    if arrays_sha256(arrays) != spec.sha256:
        raise UploadError(f"{DATA_FILE} in the zip does not match the SHA-256 in {RUN_JSON}")
    if tuple(arrays["X_train"].shape[1:]) != spec.input_shape or arrays["y_train"].dtype != np.int64:
        raise UploadError(f"{DATA_FILE} in the zip does not match its description in {RUN_JSON}")
    return bundle_from_arrays(arrays, spec), spec.to_dict(), blob


def run_zip_contents(
    blobs: Mapping[str, bytes],
) -> tuple[dict, dict[str, Tensor], dict[str, Tensor] | None, dict[str, bytes]]:
    """``(meta, weights, trajectory, extras)`` of a checked run zip's files; ``extras`` holds the raw bytes
    of an imported run's ``model.onnx`` / ``data.npz`` (checked later, like any upload of those kinds)."""
    from safetensors.torch import load

    meta = parse_run_json(blobs[RUN_JSON])
    state = _load_safetensors(blobs[MODEL_FILE])
    traj = None
    if TRAJ_FILE in blobs:
        try:
            traj = dict(load(blobs[TRAJ_FILE]))
        except Exception:
            raise UploadError(f"{TRAJ_FILE} in the zip is corrupt or truncated") from None
    extras = {n: blobs[n] for n in (GRAPH_FILE, DATA_FILE) if n in blobs}
    return meta, state, traj, extras
