"""Embedded sequence tasks and MNIST-1D: generated offline, returned as plain tensors (``data.py`` wraps them).

- **Modular addition** (Power et al. 2022, "Grokking"): every pair ``(a, b)`` in ``Z_p x Z_p`` as the
  token sequence ``[a, b, =]`` (the ``=`` token is ``p``; vocabulary ``p + 1``), label ``(a + b) mod p``;
  a seeded random ``train_fraction`` of the ``p^2`` pairs for training, the rest for testing.
- **Parity**: bit strings of length ``L`` (tokens 0/1), label = number of ones mod 2; all ``2^L``
  strings when ``n_samples`` covers them, otherwise a seeded sample without repetition.
- **MNIST-1D** (Greydanus 2020, "Scaling down deep learning"): the ``mnist1d`` package's generator
  with its reference settings (5000 signals of length 40, 4000 train / 1000 test, seed 42), run
  offline; the arrays are cached as ``.npz`` (loaded with ``allow_pickle=False``).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

Split = tuple[Tensor, Tensor, Tensor, Tensor]

#: MNIST-1D reference generation settings (the package defaults; the published benchmark numbers use them).
MNIST1D_SAMPLES = 5000
MNIST1D_SEED = 42
MNIST1D_LENGTH = 40


def _split(n: int, train_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train fraction must be in (0, 1), got {train_fraction}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    k = min(max(int(round(train_fraction * n)), 1), n - 1)
    return perm[:k].sort().values, perm[k:].sort().values


def modular_addition(p: int, train_fraction: float = 0.4, seed: int = 0) -> Split:
    """``(X_train, y_train, X_test, y_test)`` for ``a + b mod p``; ``X``: int64 ``(n, 3)`` rows ``[a, b, p]``.

    Args:
        p: the modulus (>= 2; a prime makes the task a group table without shortcuts).
        train_fraction: share of the ``p^2`` pairs used for training.
        seed: which pairs are training pairs.
    """
    if not (isinstance(p, int) and 2 <= p <= 1000):
        raise ValueError(f"modulus must be an integer in [2, 1000], got {p!r}")
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    a, b = a.reshape(-1), b.reshape(-1)
    X = torch.stack([a, b, torch.full_like(a, p)], dim=1)
    y = (a + b) % p
    tr, te = _split(len(y), train_fraction, seed)
    return X[tr], y[tr], X[te], y[te]


def parity(length: int, n_samples: int, test_fraction: float = 0.25, seed: int = 0) -> Split:
    """``(X_train, y_train, X_test, y_test)`` for the parity of bit strings; ``X``: int64 ``(n, length)``.

    Args:
        length: bits per string (2..30).
        n_samples: strings drawn without repetition (capped at ``2^length``).
        test_fraction: held-out share.
        seed: which strings, and the split.
    """
    if not (isinstance(length, int) and 2 <= length <= 30):
        raise ValueError(f"sequence length must be an integer in [2, 30], got {length!r}")
    total = 2**length
    g = torch.Generator().manual_seed(seed)
    n = min(n_samples, total)
    if n == total:
        codes = torch.arange(total)
    else:
        codes = torch.from_numpy(np.random.default_rng(seed).choice(total, size=n, replace=False))
    codes = codes[torch.randperm(n, generator=g)]
    X = (codes.unsqueeze(1) >> torch.arange(length - 1, -1, -1)) & 1
    y = X.sum(1) % 2
    tr, te = _split(n, 1.0 - test_fraction, seed + 1)
    return X[tr], y[tr], X[te], y[te]


def _generate_mnist1d() -> dict[str, np.ndarray]:
    """Run the ``mnist1d`` generator offline (``make_dataset``, no download), restoring the global RNGs.

    The package seeds Python's and NumPy's global generators; their states are saved and restored so
    generating the data leaves the caller's randomness untouched.
    """
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:  # pragma: no cover - a requirement
        raise ValueError("dataset 'mnist1d' needs the mnist1d package (pip install mnist1d)") from None
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        args = get_dataset_args()
        args.num_samples, args.seed, args.final_seq_length = MNIST1D_SAMPLES, MNIST1D_SEED, MNIST1D_LENGTH
        d = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {"x": np.asarray(d["x"], np.float32), "y": np.asarray(d["y"], np.int64),
            "x_test": np.asarray(d["x_test"], np.float32), "y_test": np.asarray(d["y_test"], np.int64)}


def mnist1d(cache_dir: str | Path | None = None) -> Split:
    """MNIST-1D reference split as float32 ``(n, 1, 40)`` signals and int64 labels (10 classes).

    Args:
        cache_dir: folder for ``mnist1d-<samples>-<seed>.npz``; generated (about 2 s) and written when
            absent or unreadable; ``None``: generate in memory.
    """
    path = None if cache_dir is None else Path(cache_dir) / f"mnist1d-{MNIST1D_SAMPLES}-{MNIST1D_SEED}.npz"
    arrays = None
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in ("x", "y", "x_test", "y_test")}
            if arrays["x"].shape[1:] != (MNIST1D_LENGTH,) or len(arrays["x"]) != len(arrays["y"]):
                arrays = None
        except (OSError, ValueError, KeyError):
            arrays = None  # corrupt cache: regenerate
    if arrays is None:
        arrays = _generate_mnist1d()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, **arrays)
            tmp.replace(path)
    to_x = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32)).unsqueeze(1)  # noqa: E731
    to_y = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.int64))  # noqa: E731
    return to_x(arrays["x"]), to_y(arrays["y"]), to_x(arrays["x_test"]), to_y(arrays["y_test"])
