"""``noise RUN``: gradient noise scale B_simple (McCandlish et al. 2018) with a bootstrap CI."""

from __future__ import annotations

import argparse

from .common import CLIError, add_device_flag, add_json_flag, positive_int, samples_arg


def _batches(text: str) -> int:
    n = positive_int(text)
    if n < 2:
        raise argparse.ArgumentTypeError(f"--batches must be >= 2, got {n}")
    return n


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "noise",
        help="gradient noise scale B_simple = tr(Sigma)/|G|^2 from two batch sizes (McCandlish et al. 2018)",
        description=(
            "Unbiased two-batch-size estimates of |G|^2 and tr(Sigma), averaged over batch pairs before "
            "the ratio; 95% bootstrap CI. Batches are drawn without replacement from fixed data in eval mode."
        ),
    )
    p.add_argument("run", metavar="RUN", help="run folder, or the name of a shipped / workspace run")
    p.add_argument("--b-small", type=positive_int, default=None, help="small batch size (default min(32, b_big/4))")
    p.add_argument("--b-big", type=positive_int, default=None, help="big batch size (default min(512, N))")
    p.add_argument("--batches", type=_batches, default=20, help="batch pairs averaged")
    p.add_argument("--per-layer", action="store_true", help="also estimate per layer")
    p.add_argument("--sweep", type=positive_int, nargs="+", default=None, metavar="B",
                   help="also measure |G_B|^2 at these batch sizes and fit |G|^2 + tr(Sigma)/B")
    p.add_argument("--samples", type=samples_arg, default="all", help="examples used (default all)")
    p.add_argument("--split", choices=("train", "test"), default="train")
    p.add_argument("--seed", type=int, default=0)
    add_device_flag(p)
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> dict:
    from ..analyses.noise import gradient_noise_scale, noise_vs_batch_size
    from ..analyses.resolve import loss_function
    from .connect import fraction_progress, load_named_run

    r = load_named_run(args.run, args.device)
    fn = loss_function(r, split=args.split, samples=args.samples, seed=args.seed, device=None)
    b_big = args.b_big if args.b_big is not None else min(512, fn.n)
    b_small = args.b_small if args.b_small is not None else max(1, min(32, b_big // 4))
    if b_big > fn.n:
        raise CLIError(f"--b-big {b_big} exceeds the {fn.n} examples available")
    if b_small >= b_big:
        raise CLIError(f"--b-small ({b_small}) must be smaller than --b-big ({b_big})")
    progress, close = fraction_progress("noise scale")
    try:
        res = gradient_noise_scale(
            fn, b_small=b_small, b_big=b_big, n_batches=args.batches, seed=args.seed, per_layer=args.per_layer,
            progress=progress, samples=args.samples, split=args.split,
        )
        sweep = noise_vs_batch_size(fn, args.sweep, n_batches=args.batches, seed=args.seed, samples=args.samples,
                                    split=args.split) if args.sweep else None
    finally:
        close()
    out = {"run": str(r.path), **res.to_dict()}
    if sweep is not None:
        out["sweep"] = sweep.to_dict()
    return out
