"""Datasets: embedded digits and synthetic 2-D sets (offline), MNIST / Fashion-MNIST / CIFAR-10 via torchvision.

Everything is returned as in-memory float32 tensors: small data, fixed and non-augmented, which is
exactly what curvature and surface analysis need. A *dataset spec* is a JSON-able dict stored in a
run, so ``load_dataset(spec)`` gives back exactly the same tensors.
"""

from __future__ import annotations

import functools
import json
import math
import os
import pickle
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

SYNTHETIC = ("moons", "circles", "spirals")
TORCHVISION = ("mnist", "fashion_mnist", "cifar10")
#: Token-sequence tasks (int64 inputs; models need ``DataBundle.vocab_size``) and generated 1-D signals.
SEQUENCE_TASKS = ("modular_addition", "parity")
SIGNALS = ("mnist1d",)
DATASETS = ("digits", *SYNTHETIC, *TORCHVISION, *SIGNALS, *SEQUENCE_TASKS)
#: Defaults of the task-only spec fields (``None`` in the spec means "not this task" and is not stored).
DEFAULT_MODULUS = 97
DEFAULT_SEQ_LEN = 8


class DataError(RuntimeError):
    """A dataset cannot be loaded (missing local copy and no network, bad settings)."""


@dataclass(frozen=True)
class DatasetSpec:
    """What data a run used. Sizes of ``None`` mean "everything available".

    Attributes:
        name: one of :data:`DATASETS`.
        seed: split / sampling seed (same seed, same tensors).
        train_size: cap on training examples (torchvision sets are large; a subset keeps it interactive).
        test_size: cap on test examples.
        n_samples: total examples generated for synthetic sets.
        noise: noise level of synthetic sets.
        test_fraction: held-out fraction for digits and synthetic sets (stratified); for modular
            addition the share of the ``p^2`` pairs held out (train fraction = 1 - test_fraction).
        modulus: ``p`` of modular addition (default 97; only stored for that task).
        seq_len: bit-string length of parity (default 8; only stored for that task).
        root: folder with a local torchvision copy (default ``$LANDSCAPE_DATA`` or ``./data``).
    """

    name: str = "digits"
    seed: int = 0
    train_size: int | None = None
    test_size: int | None = None
    n_samples: int = 1000
    noise: float = 0.1
    test_fraction: float = 0.25
    root: str | None = field(default=None, compare=False)
    modulus: int | None = None
    seq_len: int | None = None

    def __post_init__(self) -> None:
        if self.name not in DATASETS:
            raise ValueError(f"unknown dataset {self.name!r}; choose from {', '.join(DATASETS)}")
        self._task_fields()
        for k in ("train_size", "test_size"):
            v = getattr(self, k)
            if v is not None and v < 1:
                raise ValueError(f"{k} must be >= 1, got {v}")
        if self.n_samples < 8:
            raise ValueError(f"n_samples must be >= 8, got {self.n_samples}")
        if not 0.0 <= self.noise <= 5.0:
            raise ValueError(f"noise must be in [0, 5], got {self.noise}")
        if not 0.05 <= self.test_fraction <= 0.9:
            raise ValueError(f"test_fraction must be in [0.05, 0.9], got {self.test_fraction}")

    def _task_fields(self) -> None:
        """Fill / check ``modulus`` and ``seq_len``: set (default) for their task, ``None`` elsewhere."""
        for key, task, default, lo, hi in (("modulus", "modular_addition", DEFAULT_MODULUS, 2, 1000),
                                           ("seq_len", "parity", DEFAULT_SEQ_LEN, 2, 30)):
            v = getattr(self, key)
            if self.name != task:
                object.__setattr__(self, key, None)
                continue
            v = default if v is None else v
            if not (isinstance(v, int) and lo <= v <= hi):
                raise ValueError(f"{key} must be an integer in [{lo}, {hi}], got {v!r}")
            object.__setattr__(self, key, v)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("root")
        for k in ("modulus", "seq_len"):  # task-only fields: absent from other specs (stored runs unchanged)
            if d[k] is None:
                d.pop(k)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DatasetSpec:
        # ``root`` is a local setting, never taken from stored metadata (a run folder is untrusted input)
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__ and k != "root"}
        return cls(**known)


@dataclass(frozen=True)
class DataBundle:
    """Train / test tensors plus what a model needs to know about them."""

    spec: DatasetSpec
    train: tuple[Tensor, Tensor]
    test: tuple[Tensor, Tensor]
    input_shape: tuple[int, ...]
    num_classes: int
    class_names: tuple[str, ...] = ()
    vocab_size: int | None = None  # token tasks: inputs are int64 ids in [0, vocab_size)


def _stratified_split(X: np.ndarray, y: np.ndarray, test_fraction: float, seed: int):
    from sklearn.model_selection import train_test_split

    return train_test_split(X, y, test_size=test_fraction, random_state=seed, stratify=y)


def _cap(X: Tensor, y: Tensor, n: int | None, seed: int) -> tuple[Tensor, Tensor]:
    if n is None or n >= len(y):
        return X, y
    return analysis_subset(X, y, n, seed=seed)


def _spirals(n: int, noise: float, rng: np.random.Generator, arms: int = 3):
    per = n // arms
    xs, ys = [], []
    for k in range(arms):
        r = np.linspace(0.05, 1.0, per)
        t = 1.75 * r * 2 * math.pi + 2 * math.pi * k / arms
        pts = np.stack([r * np.sin(t), r * np.cos(t)], 1) + rng.normal(0, noise * 0.5, (per, 2))
        xs.append(pts)
        ys.append(np.full(per, k))
    return np.concatenate(xs), np.concatenate(ys)


def _load_digits(spec: DatasetSpec) -> DataBundle:
    from sklearn.datasets import load_digits

    d = load_digits()
    X = d.data.astype(np.float32) / 16.0
    y = d.target.astype(np.int64)
    Xtr, Xte, ytr, yte = _stratified_split(X, y, spec.test_fraction, spec.seed)
    mean, std = Xtr.mean(0), Xtr.std(0) + 0.1  # per-pixel standardisation, floor for constant pixels
    Xtr, Xte = (Xtr - mean) / std, (Xte - mean) / std
    to = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).reshape(-1, 1, 8, 8)  # noqa: E731
    train = _cap(to(Xtr), torch.from_numpy(ytr), spec.train_size, spec.seed)
    test = _cap(to(Xte), torch.from_numpy(yte), spec.test_size, spec.seed + 1)
    return DataBundle(spec, train, test, (1, 8, 8), 10, tuple(str(i) for i in range(10)))


def _load_synthetic(spec: DatasetSpec) -> DataBundle:
    from sklearn import datasets as skd

    rng = np.random.default_rng(spec.seed)
    if spec.name == "moons":
        X, y = skd.make_moons(spec.n_samples, noise=spec.noise, random_state=spec.seed)
    elif spec.name == "circles":
        X, y = skd.make_circles(spec.n_samples, noise=spec.noise, factor=0.5, random_state=spec.seed)
    else:
        X, y = _spirals(spec.n_samples, spec.noise, rng)
    X = X.astype(np.float32)
    X = (X - X.mean(0)) / (X.std(0) + 1e-6)
    Xtr, Xte, ytr, yte = _stratified_split(X, y.astype(np.int64), spec.test_fraction, spec.seed)
    train = _cap(torch.from_numpy(Xtr), torch.from_numpy(ytr), spec.train_size, spec.seed)
    test = _cap(torch.from_numpy(Xte), torch.from_numpy(yte), spec.test_size, spec.seed + 1)
    k = int(y.max()) + 1
    return DataBundle(spec, train, test, (2,), k, tuple(str(i) for i in range(k)))


_TV = {
    "mnist": ("MNIST", (0.1307,), (0.3081,)),
    "fashion_mnist": ("FashionMNIST", (0.2860,), (0.3530,)),
    "cifar10": ("CIFAR10", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}


def data_root(spec: DatasetSpec | None = None) -> Path:
    if spec is not None and spec.root:
        return Path(spec.root)
    return Path(os.environ.get("LANDSCAPE_DATA", "data"))


def _tv_split(name: str, root: Path, train: bool):
    import torchvision

    cls = getattr(torchvision.datasets, _TV[name][0])
    try:
        return cls(str(root), train=train, download=False)
    except (RuntimeError, OSError):
        pass
    if name == "cifar10":
        local = _cifar10_local(root, train)
        if local is not None:
            return local
    before = {p for p in root.rglob("*")} if root.is_dir() else set()
    root_existed = root.is_dir()
    try:
        return cls(str(root), train=train, download=True)
    except Exception as e:  # network errors come in many types
        _remove_new_empty_dirs(root, before, root_existed)
        raise DataError(
            f"{name}: no local copy under {root}/ and download failed ({type(e).__name__}); "
            f"put {_expected_files(name, root)} there, or set LANDSCAPE_DATA to the folder that holds them"
        ) from None


def _expected_files(name: str, root: Path) -> str:
    """Where torchvision looks for a local copy (one line, for the offline error message)."""
    if name == "cifar10":
        return (f"the extracted CIFAR-10 python batches ({root / 'cifar-10-batches-py'}/data_batch_1..5 and "
                "test_batch, from cifar-10-python.tar.gz)")
    folder = root / _TV[name][0] / "raw"
    return (f"the four IDX files in {folder}/ (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
            "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; .gz also works)")


def _remove_new_empty_dirs(root: Path, before: set[Path], root_existed: bool) -> None:
    """Undo the empty folders a failed torchvision download left behind (never anything that holds a file)."""
    if not root.is_dir():
        return
    new = sorted((p for p in root.rglob("*") if p.is_dir() and p not in before), key=lambda p: -len(p.parts))
    for d in [*new, *([] if root_existed else [root])]:
        try:
            d.rmdir()  # only succeeds when empty
        except OSError:
            pass


_CIFAR_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes (string -> bytes only)
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and NumPy arrays only: any other global (code) is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) in _CIFAR_GLOBALS:
            return super().find_class(module, name)
        raise DataError(f"CIFAR-10 batch file refers to {module}.{name}: refusing to load it")


def _cifar10_local(root: Path, train: bool):
    """Read a local ``cifar-10-batches-py`` copy in its pickle batch format, or ``None`` if absent.

    torchvision's CIFAR10 accepts only files whose MD5 matches the official archive, so a copy that
    was re-packed (or a test fixture written in the same format) is refused by it. When torchvision
    refuses and the files are present, they are read here instead, with an unpickler that allows
    NumPy arrays and plain containers only (nothing executable), and their shapes are checked.
    """
    folder = root / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    if not all((folder / n).is_file() for n in names):
        return None

    def load(f: Path) -> dict:
        with open(f, "rb") as fh:
            try:
                d = _ArrayOnlyUnpickler(fh, encoding="latin1").load()
            except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
                raise DataError(f"cifar10: {f} is not a CIFAR-10 batch file ({type(e).__name__})") from None
        if not isinstance(d, dict):
            raise DataError(f"cifar10: {f} is not a CIFAR-10 batch file")
        return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in d.items()}

    xs, ys = [], []
    for n in names:
        d = load(folder / n)
        x = np.asarray(d.get("data"))
        y = np.asarray(d.get("labels", d.get("fine_labels")), dtype=np.int64)
        if x.ndim != 2 or x.shape[1] != 3072 or x.dtype != np.uint8 or len(y) != len(x):
            raise DataError(f"cifar10: {folder / n} has data of shape {x.shape} ({x.dtype}); expected (N, 3072) uint8")
        if len(y) and (y.min() < 0 or y.max() > 9):
            raise DataError(f"cifar10: {folder / n} has labels outside 0..9")
        xs.append(x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(y)
    classes = [str(i) for i in range(10)]
    if (folder / "batches.meta").is_file():
        meta = load(folder / "batches.meta")
        names_ = meta.get("label_names")
        if isinstance(names_, list) and len(names_) == 10:
            classes = [c.decode() if isinstance(c, bytes) else str(c) for c in names_]
    return types.SimpleNamespace(data=np.concatenate(xs), targets=np.concatenate(ys).tolist(), classes=classes)


def _load_torchvision(spec: DatasetSpec) -> DataBundle:
    root = data_root(spec)
    _, mean, std = _TV[spec.name]
    tensors = []
    for is_train, cap, off in ((True, spec.train_size, 0), (False, spec.test_size, 1)):
        ds = _tv_split(spec.name, root, is_train)
        data = ds.data
        X = torch.as_tensor(np.asarray(data)).float() / 255.0
        X = X.unsqueeze(1) if X.ndim == 3 else X.permute(0, 3, 1, 2)  # (N, C, H, W)
        y = torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)
        X, y = _cap(X, y, cap, spec.seed + off)
        m = torch.tensor(mean).view(1, -1, 1, 1)
        s = torch.tensor(std).view(1, -1, 1, 1)
        tensors.append((((X - m) / s).contiguous(), y))
    (Xtr, ytr), (Xte, yte) = tensors
    classes = tuple(getattr(ds, "classes", [str(i) for i in range(10)]))
    return DataBundle(spec, (Xtr, ytr), (Xte, yte), tuple(Xtr.shape[1:]), 10, classes)


def _load_task(spec: DatasetSpec) -> DataBundle:
    """MNIST-1D (cached under the data root) and the embedded sequence tasks (``landscape_core.tasks``)."""
    from . import tasks

    if spec.name == "mnist1d":
        Xtr, ytr, Xte, yte = tasks.mnist1d(data_root(spec) / "mnist1d")
        k, vocab = 10, None
    elif spec.name == "modular_addition":
        assert spec.modulus is not None
        Xtr, ytr, Xte, yte = tasks.modular_addition(spec.modulus, 1.0 - spec.test_fraction, spec.seed)
        k, vocab = spec.modulus, spec.modulus + 1
    else:
        assert spec.seq_len is not None
        Xtr, ytr, Xte, yte = tasks.parity(spec.seq_len, spec.n_samples, spec.test_fraction, spec.seed)
        k, vocab = 2, 2
    train = _cap(Xtr, ytr, spec.train_size, spec.seed)
    test = _cap(Xte, yte, spec.test_size, spec.seed + 1)
    return DataBundle(spec, train, test, tuple(Xtr.shape[1:]), k, tuple(str(i) for i in range(k)), vocab)


@functools.lru_cache(maxsize=16)
def _load_cached(spec_json: str, root: str | None) -> DataBundle:
    spec = DatasetSpec(**json.loads(spec_json), root=root)
    if spec.name == "digits":
        return _load_digits(spec)
    if spec.name in SYNTHETIC:
        return _load_synthetic(spec)
    if spec.name in SIGNALS or spec.name in SEQUENCE_TASKS:
        return _load_task(spec)
    return _load_torchvision(spec)


def load_dataset(spec: DatasetSpec | dict | str) -> DataBundle:
    """Load (and memoise) a dataset. Accepts a spec, its dict form, or just a name.

    The returned tensors are shared between callers: treat them as read-only.
    """
    if isinstance(spec, str):
        spec = DatasetSpec(name=spec)
    elif isinstance(spec, dict):
        spec = DatasetSpec.from_dict(spec)
    return _load_cached(json.dumps(spec.to_dict(), sort_keys=True), spec.root)


def analysis_subset(X: Tensor, y: Tensor, n: int | None, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A fixed, seeded subset of ``n`` examples (class-stratified); ``None`` or ``n >= len`` = all.

    The same (data, n, seed) always gives the same subset, so analyses are comparable across runs.
    """
    if n is None or n >= len(y):
        return X, y
    if n < 1:
        raise ValueError(f"sample budget must be >= 1, got {n}")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=g)
    # stratify: interleave classes in permuted order so every class is represented proportionally
    ys = y[perm]
    order = torch.argsort(ys, stable=True)
    ranks = torch.empty_like(order)
    counts = torch.bincount(ys)
    starts = torch.cumsum(counts, 0) - counts
    ranks[order] = torch.arange(len(ys)) - starts[ys[order]]
    frac = (ranks.double() + 0.5) / counts[ys].double()
    idx = perm[torch.argsort(frac, stable=True)[:n]]
    idx, _ = torch.sort(idx)
    return X[idx], y[idx]
