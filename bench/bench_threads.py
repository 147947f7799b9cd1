"""Thread policy measurements: 2 (all cores) vs 1 torch intra-op thread, quiet and under load.

Workloads on the digits MLP 64-64-64-10 tanh (``checkpoints/digits-sgd``, 1347 training examples):
  * ``hvp``: one Hessian-vector product (``auto`` mode: the closed-form MLP product), median of 20;
  * ``surface``: a 21x21 filter-normalised surface (batched evaluator);
  * ``train_step``: one full-batch SGD step (forward, backward, update).
Each (workload, threads) pair runs in a fresh subprocess (the thread count is fixed per process), the
pairs interleaved over ``--repeats`` rounds; medians are compared. ``--load N`` starts N background
processes doing single-threaded float32 matmuls for the whole measurement (a stand-in for other users
of a shared machine). Lines: ``threads <workload>: ours=<time at N threads> reference=<time at 1 thread>``;
the CLI's policy (all usable cores) is right where the ratio is <= 1.

Run: ``python bench/bench_threads.py [--threads 2] [--load 0] [--repeats 3]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402

WORKLOADS = ("hvp", "surface", "train_step")
_HOG = "import torch\ntorch.set_num_threads(1)\nA=torch.randn(1024,1024)\nwhile True: A@A\n"


def measure(workload: str, threads: int) -> float:
    import torch
    from torch import nn

    from landscape_core.analyses.cost import median_time
    from landscape_core.directions import random_plane
    from landscape_core.functional import LossFunction
    from landscape_core.hessian import hessian_operator
    from landscape_core.runs import checkpoints_dir, load_run
    from landscape_core.surface import surface_2d
    from landscape_core.threads import set_blas_threads

    torch.set_num_threads(threads)
    set_blas_threads(1)
    run = load_run(checkpoints_dir() / "digits-sgd")
    X, y = run.train_data
    model = run.model.eval()
    lf = LossFunction(model, X, y, batch_size=None)
    if workload == "hvp":
        op = hessian_operator(lf)
        v = torch.randn(op.dim, generator=torch.Generator().manual_seed(0))
        fn, reps = (lambda: op.matvec(v)), 20
    elif workload == "surface":
        d1, d2 = random_plane(lf.params0, normalization="filter", seed=0)
        fn, reps = (lambda: surface_2d(lf, d1, d2, grid=21)), 3
    else:
        m = run.model.train()
        opt = torch.optim.SGD(m.parameters(), lr=0.01)

        def fn() -> None:
            opt.zero_grad()
            nn.functional.cross_entropy(m(X), y).backward()
            opt.step()

        reps = 20
    return median_time(fn, reps)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="thread count compared with 1")
    ap.add_argument("--load", type=int, default=0, help="background single-thread matmul processes")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one repeat")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # "workload,threads"
    args = ap.parse_args(argv)
    if args.one:
        w, t = args.one.split(",")
        print(json.dumps(measure(w, int(t))))
        return 0
    repeats = 1 if args.quick else args.repeats
    hogs = [subprocess.Popen([sys.executable, "-c", _HOG]) for _ in range(args.load)]
    try:
        times: dict[tuple[str, int], list[float]] = {}
        for _ in range(repeats):
            for w in WORKLOADS:
                for t in (args.threads, 1):
                    p = subprocess.run([sys.executable, __file__, "--one", f"{w},{t}"], capture_output=True, text=True)
                    if p.returncode != 0:
                        print(f"# {w} at {t} threads failed: {p.stderr.strip().splitlines()[-1:]}", flush=True)
                        return 1
                    times.setdefault((w, t), []).append(json.loads(p.stdout.strip().splitlines()[-1]))
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    print(f"# bench_threads: {args.threads} vs 1 torch threads, {args.load} background load process(es), "
          f"{repeats} interleaved repeats (medians)", flush=True)
    for w in WORKLOADS:
        a, b = statistics.median(times[(w, args.threads)]), statistics.median(times[(w, 1)])
        r = a / b
        print(f"threads {w} ({args.threads} vs 1, load {args.load}): ours={a:.4g}s reference={b:.4g}s ratio={r:.3g} "
              f"target<=1 {'PASS' if r <= 1 else 'MISS'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
