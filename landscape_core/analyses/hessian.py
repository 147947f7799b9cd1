"""Hessian analysis of a run or a loss: what the CLI, the UI and the reports call.

``analyze_hessian(run)`` builds the loss on a fixed, seeded subset (eval mode, detached weights),
the Hessian operator, and runs the estimators asked for: top-k eigenpairs (Lanczos with full
reorthogonalisation), the smallest eigenvalue, the trace with a standard error (``"auto"``: for a
plain MLP's Hessian the exact GGN trace plus Hutchinson on ``H - G`` (``"ggn-cv"``), otherwise Krylov-aware
Hutch++; Hutch++ or Hutchinson on request), the SLQ spectral density, per-layer blocks (top eigenvalue and trace of each module's
weight+bias block, other parameters fixed) and, for small models, the exact spectrum. The result is
a frozen :class:`CurvatureResult` whose ``to_dict()`` is JSON-able.

Per-layer traces are traces of the diagonal blocks ``H_bb``; they sum to ``tr(H)`` exactly (each is
computed exactly with ``n_b`` unit-vector products when ``n_b <= trace_probes``, else estimated).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from ..curvature_operators import OPERATOR_KINDS, curvature_operator
from ..density import slq_density
from ..exact import MAX_EXACT_PARAMS, exact_spectrum
from ..functional import LossFunction
from ..hessian import HessianOperator, hessian_operator, parameter_groups
from ..lanczos import condition_number, lanczos
from ..operators import LinearOperator
from ..progress import ProgressFn
from ..results import from_fields
from ..trace import TraceResult, control_variate_trace, hutchinson, hutchpp
from .resolve import loss_function

#: lambda_min within max(residual, ZERO_REL * lambda_max) of 0 counts as 0 (smallest-eigenvalue Lanczos tolerance)
ZERO_REL = 1e-4
#: negative curvature is reported as significant above this fraction of lambda_max
NEG_REL = 0.01


@dataclass(frozen=True)
class CurvatureResult:
    """Everything :func:`analyze_hessian` measured (JSON-able through :meth:`to_dict`)."""

    eigenvalues: list[float]
    residuals: list[float]
    converged: bool
    matvecs: int
    seconds: float
    num_params: int
    condition: dict
    trace: dict | None = None
    density: dict | None = None
    per_layer: list[dict] | None = None
    exact_eigenvalues: list[float] | None = None
    settings: dict = field(default_factory=dict)
    breakdown: dict = field(default_factory=dict)

    @property
    def lambda_max(self) -> float:
        return self.eigenvalues[0]

    def curvature_verdict(self) -> dict[str, Any]:
        """What the smallest eigenvalue allows one to say: negative curvature, and the condition number.

        ``lambda_min`` is taken from the exact spectrum when present (residual 0), else from the
        smallest-eigenvalue Lanczos run (with its residual ``r = ||H v - lambda v||``, which bounds the
        distance to a true eigenvalue for a symmetric ``H``), else from the condition summary. With
        ``tol = max(r, ZERO_REL * lambda_max)`` (``ZERO_REL`` = 1e-4, the relative tolerance of that Lanczos
        run, above float32 HVP rounding ~1e-6 relative):

        - ``|lambda_min| <= tol``: ``lambda_min ~ 0`` within tolerance, the condition number is undefined;
        - ``lambda_min < -tol`` and ``|lambda_min| > NEG_REL * lambda_max`` (``NEG_REL`` = 1%): significant
          negative curvature (a saddle or an unconverged run), condition number undefined;
        - ``lambda_min < -tol`` but smaller than 1% of ``lambda_max``: negligible negative curvature;
        - ``lambda_min > tol``: condition number ``lambda_max / lambda_min``.

        Returns:
            ``{"lambda_min", "residual", "tolerance", "negative" ("significant" | "negligible" | None),
            "condition" (float or None), "note" (one line for the user)}``.
        """
        lmax = float(self.eigenvalues[0])
        cond = self.condition or {}
        low = cond.get("lambda_min_lanczos") or {}
        if self.exact_eigenvalues:
            lmin, resid = float(min(self.exact_eigenvalues)), 0.0
        elif low.get("value") is not None:
            lmin, resid = float(low["value"]), float(low.get("residual") or 0.0)
        else:
            lmin, resid = float(cond.get("lambda_min", lmax)), 0.0
        scale = max(abs(lmax), 1e-300)
        tol = max(resid, ZERO_REL * scale)
        out: dict[str, Any] = {"lambda_min": lmin, "residual": resid, "tolerance": tol, "negative": None,
                               "condition": None}
        if abs(lmin) <= tol:
            out["note"] = (f"lambda_min ~ 0 within tolerance ({lmin:.3g}, |lambda_min| <= {tol:.2g} = max(Lanczos "
                           f"residual, {ZERO_REL:g} x lambda_max)): condition number undefined.")
        elif lmin < 0 and abs(lmin) > NEG_REL * scale:
            out["negative"] = "significant"
            out["note"] = (f"Negative curvature: lambda_min = {lmin:.3g} is {abs(lmin) / scale:.1%} of lambda_max "
                           f"(threshold {NEG_REL:.0%}) and beyond its Lanczos residual {resid:.2g}: the point is not "
                           "a minimum along that direction (a saddle or an unconverged run); condition number "
                           "undefined.")
        elif lmin < 0:
            out["negative"] = "negligible"
            out["note"] = (f"lambda_min = {lmin:.3g} is negative but only {abs(lmin) / scale:.2%} of lambda_max "
                           f"(below the {NEG_REL:.0%} threshold): flat directions, not a saddle; condition "
                           "number undefined.")
        else:
            out["condition"] = lmax / lmin
            out["note"] = f"condition number lambda_max / lambda_min = {lmax / lmin:.3g}."
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "eigenvalues": list(self.eigenvalues),
            "residuals": list(self.residuals),
            "converged": self.converged,
            "matvecs": self.matvecs,
            "seconds": self.seconds,
            "num_params": self.num_params,
            "condition": dict(self.condition),
            "trace": None if self.trace is None else dict(self.trace),
            "density": None if self.density is None else dict(self.density),
            "per_layer": None if self.per_layer is None else [dict(d) for d in self.per_layer],
            "exact_eigenvalues": None if self.exact_eigenvalues is None else list(self.exact_eigenvalues),
            "settings": dict(self.settings),
            "breakdown": dict(self.breakdown),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CurvatureResult:
        """Inverse of :meth:`to_dict`."""
        return from_fields(cls, d)


def exact_trace_by_unit_vectors(op: LinearOperator) -> float:
    """``sum_i e_i^T A e_i`` with ``n`` matvecs: the exact trace (for small blocks / references)."""
    total = 0.0
    e = torch.zeros(op.dim, device=op.device, dtype=op.dtype)
    for i in range(op.dim):
        e.zero_()
        e[i] = 1
        total += float(op.matvec(e)[i])
    return total


TRACE_METHODS = ("auto", "ggn-cv", "krylov-hutch++", "hutch++", "hutchinson")


def ggn_cv_trace(op: LinearOperator, num_probes: int, *, seed: int = 0,
                 target_rel_stderr: float | None = None) -> TraceResult | None:
    """The Hessian trace as the exact GGN trace plus Hutchinson on ``H - G`` (``None`` unless ``op`` is a
    Hessian operator of a plain MLP: :mod:`landscape_core.mlp_curvature`)."""
    if not isinstance(op, HessianOperator):
        return None
    op.resolve()
    if op.analytic is None and op.mode != "analytic":  # another HVP mode was asked for: own closed-form state
        try:
            op = hessian_operator(op.loss_fn, op.point(), names=op.names, mode="analytic", check=False)
            op.resolve()
        except ValueError:
            return None
    mc = op.analytic
    if mc is None:
        return None
    parts = mc.ggn_trace_parts()
    exact = sum(parts[n] for n in op.names)
    return control_variate_trace(exact, lambda Z: op.analytic_rows(Z, "residual_quadratic"), op.dim,
                                 num_probes=num_probes, target_rel_stderr=target_rel_stderr, seed=seed,
                                 device=op.device, dtype=op.dtype, method="ggn-cv")


def _trace(op: LinearOperator, probes: int, method: str, seed: int) -> dict:
    if op.dim <= probes:
        start = op.matvecs
        return {"mean": exact_trace_by_unit_vectors(op), "stderr": 0.0, "matvecs": op.matvecs - start,
                "method": "exact"}
    r: TraceResult | None = None
    if method in ("auto", "ggn-cv") and probes >= 2:
        r = ggn_cv_trace(op, probes, seed=seed)
        if r is None and method == "ggn-cv":
            raise ValueError("trace method 'ggn-cv' needs the Hessian of a plain MLP (Linear layers and "
                             "elementwise activations); use 'krylov-hutch++'")
    if r is None and method in ("auto", "hutch++", "krylov-hutch++") and probes >= 3:
        r = hutchpp(op, probes, sketch="random" if method == "hutch++" else "krylov", seed=seed)
    if r is None:
        r = hutchinson(op, probes, seed=seed)
    # ggn-cv's probes are forward tangent passes of H - G, not products: 0 HVPs, the probes counted apart
    hvps = 0 if r.method == "ggn-cv" else r.matvecs
    return {"mean": r.mean, "stderr": r.stderr, "matvecs": hvps, "probes": len(r.estimates), "method": r.method}


def analyze_hessian(
    run_or_lossfn,
    *,
    top_k: int = 5,
    trace: bool = True,
    trace_probes: int = 50,
    trace_method: Literal["auto", "ggn-cv", "hutch++", "krylov-hutch++", "hutchinson"] = "auto",
    density: bool = False,
    density_probes: int = 4,
    lanczos_steps: int = 60,
    per_layer: bool = False,
    smallest: bool = False,
    samples: int | None = 512,
    split: Literal["train", "test"] = "train",
    seed: int = 0,
    exact: bool = False,
    tol: float = 1e-6,
    max_iter: int | None = None,
    mode: str = "auto",
    operator: str = "hessian",
    mc_samples: int = 10,
    progress: ProgressFn | None = None,
    device: str = "cpu",
) -> CurvatureResult:
    """Hessian analysis of a run (or a loss function) at its trained weights.

    Args:
        run_or_lossfn: a loaded ``Run`` (the loss is built on ``samples`` examples of ``split``) or a
            ready ``LossFunction`` (then ``samples``/``split``/``device`` are ignored).
        top_k: number of largest eigenvalues (Lanczos, relative residual ``tol``).
        trace, trace_probes, trace_method: trace estimate with this budget (matvecs; for ``"ggn-cv"``
            probes of ``H - G``, each a forward tangent pass costing about half a product).
        density, density_probes, lanczos_steps: SLQ spectral density.
        per_layer: top eigenvalue and trace of each module's block.
        smallest: also run a second Lanczos for the smallest (most negative) eigenvalue (its HVPs count
            in ``matvecs``). Without it the condition summary still gets a free upper bound on the smallest
            eigenvalue: the smallest Ritz value of the top-k Krylov space (``ritz_min_upper_bound``).
        exact: dense float64 spectrum too (small models only, <= 5000 parameters).
        operator: the curvature matrix: ``"hessian"`` (default), ``"ggn"`` (generalised Gauss-Newton
            ``J^T H_out J``), ``"fisher"`` (exact in the model's output distribution), ``"fisher-mc"``
            (``mc_samples`` sampled labels per example, seeded by ``seed``) or ``"empirical-fisher"``
            (mean of per-example gradient outer products). Every estimator below runs on any of them.
        mc_samples: labels per example of ``"fisher-mc"`` (1 is heavy-tailed on a fitted model).
        progress: ``(fraction, message)`` callback.

    Raises:
        ValueError: bad settings (``top_k`` above the parameter count, ``samples < 1``...).
    """
    t0 = time.perf_counter()
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if trace_method not in TRACE_METHODS:
        raise ValueError(f"unknown trace method {trace_method!r}; choose from {', '.join(TRACE_METHODS)}")
    if not (isinstance(trace_probes, int) and trace_probes >= 1):
        raise ValueError(f"trace_probes must be a positive integer, got {trace_probes!r}")
    lf = loss_function(run_or_lossfn, samples=samples, split=split, seed=seed, device=device)
    if operator not in OPERATOR_KINDS:
        raise ValueError(f"unknown curvature operator {operator!r}; choose from {', '.join(OPERATOR_KINDS)}")

    def make_op(names: list[str] | None = None, check: bool = True) -> Any:
        if operator == "hessian":
            return hessian_operator(lf, names=names, mode=mode, check=check)  # type: ignore[arg-type]
        return curvature_operator(operator, lf, names=names, seed=seed, mc_samples=mc_samples, check=check)

    op = make_op()
    n = op.dim
    if not (isinstance(top_k, int) and 1 <= top_k <= n):
        raise ValueError(f"top_k must be between 1 and the number of parameters {n}, got {top_k}")
    stages = 1 + int(smallest) + int(trace) + int(density) + int(per_layer) + int(exact)
    done = [0]

    def step(msg: str) -> None:
        if progress is not None:
            progress(done[0] / stages, msg)
        done[0] += 1

    seconds: dict[str, float] = {"setup": time.perf_counter() - t0}
    matvecs: dict[str, int] = {}

    def timed(stage: str, fn: Callable[[], Any]) -> Any:
        t, mv = time.perf_counter(), op.matvecs
        out = fn()
        seconds[stage], matvecs[stage] = time.perf_counter() - t, op.matvecs - mv
        return out

    step(f"top-{top_k} eigenvalues (Lanczos, {n} parameters)")
    # value_tol: stop once the eigenvalues themselves are accurate to ``tol`` (their error is bounded by
    # residual^2 / gap, far below the residual), not only the Ritz vectors.
    top = timed("top_k", lambda: lanczos(op, top_k, which="largest", tol=tol, max_iter=max_iter, seed=seed,
                                         value_tol=tol))
    eig = top.eigenvalues.tolist()
    lam_min = None
    if smallest:
        step("smallest eigenvalue (Lanczos)")
        low = timed("smallest", lambda: lanczos(op, 1, which="smallest", tol=max(tol, 1e-4),
                                                max_iter=min(n, 60), seed=seed + 1))
        lam_min = {"value": float(low.eigenvalues[0]), "residual": float(low.residuals[0]),
                   "converged": low.converged}
    tr = None
    if trace:
        step(f"trace ({trace_method}, {trace_probes} matvecs)")
        tr = timed("trace", lambda: _trace(op, trace_probes, trace_method, seed))
    dens = None
    if density:
        step(f"spectral density (SLQ, {density_probes} probes x {lanczos_steps} steps)")
        dens = timed("density", lambda: slq_density(op, num_probes=density_probes, lanczos_steps=lanczos_steps,
                                                    seed=seed).to_dict())
    layers = None
    t_layers = time.perf_counter()
    if per_layer:
        step("per-layer blocks")
        layers = []
        for name, group in parameter_groups(op.names):
            bop = make_op(group, check=False)
            b = lanczos(bop, 1, which="largest", tol=max(tol, 1e-5), max_iter=max_iter, seed=seed)
            t = _trace(bop, trace_probes, trace_method, seed)
            layers.append({
                "name": name, "params": group, "numel": bop.dim, "lambda_max": float(b.eigenvalues[0]),
                "trace": t["mean"], "trace_stderr": t["stderr"], "trace_method": t["method"],
                "matvecs": bop.matvecs,
            })
    if per_layer:
        seconds["per_layer"] = time.perf_counter() - t_layers
        matvecs["per_layer"] = sum(d["matvecs"] for d in layers or [])
    exact_eigs = None
    if exact:
        step("exact spectrum (dense float64)")
        exact_eigs = timed("exact", lambda: _exact_eigenvalues(lf, operator, seed, mc_samples))
    if exact_eigs is not None:
        cond = {"source": "exact", **condition_number(exact_eigs)}
    elif dens is not None:
        nodes = np.concatenate([np.asarray(x) for x in dens["ritz_values"]])
        wts = np.concatenate([np.asarray(x) for x in dens["ritz_weights"]])
        cond = {"source": "density", **condition_number(nodes, wts)}
        cond["lambda_max"] = max(eig[0], cond["lambda_max"])
    elif lam_min is not None:
        cond = {"source": "lanczos", **condition_number(eig + [lam_min["value"]])}
    else:  # only the top-k was asked for: no claim about the bottom of the spectrum
        cond = {"source": "top-k", "lambda_max": eig[0], "lambda_min": None, "lambda_min_positive": None,
                "ratio": None, "negative_mass": None, "has_negative": None,
                "note": "smallest eigenvalue not computed (smallest=True / --smallest)"}
    if lam_min is not None:
        cond["lambda_min_lanczos"] = lam_min
    if top.ritz_values is not None and len(top.ritz_values):
        # the smallest Ritz value of the top-k Krylov space bounds lambda_min from above, at no extra HVP
        cond["ritz_min_upper_bound"] = float(top.ritz_values.min())
    if progress is not None:
        progress(1.0, "done")
    total_mv = op.matvecs + sum(d["matvecs"] for d in layers or [])
    settings = {
        "top_k": top_k, "trace_probes": trace_probes, "trace_method": trace_method,
        "density_probes": density_probes if density else None, "lanczos_steps": lanczos_steps if density else None,
        "samples": samples if not isinstance(run_or_lossfn, LossFunction) else lf.n, "examples": lf.n,
        "split": split, "seed": seed, "tol": tol, "value_tol": tol, "hvp_mode": getattr(op, "mode", None), "device": str(lf.device),
        "operator": operator,
        "smallest": smallest,
    }
    breakdown = {"seconds": seconds, "matvecs": matvecs, "hvp_mode": getattr(op, "mode", None),
                 "graph_MiB": float(getattr(op, "graph_bytes", 0) or 0) / 2**20,
                 "graph_build_s": float(getattr(op, "setup_seconds", 0.0) or 0.0)}
    return CurvatureResult(
        eigenvalues=eig,
        residuals=top.residuals.tolist(),
        converged=top.converged,
        matvecs=total_mv,
        seconds=time.perf_counter() - t0,
        num_params=n,
        condition=cond,
        trace=tr,
        density=dens,
        per_layer=layers,
        exact_eigenvalues=exact_eigs,
        settings=settings,
        breakdown=breakdown,
    )


def _exact_eigenvalues(lf: LossFunction, operator: str, seed: int, mc_samples: int) -> list[float]:
    """Dense float64 spectrum of the curvature matrix, descending (small models only)."""
    if operator == "hessian":
        return exact_spectrum(lf)[::-1].tolist()
    n = sum(v.numel() for v in lf.params0.values())
    if n > MAX_EXACT_PARAMS:
        raise ValueError(f"exact spectrum needs at most {MAX_EXACT_PARAMS} parameters, the model has {n}")
    A = curvature_operator(operator, lf, dtype=torch.float64, seed=seed, mc_samples=mc_samples).dense()
    return torch.linalg.eigvalsh(0.5 * (A + A.T)).flip(0).tolist()


def planned_hvps(
    num_params: int,
    *,
    top_k: int = 5,
    trace: bool = True,
    trace_probes: int = 50,
    density: bool = False,
    density_probes: int = 4,
    lanczos_steps: int = 60,
    per_layer: bool = False,
    num_layers: int = 0,
    smallest: bool = False,
) -> int:
    """Rough number of HVPs :func:`analyze_hessian` will use (for a cost estimate before starting).

    Lanczos counts are typical values for neural-net Hessians (``max(25, 5 k)`` steps for the top-k,
    about 50 for the smallest eigenvalue), capped at ``num_params``; trace and density budgets are exact.
    """
    n = int(num_params)
    total = min(n, max(25, 5 * top_k))
    if smallest:
        total += min(n, 50)
    if trace:
        total += min(n, trace_probes)
    if density:
        total += density_probes * min(n, lanczos_steps)
    if per_layer and num_layers:
        per_block = max(1, n // num_layers)
        total += num_layers * (min(per_block, 25) + min(per_block, trace_probes))
    return int(total)


def ritz_history(alpha: Sequence[float], beta: Sequence[float]) -> list[list[float]]:
    """Ritz values after each Lanczos step: the eigenvalues of the leading ``m x m`` block of ``T``.

    ``T`` is the symmetric tridiagonal matrix with diagonal ``alpha`` and off-diagonal ``beta``; entry
    ``m - 1`` of the result holds the ``m`` Ritz values after ``m`` steps (Golub & Van Loan, sec. 10.1).
    """
    a = np.asarray(alpha, np.float64)
    b = np.asarray(beta, np.float64)
    out = []
    for m in range(1, len(a) + 1):
        T = np.diag(a[:m]) + np.diag(b[: m - 1], 1) + np.diag(b[: m - 1], -1)
        out.append(np.linalg.eigvalsh(T).tolist())
    return out


__all__ = ["NEG_REL", "ZERO_REL", "CurvatureResult", "analyze_hessian", "exact_trace_by_unit_vectors", "planned_hvps", "ritz_history"]
