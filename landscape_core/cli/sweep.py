"""``sweep``: train a grid of learning rates x batch sizes (...), measure sharpness, correlate with generalization.

Resumable: run the same command again with the same ``--out`` and finished points are reused.
"""

from __future__ import annotations

import argparse
import sys

from .common import CLIError, add_json_flag, positive_float, positive_int


def _list(cast, what: str):
    def parse(text: str) -> list:
        try:
            vals = [cast(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a comma-separated list, got {text!r}") from None
        if not vals:
            raise argparse.ArgumentTypeError(f"{what} must not be empty")
        return vals

    return parse


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def text_table(rows: list[dict], cols: list[str]) -> str:
    """A plain fixed-width table."""
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(x.rjust(w) for x, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    from ..sweep import SweepSpec, run_sweep

    base = {
        "dataset": {"name": args.dataset, "train_size": args.train_size, "test_size": args.test_size},
        "model": args.model, "width": args.width, "depth": args.depth, "activation": args.activation,
        "optimizer": args.optimizer, "momentum": args.momentum, "weight_decay": args.weight_decay,
        "rho": args.rho, "epochs": args.epochs, "seed": args.seed, "snapshots": args.snapshots,
    }
    try:
        spec = SweepSpec(base=base, lrs=args.lrs, batch_sizes=args.batch_sizes, weight_decays=args.weight_decays,
                         rhos=args.rhos, optimizers=args.optimizers, measures=args.measures, samples=args.samples,
                         trace_probes=args.trace_probes, flatness_radius=args.flatness_radius,
                         flatness_directions=args.flatness_directions, seed=args.seed)
    except TypeError as e:
        raise CLIError(str(e)) from None
    state = {"last": -1}

    def progress(frac: float, msg: str) -> None:
        pct = int(frac * 100)
        if msg.startswith("point") and ("test acc" in msg or "diverged" in msg) or pct != state["last"]:
            print(f"[{pct:3d}%] {msg}", file=sys.stderr, flush=True)
            state["last"] = pct

    res = run_sweep(spec, out_dir=args.out, n_jobs=args.n_jobs, scheduler=args.scheduler, progress=progress,
                    n_boot=args.n_boot)
    d = res.to_dict()
    out = {"out": d["out_dir"], "total": d["total"], "finished": d["finished"], "reused": d["reused"],
           "computed": d["computed"], "cancelled": d["cancelled"], "rows": res.table(),
           "correlations": d["correlations"]}
    if args.json:
        return out
    cols = ["lr", "batch_size", "test_acc", "gen_gap", "lambda_max", "trace", "flatness", "seconds_per_epoch"]
    corr_cols = ["measure", "target", "tau", "ci_low", "ci_high", "p_value", "n"]
    out["rows"] = "\n" + text_table(res.table(), cols)
    out["correlations"] = "\n" + text_table(d["correlations"], corr_cols)
    return out


def register(sub) -> None:
    from ..data import DATASETS
    from ..models import ACTIVATIONS, MODELS
    from ..optimizers import OPTIMIZERS

    p = sub.add_parser("sweep", help="hyperparameter sweep: sharpness vs generalization (resumable)")
    g = p.add_argument_group("grid")
    g.add_argument("--lrs", type=_list(float, "--lrs"), default=[0.01, 0.1, 0.5], help="e.g. 0.01,0.1,0.5")
    g.add_argument("--batch-sizes", type=_list(int, "--batch-sizes"), default=[32, 128, 512], help="e.g. 32,128,512")
    g.add_argument("--weight-decays", type=_list(float, "--weight-decays"), default=None)
    g.add_argument("--rhos", type=_list(float, "--rhos"), default=None, help="SAM radii (with --optimizer sam)")
    g.add_argument("--optimizers", type=_list(str, "--optimizers"), default=None, help=f"subset of {','.join(OPTIMIZERS)}")
    b = p.add_argument_group("shared training settings")
    b.add_argument("--dataset", default="digits", choices=DATASETS)
    b.add_argument("--train-size", type=positive_int, default=None)
    b.add_argument("--test-size", type=positive_int, default=None)
    b.add_argument("--model", default="mlp", choices=sorted(MODELS))
    b.add_argument("--width", type=positive_int, default=64)
    b.add_argument("--depth", type=int, default=2)
    b.add_argument("--activation", default="relu", choices=sorted(ACTIVATIONS))
    b.add_argument("--optimizer", default="sgd", choices=OPTIMIZERS)
    b.add_argument("--momentum", type=float, default=0.9)
    b.add_argument("--weight-decay", type=float, default=0.0)
    b.add_argument("--rho", type=float, default=0.05)
    b.add_argument("--epochs", type=positive_int, default=5)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--snapshots", type=int, default=0, help="trajectory snapshots per run (0 = none)")
    m = p.add_argument_group("measures")
    m.add_argument("--measures", type=_list(str, "--measures"), default=["lambda_max", "trace", "flatness"],
                   help="subset of lambda_max,trace,flatness,per_layer")
    m.add_argument("--samples", type=positive_int, default=512, help="training examples for the measures")
    m.add_argument("--trace-probes", type=positive_int, default=20)
    m.add_argument("--flatness-radius", type=positive_float, default=0.05)
    m.add_argument("--flatness-directions", type=positive_int, default=8)
    m.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the tau intervals")
    r = p.add_argument_group("execution")
    r.add_argument("--out", required=True, help="sweep folder (run again with the same --out to resume)")
    r.add_argument("--n-jobs", type=int, default=1, help="local worker processes (-1: all cores)")
    r.add_argument("--scheduler", default=None, help="Dask scheduler address, e.g. tcp://127.0.0.1:8786")
    add_json_flag(p)
    p.set_defaults(func=run)
