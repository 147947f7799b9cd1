"""Scaling table: HVP, top-5 eigenvalues and a 41x41 surface for MLP widths and data sizes, with peak memory.

Rows (tanh MLP, depth 3, 10 classes, 8x8 digit inputs, float32, eval mode):
  * width 64 / 256 / 1024 on 1347 examples (the digits training split);
  * 512 / 1347 / 4096 examples at width 64 (4096: all 1797 digits plus noisy copies).
Width 64 uses ``checkpoints/digits-sgd``'s weights; the wider models a seeded random init (the cost does
not depend on the weights). Columns:
  * ``hvp_ms``: one Hessian-vector product (``auto`` mode: the closed-form MLP product, ``analytic``),
    median of 5,
    and PyHessian's on the same model and data (``pyh_ms``) with the ratio;
  * ``top5_s``, ``top5_hvps``: Lanczos top-5 (``tol=1e-6, value_tol=1e-6``), graph build included;
  * ``surf41_s``: 41x41 filter-normalised surface; at width >= 1024 only ``--rows`` rows of the grid
    are evaluated and the time scaled to 41 rows (marked ``*``);
  * ``peak_MiB``: peak resident memory of the row's own process (each row runs in a fresh subprocess;
    the first line gives the baseline of an idle process that imported torch and the engine).

Threads: ``landscape_core.threads.apply_policy("bench")``; ``$LANDSCAPE_TORCH_THREADS`` overrides.
Run: ``python bench/bench_scaling.py [--quick]`` (``--quick``: 21x21 surface, widths 64/256, 512/1347 examples).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from landscape_core.threads import apply_policy  # noqa: E402

warnings.filterwarnings("ignore", message=".*create_graph=True.*")


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    from landscape_core.data import load_dataset

    d = load_dataset("digits")
    if n <= len(d.train[1]):
        X, y = d.train[0][:n], d.train[1][:n]
    else:
        X = torch.cat([d.train[0], d.test[0]])
        y = torch.cat([d.train[1], d.test[1]])
        g = torch.Generator().manual_seed(0)
        reps = -(-n // len(y))
        X = torch.cat([X] + [X + 0.1 * torch.randn(X.shape, generator=g) for _ in range(reps - 1)])[:n]
        y = y.repeat(reps)[:n]
    return X.reshape(len(X), -1).contiguous(), y


def _model(width: int) -> nn.Module:
    from landscape_core.models import build_model, model_spec
    from landscape_core.runs import checkpoints_dir, load_run

    if width == 64:
        return load_run(checkpoints_dir() / "digits-sgd").model.eval()
    return build_model(model_spec("mlp", (1, 8, 8), 10, width=width, depth=3, activation="tanh"), seed=0).eval()


def one_row(width: int, n: int, grid: int, rows: int | None) -> dict:
    from pyhessian import hessian
    from pyhessian.utils import hessian_vector_product

    from landscape_core.analyses.cost import median_time
    from landscape_core.directions import random_plane
    from landscape_core.evaluator import evaluate_points
    from landscape_core.functional import LossFunction
    from landscape_core.hessian import hessian_operator
    from landscape_core.lanczos import lanczos

    model = _model(width)
    X, y = _data(n)
    lf = LossFunction(model, X, y, batch_size=None)
    out: dict = {"width": width, "n": n, "params": sum(p.numel() for p in model.parameters())}

    op = hessian_operator(lf)
    v = torch.randn(op.dim, generator=torch.Generator().manual_seed(0))
    out["hvp_ms"] = 1e3 * median_time(lambda: op.matvec(v), 5)
    out["mode"] = op.mode
    out["graph_MiB"] = op.graph_bytes / 2**20
    h = hessian(model, nn.CrossEntropyLoss(), data=(X, y), cuda=False)
    vs = [torch.randn_like(p) for p in h.params]
    out["pyh_ms"] = 1e3 * median_time(lambda: hessian_vector_product(h.gradsH, h.params, vs), 5)
    t = time.perf_counter()
    r = lanczos(hessian_operator(lf), 5, tol=1e-6, value_tol=1e-6)
    out["top5_s"], out["top5_hvps"] = time.perf_counter() - t, r.matvecs
    d1, d2 = random_plane(lf.params0, normalization="filter", seed=0)
    a = np.linspace(-1, 1, grid)
    use_rows = grid if rows is None else min(rows, grid)
    coords = np.array([(ai, bj) for bj in a[:use_rows] for ai in a])
    evaluate_points(lf, [d1, d2], coords[:grid])  # warm-up
    t = time.perf_counter()
    evaluate_points(lf, [d1, d2], coords)
    out["surf_s"] = (time.perf_counter() - t) * grid / use_rows
    out["surf_extrapolated"] = use_rows < grid
    out["peak_MiB"] = _peak_mib()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rows", type=int, default=3, help="grid rows measured at width >= 1024 (scaled to the grid)")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # "width,n,grid,rows": one row, JSON out
    args = ap.parse_args(argv)
    threads = apply_policy("bench")
    if args.one:
        w, n, g, rows = (int(x) for x in args.one.split(","))
        print(json.dumps(one_row(w, n, g, rows if rows > 0 else None)))
        return 0
    grid = 21 if args.quick else 41
    configs = [(64, 1347), (256, 1347)] + ([] if args.quick else [(1024, 1347)])
    configs += [(64, 512)] + ([] if args.quick else [(64, 4096)])
    base = subprocess.run([sys.executable, "-c", "import resource, torch, landscape_core.surface, landscape_core.hessian;"
                           "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"],
                          capture_output=True, text=True, cwd=str(Path(__file__).resolve().parents[1]))
    print(f"# bench_scaling: torch threads {threads}; surface grid {grid}x{grid}; baseline process peak "
          f"{float(base.stdout.strip() or 'nan'):.0f} MiB", flush=True)
    print(f"# {'width':>5} {'n':>5} {'params':>8} {'hvp_ms':>8} {'pyh_ms':>8} {'mode':>8} {'graph_MiB':>9} "
          f"{'top5_s':>7} {'hvps':>4} {'surf_s':>8} {'peak_MiB':>8}", flush=True)
    rc = 0
    for w, n in configs:
        rows = args.rows if w >= 1024 else 0
        p = subprocess.run([sys.executable, __file__, "--one", f"{w},{n},{grid},{rows}"], capture_output=True, text=True)
        if p.returncode != 0:
            print(f"# width {w} n {n}: failed: {p.stderr.strip().splitlines()[-1:]}", flush=True)
            rc = 1
            continue
        r = json.loads(p.stdout.strip().splitlines()[-1])
        star = "*" if r["surf_extrapolated"] else " "
        print(f"# {w:>5} {n:>5} {r['params']:>8} {r['hvp_ms']:>8.2f} {r['pyh_ms']:>8.2f} {r['mode']:>8} "
              f"{r['graph_MiB']:>9.1f} {r['top5_s']:>7.3f} {r['top5_hvps']:>4} {r['surf_s']:>7.2f}{star} "
              f"{r['peak_MiB']:>8.0f}", flush=True)
        ratio = r["hvp_ms"] / r["pyh_ms"]
        print(f"scaling HVP width={w} n={n}: ours={r['hvp_ms']:.3g}ms reference={r['pyh_ms']:.3g}ms ratio={ratio:.3g} "
              f"target<=1 {'PASS' if ratio <= 1 else 'MISS'}", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
