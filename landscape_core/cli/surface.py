"""``python -m landscape_core surface RUN``: a 1-D or 2-D loss surface of a run, with .npz / .vtp export."""

from __future__ import annotations

import argparse

from .common import (
    CLIError,
    add_json_flag,
    positive_float,
    positive_int,
    resolve_run,
    samples_arg,
    tqdm_progress,
)


def _grid(text: str) -> int:
    n = positive_int(text)
    if n < 2:
        raise argparse.ArgumentTypeError(f"grid must be >= 2 points, got {n}")
    if n > 1001:  # checked here, before any progress bar opens, so the error is the only stderr line
        raise argparse.ArgumentTypeError(f"grid must be at most 1001 points per axis, got {n}")
    return n


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "surface",
        help="1-D/2-D loss surface around a run (random, PCA, Hessian or gradient directions)",
        description="Evaluate the loss on a line or plane theta0 + a*d1 + b*d2 through a run's weights.",
    )
    p.add_argument("run", metavar="RUN", help="run folder, or the name of a shipped / workspace run")
    p.add_argument("--dims", type=int, choices=(1, 2), default=2)
    p.add_argument("--directions", choices=("random", "pca", "hessian", "gradient"), default="random")
    p.add_argument("--through", nargs="+", metavar="RUN", default=None,
                   help="instead of --directions: the line (1 run) or plane (2 runs) through RUN and these")
    p.add_argument("--grid", type=_grid, default=41, help="points per axis (>= 2)")
    p.add_argument("--span", type=positive_float, default=1.0, help="half-width in normalised units")
    p.add_argument("--samples", type=samples_arg, default=512, help="examples (or 'all')")
    p.add_argument("--split", choices=("train", "test"), default="train")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--normalization", choices=("filter", "layer", "none"), default="filter")
    p.add_argument("--keep-1d", action="store_true", help="keep biases / norm parameters in the directions")
    p.add_argument("--n-jobs", type=int, default=1, help="local worker processes (-1: all cores)")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://127.0.0.1:8786")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the disk cache")
    p.add_argument("--out", default=None, help="write the surface to this .npz file")
    p.add_argument("--vtp", default=None, help="write a 2-D surface as a ParaView .vtp height field")
    add_json_flag(p)
    p.set_defaults(func=run_surface)


def run_surface(args: argparse.Namespace) -> dict:
    from ..analyses.surface import compute_surface
    from ..export import save_npz, save_vtp
    from ..runs import load_run

    if args.n_jobs == 0 or args.n_jobs < -1:
        raise CLIError(f"--n-jobs must be >= 1 or -1, got {args.n_jobs}")
    if args.vtp and args.dims != 2:
        raise CLIError("--vtp needs a 2-D surface (--dims 2)")
    run = load_run(resolve_run(args.run))
    directions: object = args.directions
    if args.through:
        if len(args.through) != args.dims:
            raise CLIError(f"--through needs {args.dims} run(s) for --dims {args.dims}, got {len(args.through)}")
        directions = ("runs", [load_run(resolve_run(r)) for r in args.through])
    total = args.grid**args.dims
    update, close = tqdm_progress(100, f"surface {args.grid}^{args.dims}")
    done = [0]

    def progress(frac: float, msg: str) -> None:
        pct = int(round(100 * frac))
        if pct > done[0]:
            update(pct - done[0])
            done[0] = pct

    try:
        res = compute_surface(
            run, dims=args.dims, directions=directions, grid=args.grid, span=args.span, samples=args.samples,
            split=args.split, seed=args.seed, normalization=args.normalization, ignore_1d=not args.keep_1d,
            n_jobs=args.n_jobs, scheduler=args.scheduler, progress=progress, use_cache=not args.no_cache,
        )
    finally:
        close()
    s = res.surface
    out = {
        "run": res.run_name,
        "dims": s.dims,
        "grid": s.grid,
        "points": total,
        "seconds": s.seconds,
        "cached": res.cached,
        "center_loss": s.center_loss,
        "center_accuracy": s.center_accuracy,
        "min_loss": s.min_loss,
        "max_loss": float(max(x for x in s.loss.ravel() if x == x)) if (s.loss == s.loss).any() else None,
        "alpha_range": [float(s.alphas[0]), float(s.alphas[-1])],
        "beta_range": None if s.betas is None else [float(s.betas[0]), float(s.betas[-1])],
        "directions": s.directions.to_dict(),
        "samples": s.settings.get("n_examples"),
        "split": args.split,
        "out": None,
        "vtp": None,
    }
    if res.trajectory is not None:
        out["trajectory_max_relative_residual"] = res.trajectory.max_relative_residual
    if res.points is not None:
        out["run_points"] = res.points
    if args.out:
        out["out"] = str(save_npz(s, args.out))
    if args.vtp:
        out["vtp"] = str(save_vtp(s, args.vtp))
    return out
