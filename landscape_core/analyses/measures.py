"""The sharpness measures a sweep records for each trained run (lambda_max, trace, flatness, per layer)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..flatness import perturbation_profile
from ..hessian import hessian_operator, parameter_groups
from ..lanczos import lanczos
from ..results import finite as _finite
from ..trace import hutchinson
from .resolve import loss_function


def measure_run(run_or_path: Any, settings: Mapping[str, Any]) -> dict:
    """Sharpness measures of one trained run (see the module docstring).

    Args:
        run_or_path: a loaded :class:`~landscape_core.runs.Run` or a run folder.
        settings: :meth:`SweepSpec.measure_settings` (``measures``, ``samples``, budgets, ``seed``).

    Returns:
        JSON-able dict with ``lambda_max``, ``trace``, ``trace_stderr``, ``flatness``,
        ``flatness_stderr``, ``per_layer`` (``{layer: lambda_max}``), ``hvps`` (what was requested).
    """
    measures = tuple(settings.get("measures", ("lambda_max", "trace", "flatness")))
    seed = int(settings.get("seed", 0))
    lf = loss_function(run_or_path, samples=settings.get("samples", 512), seed=seed, device=None)
    out: dict[str, Any] = {"lambda_max": None, "trace": None, "trace_stderr": None, "flatness": None,
                           "flatness_stderr": None, "per_layer": None, "hvps": 0}
    iters = int(settings.get("lanczos_iters", 60))
    if "lambda_max" in measures or "trace" in measures:
        op = hessian_operator(lf)
        if "lambda_max" in measures:
            eig = lanczos(op, 1, which="largest", max_iter=min(iters, op.dim), tol=1e-4, seed=seed)
            out["lambda_max"] = float(eig.eigenvalues[0])
        if "trace" in measures:
            tr = hutchinson(op, int(settings.get("trace_probes", 20)), seed=seed + 1)
            out["trace"], out["trace_stderr"] = float(tr.mean), _finite(tr.stderr)
        out["hvps"] += op.matvecs
    if "per_layer" in measures:
        per: dict[str, float] = {}
        for layer, names in parameter_groups(list(lf.params0)):
            op = hessian_operator(lf, names=names, check=False)
            eig = lanczos(op, 1, which="largest", max_iter=min(iters, op.dim), tol=1e-4, seed=seed)
            per[layer] = float(eig.eigenvalues[0])
            out["hvps"] += op.matvecs
        out["per_layer"] = per
    if "flatness" in measures:
        prof = perturbation_profile(lf, radii=[float(settings.get("flatness_radius", 0.05))],
                                    n_directions=int(settings.get("flatness_directions", 8)), seed=seed)
        x = np.asarray(prof.raw[0], dtype=np.float64)
        out["flatness"] = float(x.mean())
        out["flatness_stderr"] = float(x.std(ddof=1) / math.sqrt(len(x)))
    return out


__all__ = ["measure_run"]
