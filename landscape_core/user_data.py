"""The user's own data: ``.npz`` (``X``, ``y``, optional ``X_test``, ``y_test``) or ``.csv`` (a label column).

Read safely (``np.load(..., allow_pickle=False)`` after a size and zip check; CSV parsed as numbers
only), shape-checked against the model's input with a one-line error, and stored *inside the run
folder* as ``data.npz`` with its SHA-256 in ``run.json``, so every later analysis of the run uses
exactly these examples. A run's dataset spec is then ``{"name": "user", "file": "data.npz",
"sha256": ..., ...}`` and :func:`load_user_bundle` gives the same :class:`~landscape_core.data.DataBundle`
the embedded datasets give.

No normalisation is applied: the examples are used as given (standardise them as the model was trained).
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .data import DataBundle

USER_DATA = "user"  # dataset spec name of a run that carries its own data
DATA_FILE = "data.npz"
MAX_DATA_BYTES = 200 * 2**20
MAX_NPZ_ENTRIES = 8
TEST_FRACTION = 0.25


class UserDataError(ValueError):
    """The user's data file was refused; the message is one line."""


@dataclass(frozen=True)
class UserDataSpec:
    """What a run's own data is (stored as ``run.json``'s ``dataset``)."""

    sha256: str
    source: str
    n_train: int
    n_test: int
    input_shape: tuple[int, ...]
    num_classes: int
    split: str  # "given" (X_test/y_test in the file) or "held out 25% (seed 0)"
    name: str = USER_DATA
    file: str = DATA_FILE
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        return {"name": self.name, "file": self.file, "sha256": self.sha256, "source": self.source,
                "n_train": self.n_train, "n_test": self.n_test, "input_shape": list(self.input_shape),
                "num_classes": self.num_classes, "split": self.split, "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> UserDataSpec:
        return cls(sha256=str(d["sha256"]), source=str(d.get("source", "")), n_train=int(d["n_train"]),
                   n_test=int(d["n_test"]), input_shape=tuple(int(s) for s in d["input_shape"]),
                   num_classes=int(d["num_classes"]), split=str(d.get("split", "")),
                   notes=tuple(d.get("notes", ())))

    def describe(self) -> str:
        return (f"{self.source}: {self.n_train} train + {self.n_test} test examples of shape {self.input_shape}, "
                f"{self.num_classes} classes ({self.split})")


@dataclass(frozen=True)
class UserData:
    """Arrays as read from the file (not yet fitted to a model)."""

    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray | None
    y_test: np.ndarray | None
    source: str


def _read_bytes(data: Any, max_bytes: int) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        buf = bytes(data)
    elif isinstance(data, (str, os.PathLike)):
        p = Path(data)
        if not p.is_file():
            raise UserDataError(f"data file {str(p)!r} not found")
        if p.stat().st_size > max_bytes:
            raise UserDataError(f"data file is {p.stat().st_size / 2**20:.1f} MB, over the limit of "
                                f"{max_bytes / 2**20:.1f} MB")
        buf = p.read_bytes()
    elif hasattr(data, "getvalue"):
        buf = bytes(data.getvalue())
    else:
        raise UserDataError(f"data must be bytes or a file path, got {type(data).__name__}")
    if len(buf) > max_bytes:
        raise UserDataError(f"data file is {len(buf) / 2**20:.1f} MB, over the limit of {max_bytes / 2**20:.1f} MB")
    if not buf:
        raise UserDataError("data file is empty")
    return buf


def _read_npz(buf: bytes, max_bytes: int) -> dict[str, np.ndarray]:
    try:
        zf = zipfile.ZipFile(io.BytesIO(buf))
    except zipfile.BadZipFile:
        raise UserDataError("the .npz data file is not a valid npz (zip) archive") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_NPZ_ENTRIES:
            raise UserDataError(f"the .npz holds {len(infos)} arrays; expected X, y and optionally X_test, y_test")
        total = sum(i.file_size for i in infos)
        if total > 2 * max_bytes:
            raise UserDataError(f"the .npz would expand to {total / 2**20:.1f} MB, over the limit")
    try:
        with np.load(io.BytesIO(buf), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as e:  # object arrays need pickle: refused
        if "pickle" in str(e).lower():
            raise UserDataError("the .npz holds object arrays (pickled Python objects); refused, "
                                "save numeric arrays only") from None
        raise UserDataError(f"the .npz data file is corrupt: {str(e).splitlines()[0][:160]}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise UserDataError(f"the .npz data file is corrupt or truncated ({type(e).__name__})") from None


def _read_csv(buf: bytes, label: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        text = buf.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UserDataError("the .csv data file is not UTF-8 text") from None
    rows = list(csv.reader(io.StringIO(text)))
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if len(rows) < 2:
        raise UserDataError("the .csv needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    if label not in header:
        raise UserDataError(f"the .csv has no label column {label!r} (columns: {', '.join(header[:8])}); "
                            f"name it with --label-column")
    li = header.index(label)
    X, y = [], []
    for n, r in enumerate(rows[1:], start=2):
        if len(r) != len(header):
            raise UserDataError(f"the .csv row {n} has {len(r)} fields, the header has {len(header)}")
        try:
            vals = [float(c) for c in r]
        except ValueError:
            bad = next(c for c in r if not _is_number(c))
            raise UserDataError(f"the .csv row {n} has a non-numeric value {bad.strip()[:30]!r}") from None
        y.append(vals[li])
        X.append(vals[:li] + vals[li + 1 :])
    return np.asarray(X, dtype=np.float32), np.asarray(y, dtype=np.float64)


def _is_number(c: str) -> bool:
    try:
        float(c)
        return True
    except ValueError:
        return False


def read_user_data(filename: str, data: Any, *, label: str = "label", max_bytes: int = MAX_DATA_BYTES) -> UserData:
    """Read a ``.npz`` or ``.csv`` data file (kind by content: npz is a zip, csv is text).

    Raises:
        UserDataError: one line naming what is wrong.
    """
    buf = _read_bytes(data, max_bytes)
    name = Path(str(filename)).name[:120]
    if buf[:4] == b"PK\x03\x04":
        arrays = _read_npz(buf, max_bytes)
        for k in ("X", "y"):
            if k not in arrays:
                raise UserDataError(f"the .npz has no array {k!r} (it has {', '.join(sorted(arrays)) or 'none'})")
        unknown = sorted(set(arrays) - {"X", "y", "X_test", "y_test"})
        if unknown:
            raise UserDataError(f"the .npz has unexpected array {unknown[0]!r}; expected X, y, X_test, y_test")
        if ("X_test" in arrays) != ("y_test" in arrays):
            raise UserDataError("the .npz has only one of X_test / y_test; give both or neither")
        return UserData(arrays["X"], arrays["y"], arrays.get("X_test"), arrays.get("y_test"), name)
    if Path(name).suffix.lower() == ".npz":
        raise UserDataError("the .npz data file is not a valid npz (zip) archive")
    X, y = _read_csv(buf, label)
    return UserData(X, y, None, None, name)


def _labels(y: np.ndarray, what: str) -> np.ndarray:
    if y.ndim != 1:
        raise UserDataError(f"{what} must be 1-D class labels, got shape {tuple(y.shape)}")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating) or y.dtype == bool):
        raise UserDataError(f"{what} must be numeric class labels, got dtype {y.dtype}")
    yf = y.astype(np.float64)
    if not np.all(np.isfinite(yf)) or np.any(yf != np.round(yf)) or (len(yf) and yf.min() < 0):
        raise UserDataError(f"{what} must hold class labels 0, 1, 2, ... (non-negative integers)")
    return yf.astype(np.int64)


def _features(X: np.ndarray, what: str, input_shape: Sequence[int], notes: list[str]) -> np.ndarray:
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool) or np.iscomplexobj(X):
        raise UserDataError(f"{what} must be a real numeric array, got dtype {X.dtype}")
    if X.ndim < 2:
        raise UserDataError(f"{what} must have one row per example, got shape {tuple(X.shape)}")
    shape, want = tuple(X.shape[1:]), tuple(int(s) for s in input_shape)
    if shape != want:
        if math.prod(shape) != math.prod(want):
            raise UserDataError(f"{what} has examples of shape {shape}, but the model takes {want}")
        notes.append(f"{what} reshaped from {shape} to {want} per example")
        X = X.reshape(len(X), *want)
    X = X.astype(np.float32)
    if not np.all(np.isfinite(X)):
        raise UserDataError(f"{what} contains NaN or Inf values")
    return X


def fit_user_data(ud: UserData, input_shape: Sequence[int], num_classes: int, *,
                  seed: int = 0) -> tuple[dict[str, np.ndarray], UserDataSpec]:
    """Check ``ud`` against the model (input shape, classes) and split it; arrays ready to store.

    Raises:
        UserDataError: the first mismatch, in one line (e.g. ``X has examples of shape (5,), but the
            model takes (1, 8, 8)``).
    """
    notes: list[str] = []
    X = _features(ud.X, "X", input_shape, notes)
    y = _labels(ud.y, "y")
    if len(X) != len(y):
        raise UserDataError(f"X has {len(X)} rows but y has {len(y)}")
    if ud.X_test is not None:
        Xt = _features(ud.X_test, "X_test", input_shape, notes)
        yt = _labels(ud.y_test, "y_test")
        if len(Xt) != len(yt):
            raise UserDataError(f"X_test has {len(Xt)} rows but y_test has {len(yt)}")
        split = "test set given in the file"
    else:
        if len(X) < 2:
            raise UserDataError(f"need at least 2 examples to hold out a test set, got {len(X)}")
        perm = np.random.default_rng(seed).permutation(len(X))
        n_test = max(1, int(round(TEST_FRACTION * len(X))))
        X, y, Xt, yt = X[perm[n_test:]], y[perm[n_test:]], X[perm[:n_test]], y[perm[:n_test]]
        split = f"{n_test} examples held out as test set (seed {seed})"
    if len(X) == 0 or len(Xt) == 0:
        raise UserDataError("the data file has no training or no test examples")
    top = int(max(y.max(), yt.max()))
    if top >= num_classes:
        raise UserDataError(f"labels go up to {top}, but the model has {num_classes} outputs (classes 0..{num_classes - 1})")
    arrays = {"X_train": X, "y_train": y, "X_test": Xt, "y_test": yt}
    spec = UserDataSpec(sha256=arrays_sha256(arrays), source=ud.source, n_train=len(X), n_test=len(Xt),
                        input_shape=tuple(int(s) for s in input_shape), num_classes=int(num_classes), split=split,
                        notes=tuple(notes))
    return arrays, spec


def arrays_sha256(arrays: Mapping[str, np.ndarray]) -> str:
    """Content hash of the stored arrays (names, dtypes, shapes and bytes; independent of zip metadata)."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def bundle_from_arrays(arrays: Mapping[str, np.ndarray], spec: UserDataSpec) -> DataBundle:
    """A :class:`DataBundle` (float32 X, int64 y) over the stored arrays."""
    def t(a: np.ndarray, dtype: torch.dtype) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(dtype)

    train = (t(arrays["X_train"], torch.float32), t(arrays["y_train"], torch.int64))
    test = (t(arrays["X_test"], torch.float32), t(arrays["y_test"], torch.int64))
    classes = tuple(str(i) for i in range(spec.num_classes))
    return DataBundle(spec, train, test, tuple(spec.input_shape), spec.num_classes, classes)  # type: ignore[arg-type]


def load_user_bundle(run_path: str | os.PathLike, spec_dict: Mapping[str, Any]) -> DataBundle:
    """The data stored in a run folder (``data.npz``), checked against the hash in ``run.json``."""
    spec = UserDataSpec.from_dict(spec_dict)
    f = Path(run_path) / DATA_FILE
    if not f.is_file():
        raise UserDataError(f"run {run_path} has no {DATA_FILE} (its own data)")
    with np.load(f, allow_pickle=False) as z:
        arrays = {k: z[k] for k in ("X_train", "y_train", "X_test", "y_test")}
    if arrays_sha256(arrays) != spec.sha256:
        raise UserDataError(f"{f} does not match the SHA-256 in run.json (file changed or corrupt)")
    return bundle_from_arrays(arrays, spec)


__all__ = ["DATA_FILE", "USER_DATA", "UserData", "UserDataError", "UserDataSpec", "bundle_from_arrays",
           "fit_user_data", "load_user_bundle", "npz_bytes", "read_user_data"]
