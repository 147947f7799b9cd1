"""What an upload is: its bytes (size-checked), its kind by content, and the one error type of uploads.

Everything that arrives is untrusted. The size is checked first (``max_bytes``); empty files are
refused. The kind is decided by the extension's family AND the first bytes (magic numbers), which must
agree, so a renamed file is refused with a message saying what it looks like. Also the limits every
upload module shares, and :class:`UploadError` (a ``ValueError`` with a one-line message).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from .graph_import import EXPORT_HINT, GRAPH_FILE, looks_like_onnx
from .runs import MODEL_FILE, RUN_JSON, TRAJ_FILE
from .user_data import DATA_FILE

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
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "weights", "params")
STRIP_PREFIXES = ("module.", "_orig_mod.", "model.")
PT2_REFUSAL = (
    "this is a torch.export archive (.pt2): torch.export.load unpickles its weights without weights_only, "
    "which can run code, so it is refused; export the model as ONNX instead: " + EXPORT_HINT
)


TORCHSCRIPT_REFUSAL = (
    "this is a TorchScript archive (torch.jit.save), which can run code; "
    "save a plain state dict instead: torch.save(model.state_dict(), 'weights.pt')"
)


class UploadError(ValueError):
    """An uploaded file was refused; the message is one line and says why."""


# --- small helpers -----------------------------------------------------------------------------
def megabytes(n: int) -> str:
    """``n`` bytes as ``'1.5 MB'``."""
    return f"{n / 2**20:.1f} MB"


def short_list(items: list[str], k: int = 3) -> str:
    """The first ``k`` items joined by commas, with ``(+n more)`` when there are more."""
    shown = ", ".join(items[:k])
    return shown + (f" (+{len(items) - k} more)" if len(items) > k else "")


def read_input(data: Any, max_bytes: int) -> bytes:
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
            raise UploadError(f"file is {megabytes(st.st_size)}, over the upload limit of {megabytes(max_bytes)}")
        with open(p, "rb") as fh:
            buf = fh.read(max_bytes + 1)
    elif hasattr(data, "getvalue"):
        buf = bytes(data.getvalue())
    elif hasattr(data, "read"):
        buf = data.read(max_bytes + 1)
    else:
        raise UploadError(f"upload data must be bytes or a file path, got {type(data).__name__}")
    if len(buf) > max_bytes:
        raise UploadError(f"file is {megabytes(len(buf))}, over the upload limit of {megabytes(max_bytes)}")
    if len(buf) == 0:
        raise UploadError("file is empty")
    return buf


def sniff(buf: bytes, prefer_onnx: bool = False) -> str:
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


def classify(filename: str, buf: bytes) -> str:
    """``run_zip``, ``safetensors``, ``pt`` or ``onnx``: the content (magic number) decides, within the
    family the extension names (a mismatch is refused as a renamed or corrupt file)."""
    suffix = Path(str(filename)).suffix.lower()
    if suffix == ".pt2":
        raise UploadError(PT2_REFUSAL)
    if suffix not in ACCEPTED_SUFFIXES:
        raise UploadError(
            f"unsupported file type {suffix or '(no extension)'!r} for {Path(str(filename)).name!r}; "
            f"accepted: {ACCEPTED_KINDS}"
        )
    looks = sniff(buf, prefer_onnx=suffix == ".onnx")
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
