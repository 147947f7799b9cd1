"""Curvature operators benchmark: one matvec of the GGN, Fisher (MC) and empirical Fisher against the Hessian's.

Workloads (reference: the Hessian's ``rev_rev`` matvec, measured in the same run, median of 3 interleaved
repeats of 5 matvecs each; a warm-up product first, which also fills the empirical Fisher's cache):
  (a) the shipped ``digits-sgd`` MLP on 512 training examples (batches of 256);
  (b) a 1-block Transformer (width 64, 4 heads) on modular addition p=47, 512 examples (untrained).
Both Jacobian modes of the GGN (``fwd``: torch.func.jvp + vjp; ``rev``: double-vjp from one forward) are
timed: the faster one on CPU is the ``AUTO_JACOBIAN_MODE`` default in ``landscape_core.ggn``.

Run: ``python bench/bench_curvature_operators.py [--threads N]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from landscape_core.data import analysis_subset, load_dataset  # noqa: E402
from landscape_core.fisher import empirical_fisher_operator, mc_fisher_operator  # noqa: E402
from landscape_core.functional import LossFunction, loss_function_for_run  # noqa: E402
from landscape_core.ggn import ggn_operator  # noqa: E402
from landscape_core.hessian import hessian_operator  # noqa: E402
from landscape_core.models import build_model, model_spec  # noqa: E402
from landscape_core.runs import checkpoints_dir, load_run  # noqa: E402


def workloads() -> dict[str, LossFunction]:
    out = {"digits MLP": loss_function_for_run(load_run(checkpoints_dir() / "digits-sgd"), samples=512, batch_size=256)}
    b = load_dataset({"name": "modular_addition", "modulus": 47, "test_fraction": 0.5})
    X, y = analysis_subset(*b.train, 512, seed=0)
    m = build_model(model_spec("transformer", b.input_shape, b.num_classes, vocab_size=b.vocab_size, width=64,
                               heads=4, depth=1), seed=0)
    out["Transformer p=47"] = LossFunction(m, X, y, batch_size=256)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for name, lf in workloads().items():
        ops = {
            "hessian rev_rev (reference)": hessian_operator(lf, mode="rev_rev"),
            "ggn rev": ggn_operator(lf, mode="rev"), "ggn fwd": ggn_operator(lf, mode="fwd"),
            "fisher-mc": mc_fisher_operator(lf), "empirical-fisher per_example": empirical_fisher_operator(lf),
            "empirical-fisher output": empirical_fisher_operator(lf, method="output"),
        }
        v = torch.randn(next(iter(ops.values())).dim, generator=torch.Generator().manual_seed(0))
        for op in ops.values():
            op.matvec(v)
        times: dict[str, list[float]] = {k: [] for k in ops}
        for _ in range(3):
            for k, op in ops.items():
                t = time.perf_counter()
                for _ in range(5):
                    op.matvec(v)
                times[k].append((time.perf_counter() - t) / 5)
        ref = statistics.median(times["hessian rev_rev (reference)"])
        print(f"== {name}: {ops['ggn rev'].dim} parameters, {lf.n} examples")
        for k, ts in times.items():
            m = statistics.median(ts)
            print(f"  {k:32s} {1e3 * m:8.2f} ms/matvec   {m / ref:5.2f}x the Hessian's")


if __name__ == "__main__":
    main()
