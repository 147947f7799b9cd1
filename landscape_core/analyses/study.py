"""How far to trust the curvature numbers: estimator convergence and the data (sample) budget.

* :func:`estimator_study`: Ritz values after every Lanczos step and per-probe Hutchinson samples on
  one Hessian, with the exact spectrum and trace of the dense float64 Hessian for small models.
* :func:`check_against_exact`: which Lanczos eigenvalues lie within their residual (plus float32
  rounding) of an exact eigenvalue.
* :func:`sample_budget`: lambda_max and the trace on data subsets of several sizes and seeds (the
  spread across seeds is the subsampling variance).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..exact import MAX_EXACT_PARAMS, exact_spectrum
from ..hessian import hessian_operator
from ..lanczos import lanczos_tridiagonal
from ..progress import ProgressFn
from ..results import from_fields
from ..trace import hutchinson
from .hessian import analyze_hessian, ritz_history
from .resolve import as_run, loss_function

#: relative float32 rounding between the float32 operator and the float64 dense Hessian (a few
#: thousand-term sums of float32 products: ~1e-6 of lambda_max)
FLOAT32_ROUNDING = 1e-6


@dataclass(frozen=True)
class EstimatorStudy:
    """Estimator convergence on one Hessian (see :func:`estimator_study`)."""

    num_params: int
    ritz_history: list[list[float]]
    hutchinson: list[float]
    exact_eigenvalues: list[float] | None = None
    exact_trace: float | None = None
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"num_params": self.num_params, "ritz_history": [list(r) for r in self.ritz_history],
                "hutchinson": list(self.hutchinson), "exact_eigenvalues": self.exact_eigenvalues,
                "exact_trace": self.exact_trace, "settings": dict(self.settings)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EstimatorStudy:
        return from_fields(cls, d)


def estimator_study(source: Any, *, samples: int | None = 512, split: str = "train", seed: int = 0,
                    lanczos_steps: int = 40, probes: int = 100, exact: bool = True) -> EstimatorStudy:
    """Ritz values per Lanczos step (full reorthogonalisation), per-probe Hutchinson samples and, for
    models with at most ``exact.MAX_EXACT_PARAMS`` parameters, the exact eigenvalues (descending) and
    trace of the dense float64 Hessian."""
    lf = loss_function(source, samples=samples, split=split, seed=seed, device=None)  # type: ignore[arg-type]
    op = hessian_operator(lf)
    v0 = torch.randn(op.dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    a, b = lanczos_tridiagonal(op, v0, min(lanczos_steps, op.dim))
    tr = hutchinson(op, probes, seed=seed)
    ex_eigs, ex_trace = None, None
    if exact and op.dim <= MAX_EXACT_PARAMS:
        ev = exact_spectrum(lf)
        ex_eigs = [float(x) for x in ev[::-1]]
        ex_trace = float(np.sum(ev))
    return EstimatorStudy(
        num_params=op.dim, ritz_history=ritz_history(a, b), hutchinson=[float(x) for x in tr.estimates],
        exact_eigenvalues=ex_eigs, exact_trace=ex_trace,
        settings={"samples": samples, "split": split, "seed": seed, "lanczos_steps": lanczos_steps, "probes": probes},
    )


def check_against_exact(eigenvalues: Sequence[float], residuals: Sequence[float], exact: Sequence[float]) -> list[bool]:
    """Per Lanczos eigenvalue: does it lie within its residual of an exact eigenvalue?

    A Ritz value with residual ``r = ||A v - theta v||`` lies within ``r`` of an eigenvalue of the
    (float32) operator ``A`` (Bauer-Fike for symmetric ``A``), which differs from the float64 dense
    Hessian by float32 rounding, ``FLOAT32_ROUNDING * max |lambda|``.
    """
    tol = FLOAT32_ROUNDING * max(abs(e) for e in exact)
    return [min(abs(v - e) for e in exact) <= r + tol for v, r in zip(eigenvalues, residuals)]


@dataclass(frozen=True)
class SampleBudget:
    """lambda_max and trace per (subset size, seed): ``rows`` of ``{"samples", "seed", "lambda_max", "trace"}``."""

    rows: tuple[dict, ...]
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"rows": [dict(r) for r in self.rows], "settings": dict(self.settings)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SampleBudget:
        return cls(rows=tuple(dict(r) for r in d["rows"]), settings=dict(d.get("settings") or {}))


def sample_budget(run: Any, budgets: Sequence[int], seeds: Sequence[int] = (0, 1, 2), *, split: str = "train",
                  progress: ProgressFn | None = None) -> SampleBudget:
    """lambda_max and the trace (30 Hutch++ matvecs, Lanczos tolerance 1e-4) on data subsets of each size
    in ``budgets`` (capped at the training set) and each seed."""
    run = as_run(run)
    n_train = len(run.train_data[1])
    rows = []
    total = len(budgets) * len(seeds)
    for i, n in enumerate(budgets):
        for j, s in enumerate(seeds):
            if progress is not None:
                progress((i * len(seeds) + j) / total, f"{n} examples, seed {s}")
            r = analyze_hessian(run, top_k=1, trace=True, trace_probes=30, smallest=False,
                                samples=min(int(n), n_train), split=split, seed=int(s), tol=1e-4)  # type: ignore[arg-type]
            rows.append({"samples": min(int(n), n_train), "seed": int(s), "lambda_max": r.eigenvalues[0],
                         "trace": (r.trace or {}).get("mean")})
    if progress is not None:
        progress(1.0, "done")
    return SampleBudget(rows=tuple(rows), settings={"budgets": [int(b) for b in budgets],
                                                    "seeds": [int(s) for s in seeds], "split": split})


__all__ = ["EstimatorStudy", "FLOAT32_ROUNDING", "SampleBudget", "check_against_exact", "estimator_study",
           "sample_budget"]
