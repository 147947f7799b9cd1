"""Gradient noise scale B_simple (McCandlish et al. 2018, "An Empirical Model of Large-Batch Training").

With per-example gradients ``g_i`` on a fixed dataset of ``N`` examples, true gradient
``G = mean_i g_i`` and per-example covariance ``Sigma = mean_i (g_i - G)(g_i - G)^T``, the squared
norm of a minibatch gradient of size ``B`` (drawn i.i.d.) has expectation

    E |G_B|^2 = |G|^2 + tr(Sigma) / B.

Measuring ``|G_B|^2`` at two sizes ``B_small < B_big`` gives unbiased estimates (appendix A):

    |G|^2     ~  (B_big |G_big|^2 - B_small |G_small|^2) / (B_big - B_small)
    tr(Sigma) ~  (|G_small|^2 - |G_big|^2) / (1/B_small - 1/B_big)

and the simple noise scale ``B_simple = tr(Sigma) / |G|^2`` (the batch size where the gradient's noise
and signal are comparable; the critical batch size when the Hessian is well conditioned). Each pair
of batches gives one estimate of each term; both terms are averaged over many pairs *before* the
ratio is taken (a ratio of noisy means, not a mean of noisy ratios), and a bootstrap over pairs
gives the confidence interval.

Batches here are drawn *without replacement* from the fixed data (eval mode), which shrinks the
minibatch variance by ``(N - B)/(N - 1)``: ``E |G_B|^2 = |G|^2 + tr(Sigma) N/(N-1) (1/B - 1/N)``.
With ``finite_population=True`` (default) the estimators are corrected for it, so they are unbiased
for ``|G|^2`` and ``tr(Sigma)`` of the fixed dataset (as N grows the correction vanishes and they are
McCandlish's formulas). Each pair nests the small batch in the big one (the big batch's gradient
reuses the small one's), which does not change the expectations and lowers the variance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .functional import LossFunction
from .params import Params
from .progress import ProgressFn
from .results import clean as _clean
from .results import unclean


def _as_loss_fn(obj: Any) -> LossFunction:
    if not isinstance(obj, LossFunction):
        raise ValueError(
            f"expected a LossFunction, got {type(obj).__name__} (for a run: landscape_core.analyses.noise)"
        )
    return obj


def _unclean_row(row: Mapping[str, Any]) -> dict:
    """A per-layer / per-size row read back from JSON: ``None`` numbers become ``nan``."""
    return {k: (float("nan") if v is None else v) for k, v in row.items()}


def _groups(params: Params, per_layer: bool) -> list[tuple[str, list[str]]]:
    """Parameter names grouped by module (``net.1.weight`` and ``net.1.bias`` -> ``net.1``)."""
    if not per_layer:
        return [("all", list(params))]
    out: dict[str, list[str]] = {}
    for k in params:
        out.setdefault(k.rsplit(".", 1)[0] if "." in k else k, []).append(k)
    return list(out.items())


def _mean_grad(loss_fn: LossFunction, theta: Params, idx: Tensor) -> Params:
    """Gradient of the mean loss over examples ``idx`` (chunked by the closure's batch size, weighted)."""
    p = {k: v.detach().requires_grad_(True) for k, v in theta.items()}
    n, bs = len(idx), loss_fn.batch_size
    total = None
    for s in range(0, n, bs):
        j = idx[s : s + bs]
        term = (len(j) / n) * loss_fn.batch_loss(p, loss_fn.X[j], loss_fn.y[j])
        total = term if total is None else total + term
    grads = torch.autograd.grad(total, list(p.values()))
    return {k: g.detach() for k, g in zip(p, grads)}


def _sq_norms(g: Params, groups: list[tuple[str, list[str]]]) -> np.ndarray:
    return np.array([sum(float((g[k].double() ** 2).sum()) for k in names) for _, names in groups])


def _pair_estimates(
    sq_small: np.ndarray, sq_big: np.ndarray, b_small: int, b_big: int, n: int, finite_population: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pair ``(g2, trace_sigma)`` estimates (arrays shaped like the inputs)."""
    g2 = (b_big * sq_big - b_small * sq_small) / (b_big - b_small)
    s = (sq_small - sq_big) / (1.0 / b_small - 1.0 / b_big)
    if finite_population:
        g2 = g2 + s / n
        s = s * (n - 1) / n
    return g2, s


def _bootstrap_ratio(num: np.ndarray, den: np.ndarray, *, n_boot: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of ``mean(num) / mean(den)`` resampling the pairs."""
    m = len(num)
    if m < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, m, size=(n_boot, m))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = num[idx].mean(1) / den[idx].mean(1)
    ratios = ratios[np.isfinite(ratios)]
    if len(ratios) == 0:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    return float(np.quantile(ratios, a)), float(np.quantile(ratios, 1 - a))


@dataclass(frozen=True)
class NoiseResult:
    """Gradient noise scale of one set of weights.

    Attributes:
        b_simple: ``trace_sigma / g2`` (ratio of the pair-averaged estimates).
        g2: estimate of ``|G|^2`` (squared norm of the full-data gradient).
        trace_sigma: estimate of ``tr(Sigma)`` (per-example gradient covariance).
        ci_low, ci_high: 95% bootstrap interval of ``b_simple`` over the batch pairs.
        g2_se, trace_sigma_se: standard errors of the two estimates (over pairs).
        n_examples: data size ``N``.
        per_layer: per module ``{"name", "b_simple", "g2", "trace_sigma", "ci_low", "ci_high"}``, or ``None``.
        settings: batch sizes, number of pairs, seed, finite-population correction.
    """

    b_simple: float
    g2: float
    trace_sigma: float
    ci_low: float
    ci_high: float
    g2_se: float
    trace_sigma_se: float
    n_examples: int
    per_layer: tuple[dict, ...] | None = None
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {
            "b_simple": _clean(self.b_simple),
            "ci": [_clean(self.ci_low), _clean(self.ci_high)],
            "g2": _clean(self.g2),
            "trace_sigma": _clean(self.trace_sigma),
            "g2_se": _clean(self.g2_se),
            "trace_sigma_se": _clean(self.trace_sigma_se),
            "n_examples": self.n_examples,
            "settings": dict(self.settings),
        }
        if self.per_layer is not None:
            out["per_layer"] = [{k: (_clean(v) if isinstance(v, float) else v) for k, v in row.items()} for row in self.per_layer]
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NoiseResult:
        """Inverse of :meth:`to_dict` (``None`` values come back as ``nan``)."""
        layers = d.get("per_layer")
        return cls(
            b_simple=unclean(d["b_simple"]), g2=unclean(d["g2"]), trace_sigma=unclean(d["trace_sigma"]),
            ci_low=unclean(d["ci"][0]), ci_high=unclean(d["ci"][1]), g2_se=unclean(d["g2_se"]),
            trace_sigma_se=unclean(d["trace_sigma_se"]), n_examples=int(d["n_examples"]),
            per_layer=None if layers is None else tuple(_unclean_row(r) for r in layers),
            settings=dict(d.get("settings") or {}),
        )


def gradient_noise_scale(
    loss_fn: LossFunction | Any,
    *,
    b_small: int = 32,
    b_big: int = 512,
    n_batches: int = 20,
    seed: int = 0,
    per_layer: bool = False,
    finite_population: bool = True,
    n_bootstrap: int = 2000,
    params: Params | None = None,
    progress: ProgressFn | None = None,
) -> NoiseResult:
    """McCandlish et al.'s two-batch-size estimate of ``B_simple = tr(Sigma) / |G|^2``.

    Args:
        loss_fn: a ``LossFunction`` (its data, eval mode); for a run use
            :func:`landscape_core.analyses.noise.gradient_noise_scale`.
        b_small, b_big: the two batch sizes, ``1 <= b_small < b_big <= N``.
        n_batches: number of (small, big) batch pairs (>= 2).
        seed: batch sampling and bootstrap seed.
        per_layer: also estimate per module (weight and bias together).
        finite_population: correct for sampling without replacement from ``N`` examples.
        n_bootstrap: bootstrap resamples for the CI.
        params: the weights (default ``loss_fn.params0``).
        progress: ``progress(fraction, message)``.
    """
    fn = _as_loss_fn(loss_fn)
    n = fn.n
    if not 1 <= b_small < b_big:
        raise ValueError(f"need 1 <= b_small < b_big, got b_small={b_small}, b_big={b_big}")
    if b_big > n:
        raise ValueError(f"b_big={b_big} exceeds the number of examples ({n}); lower --b-big or use more samples")
    if n_batches < 2:
        raise ValueError(f"n_batches must be >= 2, got {n_batches}")
    theta = fn.params0 if params is None else params
    groups = _groups(theta, per_layer)
    gen = torch.Generator().manual_seed(int(seed))
    sq_small = np.empty((n_batches, len(groups)))
    sq_big = np.empty((n_batches, len(groups)))
    for i in range(n_batches):
        perm = torch.randperm(n, generator=gen).to(fn.X.device)
        g_s = _mean_grad(fn, theta, perm[:b_small])
        g_r = _mean_grad(fn, theta, perm[b_small:b_big])
        w = b_small / b_big
        g_b = {k: w * g_s[k] + (1 - w) * g_r[k] for k in g_s}
        sq_small[i], sq_big[i] = _sq_norms(g_s, groups), _sq_norms(g_b, groups)
        if progress is not None:
            progress((i + 1) / n_batches, f"batch pair {i + 1}/{n_batches}")
    g2_pairs, s_pairs = _pair_estimates(sq_small, sq_big, b_small, b_big, n, finite_population)

    def summarise(g2: np.ndarray, s: np.ndarray, boot_seed: int) -> dict:
        mg, ms = float(g2.mean()), float(s.mean())
        lo, hi = _bootstrap_ratio(s, g2, n_boot=n_bootstrap, seed=boot_seed)
        return {
            "b_simple": ms / mg if mg != 0 else float("nan"), "g2": mg, "trace_sigma": ms, "ci_low": lo, "ci_high": hi,
            "g2_se": float(g2.std(ddof=1) / math.sqrt(len(g2))), "trace_sigma_se": float(s.std(ddof=1) / math.sqrt(len(s))),
        }

    total = summarise(g2_pairs.sum(1), s_pairs.sum(1), seed)
    layers = None
    if per_layer:
        layers = tuple(
            {"name": name, **{k: v for k, v in summarise(g2_pairs[:, j], s_pairs[:, j], seed + 1 + j).items()}}
            for j, (name, _) in enumerate(groups)
        )
    settings = {
        "b_small": b_small, "b_big": b_big, "n_batches": n_batches, "seed": seed,
        "finite_population": finite_population, "n_bootstrap": n_bootstrap,
    }
    return NoiseResult(
        b_simple=total["b_simple"], g2=total["g2"], trace_sigma=total["trace_sigma"], ci_low=total["ci_low"],
        ci_high=total["ci_high"], g2_se=total["g2_se"], trace_sigma_se=total["trace_sigma_se"], n_examples=n,
        per_layer=layers, settings=settings,
    )


@dataclass(frozen=True)
class NoiseSweep:
    """Squared minibatch-gradient norms across batch sizes, and the noise scale they imply.

    Attributes:
        batch_sizes: the sizes measured (sizes larger than the data are skipped, see ``skipped``).
        mean_sq_norm, sem: mean and standard error of ``|G_B|^2`` over ``n_batches`` draws per size.
        predicted: the fitted model ``g2 + trace_sigma * x_B`` at each size, with
            ``x_B = N/(N-1) (1/B - 1/N)`` (``1/B`` without the finite-population correction).
        g2, trace_sigma, b_simple: the weighted least-squares fit of that line over all sizes.
        ci_low, ci_high: 95% bootstrap interval of ``b_simple`` (draws resampled within each size).
        per_size: per size ``B`` below the largest, the two-batch-size estimate of ``(B, B_max)``.
        skipped: requested sizes that exceed the data.
    """

    batch_sizes: tuple[int, ...]
    mean_sq_norm: tuple[float, ...]
    sem: tuple[float, ...]
    predicted: tuple[float, ...]
    g2: float
    trace_sigma: float
    b_simple: float
    ci_low: float
    ci_high: float
    per_size: tuple[dict, ...]
    n_examples: int
    skipped: tuple[int, ...] = ()
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "batch_sizes": list(self.batch_sizes),
            "mean_sq_norm": [_clean(v) for v in self.mean_sq_norm],
            "sem": [_clean(v) for v in self.sem],
            "predicted": [_clean(v) for v in self.predicted],
            "g2": _clean(self.g2),
            "trace_sigma": _clean(self.trace_sigma),
            "b_simple": _clean(self.b_simple),
            "ci": [_clean(self.ci_low), _clean(self.ci_high)],
            "per_size": [{k: (_clean(v) if isinstance(v, float) else v) for k, v in row.items()} for row in self.per_size],
            "n_examples": self.n_examples,
            "skipped": list(self.skipped),
            "settings": dict(self.settings),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NoiseSweep:
        """Inverse of :meth:`to_dict` (``None`` values come back as ``nan``)."""
        return cls(
            batch_sizes=tuple(int(b) for b in d["batch_sizes"]),
            mean_sq_norm=tuple(unclean(v) for v in d["mean_sq_norm"]), sem=tuple(unclean(v) for v in d["sem"]),
            predicted=tuple(unclean(v) for v in d["predicted"]), g2=unclean(d["g2"]),
            trace_sigma=unclean(d["trace_sigma"]), b_simple=unclean(d["b_simple"]), ci_low=unclean(d["ci"][0]),
            ci_high=unclean(d["ci"][1]), per_size=tuple(_unclean_row(r) for r in d["per_size"]),
            n_examples=int(d["n_examples"]), skipped=tuple(int(b) for b in d.get("skipped") or ()),
            settings=dict(d.get("settings") or {}),
        )


def _fit_line(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Weighted least squares ``y ~ a + b x``; returns ``(a, b)``."""
    A = np.stack([np.ones_like(x), x], 1) * np.sqrt(w)[:, None]
    coef, *_ = np.linalg.lstsq(A, y * np.sqrt(w), rcond=None)
    return float(coef[0]), float(coef[1])


def noise_vs_batch_size(
    loss_fn: LossFunction | Any,
    batch_sizes: Sequence[int] = (16, 32, 64, 128, 256),
    *,
    n_batches: int = 20,
    seed: int = 0,
    finite_population: bool = True,
    n_bootstrap: int = 1000,
    params: Params | None = None,
    progress: ProgressFn | None = None,
) -> NoiseSweep:
    """``E |G_B|^2`` measured at several batch sizes, the line ``|G|^2 + tr(Sigma) x_B`` fitted through it.

    Every size gets ``n_batches`` independent batches (without replacement). The intercept and slope
    of the weighted fit are estimates of ``|G|^2`` and ``tr(Sigma)`` (their ratio is ``B_simple``);
    ``per_size`` gives McCandlish's two-size estimate of each size against the largest one.

    Args:
        loss_fn: a ``LossFunction``; for a run use :func:`landscape_core.analyses.noise.noise_vs_batch_size`.
        batch_sizes: sizes to measure (>= 1; those above ``N`` are skipped; at least two must remain).
        n_batches: draws per size (>= 2).
        seed: sampling and bootstrap seed.
        finite_population: use ``x_B = N/(N-1)(1/B - 1/N)`` (without-replacement sampling) instead of ``1/B``.
        n_bootstrap: bootstrap resamples for the CI.
        params: the weights (default ``loss_fn.params0``).
        progress: ``progress(fraction, message)``.
    """
    fn = _as_loss_fn(loss_fn)
    n = fn.n
    sizes = sorted({int(b) for b in batch_sizes})
    if not sizes or sizes[0] < 1:
        raise ValueError(f"batch sizes must be >= 1, got {list(batch_sizes)}")
    if n_batches < 2:
        raise ValueError(f"n_batches must be >= 2, got {n_batches}")
    skipped = tuple(b for b in sizes if b > n)
    sizes = [b for b in sizes if b <= n]
    if len(sizes) < 2:
        raise ValueError(f"need at least two batch sizes <= the number of examples ({n}), got {list(batch_sizes)}")
    theta = fn.params0 if params is None else params
    groups = _groups(theta, False)
    gen = torch.Generator().manual_seed(int(seed))
    sq = np.empty((len(sizes), n_batches))
    total_work = len(sizes) * n_batches
    for i, b in enumerate(sizes):
        for j in range(n_batches):
            idx = torch.randperm(n, generator=gen)[:b].to(fn.X.device)
            sq[i, j] = _sq_norms(_mean_grad(fn, theta, idx), groups)[0]
            if progress is not None:
                progress((i * n_batches + j + 1) / total_work, f"batch size {b}: draw {j + 1}/{n_batches}")
    b_arr = np.asarray(sizes, dtype=np.float64)
    x = n / (n - 1) * (1 / b_arr - 1 / n) if (finite_population and n > 1) else 1 / b_arr
    mean, sem = sq.mean(1), sq.std(1, ddof=1) / math.sqrt(n_batches)
    w = 1.0 / np.maximum(sem**2, 1e-300 + 1e-12 * float(np.max(mean**2)))

    def fit(m: np.ndarray) -> tuple[float, float]:
        return _fit_line(x, m, w)

    g2, s = fit(mean)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_bootstrap):
        idx = rng.integers(0, n_batches, size=(len(sizes), n_batches))
        a, c = fit(np.take_along_axis(sq, idx, 1).mean(1))
        if a != 0 and math.isfinite(c / a):
            boot.append(c / a)
    lo, hi = (float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))) if boot else (float("nan"),) * 2
    per_size = []
    bmax = sizes[-1]
    for i, b in enumerate(sizes[:-1]):
        g2_i, s_i = _pair_estimates(mean[i : i + 1], mean[-1:], b, bmax, n, finite_population)
        per_size.append({
            "b_small": b, "b_big": bmax, "g2": float(g2_i[0]), "trace_sigma": float(s_i[0]),
            "b_simple": float(s_i[0] / g2_i[0]) if g2_i[0] != 0 else float("nan"),
        })
    settings = {
        "n_batches": n_batches, "seed": seed, "finite_population": finite_population, "n_bootstrap": n_bootstrap,
    }
    return NoiseSweep(
        batch_sizes=tuple(sizes), mean_sq_norm=tuple(mean.tolist()), sem=tuple(sem.tolist()),
        predicted=tuple((g2 + s * x).tolist()), g2=g2, trace_sigma=s, b_simple=s / g2 if g2 != 0 else float("nan"),
        ci_low=lo, ci_high=hi, per_size=tuple(per_size), n_examples=n, skipped=skipped, settings=settings,
    )


__all__ = ["NoiseResult", "NoiseSweep", "gradient_noise_scale", "noise_vs_batch_size"]
