"""``connect RUN_A RUN_B``: loss along a linear path or a trained quadratic Bezier curve between two runs."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ..progress import ProgressFn
from .common import (
    CLIError,
    add_device_flag,
    add_json_flag,
    positive_float,
    positive_int,
    resolve_device,
    samples_arg,
)


def fraction_progress(desc: str) -> tuple[ProgressFn, Callable[[], None]]:
    """A ``progress(fraction, message)`` callback drawing a tqdm bar on stderr, and its ``close``."""
    from .common import tqdm_progress

    steps = 1000
    update, close = tqdm_progress(steps, desc)
    done = [0]

    def progress(frac: float, msg: str) -> None:
        target = int(round(steps * min(max(frac, 0.0), 1.0)))
        if target > done[0]:
            update(target - done[0], stage=msg)
            done[0] = target

    return progress, close


def load_named_run(name: str, device: str = "cpu"):
    """RUN as a folder, else ``checkpoints/<RUN>``, else ``<workspace>/<RUN>``, loaded."""
    from ..runs import load_run
    from .common import resolve_run

    return load_run(resolve_run(name), device=resolve_device(device))


def _points(text: str) -> int:
    n = positive_int(text)
    if n < 2:
        raise argparse.ArgumentTypeError(f"--points must be >= 2, got {n}")
    return n


def _steps(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"--steps must be >= 0, got {n}")
    return n


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "connect",
        help="mode connectivity: loss barrier on a linear path or a trained Bezier curve between two runs",
        description=(
            "Evaluate the loss along theta(t) = (1-t) A + t B (linear) or along a quadratic Bezier curve "
            "whose control point is trained (Garipov et al. 2018). The barrier is "
            "max_t [L(t) - ((1-t) L_A + t L_B)]. Both runs must share model and dataset."
        ),
    )
    p.add_argument("run_a", metavar="RUN_A", help="run folder, or the name of a shipped / workspace run")
    p.add_argument("run_b", metavar="RUN_B", help="second run (same model spec and dataset)")
    p.add_argument("--curve", choices=("linear", "bezier"), default="linear")
    p.add_argument("--points", type=_points, default=21, help="points along the path, endpoints included")
    p.add_argument("--samples", type=samples_arg, default=512, help="examples evaluated (or 'all')")
    p.add_argument("--split", choices=("train", "test"), default="train")
    p.add_argument("--steps", type=_steps, default=300, help="Bezier training steps")
    p.add_argument("--lr", type=positive_float, default=1e-2, help="Bezier learning rate (Adam)")
    p.add_argument("--batch-size", type=positive_int, default=128, help="Bezier minibatch size")
    p.add_argument("--seed", type=int, default=0, help="data subset and Bezier sampling seed")
    add_device_flag(p)
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> dict:
    from ..analyses.connectivity import connect_runs
    from ..connectivity import check_compatible

    run_a = load_named_run(args.run_a, args.device)
    run_b = load_named_run(args.run_b, args.device)
    check_compatible(run_a.meta, run_b.meta)
    if args.curve == "bezier" and args.steps == 0:
        raise CLIError("--steps 0 leaves the Bezier curve equal to the linear path; use --curve linear")
    progress, close = fraction_progress(f"connect ({args.curve})")
    try:
        res = connect_runs(
            run_a, run_b, curve=args.curve, n_points=args.points, samples=args.samples, split=args.split,
            seed=args.seed, bezier_steps=args.steps, bezier_lr=args.lr, bezier_batch_size=args.batch_size,
            progress=progress,
        )
    finally:
        close()
    out = res.to_dict()
    out["run_a"], out["run_b"] = str(run_a.path), str(run_b.path)
    return out
