"""Which flatness measures survive a function-preserving rescale? (Dinh et al. 2017)

Scaling a ReLU layer's weights and bias by ``c > 0`` and the next layer's weights by ``1/c`` leaves the
network function unchanged (``relu(c x) = c relu(x)``). The filter-normalised perturbation profile and
adaptive sharpness do not move; epsilon-sharpness (the ``+1`` in its box), the raw profile and the top
Hessian eigenvalue (its blocks scale by ``c^2`` and ``1/c^2``) do. :func:`invariance_demo` measures each
before and after and states, with the tolerance used, which ones were observed unchanged.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..data import analysis_subset
from ..flatness import adaptive_sharpness, epsilon_sharpness, perturbation_profile
from ..functional import LossFunction
from ..hessian import hessian_operator
from ..lanczos import lanczos
from ..models import build_model
from ..runs import Run
from .resolve import as_run

#: a measure counts as "unchanged" by the rescale when its relative change is below this. In float64 the
#: invariant measures move by ~1e-10 (rounding of a few thousand-term sums); the non-invariant ones by
#: O(1) for ``c = 10``, so any threshold between the two separates them; 1e-4 leaves room for float32.
INVARIANCE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class InvarianceRow:
    """One measure before and after the rescale."""

    name: str
    before: float
    after: float
    relative_change: float
    invariant_in_theory: bool
    note: str
    tolerance: float = INVARIANCE_TOLERANCE

    @property
    def invariant(self) -> bool:
        """Observed unchanged: ``relative_change < tolerance``."""
        return self.relative_change < self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "before": self.before, "after": self.after,
                "relative_change": self.relative_change, "invariant_in_theory": self.invariant_in_theory,
                "invariant": self.invariant, "tolerance": self.tolerance, "note": self.note}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> InvarianceRow:
        """Inverse of :meth:`to_dict` (``invariant`` is derived)."""
        return cls(d["name"], float(d["before"]), float(d["after"]), float(d["relative_change"]),
                   bool(d["invariant_in_theory"]), d["note"], float(d.get("tolerance", INVARIANCE_TOLERANCE)))


@dataclass(frozen=True)
class InvarianceResult:
    """Every measure before and after a function-preserving rescale.

    Attributes:
        c: the rescale factor.
        layer_pairs: the ``(first, second)`` layers rescaled.
        max_output_change: largest change of the network's output (should be ~0).
        loss_before, loss_after: the loss before and after (equal up to rounding).
        measures: one :class:`InvarianceRow` per measure.
        relu_substitute: the run's activation was not positively homogeneous and the demo ran on
            the same architecture and weights with ReLU.
    """

    c: float
    layer_pairs: tuple[tuple[str, ...], ...]
    max_output_change: float
    loss_before: float
    loss_after: float
    measures: tuple[InvarianceRow, ...]
    relu_substitute: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "c": self.c, "layer_pairs": [list(p) for p in self.layer_pairs],
            "max_output_change": self.max_output_change,
            "loss": {"before": self.loss_before, "after": self.loss_after},
            "measures": [m.to_dict() for m in self.measures], "relu_substitute": self.relu_substitute,
            "tolerance": INVARIANCE_TOLERANCE,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> InvarianceResult:
        """Inverse of :meth:`to_dict`."""
        return cls(
            c=float(d["c"]), layer_pairs=tuple(tuple(p) for p in d["layer_pairs"]),
            max_output_change=float(d["max_output_change"]), loss_before=float(d["loss"]["before"]),
            loss_after=float(d["loss"]["after"]), measures=tuple(InvarianceRow.from_dict(m) for m in d["measures"]),
            relu_substitute=bool(d.get("relu_substitute", False)),
        )


def _relu_twin(run: Run) -> nn.Module:
    """The run's architecture with ReLU activations, carrying the run's weights (eval mode)."""
    spec = copy.deepcopy(run.meta["model"])
    spec["kwargs"]["activation"] = "relu"
    model = build_model(spec, seed=0)
    model.load_state_dict(run.model.state_dict())
    return model.eval()


_SCALED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_HOMOGENEOUS = (
    nn.ReLU, nn.LeakyReLU, nn.Identity, nn.Flatten, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
    nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Dropout,
)


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if len(list(m.children())) == 0]


def rescale_function_preserving(
    model: nn.Module, layer_pairs: Sequence[tuple[str, str]] | None = None, c: float = 10.0
) -> nn.Module:
    """A NEW model computing the same function with rescaled weights (Dinh et al. 2017).

    For each pair ``(first, second)`` of Linear/Conv layers joined only by positively homogeneous
    modules (ReLU, LeakyReLU, max/avg pooling, flatten), ``first.weight`` and ``first.bias`` are
    multiplied by ``c`` and ``second.weight`` by ``1/c``: since ``relu(c x) = c relu(x)`` for
    ``c > 0``, the output is unchanged. Default pair: the first two such layers in module order.

    Raises:
        ValueError: ``c <= 0``, unknown layer names, or a non-homogeneous module (tanh, BatchNorm...)
            between the two layers.
    """
    if not (c > 0 and math.isfinite(c)):
        raise ValueError(f"c must be a positive number, got {c}")
    leaves = _leaves(model)
    names = [n for n, _ in leaves]
    if layer_pairs is None:
        scaled = [n for n, m in leaves if isinstance(m, _SCALED)]
        if len(scaled) < 2:
            raise ValueError(f"need two Linear/Conv layers to rescale, found {scaled}")
        layer_pairs = [(scaled[0], scaled[1])]
    new = copy.deepcopy(model)
    mods = dict(new.named_modules())
    for first, second in layer_pairs:
        for n in (first, second):
            if n not in mods or not isinstance(mods[n], _SCALED):
                raise ValueError(f"layer {n!r} is not a Linear/Conv layer of the model")
        i, j = names.index(first), names.index(second)
        if j <= i:
            raise ValueError(f"layer {second!r} does not come after {first!r}")
        for n, m in leaves[i + 1 : j]:
            if not isinstance(m, _HOMOGENEOUS) or (isinstance(m, nn.LeakyReLU) and m.negative_slope < 0):
                raise ValueError(
                    f"module {n!r} ({type(m).__name__}) between {first!r} and {second!r} is not positively "
                    "homogeneous; the rescale would change the function"
                )
        a, b = mods[first], mods[second]
        with torch.no_grad():
            a.weight.mul_(c)
            if a.bias is not None:
                a.bias.mul_(c)
            b.weight.div_(c)
    return new


def _lambda_max(loss_fn: LossFunction, *, seed: int = 0) -> float:
    """Top Hessian eigenvalue by Lanczos (full reorthogonalisation) on the Hessian operator."""
    res = lanczos(hessian_operator(loss_fn), k=1, which="largest", tol=1e-8, seed=seed)
    return float(np.max(np.asarray(res.eigenvalues, dtype=np.float64)))


def invariance_demo(
    run_or_model: Any,
    X: Tensor | None = None,
    y: Tensor | None = None,
    *,
    c: float = 10.0,
    layer_pairs: Sequence[tuple[str, str]] | None = None,
    samples: int | None = 256,
    seed: int = 0,
    radii: Sequence[float] = (0.05, 0.1, 0.2),
    n_directions: int = 10,
    epsilon: float = 1e-3,
    rho: float = 0.05,
    ascent_steps: int = 10,
    dtype: torch.dtype = torch.float64,
    substitute_relu: bool = False,
) -> InvarianceResult:
    """Each flatness measure before and after a function-preserving rescale (Dinh et al. 2017).

    Args:
        run_or_model: a loaded ``Run`` (its training data, seeded subset of ``samples``) or an
            ``nn.Module`` together with ``X, y``.
        X, y: data when a module is given.
        c: rescale factor (see :func:`rescale_function_preserving`).
        layer_pairs: layers to rescale (default: the first two Linear/Conv layers).
        samples, seed: analysis subset and the seed of directions.
        radii, n_directions: perturbation profile (filter-normalised).
        epsilon, rho, ascent_steps: epsilon-sharpness and adaptive sharpness.
        dtype: computation precision (float64 makes "unchanged" mean unchanged to ~1e-10).
        substitute_relu: for a run whose activation is not positively homogeneous (tanh...), run the
            demo on the same architecture and weights with ReLU instead (no rescaling preserves a tanh
            network) and say so in ``relu_substitute``; otherwise such a run raises ``ValueError``.

    Returns:
        An :class:`InvarianceResult`: each measure before and after, its relative change, whether it is
        invariant in theory and whether it was observed unchanged (relative change below
        ``INVARIANCE_TOLERANCE``).
    """
    relu_substitute = False
    if isinstance(run_or_model, nn.Module):
        if X is None or y is None:
            raise ValueError("invariance_demo on a model needs data X and y")
        model = run_or_model
    else:
        run = as_run(run_or_model)
        model = run.model
        X, y = analysis_subset(*run.train_data, samples, seed=seed)
    try:
        rescaled = rescale_function_preserving(model, layer_pairs, c=c)
    except ValueError as e:
        activation = (run.meta.get("model") or {}).get("kwargs", {}).get("activation") \
            if not isinstance(run_or_model, nn.Module) else None
        if not (substitute_relu and activation not in (None, "relu")):
            raise ValueError(
                f"the rescaling demo needs a ReLU network (Linear/Conv - ReLU - Linear/Conv): {e}"
            ) from None
        model, relu_substitute = _relu_twin(run), True
        rescaled = rescale_function_preserving(model, layer_pairs, c=c)
    before = LossFunction(model, X, y, dtype=dtype)
    after = LossFunction(rescaled, X, y, dtype=dtype)
    with torch.no_grad():
        out_b = before.forward(before.params0, before.X)
        out_a = after.forward(after.params0, after.X)
        max_change = float((out_b - out_a).abs().max())
    rows: list[InvarianceRow] = []

    def add(name: str, b: float, a: float, invariant: bool, note: str) -> None:
        rel = abs(a - b) / max(abs(b), 1e-12)
        rows.append(InvarianceRow(name, b, a, rel, invariant, note))

    kw = {"radii": radii, "n_directions": n_directions, "seed": seed}
    pb, pa = perturbation_profile(before, **kw), perturbation_profile(after, **kw)
    for r, mb, ma in zip(pb.radii, pb.mean_increase, pa.mean_increase):
        add(f"filter-normalised profile r={r:g}", mb, ma, True, "directions scale with each filter")
    ub = perturbation_profile(before, normalization="none", **kw)
    ua = perturbation_profile(after, normalization="none", **kw)
    add(f"raw (unnormalised) profile r={ub.radii[-1]:g}", ub.mean_increase[-1], ua.mean_increase[-1], False,
        "a fixed Euclidean step means different things after rescaling")
    add("adaptive sharpness", adaptive_sharpness(before, rho=rho, steps=ascent_steps).value,
        adaptive_sharpness(after, rho=rho, steps=ascent_steps).value, True, "ball measured relative to |theta|")
    add("epsilon-sharpness", epsilon_sharpness(before, epsilon=epsilon, steps=ascent_steps).value,
        epsilon_sharpness(after, epsilon=epsilon, steps=ascent_steps).value, False, "the +1 in the box breaks scaling")
    add("lambda_max", _lambda_max(before, seed=seed), _lambda_max(after, seed=seed), False,
        "Hessian blocks scale by c^2 and 1/c^2")
    pairs = layer_pairs
    if pairs is None:
        scaled = [n for n, m in _leaves(model) if isinstance(m, _SCALED)]
        pairs = [(scaled[0], scaled[1])]
    return InvarianceResult(
        c=float(c), layer_pairs=tuple(tuple(p) for p in pairs), max_output_change=max_change,
        loss_before=before.evaluate()[0], loss_after=after.evaluate()[0], measures=tuple(rows),
        relu_substitute=relu_substitute,
    )


__all__ = ["INVARIANCE_TOLERANCE", "InvarianceResult", "InvarianceRow", "invariance_demo",
           "rescale_function_preserving"]
