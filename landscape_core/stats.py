"""Rank correlation with uncertainty: Kendall's tau-b between a sharpness measure and generalization.

Sharpness-vs-generalization studies (Keskar et al. 2017; Jiang et al. 2020, "Fantastic
generalization measures and where to find them") report Kendall's rank correlation between a
measure and the test accuracy / generalization gap over a grid of hyperparameters. With a few dozen
points such a correlation is noisy, so every tau here comes with

- the two-sided p-value of the null "no association" (``scipy.stats.kendalltau``), and
- a seeded percentile bootstrap confidence interval (resample the points with replacement).

Kendall's tau-b (ties in either variable handled)::

    tau_b = (C - D) / sqrt((n0 - n1) (n0 - n2)),   n0 = n (n - 1) / 2,

where C / D count concordant / discordant pairs and n1 / n2 the pairs tied in x / in y.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats as _sps


@dataclass(frozen=True)
class KendallResult:
    """Kendall's tau-b with its uncertainty.

    Attributes:
        tau: tau-b on the given points (``nan`` with fewer than 3 usable points or a constant input).
        p_value: two-sided p-value of tau = 0 (scipy; exact for small untied samples).
        ci_low, ci_high: percentile bootstrap interval at ``confidence``.
        n: number of points used (pairs with a non-finite value are dropped).
        n_boot: bootstrap resamples; ``confidence``: e.g. 0.95; ``seed``: the bootstrap seed.
        x_name, y_name: what was correlated (for tables).
    """

    tau: float
    p_value: float
    ci_low: float
    ci_high: float
    n: int
    n_boot: int
    confidence: float
    seed: int
    x_name: str = "x"
    y_name: str = "y"

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> KendallResult:
        """Inverse of :meth:`to_dict` (``None`` numbers come back as ``nan``)."""
        nan = float("nan")
        return cls(
            tau=nan if d["tau"] is None else float(d["tau"]), p_value=nan if d["p_value"] is None else float(d["p_value"]),
            ci_low=nan if d["ci_low"] is None else float(d["ci_low"]),
            ci_high=nan if d["ci_high"] is None else float(d["ci_high"]), n=int(d["n"]), n_boot=int(d["n_boot"]),
            confidence=float(d["confidence"]), seed=int(d["seed"]), x_name=d.get("x_name", "x"),
            y_name=d.get("y_name", "y"),
        )


def _signs(v: np.ndarray) -> np.ndarray:
    """Antisymmetric matrix ``sign(v_i - v_j)``."""
    return np.sign(v[:, None] - v[None, :]).astype(np.int8)


def _tau_from_signs(sx: np.ndarray, sy: np.ndarray) -> np.ndarray:
    """tau-b from (batched) pairwise sign matrices of shape ``(..., n, n)``.

    Sums over the full matrix count every unordered pair twice, which cancels in the ratio.
    """
    s = (sx.astype(np.int32) * sy).sum(axis=(-2, -1))
    nx = np.abs(sx).sum(axis=(-2, -1), dtype=np.int64)  # 2 (n0 - n1)
    ny = np.abs(sy).sum(axis=(-2, -1), dtype=np.int64)  # 2 (n0 - n2)
    den = np.sqrt(nx.astype(np.float64) * ny.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, s / np.where(den > 0, den, 1.0), np.nan)


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b of two equally long sequences (no NaN handling; see :func:`kendall_tau`)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of equal length, got shapes {x.shape} and {y.shape}")
    if len(x) < 2:
        return float("nan")
    return float(_tau_from_signs(_signs(x), _signs(y)))


def kendall_tau(
    x: Sequence[float],
    y: Sequence[float],
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    x_name: str = "x",
    y_name: str = "y",
) -> KendallResult:
    """Kendall's tau-b with a seeded bootstrap confidence interval and scipy's p-value.

    Args:
        x, y: paired values; pairs where either value is not finite are dropped.
        n_boot: bootstrap resamples (0 disables the interval).
        confidence: two-sided level of the percentile interval, in (0, 1).
        seed: bootstrap seed (same seed, same interval).
        x_name, y_name: labels carried into the result.

    Example:
        >>> r = kendall_tau([1, 2, 3, 4], [1, 3, 2, 4], n_boot=0)
        >>> round(r.tau, 4)   # 5 concordant, 1 discordant pair of 6
        0.6667
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have equal length, got {len(x)} and {len(y)}")
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = int(len(x))
    nan = float("nan")
    if n < 3:
        return KendallResult(nan, nan, nan, nan, n, n_boot, confidence, seed, x_name, y_name)
    sx, sy = _signs(x), _signs(y)
    tau = float(_tau_from_signs(sx, sy))
    if math.isfinite(tau):
        from scipy.stats import kendalltau as _scipy_kendalltau

        p = float(_scipy_kendalltau(x, y, variant="b").pvalue)
    else:
        p = nan
    lo = hi = nan
    if n_boot > 0 and math.isfinite(tau):
        rng = np.random.default_rng(seed)
        taus = np.empty(n_boot)
        chunk = max(1, 2_000_000 // (n * n))
        for start in range(0, n_boot, chunk):
            m = min(chunk, n_boot - start)
            idx = rng.integers(0, n, size=(m, n))
            bx = sx[idx[:, :, None], idx[:, None, :]]
            by = sy[idx[:, :, None], idx[:, None, :]]
            taus[start : start + m] = _tau_from_signs(bx, by)
        taus = taus[np.isfinite(taus)]
        if len(taus):
            a = (1.0 - confidence) / 2.0
            lo, hi = (float(v) for v in np.quantile(taus, [a, 1.0 - a]))
    return KendallResult(tau, p, lo, hi, n, n_boot, confidence, seed, x_name, y_name)


def correlation_table(
    rows: Sequence[Mapping[str, float]],
    measures: Sequence[str],
    targets: Sequence[str],
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[dict]:
    """Kendall tau-b of every ``measure`` column against every ``target`` column of a table.

    Returns one JSON-able dict per (measure, target): ``measure``, ``target``, ``tau``, ``p_value``,
    ``ci_low``, ``ci_high``, ``n``. Missing values count as non-finite and drop that row.
    """
    out = []
    for m in measures:
        for t in targets:
            xs = [_num(r.get(m)) for r in rows]
            ys = [_num(r.get(t)) for r in rows]
            r = kendall_tau(xs, ys, n_boot=n_boot, confidence=confidence, seed=seed, x_name=m, y_name=t)
            d = r.to_dict()
            out.append({"measure": m, "target": t, **{k: d[k] for k in ("tau", "p_value", "ci_low", "ci_high", "n")}})
    return out


def _num(v: object) -> float:
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def mean_ci(samples: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(mean, std, ci_low, ci_high)`` along the last axis: Student-t interval for the mean.

    ``mean +- t_{(1+level)/2, n-1} * std / sqrt(n)`` with the unbiased ``std`` (ddof=1).
    """
    x = np.asarray(samples, dtype=np.float64)
    n = x.shape[-1]
    if n < 2:
        raise ValueError(f"a confidence interval needs at least 2 samples, got {n}")
    mean = x.mean(-1)
    std = x.std(-1, ddof=1)
    half = _sps.t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n)
    return mean, std, mean - half, mean + half
