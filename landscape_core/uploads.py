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
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from torch import Tensor, nn

from .data import DataError, DatasetSpec, analysis_subset, load_dataset
from .models import MODELS
from .params import weights_hash
from .runs import (
    FORMAT_VERSION,
    MODEL_FILE,
    RUN_JSON,
    STEPS_KEY,
    TRAJ_FILE,
    RunError,
    save_run,
    unique_run_path,
    validate_run_name,
    workspace_dir,
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

ACCEPTED_SUFFIXES = (".zip", ".safetensors", ".pt", ".pth")
ACCEPTED_KINDS = "a run exported by the app (.zip), a .safetensors state dict, or a .pt/.pth state dict"
RUN_ZIP_FILES = (RUN_JSON, MODEL_FILE, TRAJ_FILE)
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "weights", "params")
_PREFIXES = ("module.", "_orig_mod.")


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


def _sniff(buf: bytes) -> str:
    """What the bytes look like: ``zip``, ``safetensors``, ``pickle`` or ``unknown``."""
    if buf[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if buf[:1] == b"\x80" and len(buf) > 1 and 2 <= buf[1] <= 5:
        return "pickle"
    if len(buf) >= 10 and buf[8:9] == b"{" and 2 <= int.from_bytes(buf[:8], "little") < 2**27:
        return "safetensors"  # u64 little-endian JSON header length, then the JSON header
    return "unknown"


_LOOKS = {
    "zip": "a zip archive",
    "safetensors": "a safetensors file",
    "pickle": "a legacy PyTorch pickle",
    "unknown": "none of the accepted formats",
}


def _classify(filename: str, buf: bytes) -> str:
    """``run_zip``, ``safetensors`` or ``pt`` from the extension, confirmed by the magic number."""
    suffix = Path(str(filename)).suffix.lower()
    if suffix not in ACCEPTED_SUFFIXES:
        raise UploadError(
            f"unsupported file type {suffix or '(no extension)'!r} for {Path(str(filename)).name!r}; "
            f"accepted: {ACCEPTED_KINDS}"
        )
    looks = _sniff(buf)
    want = {".zip": ("zip",), ".safetensors": ("safetensors",), ".pt": ("zip", "pickle"), ".pth": ("zip", "pickle")}
    if looks not in want[suffix]:
        if looks == "unknown" and suffix == ".safetensors" and len(buf) < 8:
            raise UploadError("safetensors file is truncated (shorter than its 8-byte header length)")
        raise UploadError(
            f"{Path(str(filename)).name!r} has extension {suffix} but its content looks like {_LOOKS[looks]} "
            f"(renamed or corrupt file?)"
        )
    return {"zip": "run_zip", "safetensors": "safetensors"}.get(suffix.lstrip("."), "pt")


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


def _unwrap_state_dict(obj: Any) -> dict[str, Tensor]:
    """A plain ``{name: Tensor}`` dict, possibly unwrapped from ``{"state_dict": {...}, ...}``."""
    if isinstance(obj, nn.Module):  # cannot happen with weights_only, but be explicit
        raise UploadError("the file holds a whole pickled module; upload model.state_dict() instead")
    if not isinstance(obj, Mapping):
        raise UploadError(f"the checkpoint holds a {type(obj).__name__}, not a state dict (name -> tensor)")
    if obj and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        return dict(obj)
    for key in _WRAPPER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner and all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in inner.items()
        ):
            return dict(inner)
    if not obj:
        raise UploadError("the checkpoint holds an empty dict; no weights found")
    bad = [f"{k}={type(v).__name__}" for k, v in obj.items() if not isinstance(v, Tensor)]
    raise UploadError(
        f"the checkpoint dict is not a state dict (non-tensor entries: {_names([str(b) for b in bad])}); "
        f"save model.state_dict()"
    )


def _load_pt(buf: bytes, max_bytes: int) -> dict[str, Tensor]:
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
            raise UploadError(
                f"the checkpoint contains Python objects that are not plain tensors{what}; refused for safety "
                f"(only weights_only state dicts are accepted)"
            ) from None
        raise UploadError(f"the .pt file is corrupt or truncated ({type(e).__name__})") from None
    return _unwrap_state_dict(obj)


def _clean_state(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], str | None]:
    """Detached CPU dense tensors, with a common ``module.``/``_orig_mod.`` prefix stripped."""
    out: dict[str, Tensor] = {}
    for k, v in state.items():
        if not isinstance(v, Tensor):
            raise UploadError(f"entry {k!r} is not a tensor")
        if v.layout != torch.strided or v.is_quantized:
            raise UploadError(f"tensor {k!r} is sparse or quantized; only dense tensors are accepted")
        out[k] = v.detach().to("cpu").contiguous()
    stripped = None
    for prefix in _PREFIXES:
        if out and all(k.startswith(prefix) for k in out):
            out = {k[len(prefix) :]: v for k, v in out.items()}
            stripped = prefix if stripped is None else stripped + prefix
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


def inspect_upload(filename: str, data: Any, *, max_bytes: int = MAX_BYTES) -> dict:
    """Describe an upload without importing it: kind, tensors, and a guessed model spec.

    Returns a JSON-able dict ``{"kind", "filename", "bytes", "num_tensors", "num_params",
    "tensors": [{"name", "shape", "dtype"}], "prefix_stripped", "guessed_model", "guessed_dataset",
    "meta"}``. ``guessed_model`` is a spec dict (e.g. MLP widths read off the Linear shapes) or
    ``None``; the activation of an MLP cannot be read from weights, so it is a guess (``relu``).
    Raises :class:`UploadError` for anything :func:`import_upload` would refuse on format grounds.
    """
    buf = _read_input(data, max_bytes)
    kind = _classify(filename, buf)
    meta = None
    if kind == "run_zip":
        meta, state, _ = _read_run_zip_in_memory(buf, max_bytes)
    elif kind == "safetensors":
        state = _load_safetensors(buf)
    else:
        state = _load_pt(buf, max_bytes)
    state, stripped = _clean_state(state)
    guess, ds = (meta.get("model"), meta.get("dataset", {}).get("name")) if meta else guess_model_spec(state)
    return {
        "kind": kind,
        "filename": Path(str(filename)).name,
        "bytes": len(buf),
        "num_tensors": len(state),
        "num_params": int(sum(v.numel() for v in state.values())),
        "tensors": [{"name": k, "shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")}
                    for k, v in state.items()],
        "prefix_stripped": stripped,
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
    return None, None


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


def import_upload(
    filename: str,
    data: bytes | str | os.PathLike | Any,
    *,
    workspace: str | os.PathLike | None = None,
    model_spec: Mapping[str, Any] | None = None,
    dataset: Mapping[str, Any] | str | None = None,
    name: str | None = None,
    max_bytes: int = MAX_BYTES,
) -> Path:
    """Validate an uploaded checkpoint and write it as a complete run folder in the workspace.

    Args:
        filename: the upload's original name; its extension selects the kind (``.zip`` run export,
            ``.safetensors``, ``.pt``/``.pth``), which the file's magic number must confirm. Only its
            sanitised stem is used, as a default run name.
        data: the bytes, a path to the file, or a file-like object with ``getvalue()``/``read()``.
        workspace: where to write (default :func:`landscape_core.runs.workspace_dir`).
        model_spec: the architecture for a bare state dict (``{"name": "mlp", "kwargs": {...}}`` or
            flat ``{"name": "mlp", "width": 64, ...}``); ``input_shape``/``num_classes`` default to the
            dataset's. For a run zip it overrides the spec in ``run.json`` (rarely needed).
        dataset: dataset name or spec dict; default the run's own (zip) or ``"digits"``.
        name: run name (default: from the zip's metadata or the file name); made unique.
        max_bytes: upload size limit; zips may expand to at most twice this.

    Returns:
        Path of the new run folder (inside the workspace).

    Raises:
        UploadError: with a one-line reason, for anything refused. Nothing is written then.
    """
    if name is not None:
        try:
            validate_run_name(name)
        except ValueError as e:
            raise UploadError(str(e)) from None
    buf = _read_input(data, max_bytes)
    kind = _classify(filename, buf)
    ws = Path(workspace_dir(workspace))
    ws.mkdir(parents=True, exist_ok=True)
    ws = ws.resolve()

    traj = None
    meta_in: dict | None = None
    if kind == "run_zip":
        meta_in, state, traj = _extract_run_zip(buf, ws, max_bytes)
    elif kind == "safetensors":
        state = _load_safetensors(buf)
    else:
        state = _load_pt(buf, max_bytes)
    state, stripped = _clean_state(state)
    if not state:
        raise UploadError("the file holds no tensors")
    _check_finite(state)

    ds_spec = _dataset_spec(dataset, meta_in.get("dataset") if meta_in else None)
    bundle = None
    try:
        bundle = load_dataset(ds_spec)
    except DataError as e:
        if kind != "run_zip":
            raise UploadError(f"dataset {ds_spec.name!r} is not available: {str(e).splitlines()[0]}") from None
    except ValueError as e:
        raise UploadError(f"bad dataset spec: {str(e).splitlines()[0]}") from None
    shape = tuple(bundle.input_shape) if bundle else None
    classes = bundle.num_classes if bundle else None

    spec_src = model_spec if model_spec is not None else (meta_in.get("model") if meta_in else None)
    if spec_src is None:
        guess, _ = guess_model_spec(state)
        hint = f"; the shapes suggest {_spec_str(_normalise_spec(guess, None, None))}" if guess else ""
        raise UploadError(f"a bare state dict needs an architecture: choose a model (name and settings){hint}")
    spec = _normalise_spec(spec_src, shape, classes)
    if bundle is not None:
        kw = spec["kwargs"]
        if tuple(kw.get("input_shape", ())) != shape or kw.get("num_classes") != classes:
            raise UploadError(
                f"model expects input {tuple(kw.get('input_shape', ()))} and {kw.get('num_classes')} classes, "
                f"but dataset {ds_spec.name!r} has input {shape} and {classes} classes"
            )
    if meta_in is not None and isinstance(meta_in.get("weights_hash"), str):
        if weights_hash(state) != meta_in["weights_hash"]:
            raise UploadError(f"weights do not match the hash stored in {RUN_JSON} (file changed or corrupt)")
    state = _match_state(state, spec)
    if traj is not None:
        traj = _check_trajectory(traj, state)

    with torch.random.fork_rng(devices=[]):  # building initialises weights: leave the global RNG alone
        model = MODELS[spec["name"]](**spec["kwargs"])
    model.load_state_dict(state, strict=True)
    model.eval()

    meta: dict[str, Any] = dict(meta_in or {})
    meta.pop("versions", None)
    meta.pop("weights_hash", None)
    meta["model"] = spec
    meta["dataset"] = ds_spec.to_dict()
    meta["source"] = "upload"
    meta["upload"] = {
        "filename": Path(str(filename).replace("\\", "/")).name[:200],
        "kind": kind,
        "bytes": len(buf),
        "sha256": hashlib.sha256(buf).hexdigest(),
        "prefix_stripped": stripped,
    }
    if bundle is not None:
        meta["final"] = _evaluate(model, bundle)
        meta["final"]["eval_samples"] = EVAL_SAMPLES
    meta.setdefault("history", [])

    stem = name or (meta_in.get("name") if meta_in and isinstance(meta_in.get("name"), str) else None)
    stem = _safe_stem(stem or filename)
    for _ in range(20):
        target = unique_run_path(ws, stem)
        if target.resolve().parent != ws:
            raise UploadError(f"run name {stem!r} would leave the workspace")
        meta["name"] = target.name
        try:
            return save_run(target, model, meta, trajectory=traj)
        except (RunError, OSError):
            if not target.exists():
                raise
            continue  # another import took the name in the meantime: try the next free one
    raise UploadError(f"could not find a free run name for {stem!r}")


def _extract_run_zip(buf: bytes, ws: Path, max_bytes: int) -> tuple[dict, dict[str, Tensor], dict[str, Tensor] | None]:
    """Check a run zip, extract its known files into a hidden temp folder in the workspace, load them."""
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
        return meta, state, traj
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = [
    "ACCEPTED_KINDS", "ACCEPTED_SUFFIXES", "MAX_BYTES", "UploadError", "guess_model_spec", "import_upload",
    "inspect_upload",
]
