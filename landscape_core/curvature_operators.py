"""One factory for the model curvature operators: Hessian, GGN, Fisher, Monte-Carlo Fisher, empirical Fisher.

``curvature_operator(kind, loss_fn)`` returns a :class:`~landscape_core.operators.ParameterOperator`
(matvec counter, batches weighted by size, parameter subsets, dtype), so every estimator (Lanczos,
power, Hutchinson / Hutch++, SLQ, ``dense()``) runs on any of them unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from .fisher import empirical_fisher_operator, fisher_operator, mc_fisher_operator
from .functional import LossFunction
from .ggn import ggn_operator
from .hessian import hessian_operator
from .operators import ParameterOperator

#: Operator kinds, in menu order, with their display labels.
OPERATOR_KINDS: dict[str, str] = {
    "hessian": "Hessian",
    "ggn": "Generalised Gauss-Newton",
    "fisher": "Fisher (exact)",
    "fisher-mc": "Fisher (Monte-Carlo)",
    "empirical-fisher": "Empirical Fisher",
}
#: Kinds that are positive semi-definite by construction (their spectra have no negative part).
PSD_KINDS = ("ggn", "fisher", "fisher-mc", "empirical-fisher")


def curvature_operator(
    kind: str,
    loss_fn: LossFunction,
    params: Mapping[str, Tensor] | None = None,
    *,
    names: Sequence[str] | None = None,
    dtype: torch.dtype | None = None,
    seed: int = 0,
    mc_samples: int = 1,
    check: bool = True,
) -> ParameterOperator:
    """The curvature operator ``kind`` of ``loss_fn`` at ``params``.

    Args:
        kind: one of :data:`OPERATOR_KINDS` (``hessian``, ``ggn``, ``fisher``, ``fisher-mc``,
            ``empirical-fisher``).
        loss_fn: fixed-data loss closure (batches weighted by size).
        params: the point (default: the loss function's own weights).
        names: differentiate only these parameters (per-layer analysis).
        dtype: compute dtype (``torch.float64`` for references).
        seed: label seed of ``fisher-mc`` (ignored by the others).
        mc_samples: labels per example of ``fisher-mc``.
        check: refuse a stochastic loss (train-mode BatchNorm, dropout) first.
    """
    if kind == "hessian":
        return hessian_operator(loss_fn, params, names=names, dtype=dtype, check=check)
    if kind == "ggn":
        return ggn_operator(loss_fn, params, names=names, dtype=dtype, check=check)
    if kind == "fisher":
        return fisher_operator(loss_fn, params, names=names, dtype=dtype, check=check)
    if kind == "fisher-mc":
        return mc_fisher_operator(loss_fn, params, names=names, dtype=dtype, samples=mc_samples, seed=seed,
                                  check=check)
    if kind == "empirical-fisher":
        return empirical_fisher_operator(loss_fn, params, names=names, dtype=dtype, check=check)
    raise ValueError(f"unknown curvature operator {kind!r}; choose from {', '.join(OPERATOR_KINDS)}")
