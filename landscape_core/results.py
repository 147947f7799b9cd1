"""Helpers shared by the engine's frozen result dataclasses (``to_dict()`` / ``from_dict()``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


def clean(x: float | None) -> float | None:
    """``float(x)``, or ``None`` for ``None`` and non-finite values (JSON has no NaN)."""
    return float(x) if x is not None and math.isfinite(x) else None


def finite(x: Any) -> float | None:
    """``float(x)`` when it is a finite number, else ``None`` (strings, ``None``, nan, inf)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def unclean(x: float | None) -> float:
    """Inverse of :func:`clean` for reading back: ``None`` becomes ``nan``."""
    return float("nan") if x is None else float(x)


def floats(a: Any) -> np.ndarray | None:
    """A float64 array from nested lists (``None`` entries become ``nan``); ``None`` stays ``None``."""
    if a is None:
        return None

    def fix(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [fix(x) for x in v]
        return float("nan") if v is None else v

    return np.asarray(fix(a), dtype=np.float64)


def from_fields(cls: type[T], d: Mapping[str, Any], **overrides: Any) -> T:
    """``cls(**d)`` keeping only ``cls``'s init fields (extra keys, e.g. derived ones, are ignored)."""
    names = {f.name for f in fields(cls) if f.init}  # type: ignore[arg-type]
    kw = {k: v for k, v in d.items() if k in names}
    kw.update(overrides)
    return cls(**kw)


__all__ = ["clean", "finite", "floats", "from_fields", "unclean"]
