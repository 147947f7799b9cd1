"""``compare``: train several optimizers from the same initialisation and batch order, report their gaps."""

from __future__ import annotations

import argparse
import time

from .common import CLIError
from .train import _ADAM_LR, add_training_flags, config_from_args, progress_bar


def parse_optimizers(text: str) -> list[str]:
    """``"sgd,adam,sam"`` -> names, each checked against the known optimizers."""
    from ..optimizers import OPTIMIZERS

    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise CLIError(f"--optimizers needs at least one name, got {text!r}")
    bad = [n for n in names if n not in OPTIMIZERS]
    if bad:
        raise CLIError(f"unknown optimizer {bad[0]!r} in --optimizers; choose from {', '.join(OPTIMIZERS)}")
    return names


def run(args: argparse.Namespace) -> dict:
    from ..optimizers import ADAM_FAMILY
    from ..runs import validate_run_name, workspace_dir
    from ..training import compare

    names = parse_optimizers(args.optimizers)
    if args.name:
        validate_run_name(args.name)
    sgd_like = next((n for n in names if n not in ADAM_FAMILY), "sgd")
    base = config_from_args(args, optimizer=sgd_like)
    entries = [{"optimizer": n, "lr": args.adam_lr if n in ADAM_FAMILY else base.lr} for n in names]
    out_dir = None if args.no_save else workspace_dir(args.out or args.workspace)
    cb, close = progress_bar("compare")
    t0 = time.perf_counter()
    try:
        results = compare(base, entries, budget=args.budget, out_dir=out_dir, progress=cb, name_prefix=args.name)
    finally:
        close()
    runs = []
    for r in results:
        f = r.final
        runs.append({
            "optimizer": r.meta["config"]["optimizer"], "name": r.meta["name"],
            "path": str(r.path) if r.path else None, "test_acc": f["test_acc"], "train_acc": f["train_acc"],
            "test_loss": f["test_loss"], "train_loss": f["train_loss"], "gen_gap": f["gen_gap"],
            "acc_gap": f["acc_gap"], "seconds_per_epoch": r.meta["timings"]["seconds_per_epoch"],
            "steps": r.meta["steps"], "grad_evals": r.meta["grad_evals"], "lr": r.meta["config"]["lr"],
        })
    if args.json:
        return {"budget": args.budget, "runs": runs, "seconds": time.perf_counter() - t0}
    out: dict = {"budget": args.budget}
    for r in runs:
        out[r["optimizer"]] = (f"test_acc={r['test_acc']:.4f} train_acc={r['train_acc']:.4f} "
                               f"gen_gap={r['gen_gap']:.4f} acc_gap={r['acc_gap']:.4f} steps={r['steps']} "
                               f"grad_evals={r['grad_evals']} -> {r['path']}")
    return out


def register(sub) -> None:
    p = sub.add_parser("compare", help="train several optimizers from the same init and batch order")
    p.add_argument("--optimizers", default="sgd,adam,sam", help="comma-separated, e.g. sgd,adam,sam,asam")
    p.add_argument("--budget", default="steps", choices=("steps", "grad-evals"),
                   help="equal optimizer steps, or equal gradient evaluations (SAM then takes half the steps)")
    p.add_argument("--adam-lr", type=float, default=_ADAM_LR, help="learning rate of Adam-family entries")
    add_training_flags(p, optimizer=False)
    p.add_argument("--out", default=None, help="folder for the runs (default: the workspace)")
    p.add_argument("--no-save", action="store_true", help="do not save the runs")
    p.set_defaults(func=run)
