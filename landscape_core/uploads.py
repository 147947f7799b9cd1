"""Safe checkpoint import: uploaded run zips, ``.safetensors`` and weights-only ``.pt/.pth`` state dicts.

Everything that arrives here is untrusted. The rules (see docs/SECURITY.md):

- The size is checked first (``max_bytes``); empty files are refused.
- The kind is decided by the extension AND the first bytes (magic numbers), which must agree, so a
  renamed file is refused with a message saying what it looks like.
- Zips (exported runs, and the zip container of modern ``torch.save`` files) are checked from the
  central directory BEFORE anything is extracted: entry count, names (no absolute paths, no ``..``,
  no backslashes, no symlinks, only the known file names), total uncompressed size and per-entry
  compression ratio (zip bombs). Extraction then streams each entry with a hard byte cap, because
  the sizes a zip declares can lie.
- ``.pt/.pth`` payloads are read only with ``torch.load(..., weights_only=True, map_location="cpu")``
  (PyTorch's restricted unpickler: tensors and plain containers, no arbitrary globals, so a payload
  whose ``__reduce__`` would run code is refused). TorchScript archives (``code/``, ``constants.pkl``)
  are refused before loading. Nothing uploaded is ever executed or unpickled freely.
- Weights are checked against the architecture (the run's ``run.json`` spec, or ``model_spec`` chosen
  by the user) *on the meta device first*, so a hostile spec asking for a billion-unit layer costs
  no memory: missing / unexpected keys and shape mismatches are reported in one line. NaN/Inf
  weights are refused. A leading ``module.`` (DataParallel) or ``_orig_mod.`` (torch.compile)
  prefix is stripped.
- Files are written only inside the workspace: a hidden ``.tmp-upload-*`` folder for extraction
  (removed afterwards; :func:`landscape_core.runs.cleanup_partial` removes leftovers of a crash),
  and the final run folder through the atomic :func:`landscape_core.runs.save_run`. The dataset
  spec of an uploaded run is re-normalised (its ``root`` folder is dropped), so a hostile ``run.json``
  cannot point data loading (and torchvision's downloader) at an arbitrary folder.

Public API: :func:`import_upload` (write a run folder), :func:`inspect_upload` (describe a file for
the UI: kind, tensors, a guessed model spec) and :class:`UploadError` (a ``ValueError`` with a
one-line message).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .data import DataError, DatasetSpec, analysis_subset, load_dataset
from .graph_import import (
    EXPORT_HINT,
    GRAPH_FILE,
    MODEL_DEF,
    ONNX_MODEL,
    GraphError,
    build_model_def,
    file_sha256,
    graph_io,
    looks_like_onnx,
    onnx_module,
    parse_model_def,
    parse_onnx,
)
from .matching import Inferred, MappingRow, MatchError, fill_missing, infer_architecture, match_state_dict
from .models import MODELS
from .params import weights_hash
from .runs import (
    FORMAT_VERSION,
    MODEL_FILE,
    RUN_JSON,
    STEPS_KEY,
    TRAJ_FILE,
    RunError,
    read_meta,
    save_run,
    unique_run_path,
    validate_run_name,
    workspace_dir,
)
from .user_data import (
    DATA_FILE,
    USER_DATA,
    UserDataError,
    UserDataSpec,
    arrays_sha256,
    bundle_from_arrays,
    fit_user_data,
    npz_bytes,
    read_user_data,
)

# --- limits ------------------------------------------------------------------------------------
MAX_BYTES = 200 * 2**20  # default upload size limit (matches .streamlit/config.toml maxUploadSize)
MAX_RUN_ZIP_ENTRIES = 8  # run.json, model.safetensors, trajectory.safetensors (+ a folder entry or two)
MAX_PT_ZIP_ENTRIES = 4096  # torch.save zips hold one record per tensor storage
MAX_RATIO = 50.0  # per-entry uncompressed/compressed ratio allowed for entries above RATIO_MIN_BYTES
RATIO_MIN_BYTES = 1 * 2**20
MAX_RUN_JSON_BYTES = 8 * 2**20
MAX_SPEC_LIST = 64  # longest list (e.g. MLP widths) a model spec may carry
EVAL_SAMPLES = 2048  # metrics of an imported run are computed on at most this many examples per split

TORCH_SUFFIXES = (".pt", ".pth", ".th", ".bin", ".ckpt")  # torch.save files: plain, DataParallel, HF, Lightning
ACCEPTED_SUFFIXES = (".zip", ".safetensors", *TORCH_SUFFIXES, ".onnx")
ACCEPTED_KINDS = (
    "a run exported by the app (.zip), a state dict as .safetensors or .pt/.pth/.th/.bin/.ckpt "
    "(torch.save, Hugging Face, Lightning), or an ONNX model graph (.onnx)"
)
RUN_ZIP_FILES = (RUN_JSON, MODEL_FILE, TRAJ_FILE, GRAPH_FILE, DATA_FILE)  # the last two: imported runs
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "weights", "params")
_PREFIXES = ("module.", "_orig_mod.", "model.")
_PT2_MSG = (
    "this is a torch.export archive (.pt2): torch.export.load unpickles its weights without weights_only, "
    "which can run code, so it is refused; export the model as ONNX instead: " + EXPORT_HINT
)


_TORCHSCRIPT_MSG = (
    "this is a TorchScript archive (torch.jit.save), which can run code; "
    "save a plain state dict instead: torch.save(model.state_dict(), 'weights.pt')"
)


class UploadError(ValueError):
    """An uploaded file was refused; the message is one line and says why."""


# --- small helpers -----------------------------------------------------------------------------
def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def _names(items: list[str], k: int = 3) -> str:
    shown = ", ".join(items[:k])
    return shown + (f" (+{len(items) - k} more)" if len(items) > k else "")


def _read_input(data: Any, max_bytes: int) -> bytes:
    """Bytes of an upload given as bytes, a path, or a file-like (Streamlit's UploadedFile)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        buf = bytes(data)
    elif isinstance(data, (str, os.PathLike)):
        p = Path(data)
        try:
            st = p.stat()
        except OSError:
            raise UploadError(f"cannot read {p}: no such file") from None
        if not stat.S_ISREG(st.st_mode):
            raise UploadError(f"{p} is not a regular file")
        if st.st_size > max_bytes:
            raise UploadError(f"file is {_mb(st.st_size)}, over the upload limit of {_mb(max_bytes)}")
        with open(p, "rb") as fh:
            buf = fh.read(max_bytes + 1)
    elif hasattr(data, "getvalue"):
        buf = bytes(data.getvalue())
    elif hasattr(data, "read"):
        buf = data.read(max_bytes + 1)
    else:
        raise UploadError(f"upload data must be bytes or a file path, got {type(data).__name__}")
    if len(buf) > max_bytes:
        raise UploadError(f"file is {_mb(len(buf))}, over the upload limit of {_mb(max_bytes)}")
    if len(buf) == 0:
        raise UploadError("file is empty")
    return buf


def _sniff(buf: bytes, prefer_onnx: bool = False) -> str:
    """What the bytes look like: ``zip``, ``safetensors``, ``pickle``, ``onnx`` or ``unknown``.

    ONNX (a protobuf starting with the ``ir_version`` field) and safetensors (a u64 header length) can
    share a first byte, so ``prefer_onnx`` (a ``.onnx`` name) decides which is tried first.
    """
    if buf[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if buf[:1] == b"\x80" and len(buf) > 1 and 2 <= buf[1] <= 5:
        return "pickle"
    if prefer_onnx and looks_like_onnx(buf):
        return "onnx"
    if len(buf) >= 10 and buf[8:9] == b"{" and 2 <= int.from_bytes(buf[:8], "little") < 2**27:
        return "safetensors"  # u64 little-endian JSON header length, then the JSON header
    if looks_like_onnx(buf):
        return "onnx"
    return "unknown"


_LOOKS = {
    "zip": "a zip archive",
    "safetensors": "a safetensors file",
    "pickle": "a legacy PyTorch pickle",
    "onnx": "an ONNX model",
    "unknown": "none of the accepted formats",
}


def _classify(filename: str, buf: bytes) -> str:
    """``run_zip``, ``safetensors``, ``pt`` or ``onnx``: the content (magic number) decides, within the
    family the extension names (a mismatch is refused as a renamed or corrupt file)."""
    suffix = Path(str(filename)).suffix.lower()
    if suffix == ".pt2":
        raise UploadError(_PT2_MSG)
    if suffix not in ACCEPTED_SUFFIXES:
        raise UploadError(
            f"unsupported file type {suffix or '(no extension)'!r} for {Path(str(filename)).name!r}; "
            f"accepted: {ACCEPTED_KINDS}"
        )
    looks = _sniff(buf, prefer_onnx=suffix == ".onnx")
    want = {".zip": ("zip",), ".safetensors": ("safetensors",), ".onnx": ("onnx",),
            **{s: ("zip", "pickle") for s in TORCH_SUFFIXES}}
    if looks not in want[suffix]:
        if looks == "unknown" and suffix == ".safetensors" and len(buf) < 8:
            raise UploadError("safetensors file is truncated (shorter than its 8-byte header length)")
        raise UploadError(
            f"{Path(str(filename)).name!r} has extension {suffix} but its content looks like {_LOOKS[looks]} "
            f"(renamed or corrupt file?)"
        )
    return {".zip": "run_zip", ".safetensors": "safetensors", ".onnx": "onnx"}.get(suffix, "pt")


# --- zip checks --------------------------------------------------------------------------------
def _open_zip(buf: bytes, what: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(buf))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise UploadError(f"{what} is not a valid zip archive (truncated or corrupt)") from None


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _check_entry_name(name: str) -> PurePosixPath:
    if not name or "\x00" in name or "\\" in name:
        raise UploadError(f"zip entry name {name!r} is not allowed")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise UploadError(f"zip entry {name!r} has an absolute path")
    p = PurePosixPath(name)
    if any(part in ("..", ".") for part in p.parts):
        raise UploadError(f"zip entry {name!r} escapes its folder ('..')")
    return p


def _check_zip_sizes(zf: zipfile.ZipFile, *, max_entries: int, max_total: int, what: str) -> list[zipfile.ZipInfo]:
    """Entry count, symlinks, encryption, total size and compression ratio, from the central directory."""
    infos = zf.infolist()
    if len(infos) > max_entries:
        raise UploadError(f"{what} has {len(infos)} entries; at most {max_entries} are allowed")
    total = 0
    for info in infos:
        if _is_symlink(info):
            raise UploadError(f"zip entry {info.filename!r} is a symbolic link; links are not allowed")
        if info.flag_bits & 0x1:
            raise UploadError(f"zip entry {info.filename!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise UploadError(f"zip entry {info.filename!r} uses an unsupported compression method")
        total += info.file_size
        if info.file_size > RATIO_MIN_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            ratio = info.file_size / max(info.compress_size, 1)
            raise UploadError(
                f"zip entry {info.filename!r} expands {ratio:.0f}x ({_mb(info.file_size)}); "
                f"compression ratios above {MAX_RATIO:.0f}x are refused (zip bomb?)"
            )
    if total > max_total:
        raise UploadError(f"{what} would expand to {_mb(total)}, over the limit of {_mb(max_total)}")
    return infos


def _run_zip_entries(zf: zipfile.ZipFile, max_bytes: int) -> dict[str, zipfile.ZipInfo]:
    """Validate an exported-run zip and map each known file name to its entry."""
    parts = [PurePosixPath(n).parts for n in zf.namelist()]
    if any(p and p[-1] == "archive_format" for p in parts):
        raise UploadError(_PT2_MSG)
    if any(p and p[-1] == "data.pkl" for p in parts):
        if any("constants.pkl" in p or "code" in p[:-1] for p in parts):
            raise UploadError(_TORCHSCRIPT_MSG)
        raise UploadError("this zip is a PyTorch checkpoint (torch.save), not a run export; upload it as .pt")
    infos = _check_zip_sizes(zf, max_entries=MAX_RUN_ZIP_ENTRIES, max_total=2 * max_bytes, what="run zip")
    files: dict[str, zipfile.ZipInfo] = {}
    prefixes: set[tuple[str, ...]] = set()
    for info in infos:
        p = _check_entry_name(info.filename)
        if info.is_dir():
            if len(p.parts) > 1:
                raise UploadError(f"zip entry {info.filename!r}: nested folders are not allowed in a run zip")
            continue
        if len(p.parts) > 2:
            raise UploadError(f"zip entry {info.filename!r}: files must be at the top level or in one folder")
        if p.name not in RUN_ZIP_FILES:
            raise UploadError(f"unexpected file {info.filename!r} in run zip; allowed: {', '.join(RUN_ZIP_FILES)}")
        if p.name in files:
            raise UploadError(f"run zip contains {p.name!r} twice")
        prefixes.add(p.parts[:-1])
        files[p.name] = info
    if len(prefixes) > 1:
        raise UploadError("run zip files are spread over several folders; expected one run folder")
    for required in (RUN_JSON, MODEL_FILE):
        if required not in files:
            raise UploadError(f"run zip has no {required}; export a run with the app (Runs page) and upload that")
    if files[RUN_JSON].file_size > MAX_RUN_JSON_BYTES:
        raise UploadError(f"{RUN_JSON} in the zip is {_mb(files[RUN_JSON].file_size)}; too large")
    return files


def _extract_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest_dir: Path, name: str) -> Path:
    """Stream one entry to ``dest_dir/name`` (a fixed, known name), never past its declared size."""
    dest = (dest_dir / name).resolve()
    if dest.parent != dest_dir.resolve():
        raise UploadError(f"refusing to write {name!r} outside the upload folder")
    limit = info.file_size
    written = 0
    try:
        with zf.open(info) as src, open(dest, "xb") as out:
            while True:
                chunk = src.read(1 << 20)
                if not chunk:
                    break
                written += len(chunk)
                if written > limit:
                    raise UploadError(f"zip entry {info.filename!r} is larger than it declares (zip bomb?)")
                out.write(chunk)
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as e:
        raise UploadError(f"zip entry {info.filename!r} is corrupt or truncated ({type(e).__name__})") from None
    return dest


def _check_torch_zip(buf: bytes, max_bytes: int) -> None:
    """Refuse TorchScript archives and zip bombs hidden in a ``torch.save`` zip, before loading."""
    zf = _open_zip(buf, "checkpoint")
    with zf:
        infos = _check_zip_sizes(zf, max_entries=MAX_PT_ZIP_ENTRIES, max_total=2 * max_bytes, what="checkpoint")
        names = [i.filename for i in infos]
        for n in names:
            _check_entry_name(n)
        parts = [PurePosixPath(n).parts for n in names]
        if any("constants.pkl" in p or "code" in p[:-1] for p in parts):
            raise UploadError(_TORCHSCRIPT_MSG)
        if any(p[-1] == "archive_format" for p in parts):
            raise UploadError(_PT2_MSG)
        if not any(p[-1] == "data.pkl" for p in parts):
            if any(p[-1] in RUN_ZIP_FILES for p in parts):
                raise UploadError("this looks like a run zip exported by the app; upload it with a .zip extension")
            raise UploadError("zip file is not a PyTorch checkpoint (no data.pkl record)")


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
    for key in _WRAPPER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner and all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in inner.items()
        ):
            return dict(inner), key
    if not obj:
        raise UploadError("the checkpoint holds an empty dict; no weights found")
    bad = [f"{k}={type(v).__name__}" for k, v in obj.items() if not isinstance(v, Tensor)]
    raise UploadError(
        f"the checkpoint dict is not a state dict (non-tensor entries: {_names([str(b) for b in bad])}); "
        f"save model.state_dict()"
    )


def _load_pt(buf: bytes, max_bytes: int) -> tuple[dict[str, Tensor], str | None]:
    if _sniff(buf) == "zip":
        _check_torch_zip(buf, max_bytes)
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


def _clean_state(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], str | None]:
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
        for prefix in _PREFIXES:
            if out and all(k.startswith(prefix) and len(k) > len(prefix) for k in out):
                out = {k[len(prefix) :]: v for k, v in out.items()}
                stripped = prefix if stripped is None else stripped + prefix
                changed = True
    return out, stripped


def _check_finite(state: Mapping[str, Tensor]) -> None:
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise UploadError(f"weights contain NaN or Inf values in {_names(bad)}")


# --- architecture checks -----------------------------------------------------------------------
def _normalise_spec(spec: Mapping[str, Any], input_shape: tuple[int, ...] | None, num_classes: int | None) -> dict:
    """``{"name", "kwargs"}`` with input_shape / num_classes filled from the dataset when absent."""
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise UploadError(f"model spec must be a dict with a 'name', got {spec!r}"[:200])
    name = spec["name"]
    if name not in MODELS:
        raise UploadError(f"unknown model {name!r}; choose from {', '.join(sorted(MODELS))}")
    kwargs = spec.get("kwargs")
    if kwargs is None:
        kwargs = {k: v for k, v in spec.items() if k != "name"}
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise UploadError("model spec 'kwargs' must be a dict of named arguments")
    try:
        kw = json.loads(json.dumps(dict(kwargs)))  # plain JSON values only (no objects smuggled in)
    except (TypeError, ValueError):
        raise UploadError("model spec 'kwargs' must hold plain JSON values") from None
    for k, v in kw.items():
        if isinstance(v, (list, dict)) and len(v) > MAX_SPEC_LIST:
            raise UploadError(f"model spec argument {k!r} has {len(v)} items; at most {MAX_SPEC_LIST} allowed")
    if "input_shape" not in kw and input_shape is not None:
        kw["input_shape"] = list(input_shape)
    if "num_classes" not in kw and num_classes is not None:
        kw["num_classes"] = int(num_classes)
    return {"name": name, "kwargs": kw}


def _spec_str(spec: Mapping[str, Any]) -> str:
    kw = {k: v for k, v in spec["kwargs"].items() if k not in ("input_shape", "num_classes")}
    return f"{spec['name']}({', '.join(f'{k}={v}' for k, v in kw.items())})"


def _reference_state(spec: Mapping[str, Any]) -> dict[str, Tensor]:
    """The state dict the spec's model would have, built on the meta device (no memory, no init cost)."""
    try:
        with torch.device("meta"):
            model = MODELS[spec["name"]](**spec["kwargs"])
    except (TypeError, ValueError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UploadError(f"model spec {_spec_str(spec)} does not build: {msg}") from None
    except Exception as e:  # e.g. absurd sizes in a hostile run.json
        raise UploadError(f"model spec {_spec_str(spec)} does not build ({type(e).__name__})") from None
    return dict(model.state_dict())


def _match_state(state: Mapping[str, Tensor], spec: Mapping[str, Any]) -> dict[str, Tensor]:
    """Check keys, shapes and dtypes against the spec's model; return tensors cast to the model dtypes."""
    ref = _reference_state(spec)
    missing = [k for k in ref if k not in state]
    unexpected = [k for k in state if k not in ref]
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(ref[k].shape)}"
        for k in ref
        if k in state and tuple(state[k].shape) != tuple(ref[k].shape)
    ]
    dtypes = [
        f"{k}: {state[k].dtype} vs {ref[k].dtype}"
        for k in ref
        if k in state and state[k].is_floating_point() != ref[k].is_floating_point()
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_names(unexpected)}")
    if shapes:
        problems.append(f"shape mismatch {_names(shapes, 2)}")
    if dtypes and not shapes:
        problems.append(f"dtype mismatch {_names(dtypes, 2)}")
    if problems:
        raise UploadError(f"weights do not fit {_spec_str(spec)}: " + "; ".join(problems))
    return {k: state[k].to(ref[k].dtype) for k in ref}


def _check_trajectory(traj: Mapping[str, Tensor], params: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], Tensor]:
    traj = dict(traj)
    steps = traj.pop(STEPS_KEY, None)
    if steps is None or steps.ndim != 1:
        raise UploadError(f"{TRAJ_FILE} has no 1-D {STEPS_KEY} tensor")
    unknown = [k for k in traj if k not in params]
    if unknown:
        raise UploadError(f"{TRAJ_FILE} has snapshots of unknown tensors {_names(unknown)}")
    s = len(steps)
    bad = [k for k, v in traj.items() if tuple(v.shape) != (s, *params[k].shape)]
    if bad:
        raise UploadError(f"{TRAJ_FILE}: snapshot shapes do not match the model ({_names(bad)})")
    _check_finite(traj)
    return {k: v.to(params[k].dtype) for k, v in traj.items()}, steps.to(torch.int64)


# --- dataset -----------------------------------------------------------------------------------
def _dataset_spec(dataset: Mapping[str, Any] | str | None, meta_dataset: Any) -> DatasetSpec:
    """The dataset an import is evaluated on; a bare name equal to the run's own keeps the run's full spec."""
    if isinstance(dataset, str) and isinstance(meta_dataset, Mapping) and meta_dataset.get("name") == dataset:
        dataset = None
    src = dataset if dataset is not None else (meta_dataset if meta_dataset is not None else "digits")
    try:
        if isinstance(src, str):
            return DatasetSpec(name=src)
        if isinstance(src, Mapping):
            return DatasetSpec.from_dict({k: v for k, v in src.items() if k != "root"})
        if isinstance(src, DatasetSpec):
            return DatasetSpec.from_dict(src.to_dict())
    except (TypeError, ValueError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UploadError(f"bad dataset spec: {msg}") from None
    raise UploadError(f"dataset must be a name or a spec dict, got {type(src).__name__}")


def _evaluate(model: nn.Module, bundle) -> dict[str, float]:
    from .functional import LossFunction

    out: dict[str, float] = {}
    for split, (X, y) in (("train", bundle.train), ("test", bundle.test)):
        Xs, ys = analysis_subset(X, y, EVAL_SAMPLES, seed=0)
        loss, acc = LossFunction(model, Xs, ys, batch_size=1024).evaluate()
        out[f"{split}_loss"], out[f"{split}_acc"] = float(loss), float(acc)
    out["gen_gap"] = out["test_loss"] - out["train_loss"]
    out["acc_gap"] = out["train_acc"] - out["test_acc"]
    return out


# --- public API --------------------------------------------------------------------------------
def _safe_stem(filename: str) -> str:
    stem = Path(str(filename).replace("\\", "/")).name
    for suf in ACCEPTED_SUFFIXES:
        if stem.lower().endswith(suf):
            stem = stem[: -len(suf)]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.")[:60]
    return stem or "upload"


def _load_state(kind: str, buf: bytes, max_bytes: int) -> tuple[dict[str, Tensor], str | None]:
    if kind == "safetensors":
        return _load_safetensors(buf), None
    return _load_pt(buf, max_bytes)


def inspect_upload(filename: str, data: Any, *, max_bytes: int = MAX_BYTES) -> dict:
    """Describe an upload without importing it: kind, tensors, and a guessed model spec.

    Returns a JSON-able dict ``{"kind", "filename", "bytes", "num_tensors", "num_params",
    "tensors": [{"name", "shape", "dtype"}], "prefix_stripped", "wrapper", "guessed_model",
    "guessed_dataset", "meta"}``. ``guessed_model`` is a spec dict (e.g. MLP widths read off the Linear
    shapes, or a structural match of renamed layers) or ``None``; the activation of an MLP cannot be
    read from weights, so it is a guess (``relu``). For an ONNX graph the tensors are its parameters
    after conversion. Raises :class:`UploadError` for anything :func:`import_upload` would refuse on
    format grounds.
    """
    buf = _read_input(data, max_bytes)
    kind = _classify(filename, buf)
    meta, wrapper = None, None
    if kind == "run_zip":
        meta, state, _ = _read_run_zip_in_memory(buf, max_bytes)
    elif kind == "onnx":
        state = dict(_onnx_model(buf)[0].state_dict())
    else:
        state, wrapper = _load_state(kind, buf, max_bytes)
    state, stripped = _clean_state(state)
    if meta:
        guess, ds = meta.get("model"), meta.get("dataset", {}).get("name")
    elif kind == "onnx":
        guess, ds = None, None
    else:
        guess, ds = guess_model_spec(state)
    return {
        "kind": kind,
        "filename": Path(str(filename)).name,
        "bytes": len(buf),
        "num_tensors": len(state),
        "num_params": int(sum(v.numel() for v in state.values())),
        "tensors": [{"name": k, "shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")}
                    for k, v in state.items()],
        "prefix_stripped": stripped,
        "wrapper": wrapper,
        "guessed_model": guess,
        "guessed_dataset": ds,
        "meta": meta,
    }


def guess_model_spec(state: Mapping[str, Tensor]) -> tuple[dict | None, str | None]:
    """Guess ``(model spec, dataset name)`` from tensor names and shapes (best effort, may be ``None``)."""
    keys = list(state)
    if any(k.startswith("layers.") for k in keys) and "conv.weight" in state and "fc.weight" in state:
        c, width = int(state["conv.weight"].shape[1]), int(state["conv.weight"].shape[0])
        k = int(state["fc.weight"].shape[0])
        ds = "cifar10" if c == 3 else "mnist"
        return {"name": "resnet20", "kwargs": {"width": width, "num_classes": k}}, ds
    if "features.0.weight" in state and state["features.0.weight"].ndim == 4:
        w = state["features.0.weight"]
        bn = any(k.endswith("running_mean") for k in keys)
        kw = {"channels": int(w.shape[0]), "batchnorm": bn, "activation": "relu"}
        ds = {1: "digits", 3: "cifar10"}.get(int(w.shape[1]))
        return {"name": "cnn", "kwargs": kw}, ds
    lin = sorted(
        (int(m.group(1)), k) for k in keys if (m := re.fullmatch(r"net\.(\d+)\.weight", k)) and state[k].ndim == 2
    )
    if lin:
        shapes = [tuple(state[k].shape) for _, k in lin]
        if all(shapes[i][0] == shapes[i + 1][1] for i in range(len(shapes) - 1)):
            widths = [s[0] for s in shapes[:-1]]
            d_in, k = shapes[0][1], shapes[-1][0]
            bn = any(x.endswith("running_mean") for x in keys)
            kw: dict[str, Any] = {"activation": "relu", "batchnorm": bn}
            if widths and all(w == widths[0] for w in widths):
                kw.update(width=widths[0], depth=len(widths))
            else:
                kw["widths"] = widths
            ds = {(64, 10): "digits", (784, 10): "mnist", (3072, 10): "cifar10", (2, 2): "moons", (2, 3): "spirals"}
            return {"name": "mlp", "kwargs": kw}, ds.get((d_in, k))
    try:  # renamed layouts (fc1/fc2, nn.Sequential, public CIFAR ResNets): read off the layer structure
        inf = infer_architecture(state)
    except MatchError:
        return None, None
    return {"name": inf.name, "kwargs": dict(inf.kwargs)}, _embedded_default(_registry_plan(inf))


def _read_run_zip_in_memory(buf: bytes, max_bytes: int) -> tuple[dict, dict[str, Tensor], dict[str, Tensor] | None]:
    """Validated (meta, weights, trajectory) of a run zip, entries read with hard caps (no disk)."""
    from safetensors.torch import load

    zf = _open_zip(buf, "run zip")
    with zf:
        files = _run_zip_entries(zf, max_bytes)
        blobs = {}
        for name, info in files.items():
            try:
                with zf.open(info) as src:
                    blob = src.read(info.file_size + 1)
            except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as e:
                raise UploadError(f"zip entry {info.filename!r} is corrupt or truncated ({type(e).__name__})") from None
            if len(blob) > info.file_size:
                raise UploadError(f"zip entry {info.filename!r} is larger than it declares (zip bomb?)")
            blobs[name] = blob
    meta = _parse_meta(blobs[RUN_JSON])
    state = _load_safetensors(blobs[MODEL_FILE])
    traj = None
    if TRAJ_FILE in blobs:
        try:
            traj = dict(load(blobs[TRAJ_FILE]))
        except Exception:
            raise UploadError(f"{TRAJ_FILE} in the zip is corrupt") from None
    return meta, state, traj


def _parse_meta(raw: bytes) -> dict:
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise UploadError(f"{RUN_JSON} in the zip is not valid JSON ({type(e).__name__})") from None
    if not isinstance(meta, dict):
        raise UploadError(f"{RUN_JSON} in the zip is not a JSON object")
    if meta.get("format_version") != FORMAT_VERSION:
        raise UploadError(
            f"{RUN_JSON}: unsupported run format version {meta.get('format_version')!r} (expected {FORMAT_VERSION})"
        )
    if not isinstance(meta.get("model"), dict):
        raise UploadError(f"{RUN_JSON} has no model spec")
    return meta


# --- the import report and the import itself -----------------------------------------------------
_FORMAT_NAMES = {
    "run_zip": "run exported by the app (zip)",
    "safetensors": "safetensors state dict",
    "pt": "PyTorch state dict (torch.save, loaded weights-only)",
    "onnx": "ONNX model graph",
}


@dataclass(frozen=True)
class ImportReport:
    """What an import detected and did, for display (Probe page, CLI) and stored in ``run.json``.

    Attributes:
        path: the new run folder.
        name: the run's name.
        kind: ``run_zip``, ``safetensors``, ``pt`` or ``onnx`` (decided by the file's content).
        format: the format in words, with the wrapper key / prefix when there was one.
        architecture: registry name (``mlp``, ``cnn``, ``resnet20``), ``onnx`` or ``model_def``.
        model_spec: the full spec the run rebuilds its model from.
        n_params: number of trainable parameters (what curvature is computed over).
        mapping: file key -> model key, shape, one row per tensor, in the model's order.
        renamed: whether the file's keys differed from the model's (a structural match).
        data: the data the run is evaluated and analysed on, in words.
        dataset: the run's dataset spec (embedded dataset or the user's own data).
        notes: what was assumed or converted (e.g. the activation, reshaped inputs).
        weights_hash: content hash of the stored weights.
        metrics: train/test loss and accuracy of the imported model.
    """

    path: str
    name: str
    kind: str
    format: str
    architecture: str
    model_spec: dict
    n_params: int
    mapping: tuple[MappingRow, ...]
    renamed: bool
    data: str
    dataset: dict
    notes: tuple[str, ...] = ()
    weights_hash: str = ""
    metrics: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {f: getattr(self, f) for f in self.__dataclass_fields__}
        d["mapping"] = [r.to_dict() for r in self.mapping]
        d["notes"] = list(self.notes)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ImportReport:
        kw = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        kw["mapping"] = tuple(MappingRow.from_dict(r) for r in d.get("mapping", ()))
        kw["notes"] = tuple(d.get("notes", ()))
        return cls(**kw)

    def mapping_table(self) -> list[dict]:
        """Rows ``{"file key", "model key", "shape"}`` ready for a table widget."""
        return [{"file key": r.file_key, "model key": r.model_key, "shape": str(tuple(r.shape))}
                for r in self.mapping]


def import_report(run_path: str | os.PathLike) -> ImportReport:
    """The :class:`ImportReport` stored in an imported run's ``run.json``."""
    meta = read_meta(run_path)
    if not isinstance(meta.get("import"), dict):
        raise UploadError(f"run {run_path} was not imported (no import report in {RUN_JSON})")
    return ImportReport.from_dict({**meta["import"], "path": str(run_path), "name": meta.get("name", "")})


_EMBEDDED = {  # (flattened input size, classes) -> embedded dataset whose input fits
    (64, 10): "digits", (2, 2): "moons", (2, 3): "spirals", (784, 10): "mnist", (3072, 10): "cifar10",
}
_EMBEDDED_SHAPES = {"digits": (1, 8, 8), "moons": (2,), "spirals": (2,), "mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


def _onnx_model(buf: bytes) -> tuple[nn.Module, Any]:
    try:
        proto = parse_onnx(buf)
        return onnx_module(proto), proto
    except GraphError as e:
        raise UploadError(str(e)) from None


@dataclass
class _Plan:
    """How to build the model once the data's input shape is known."""

    name: str
    kwargs: dict  # without input_shape / num_classes
    num_classes: int | None
    fits: Callable[[tuple[int, ...]], str | None]  # input shape -> None or why it does not fit
    notes: list[str]


def _registry_plan(inf: Inferred) -> _Plan:
    def fits(shape: tuple[int, ...]) -> str | None:
        if inf.name == "mlp":
            return None if math.prod(shape) == inf.in_features else f"the model takes {inf.in_features} input features"
        if len(shape) != 3 or shape[0] != inf.in_features:
            return f"the model takes images with {inf.in_features} channels (C, H, W)"
        if inf.name == "cnn" and (shape[1] // 4) * (shape[2] // 4) != inf.spatial:
            return f"the model's head expects images of {4 * math.isqrt(inf.spatial or 0)}x{4 * math.isqrt(inf.spatial or 0)}"
        return None

    return _Plan(inf.name, dict(inf.kwargs), inf.num_classes, fits, list(inf.notes))


def _embedded_default(plan: _Plan) -> str | None:
    for (size, k), name in _EMBEDDED.items():
        if (plan.num_classes is None or plan.num_classes == k) and plan.fits(_EMBEDDED_SHAPES[name]) is None:
            if size == math.prod(_EMBEDDED_SHAPES[name]):
                return name
    return None


def import_checkpoint(
    filename: str,
    data: bytes | str | os.PathLike | Any,
    *,
    workspace: str | os.PathLike | None = None,
    model_spec: Mapping[str, Any] | None = None,
    dataset: Mapping[str, Any] | str | None = None,
    user_data: bytes | str | os.PathLike | None = None,
    user_data_name: str | None = None,
    label_column: str = "label",
    activation: str | None = None,
    model_def: str | None = None,
    model_args: Mapping[str, Any] | None = None,
    name: str | None = None,
    max_bytes: int = MAX_BYTES,
    require_spec: bool = False,
) -> ImportReport:
    """Validate a checkpoint, match it to an architecture, and write it as a run folder.

    The format is decided by content (magic number, zip entries): run zips, state dicts (safetensors;
    torch.save files ``.pt/.pth/.th/.bin/.ckpt``, plain, wrapped ``{"state_dict"|"model"|...: ...}`` or
    Lightning), ONNX graphs. State dicts are matched to the registry structurally
    (:mod:`landscape_core.matching`); ONNX graphs become torch modules
    (:mod:`landscape_core.graph_import`); ``model_def`` (``file.py:Class``, CLI and Python API only:
    the file is executed) loads a state dict into the user's own class.

    Args:
        filename: the upload's original name (its extension names the format family).
        data: bytes, a path, or a file-like object with ``getvalue()``/``read()``.
        workspace: where the run folder goes (default :func:`landscape_core.runs.workspace_dir`).
        model_spec: the architecture (``{"name", "kwargs"}`` or flat); default: read off the weights.
        dataset: embedded dataset name or spec; default: the run's own (zip), else the embedded
            dataset whose input shape fits the model.
        user_data: the user's own ``.npz`` / ``.csv`` (bytes or path), stored in the run as ``data.npz``.
        user_data_name: the data file's name (default: from the path).
        label_column: label column of a ``.csv``.
        activation: MLP/CNN activation (not visible in weights; default ``relu``, and the report says so).
        model_def: trusted local model definition ``path.py:ClassName`` (never for web uploads).
        model_args: keyword arguments of ``model_def``'s class.
        name: run name (default from the file); made unique.
        max_bytes: size limit (zips may expand to twice this).
        require_spec: refuse a bare state dict without ``model_spec`` (the old behaviour).

    Returns:
        The :class:`ImportReport` (also stored in ``run.json`` under ``import``).

    Raises:
        UploadError: a one-line reason; nothing is written then.
    """
    if name is not None:
        try:
            validate_run_name(name)
        except ValueError as e:
            raise UploadError(str(e)) from None
    buf = _read_input(data, max_bytes)
    kind = _classify(filename, buf)
    if model_def is not None:
        if kind not in ("pt", "safetensors"):
            raise UploadError("a model definition (--model-def) goes with a state dict (.pt/.safetensors...), "
                              f"not with {_FORMAT_NAMES[kind]}")
        try:
            def_path, _ = parse_model_def(model_def)
        except GraphError as e:
            raise UploadError(str(e)) from None
        if not def_path.is_file():
            raise UploadError(f"model definition file {str(def_path)!r} not found")
    ud = None
    if user_data is not None:
        try:
            ud = read_user_data(user_data_name or str(user_data if isinstance(user_data, (str, os.PathLike))
                                                      else "data"), user_data, label=label_column)
        except UserDataError as e:
            raise UploadError(str(e)) from None
    ws = Path(workspace_dir(workspace))
    ws.mkdir(parents=True, exist_ok=True)
    ws = ws.resolve()

    traj = None
    meta_in: dict | None = None
    wrapper, stripped = None, None
    notes: list[str] = []
    graph_bytes: bytes | None = None
    module: nn.Module | None = None
    zip_extras: dict[str, bytes] = {}
    if kind == "run_zip":
        meta_in, state, traj, zip_extras = _extract_run_zip(buf, ws, max_bytes)
        if model_spec is None and meta_in["model"].get("name") == ONNX_MODEL:  # an imported graph run, re-uploaded
            graph_bytes = zip_extras.get(GRAPH_FILE)
            if graph_bytes is None:
                raise UploadError(f"run zip has an ONNX model but no {GRAPH_FILE}")
            want = (meta_in["model"].get("kwargs") or {}).get("sha256")
            if want != hashlib.sha256(graph_bytes).hexdigest():
                raise UploadError(f"{GRAPH_FILE} in the zip does not match the SHA-256 in {RUN_JSON}")
            module, proto = _onnx_model(graph_bytes)
    elif kind == "onnx":
        module, proto = _onnx_model(buf)
        graph_bytes = buf
        state = {k: v.detach() for k, v in module.state_dict().items()}
    else:
        state, wrapper = _load_state(kind, buf, max_bytes)
    state, stripped = _clean_state(state)
    if not state:
        raise UploadError("the file holds no tensors")
    _check_finite(state)
    fmt = _FORMAT_NAMES[kind]
    if wrapper:
        fmt += f", weights under {wrapper!r}" + (" (Lightning checkpoint)" if wrapper == "state_dict" else "")
    if stripped:
        fmt += f", prefix {stripped!r} stripped"

    # ---- what the model needs from the data
    plan: _Plan | None = None
    spec: dict | None = None
    if kind == "run_zip":
        spec_src = model_spec if model_spec is not None else meta_in.get("model")
    elif kind == "onnx":
        try:
            in_dims, out_dims = graph_io(proto)
        except GraphError as e:
            raise UploadError(str(e)) from None
        k_out = out_dims[-1] if out_dims and out_dims[-1] else None

        def onnx_fits(shape: tuple[int, ...], dims=in_dims) -> str | None:
            ok = len(shape) == len(dims) and all(d is None or d == s for d, s in zip(dims, shape))
            return None if ok else f"the graph's input is {tuple('?' if d is None else d for d in dims)}"

        plan = _Plan(ONNX_MODEL, {}, k_out, onnx_fits, [f"ONNX opset {max(o.version for o in proto.opset_import)}, "
                                                        f"{len(proto.graph.node)} nodes"])
        spec_src = None
    elif model_def is not None:
        spec_src = None
        plan = _Plan(MODEL_DEF, dict(model_args or {}), None, lambda shape: None,
                     [f"model definition {model_def} (trusted local code)"])
    else:
        spec_src = model_spec
        if spec_src is None:
            if require_spec:
                guess, _ = guess_model_spec(state)
                hint = f"; the shapes suggest {_spec_str(_normalise_spec(guess, None, None))}" if guess else ""
                raise UploadError(f"a bare state dict needs an architecture: choose a model (name and settings){hint}")
            try:
                plan = _registry_plan(infer_architecture(state, activation=activation))
            except MatchError as e:
                raise UploadError(f"no registry architecture matches: {e}") from None

    # ---- the data: the user's own, a named dataset, the run's own, or the embedded one that fits
    bundle = None
    extra_files: dict[str, bytes] = {}
    ds_meta: dict | None = None
    data_desc = ""
    ud_shape = tuple(int(s) for s in ud.X.shape[1:]) if ud is not None else None
    zip_ds = meta_in.get("dataset") if meta_in else None
    if ud is None and dataset is None and isinstance(zip_ds, dict) and zip_ds.get("name") == USER_DATA:
        bundle, ds_meta, blob = _zip_user_data(zip_ds, zip_extras.get(DATA_FILE))
        extra_files[DATA_FILE] = blob
        in_shape, classes = tuple(bundle.input_shape), bundle.num_classes
        data_desc = f"the run's own data {UserDataSpec.from_dict(ds_meta).describe()}"
    elif ud is None:
        if dataset is None and meta_in is None and plan is not None:
            dataset = _embedded_default(plan)
            if dataset is None:
                raise UploadError(
                    "no embedded dataset fits this model's input; give your own data "
                    "(--data FILE.npz with X, y, or a .csv) or name a dataset"
                )
            notes.append(f"dataset {dataset!r} chosen because its input fits the model")
        if dataset is None and meta_in is None and model_def is None and spec_src is None:
            dataset = "digits"
        if dataset is None and model_def is not None:
            raise UploadError("a model definition needs data to know the input: give --data FILE or --dataset NAME")
        ds_spec = _dataset_spec(dataset, meta_in.get("dataset") if meta_in else None)
        try:
            bundle = load_dataset(ds_spec)
        except DataError as e:
            if kind != "run_zip":
                raise UploadError(f"dataset {ds_spec.name!r} is not available: {str(e).splitlines()[0]}; "
                                  f"give your own data with --data") from None
        except ValueError as e:
            raise UploadError(f"bad dataset spec: {str(e).splitlines()[0]}") from None
        ds_meta = ds_spec.to_dict()
        in_shape = tuple(bundle.input_shape) if bundle else None
        classes = bundle.num_classes if bundle else None
        if bundle is not None:
            data_desc = (f"embedded dataset {ds_spec.name!r}: {len(bundle.train[1])} train + {len(bundle.test[1])} "
                         f"test examples of shape {in_shape}")
    else:
        in_shape, classes = ud_shape, None
    if plan is not None and in_shape is not None:
        why = plan.fits(in_shape)
        if why is not None:
            where = f"data {ud.source!r} has examples of shape {in_shape}" if ud is not None else (
                f"dataset {ds_meta['name']!r} has input {in_shape}")
            raise UploadError(f"{where}, but {why}")

    # ---- the model
    mapping: tuple[MappingRow, ...]
    renamed = False
    if kind == "run_zip" and module is not None:  # a re-uploaded ONNX run: the graph plus its stored weights
        if weights_hash(state) != meta_in.get("weights_hash"):
            raise UploadError(f"weights do not match the hash stored in {RUN_JSON} (file changed or corrupt)")
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise UploadError(f"weights do not fit the run's {GRAPH_FILE}: {_first_line_of(e)}") from None
        if in_shape is None:
            raise UploadError("the run's dataset is not available")
        k = _probe_outputs(module, in_shape)
        spec = {"name": ONNX_MODEL, "kwargs": {"input_shape": list(in_shape), "num_classes": k,
                                                "file": GRAPH_FILE, "sha256": hashlib.sha256(graph_bytes).hexdigest()}}
        model = module.eval()
        mapping = tuple(MappingRow(k_, k_, tuple(v.shape)) for k_, v in model.named_parameters())
    elif kind == "onnx":
        assert module is not None
        k = _probe_outputs(module, in_shape)
        spec = {"name": ONNX_MODEL, "kwargs": {"input_shape": list(in_shape), "num_classes": k,
                                                "file": GRAPH_FILE, "sha256": hashlib.sha256(buf).hexdigest()}}
        model = module
        mapping = tuple(MappingRow(k_, k_, tuple(v.shape)) for k_, v in model.named_parameters())
        notes += plan.notes + ["floating-point initializers are parameters (curvature includes them)"]
    elif model_def is not None:
        try:
            path_def, cls_name = parse_model_def(model_def)
            model = build_model_def(path_def, cls_name, plan.kwargs)
        except GraphError as e:
            raise UploadError(str(e)) from None
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise UploadError(f"weights do not fit {cls_name}: {_first_line_of(e)}") from None
        k = _probe_outputs(model, in_shape)
        spec = {"name": MODEL_DEF, "kwargs": plan.kwargs,
                "def": {"path": str(path_def.resolve()), "class": cls_name, "sha256": file_sha256(path_def)},
                "input_shape": list(in_shape), "num_classes": k}
        mapping = tuple(MappingRow(k_, k_, tuple(v.shape)) for k_, v in model.state_dict().items())
        notes += plan.notes
    else:
        if plan is not None:
            spec = {"name": plan.name, "kwargs": {**plan.kwargs, "input_shape": list(in_shape),
                                                  "num_classes": int(plan.num_classes)}}
            notes += plan.notes
        else:
            if classes is None and ud is not None:  # the user's data: classes from the head, else the labels
                try:
                    classes = infer_architecture(state).num_classes
                except MatchError:
                    classes = int(max(ud.y.max(), ud.y_test.max() if ud.y_test is not None else 0)) + 1
            spec = _normalise_spec(spec_src, in_shape, classes)
        if bundle is not None and ud is None:
            kw = spec["kwargs"]
            if tuple(kw.get("input_shape", ())) != in_shape or kw.get("num_classes") != classes:
                raise UploadError(
                    f"model expects input {tuple(kw.get('input_shape', ()))} and {kw.get('num_classes')} classes, "
                    f"but dataset {ds_meta['name']!r} has input {in_shape} and {classes} classes"
                )
        if meta_in is not None and isinstance(meta_in.get("weights_hash"), str):
            if weights_hash(state) != meta_in["weights_hash"]:
                raise UploadError(f"weights do not match the hash stored in {RUN_JSON} (file changed or corrupt)")
        state, mapping, renamed, more = _fit_state(state, spec)
        notes += more
        if traj is not None:
            traj = _check_trajectory(traj, state)
        with torch.random.fork_rng(devices=[]):  # building initialises weights: leave the global RNG alone
            model = MODELS[spec["name"]](**spec["kwargs"])
        model.load_state_dict(state, strict=True)
        model.eval()

    # ---- the user's data, checked against the model and stored with the run
    if ud is not None:
        n_out = int(spec.get("num_classes") or spec["kwargs"]["num_classes"])
        try:
            arrays, uspec = fit_user_data(ud, in_shape, n_out)
        except UserDataError as e:
            raise UploadError(str(e)) from None
        bundle = bundle_from_arrays(arrays, uspec)
        extra_files[DATA_FILE] = npz_bytes(arrays)
        ds_meta = uspec.to_dict()
        data_desc = f"your data {uspec.describe()}"
        notes += list(uspec.notes) + ["your data is used as given (no normalisation)"]
    if graph_bytes is not None:
        extra_files[GRAPH_FILE] = graph_bytes

    meta: dict[str, Any] = dict(meta_in or {})
    meta.pop("versions", None)
    meta.pop("weights_hash", None)
    meta["model"] = spec
    meta["dataset"] = ds_meta
    meta["source"] = "upload"
    meta["upload"] = {
        "filename": Path(str(filename).replace("\\", "/")).name[:200],
        "kind": kind,
        "bytes": len(buf),
        "sha256": hashlib.sha256(buf).hexdigest(),
        "prefix_stripped": stripped,
        "wrapper": wrapper,
    }
    metrics: dict[str, float] = {}
    if bundle is not None:
        metrics = _evaluate(model, bundle)
        meta["final"] = {**metrics, "eval_samples": EVAL_SAMPLES}
    meta.setdefault("history", [])
    n_params = int(sum(p.numel() for p in model.parameters()))
    report_d = {"kind": kind, "format": fmt, "architecture": spec["name"], "model_spec": spec,
                "n_params": n_params, "mapping": [r.to_dict() for r in mapping], "renamed": renamed,
                "data": data_desc, "dataset": ds_meta, "notes": notes, "metrics": metrics}
    meta["import"] = report_d

    stem = name or (meta_in.get("name") if meta_in and isinstance(meta_in.get("name"), str) else None)
    stem = _safe_stem(stem or filename)
    for _ in range(20):
        target = unique_run_path(ws, stem)
        if target.resolve().parent != ws:
            raise UploadError(f"run name {stem!r} would leave the workspace")
        meta["name"] = target.name
        try:
            path = save_run(target, model, meta, trajectory=traj, extra_files=extra_files)
        except (RunError, OSError):
            if not target.exists():
                raise
            continue  # another import took the name in the meantime: try the next free one
        saved = read_meta(path)
        return ImportReport.from_dict({**report_d, "path": str(path), "name": path.name,
                                       "weights_hash": saved["weights_hash"]})
    raise UploadError(f"could not find a free run name for {stem!r}")


def _zip_user_data(ds: Mapping[str, Any], blob: bytes | None) -> tuple[Any, dict, bytes]:
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


def _first_line_of(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return (lines[1] if len(lines) > 1 else (lines[0] if lines else type(e).__name__))[:200]


def _probe_outputs(model: nn.Module, in_shape: tuple[int, ...]) -> int:
    """Run the model on zero batches of 2 and 3 examples: outputs must be ``(batch, K)``; returns K."""
    ks = []
    for b in (2, 3):
        try:
            with torch.no_grad():
                out = model(torch.zeros(b, *in_shape))
        except Exception as e:  # a foreign graph can fail in many ways
            raise UploadError(f"the model does not run on a batch of {b} inputs of shape {in_shape} "
                              f"({type(e).__name__}: {_first_line_of(e)}); export it with a dynamic batch size") from None
        if not isinstance(out, Tensor) or out.ndim != 2 or out.shape[0] != b:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise UploadError(f"the model's output on a batch of {b} is {got}; expected (batch, classes) logits")
        ks.append(int(out.shape[1]))
    return ks[0]


def _fit_state(state: dict[str, Tensor], spec: dict) -> tuple[dict[str, Tensor], tuple[MappingRow, ...], bool, list[str]]:
    """Tensors under the model's keys, by name when the keys are the model's own, else structurally."""
    ref = _reference_state(spec)
    if set(state) == set(ref):
        out = _match_state(state, spec)
        return out, tuple(MappingRow(k, k, tuple(v.shape)) for k, v in out.items()), False, []
    try:
        res = match_state_dict(state, spec)
    except MatchError as e:
        if 2 * len(set(state) & set(ref)) >= len(state):  # mostly our own layout: name missing / added keys
            _match_state(state, spec)
        raise UploadError(f"weights do not fit {_spec_str(spec)}: {e}") from None
    bad = [r.file_key for r in res.rows if state[r.file_key].is_floating_point() != ref[r.model_key].is_floating_point()]
    if bad:
        raise UploadError(f"weights do not fit {_spec_str(spec)}: dtype mismatch {bad[0]}")
    mapped = fill_missing(state, res)
    return {k: v.to(ref[k].dtype) for k, v in mapped.items()}, res.rows, True, list(res.notes)


def import_upload(filename: str, data: bytes | str | os.PathLike | Any, *, workspace: str | os.PathLike | None = None,
                  model_spec: Mapping[str, Any] | None = None, dataset: Mapping[str, Any] | str | None = None,
                  name: str | None = None, max_bytes: int = MAX_BYTES, **kwargs: Any) -> Path:
    """:func:`import_checkpoint` returning only the new run folder's path (the Probe page's call)."""
    return Path(import_checkpoint(filename, data, workspace=workspace, model_spec=model_spec, dataset=dataset,
                                  name=name, max_bytes=max_bytes, **kwargs).path)


def _extract_run_zip(
    buf: bytes, ws: Path, max_bytes: int
) -> tuple[dict, dict[str, Tensor], dict[str, Tensor] | None, dict[str, bytes]]:
    """Check a run zip, extract its known files into a hidden temp folder in the workspace, load them.

    Returns ``(meta, weights, trajectory, extras)``; ``extras`` holds the raw bytes of an imported run's
    ``model.onnx`` / ``data.npz`` (checked later, like any upload of those kinds).
    """
    from safetensors.torch import load_file

    zf = _open_zip(buf, "run zip")
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-upload-", dir=ws))
    try:
        with zf:
            files = _run_zip_entries(zf, max_bytes)
            paths = {n: _extract_member(zf, info, tmp, n) for n, info in files.items()}
        meta = _parse_meta(paths[RUN_JSON].read_bytes())
        state = _load_safetensors(paths[MODEL_FILE].read_bytes())
        traj = None
        if TRAJ_FILE in paths:
            try:
                traj = dict(load_file(str(paths[TRAJ_FILE])))
            except Exception:
                raise UploadError(f"{TRAJ_FILE} in the zip is corrupt or truncated") from None
        # tensors from load_file are memory-mapped copies; make them independent of the temp files
        traj = {k: v.clone() for k, v in traj.items()} if traj is not None else None
        extras = {n: paths[n].read_bytes() for n in (GRAPH_FILE, DATA_FILE) if n in paths}
        return meta, state, traj, extras
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = [
    "ACCEPTED_KINDS", "ACCEPTED_SUFFIXES", "MAX_BYTES", "ImportReport", "MappingRow", "UploadError",
    "guess_model_spec", "import_checkpoint", "import_report", "import_upload", "inspect_upload",
]
