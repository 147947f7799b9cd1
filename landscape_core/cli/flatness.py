"""``flatness RUN``: perturbation profile with CIs, epsilon-sharpness, adaptive sharpness and basin radius."""

from __future__ import annotations

import argparse

from .common import add_device_flag, add_json_flag, positive_float, positive_int, samples_arg


def _directions(text: str) -> int:
    n = positive_int(text)
    if n < 2:
        raise argparse.ArgumentTypeError(f"need >= 2 directions for a confidence interval, got {n}")
    return n


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..flatness import DEFAULT_RADII

    p = subparsers.add_parser(
        "flatness",
        help="flatness of a run: filter-normalised perturbation profile, epsilon/adaptive sharpness, basin radius",
        description=(
            "Loss increase L(theta + r d) - L(theta) along random filter-normalised directions (mean and "
            "95% CI per radius), Keskar et al.'s epsilon-sharpness, adaptive sharpness (Andriushchenko et "
            "al. 2023) and the basin radius. --invariance adds the function-preserving rescale demo."
        ),
    )
    p.add_argument("run", metavar="RUN", help="run folder, or the name of a shipped / workspace run")
    p.add_argument("--radii", type=positive_float, nargs="+", default=list(DEFAULT_RADII),
                   help="relative radii (filter-norm units)")
    p.add_argument("--directions", type=_directions, default=20, help="random directions (>= 2)")
    p.add_argument("--normalization", choices=("filter", "layer", "none"), default="filter")
    p.add_argument("--keep-1d", action="store_true", help="also perturb biases / norm-layer parameters")
    p.add_argument("--samples", type=samples_arg, default=512, help="examples evaluated (or 'all')")
    p.add_argument("--split", choices=("train", "test"), default="train")
    p.add_argument("--seed", type=int, default=0, help="data subset and direction seed")
    p.add_argument("--epsilon", type=positive_float, default=1e-3, help="epsilon-sharpness box size")
    p.add_argument("--rho", type=positive_float, default=0.05, help="adaptive-sharpness radius")
    p.add_argument("--ascent-steps", type=positive_int, default=10, help="gradient-ascent steps of the sharpness measures")
    p.add_argument("--threshold", type=positive_float, default=0.1, help="basin: loss increase that ends the basin")
    p.add_argument("--basin-directions", type=_directions, default=10)
    p.add_argument("--max-radius", type=positive_float, default=1.0, help="basin: largest radius searched")
    p.add_argument("--invariance", action="store_true", help="also compare measures before/after a ReLU rescale")
    p.add_argument("--c", type=positive_float, default=10.0, help="rescale factor of --invariance")
    add_device_flag(p)
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> dict:
    from ..analyses.flatness import flatness_summary
    from ..analyses.invariance import invariance_demo
    from .connect import fraction_progress, load_named_run

    r = load_named_run(args.run, args.device)
    progress, close = fraction_progress("flatness")
    try:
        res = flatness_summary(
            r, samples=args.samples, seed=args.seed, split=args.split, radii=args.radii, n_directions=args.directions,
            normalization=args.normalization, ignore_1d=not args.keep_1d, epsilon=args.epsilon, rho=args.rho,
            ascent_steps=args.ascent_steps, threshold=args.threshold, basin_directions=args.basin_directions,
            max_radius=args.max_radius, progress=progress,
        )
    finally:
        close()
    out = {"run": str(r.path), **res.to_dict()}
    if args.invariance:
        out["invariance"] = invariance_demo(
            r, c=args.c, samples=args.samples, seed=args.seed, epsilon=args.epsilon, rho=args.rho,
            ascent_steps=args.ascent_steps,
        ).to_dict()
    return out
