"""Mode connectivity: loss along linear paths and trained quadratic Bezier curves between two minima.

Linear path (Goodfellow et al. 2015; Frankle et al. 2020): ``theta(t) = (1 - t) theta_A + t theta_B``.
The **barrier** is the largest excess of the path over the chord between the endpoint losses,

    barrier = max_t [ L(theta(t)) - ((1 - t) L_A + t L_B) ],

so it is 0 for a convex loss (the chord lies above the graph) and positive when the path climbs a
ridge. ``barrier_t`` is where the maximum is reached.

Quadratic Bezier curve (Garipov et al. 2018, "Loss Surfaces, Mode Connectivity, and Fast Ensembling"):

    phi(t) = (1 - t)^2 theta_A + 2 t (1 - t) C + t^2 theta_B,

with the endpoints fixed and the control point ``C`` trained to minimise E_{t ~ U(0, 1)} L(phi(t)):
each step draws one ``t`` and one minibatch and takes an optimizer step on ``C`` only. ``C`` starts at
the midpoint, where the curve *is* the linear path.

BatchNorm: every point of a path is a different network, so the running statistics of either
endpoint are wrong in between. When the model has BatchNorm, each path point gets its own statistics,
recomputed by a forward pass in train mode over fixed data with cumulative averaging
(``momentum=None``) on a private copy of the model, and is then evaluated in eval mode with those
buffers. The caller's model and buffers are never touched.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from .functional import LossFunction
from .models import has_batchnorm
from .params import Params, detached_buffers
from .progress import ProgressFn
from .results import clean as _clean
from .results import unclean

CurveKind = Literal["linear", "bezier"]


# --- results ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PathResult:
    """Loss along a path ``t in [0, 1]`` between two parameter vectors.

    Attributes:
        ts: the path parameters (0 = A, 1 = B).
        loss, accuracy: on the loss function's data at each ``t``.
        test_loss, test_accuracy: on the optional second data set (``None`` when not asked).
        barrier: ``max_t [L(t) - ((1 - t) L_A + t L_B)]`` (>= 0 since the endpoints are on the path).
        barrier_t: the ``t`` where the barrier is reached.
        endpoint_losses: ``(L_A, L_B)``, the path's own values at ``t = 0`` and ``t = 1``.
        test_barrier: the same barrier on the second data set (``None`` when not asked).
        recalibrated_bn: whether each point got its own BatchNorm statistics.
    """

    ts: tuple[float, ...]
    loss: tuple[float, ...]
    accuracy: tuple[float, ...]
    test_loss: tuple[float, ...] | None
    test_accuracy: tuple[float, ...] | None
    barrier: float
    barrier_t: float
    endpoint_losses: tuple[float, float]
    test_barrier: float | None = None
    recalibrated_bn: bool = False

    @property
    def excess(self) -> np.ndarray:
        """``L(t) - chord(t)`` at every ``t`` (the barrier is its maximum)."""
        return _excess(np.asarray(self.ts), np.asarray(self.loss))

    def to_dict(self) -> dict:
        out: dict[str, Any] = {
            "ts": list(self.ts),
            "loss": [_clean(v) for v in self.loss],
            "accuracy": [_clean(v) for v in self.accuracy],
            "excess": [_clean(v) for v in self.excess],
            "barrier": _clean(self.barrier),
            "barrier_t": self.barrier_t,
            "endpoint_losses": [_clean(v) for v in self.endpoint_losses],
            "recalibrated_bn": self.recalibrated_bn,
        }
        if self.test_loss is not None:
            out["test_loss"] = [_clean(v) for v in self.test_loss]
            out["test_accuracy"] = [_clean(v) for v in (self.test_accuracy or ())]
            out["test_barrier"] = None if self.test_barrier is None else _clean(self.test_barrier)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PathResult:
        """Inverse of :meth:`to_dict` (``None`` values come back as ``nan``; ``excess`` is derived)."""
        test = d.get("test_loss")
        return cls(
            ts=tuple(float(t) for t in d["ts"]), loss=tuple(unclean(v) for v in d["loss"]),
            accuracy=tuple(unclean(v) for v in d["accuracy"]),
            test_loss=None if test is None else tuple(unclean(v) for v in test),
            test_accuracy=None if test is None else tuple(unclean(v) for v in d.get("test_accuracy") or ()),
            barrier=unclean(d["barrier"]), barrier_t=float(d["barrier_t"]),
            endpoint_losses=tuple(unclean(v) for v in d["endpoint_losses"]),  # type: ignore[arg-type]
            test_barrier=None if d.get("test_barrier") is None else float(d["test_barrier"]),
            recalibrated_bn=bool(d.get("recalibrated_bn", False)),
        )


def _excess(ts: np.ndarray, loss: np.ndarray) -> np.ndarray:
    chord = (1.0 - ts) * loss[0] + ts * loss[-1]
    return loss - chord


def barrier_of(ts: Sequence[float], loss: Sequence[float]) -> tuple[float, float]:
    """``(barrier, barrier_t)`` of a sampled path whose first/last points are the endpoints."""
    ts_a, loss_a = np.asarray(ts, dtype=np.float64), np.asarray(loss, dtype=np.float64)
    ex = _excess(ts_a, loss_a)
    i = int(np.nanargmax(ex)) if np.isfinite(ex).any() else 0
    return float(ex[i]), float(ts_a[i])


# --- BatchNorm recalibration ----------------------------------------------------------------------


class _BNRecalibrator:
    """Recompute BatchNorm running statistics for arbitrary weights, on a private copy of the model.

    For every call the copy gets the weights, its BN statistics are reset, ``momentum`` is set to
    ``None`` (cumulative average over the batches seen) and the BN layers alone are switched to train
    mode for a forward pass over ``X``; the resulting buffers are returned as a new dict.
    """

    def __init__(self, model: nn.Module, X: Tensor, *, batch_size: int | None = None) -> None:
        self.model = copy.deepcopy(model).eval()
        p = next(self.model.parameters())
        self.X = X.to(p.device, p.dtype if X.is_floating_point() else None)
        bs = len(self.X) if batch_size is None else max(1, min(batch_size, len(self.X)))
        self.batches = [self.X[i : i + bs] for i in range(0, len(self.X), bs)]
        self.bns = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if len(self.X) < 2:
            raise ValueError(f"BatchNorm recalibration needs at least 2 examples, got {len(self.X)}")
        for m in self.bns:
            m.momentum = None

    @torch.no_grad()
    def __call__(self, params: Mapping[str, Tensor]) -> Params:
        named = dict(self.model.named_parameters())
        for k, v in params.items():
            named[k].copy_(v)
        for m in self.bns:
            m.reset_running_stats()
            m.train()
        for xb in self.batches:
            if len(xb) >= 2:
                self.model(xb)
        for m in self.bns:
            m.eval()
        return detached_buffers(self.model)


def recalibrate_bn(model: nn.Module, params: Mapping[str, Tensor], X: Tensor, *, batch_size: int | None = None) -> Params:
    """BatchNorm buffers for ``model`` evaluated at ``params``, recomputed over ``X``.

    The statistics are the cumulative average over the batches of ``X`` (one batch by default, which
    gives exactly the mean and unbiased variance of the pre-BN activations over ``X``). ``model`` is
    not modified (a private copy is used).
    """
    return _BNRecalibrator(model, X, batch_size=batch_size)(params)


def _with_buffers(loss_fn: LossFunction, buffers: Params | None) -> LossFunction:
    """A shallow view of ``loss_fn`` that evaluates with other buffers (data and model shared)."""
    if buffers is None:
        return loss_fn
    view = copy.copy(loss_fn)
    view.buffers = buffers
    return view


# --- linear path -----------------------------------------------------------------------------------


def _check_pair(theta_a: Mapping[str, Tensor], theta_b: Mapping[str, Tensor]) -> None:
    if theta_a.keys() != theta_b.keys():
        raise ValueError(f"the two parameter sets differ in names: {sorted(set(theta_a) ^ set(theta_b))[:5]}")
    for k in theta_a:
        if theta_a[k].shape != theta_b[k].shape:
            raise ValueError(f"parameter {k!r} has shape {tuple(theta_a[k].shape)} in A but {tuple(theta_b[k].shape)} in B")


def _ts(n_points: int) -> np.ndarray:
    if n_points < 2:
        raise ValueError(f"n_points must be >= 2, got {n_points}")
    return np.linspace(0.0, 1.0, n_points)


def _evaluate_curve(
    loss_fn: LossFunction,
    point: Callable[[float], Params],
    ts: np.ndarray,
    *,
    recalibrate: tuple[Tensor, Tensor] | None,
    test_fn: LossFunction | None,
    progress: ProgressFn | None = None,
) -> PathResult:
    recal = None
    if recalibrate is not None and has_batchnorm(loss_fn.model):
        recal = _BNRecalibrator(loss_fn.model, recalibrate[0])
    loss, acc, tloss, tacc = [], [], [], []
    for i, t in enumerate(ts):
        theta = point(float(t))
        buffers = recal(theta) if recal is not None else None
        lv, av = _with_buffers(loss_fn, buffers).evaluate(theta)
        loss.append(lv)
        acc.append(av)
        if test_fn is not None:
            lt, at = _with_buffers(test_fn, buffers).evaluate(theta)
            tloss.append(lt)
            tacc.append(at)
        if progress is not None:
            progress((i + 1) / len(ts), f"path point {i + 1}/{len(ts)}")
    barrier, barrier_t = barrier_of(ts, loss)
    test_barrier = barrier_of(ts, tloss)[0] if test_fn is not None else None
    return PathResult(
        ts=tuple(float(t) for t in ts),
        loss=tuple(loss),
        accuracy=tuple(acc),
        test_loss=tuple(tloss) if test_fn is not None else None,
        test_accuracy=tuple(tacc) if test_fn is not None else None,
        barrier=barrier,
        barrier_t=barrier_t,
        endpoint_losses=(loss[0], loss[-1]),
        test_barrier=test_barrier,
        recalibrated_bn=recal is not None,
    )


def _interp(theta_a: Mapping[str, Tensor], theta_b: Mapping[str, Tensor], t: float) -> Params:
    if t == 0.0:
        return {k: v.detach().clone() for k, v in theta_a.items()}
    if t == 1.0:
        return {k: v.detach().clone() for k, v in theta_b.items()}
    return {k: ((1.0 - t) * theta_a[k] + t * theta_b[k]).detach() for k in theta_a}


def linear_path(
    loss_fn: LossFunction,
    theta_a: Mapping[str, Tensor],
    theta_b: Mapping[str, Tensor],
    *,
    n_points: int = 21,
    recalibrate_bn: tuple[Tensor, Tensor] | None = None,
    test_fn: LossFunction | None = None,
    progress: ProgressFn | None = None,
) -> PathResult:
    """Loss along ``theta(t) = (1 - t) theta_A + t theta_B`` at ``n_points`` evenly spaced ``t``.

    Args:
        loss_fn: the loss closure (its data and buffers are used).
        theta_a, theta_b: the endpoints (the points at ``t = 0`` and ``t = 1`` are exactly these).
        n_points: number of ``t`` values, endpoints included (>= 2).
        recalibrate_bn: ``(X, y)`` to recompute BatchNorm statistics at every point (ignored when the
            model has no BatchNorm). Without it all points use ``loss_fn``'s buffers.
        test_fn: an optional second closure (e.g. the test split) evaluated at the same points.
        progress: ``progress(fraction, message)``.

    Returns:
        :class:`PathResult` with the barrier ``max_t [L(t) - ((1 - t) L_A + t L_B)]``.
    """
    _check_pair(theta_a, theta_b)
    return _evaluate_curve(
        loss_fn, lambda t: _interp(theta_a, theta_b, t), _ts(n_points),
        recalibrate=recalibrate_bn, test_fn=test_fn, progress=progress,
    )


# --- Bezier curve ----------------------------------------------------------------------------------


def bezier_point(theta_a: Mapping[str, Tensor], control: Mapping[str, Tensor], theta_b: Mapping[str, Tensor], t: float) -> Params:
    """``phi(t) = (1 - t)^2 A + 2 t (1 - t) C + t^2 B`` (exactly A at t=0 and B at t=1)."""
    if t == 0.0:
        return {k: v.detach().clone() for k, v in theta_a.items()}
    if t == 1.0:
        return {k: v.detach().clone() for k, v in theta_b.items()}
    a, c, b = (1.0 - t) ** 2, 2.0 * t * (1.0 - t), t**2
    return {k: a * theta_a[k] + c * control[k] + b * theta_b[k] for k in theta_a}


@dataclass(frozen=True)
class BezierResult:
    """A trained quadratic Bezier curve.

    Attributes:
        control: the trained control point ``C`` (a detached parameter dict).
        path: the loss along the curve (:class:`PathResult`).
        train_history: ``[{"step", "loss"}]``, the mean training loss over windows of steps.
        settings: the training settings.
    """

    control: Params
    path: PathResult
    train_history: tuple[dict, ...]
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"path": self.path.to_dict(), "train_history": list(self.train_history), "settings": dict(self.settings)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BezierResult:
        """Inverse of :meth:`to_dict`; the control point's tensors are not in the JSON form (empty dict)."""
        return cls(control={}, path=PathResult.from_dict(d["path"]), train_history=tuple(d["train_history"]),
                   settings=dict(d.get("settings") or {}))


def bezier_curve(
    loss_fn: LossFunction,
    theta_a: Mapping[str, Tensor],
    theta_b: Mapping[str, Tensor],
    *,
    steps: int = 300,
    lr: float = 1e-2,
    batch_size: int = 128,
    optimizer: Literal["adam", "sgd"] = "adam",
    seed: int = 0,
    n_points: int = 21,
    init: Literal["midpoint", "noisy"] = "midpoint",
    test_fn: LossFunction | None = None,
    progress: ProgressFn | None = None,
) -> BezierResult:
    """Train the control point of a quadratic Bezier curve between two minima (Garipov et al. 2018).

    Each step draws ``t ~ U(0, 1)`` and a minibatch (without replacement, reshuffled each epoch) from
    ``loss_fn``'s data and updates ``C`` alone to lower ``L(phi(t))``; the endpoints stay fixed. With
    BatchNorm the training forward passes use batch statistics (train-mode BN on a private copy; the
    running statistics it would update are thrown away) and every evaluated point of the finished
    curve gets recalibrated statistics over ``loss_fn``'s data.

    Args:
        loss_fn: the loss closure; its data are the training set of the curve.
        theta_a, theta_b: the fixed endpoints.
        steps: optimizer steps on ``C``.
        lr: learning rate.
        batch_size: minibatch size (capped at the data size).
        optimizer: ``"adam"`` or ``"sgd"`` (momentum 0.9).
        seed: seeds ``t``, the minibatches and the ``"noisy"`` initialisation.
        n_points: points at which the finished curve is evaluated.
        init: ``"midpoint"`` (C = (A + B) / 2: the curve starts as the linear path) or ``"noisy"``
            (the midpoint plus Gaussian noise of 10% of ``||B - A|| / sqrt(dim)`` per entry).
        test_fn: optional second closure evaluated along the finished curve.
        progress: ``progress(fraction, message)``.
    """
    _check_pair(theta_a, theta_b)
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"unknown optimizer {optimizer!r}; choose 'adam' or 'sgd'")
    if init not in ("midpoint", "noisy"):
        raise ValueError(f"unknown init {init!r}; choose 'midpoint' or 'noisy'")
    gen = torch.Generator().manual_seed(int(seed))
    a = {k: v.detach() for k, v in theta_a.items()}
    b = {k: v.detach() for k, v in theta_b.items()}
    control = {k: (0.5 * (a[k] + b[k])).clone() for k in a}
    if init == "noisy":
        dist = math.sqrt(sum(float(((b[k] - a[k]).double() ** 2).sum()) for k in a))
        dim = sum(v.numel() for v in a.values())
        sigma = 0.1 * dist / math.sqrt(max(dim, 1))
        for k in sorted(control):
            noise = torch.randn(control[k].shape, generator=gen, dtype=torch.float64)
            control[k] = control[k] + (sigma * noise).to(control[k].dtype).to(control[k].device)
    for v in control.values():
        v.requires_grad_(True)
    opt: torch.optim.Optimizer
    if optimizer == "adam":
        opt = torch.optim.Adam(list(control.values()), lr=lr)
    else:
        opt = torch.optim.SGD(list(control.values()), lr=lr, momentum=0.9)

    bn = has_batchnorm(loss_fn.model)
    train_fn = loss_fn
    if bn:  # batch statistics while training; running stats go to throwaway buffers
        train_fn = copy.copy(loss_fn)
        train_fn.model = copy.deepcopy(loss_fn.model)
        for m in train_fn.model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.train()
        train_fn.buffers = {k: v.clone() for k, v in loss_fn.buffers.items()}
    X, y = loss_fn.X, loss_fn.y
    n = len(y)
    bs = min(batch_size, n)
    if bn and bs < 2:
        raise ValueError(f"batch_size must be >= 2 with BatchNorm, got {batch_size}")
    perm, pos = torch.randperm(n, generator=gen), 0
    window = max(1, steps // 100)
    history: list[dict] = []
    acc_loss, acc_n = 0.0, 0
    total_work = steps + n_points
    for step in range(steps):
        if pos + bs > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        idx = perm[pos : pos + bs].to(X.device)
        pos += bs
        t = float(torch.rand((), generator=gen, dtype=torch.float64))
        opt.zero_grad(set_to_none=True)
        loss = train_fn.batch_loss(bezier_point(a, control, b, t), X[idx], y[idx])
        loss.backward()
        opt.step()
        acc_loss += float(loss.detach())
        acc_n += 1
        if acc_n == window or step == steps - 1:
            history.append({"step": step + 1, "loss": acc_loss / acc_n})
            acc_loss, acc_n = 0.0, 0
        if progress is not None and (step % window == 0 or step == steps - 1):
            progress((step + 1) / total_work, f"Bezier step {step + 1}/{steps}")
    ctrl = {k: v.detach().clone() for k, v in control.items()}

    def sub_progress(f: float, msg: str) -> None:
        if progress is not None:
            progress((steps + f * n_points) / total_work, msg)

    path = _evaluate_curve(
        loss_fn, lambda t: bezier_point(a, ctrl, b, t), _ts(n_points),
        recalibrate=(X, y) if bn else None, test_fn=test_fn, progress=sub_progress,
    )
    settings = {
        "steps": steps, "lr": lr, "batch_size": bs, "optimizer": optimizer, "seed": seed, "init": init,
        "n_points": n_points,
    }
    return BezierResult(control=ctrl, path=path, train_history=tuple(history), settings=settings)


def check_compatible(meta_a: Mapping[str, Any], meta_b: Mapping[str, Any]) -> None:
    """Raise ValueError unless two runs share the model spec and the dataset spec."""
    from .data import DatasetSpec

    name_a, name_b = meta_a.get("name", "A"), meta_b.get("name", "B")
    if meta_a.get("model") != meta_b.get("model"):
        raise ValueError(
            f"runs {name_a!r} and {name_b!r} have different model specs "
            f"({_short(meta_a.get('model'))} vs {_short(meta_b.get('model'))}); connect needs the same architecture"
        )
    da, db = meta_a.get("dataset"), meta_b.get("dataset")
    try:
        same = DatasetSpec.from_dict(da) == DatasetSpec.from_dict(db)
    except (TypeError, ValueError, AttributeError):
        same = da == db
    if not same:
        raise ValueError(
            f"runs {name_a!r} and {name_b!r} were trained on different datasets ({_short(da)} vs {_short(db)})"
        )


def _short(spec: Any) -> str:
    s = str(spec)
    return s if len(s) <= 120 else s[:117] + "..."


def bezier_plane(theta_a: Params, theta_b: Params, control: Params, ts: Sequence[float]) -> dict | None:
    """Coordinates of A, B, C and of the curve ``phi(t)`` in the plane through A, B, C.

    Origin A, first unit axis ``(B - A)/||B - A||``, second the unit part of ``C - A`` orthogonal to it
    (``landscape_core.directions.plane_through``). The curve lies in that plane, so its coordinates are
    exact: ``phi(t) - A = 2 t (1 - t) (C - A) + t^2 (B - A)``. ``None`` when C is on the line AB
    (e.g. an untrained curve).
    """
    from .directions import plane_through

    try:
        _, _, _, coords = plane_through(theta_a, theta_b, control)
    except ValueError:
        return None
    cb, cc = coords[1], coords[2]
    curve = [(2 * t * (1 - t) * cc + t * t * cb).tolist() for t in ts]
    return {
        "origin": "a",
        "a": coords[0].tolist(),
        "b": cb.tolist(),
        "c": cc.tolist(),
        "curve": curve,
        "ts": [float(t) for t in ts],
    }


__all__ = [
    "BezierResult", "PathResult", "barrier_of", "bezier_curve", "bezier_plane", "bezier_point", "check_compatible",
    "linear_path", "recalibrate_bn",
]
