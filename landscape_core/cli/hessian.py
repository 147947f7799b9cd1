"""``hessian``: top-k eigenvalues, trace, spectral density and per-layer curvature of a run."""

from __future__ import annotations

import argparse

from .common import (
    CLIError,
    add_device_flag,
    add_json_flag,
    positive_int,
    resolve_device,
    resolve_run,
    samples_arg,
)


def _seed(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("hessian", help="Hessian spectrum of a run: top-k eigenvalues, trace, density")
    p.add_argument("run", help="run folder, or the name of a shipped checkpoint / workspace run")
    p.add_argument("--top-k", type=positive_int, default=5, help="number of largest eigenvalues (Lanczos)")
    p.add_argument("--trace", action="store_true", help="estimate the trace (with a standard error)")
    p.add_argument("--trace-probes", type=positive_int, default=50, help="matvec budget of the trace estimate")
    p.add_argument("--trace-method", choices=["auto", "ggn-cv", "krylov-hutch++", "hutch++", "hutchinson"], default="auto",
                   help="trace estimator (auto: exact GGN trace + Hutchinson on H - G for a plain MLP's Hessian, "
                        "else Krylov-aware Hutch++)")
    p.add_argument("--density", action="store_true", help="SLQ spectral density")
    p.add_argument("--density-probes", type=positive_int, default=4)
    p.add_argument("--lanczos-steps", type=positive_int, default=60, help="Lanczos steps per density probe")
    p.add_argument("--per-layer", action="store_true", help="top eigenvalue and trace of each layer's block")
    p.add_argument("--operator", choices=["hessian", "ggn", "fisher", "fisher-mc", "empirical-fisher"],
                   default="hessian", help="curvature matrix: Hessian, generalised Gauss-Newton, Fisher (exact or "
                                           "Monte-Carlo) or empirical Fisher")
    p.add_argument("--mc-samples", type=positive_int, default=10, help="sampled labels per example (fisher-mc)")
    p.add_argument("--smallest", action="store_true",
                   help="also the smallest eigenvalue and the condition number (a second Lanczos run; its HVPs "
                        "count in matvecs)")
    p.add_argument("--exact", action="store_true", help="dense float64 spectrum too (<= 5000 parameters)")
    p.add_argument("--samples", type=samples_arg, default=512, help="examples used (or 'all')")
    p.add_argument("--split", choices=["train", "test"], default="train")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--tol", type=float, default=1e-6, help="relative residual tolerance of Lanczos")
    add_device_flag(p)
    add_json_flag(p)
    p.set_defaults(func=run_hessian)


def run_hessian(args: argparse.Namespace) -> dict:
    import sys

    from ..analyses.hessian import analyze_hessian
    from ..runs import load_run

    if not args.tol > 0:  # validate before any progress output, so the error is the only stderr line
        raise CLIError(f"tol must be > 0, got {args.tol}")
    device = resolve_device(args.device)
    run = load_run(resolve_run(args.run), device=device)

    def progress(frac: float, msg: str) -> None:
        print(f"[{frac * 100:5.1f}%] {msg}", file=sys.stderr)

    r = analyze_hessian(
        run, top_k=args.top_k, trace=args.trace, trace_probes=args.trace_probes, trace_method=args.trace_method,
        density=args.density, density_probes=args.density_probes, lanczos_steps=args.lanczos_steps,
        per_layer=args.per_layer, smallest=args.smallest, operator=args.operator,
        mc_samples=args.mc_samples, exact=args.exact, samples=args.samples, split=args.split, seed=args.seed,
        tol=args.tol, progress=progress, device=device,
    )
    d = r.to_dict()
    out = {
        "run": run.name,
        "operator": args.operator,
        "eigenvalues": d["eigenvalues"],
        "residuals": d["residuals"],
        "converged": d["converged"],
        "matvecs": d["matvecs"],
        "seconds": d["seconds"],
        "num_params": d["num_params"],
        "condition": d["condition"],
        "settings": d["settings"],
        "breakdown": d["breakdown"],
    }
    if d["trace"] is not None:
        out["trace"] = d["trace"]
    if d["density"] is not None:
        out["density"] = d["density"]
    if d["per_layer"] is not None:
        out["per_layer"] = d["per_layer"]
    if d["exact_eigenvalues"] is not None:
        out["exact_eigenvalues"] = d["exact_eigenvalues"]
    return out
