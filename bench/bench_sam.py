"""SAM benchmark: the cost of one SAM (and ASAM) training step against one SGD step, measured in the same run.

Workload: MLP 64-64-64-10 (tanh) on digits, batches of 128 drawn once from a seeded permutation, so
both optimizers see exactly the same batches, starting from the same seeded initialisation.

* ours: :func:`landscape_core.training.training_step` with SAM over SGD (momentum 0.9, rho 0.05):
  two forward-backward passes (the second with BatchNorm statistics frozen), perturb, exact restore,
  base step;
* reference: the same function with plain SGD (momentum 0.9): one forward-backward and a step.

SAM needs two gradient evaluations, so 2x is the floor; the target (<= 2.1x) bounds the bookkeeping
on top of that (norm, perturbation, restore). Each repeat times ``steps`` consecutive steps; SGD and
SAM repeats are interleaved so load from other processes hits both alike; the median per-step time is
reported, after a warm-up.

Run: ``python bench/bench_sam.py [--quick] [--threads N]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import copy  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

from landscape_core.data import load_dataset  # noqa: E402
from landscape_core.models import build_model, model_spec  # noqa: E402
from landscape_core.optimizers import make_optimizer  # noqa: E402
from landscape_core.training import training_step  # noqa: E402

TARGET = 2.1


def _time_steps(model: nn.Module, opt: torch.optim.Optimizer, batches: list) -> float:
    """Seconds per step over ``batches`` (one step per batch)."""
    criterion = nn.CrossEntropyLoss()
    model.train()
    t0 = time.perf_counter()
    for xb, yb in batches:
        training_step(model, opt, criterion, xb, yb)
    return (time.perf_counter() - t0) / len(batches)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    steps, repeats, warmup = (30, 7, 10) if args.quick else (50, 15, 30)

    X, y = load_dataset("digits").train
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(y), generator=g)
    batches = []
    while len(batches) < steps:
        for i in range(0, len(y) - 127, 128):
            idx = perm[i : i + 128]
            batches.append((X[idx], y[idx]))
        perm = torch.randperm(len(y), generator=g)
    batches = batches[:steps]
    base = build_model(model_spec("mlp", (1, 8, 8), 10, width=64, depth=3, activation="tanh"), seed=0)

    kinds = {
        "sgd": dict(name="sgd"),
        "sam": dict(name="sam", rho=0.05),
        "asam": dict(name="asam", rho=0.5),
    }
    models = {k: copy.deepcopy(base) for k in kinds}
    opts = {k: make_optimizer(v.pop("name"), models[k].parameters(), lr=0.05, momentum=0.9, **v)
            for k, v in kinds.items()}
    for k in kinds:  # warm-up (allocator, autograd graph caches)
        _time_steps(models[k], opts[k], batches[:warmup])
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(repeats):
        for k in kinds:
            times[k].append(_time_steps(models[k], opts[k], batches))
    med = {k: statistics.median(v) for k, v in times.items()}

    print(f"model: MLP 64-64-64-10 tanh on digits, batch 128; {steps} steps x {repeats} repeats (median); "
          f"threads {torch.get_num_threads()}")
    for k in ("sam", "asam"):
        ratio = med[k] / med["sgd"]
        verdict = "PASS" if ratio <= TARGET else "MISS"
        print(f"{k}_step/sgd_step: ours={med[k]:.6f}s reference={med['sgd']:.6f}s ratio={ratio:.3f} "
              f"target<={TARGET} [{verdict}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
