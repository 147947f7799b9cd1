"""``preset``: one-click classic comparisons (adam-vs-sgd, sgd-sam-adam) on digits, from one initialisation."""

from __future__ import annotations

import argparse
import sys

from .common import add_json_flag, positive_int, samples_arg


def run(args: argparse.Namespace) -> dict:
    from ..presets import run_preset
    from .sweep import text_table

    state = {"last": -1}

    def progress(frac: float, msg: str) -> None:
        pct = int(frac * 100)
        if pct != state["last"]:
            print(f"[{pct:3d}%] {msg}", file=sys.stderr, flush=True)
            state["last"] = pct

    res = run_preset(args.name, out_dir=args.out, budget=args.budget, epochs=args.epochs, dataset=args.dataset,
                     samples=args.samples, grid=args.grid, surfaces=not args.no_surfaces, progress=progress)
    d = res.to_dict()
    if args.json:
        return d
    cols = ["configuration", "steps", "grad_evals", "test_acc", "lambda_max", "trace", "gen_gap", "seconds_per_epoch"]
    return {"preset": d["title"], "budget": d["statement"], "table": "\n" + text_table(d["rows"], cols),
            "summary": " ".join(d["summary"]), "out": d["out_dir"]}


def register(sub) -> None:
    from ..presets import PRESETS

    p = sub.add_parser("preset", help="classic optimizer comparisons: " + ", ".join(PRESETS))
    p.add_argument("name", choices=list(PRESETS))
    p.add_argument("--out", required=True, help="folder for the runs")
    p.add_argument("--budget", default="steps", choices=("steps", "grad-evals"),
                   help="equal optimizer steps, or equal gradient evaluations (SAM = 2 per step)")
    p.add_argument("--epochs", type=positive_int, default=15)
    p.add_argument("--dataset", default="digits", choices=("digits", "mnist"), help="mnist: local copy only")
    p.add_argument("--samples", type=samples_arg, default=512)
    p.add_argument("--grid", type=positive_int, default=21, help="surface points per axis")
    p.add_argument("--no-surfaces", action="store_true")
    add_json_flag(p)
    p.set_defaults(func=run)
