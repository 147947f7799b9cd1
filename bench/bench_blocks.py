"""Blocks of Hessian-vector products: does ``matmat`` beat ``k`` single products, and does block Lanczos pay?

Model and data: MLP 64-64-64-10 tanh from ``checkpoints/digits-sgd`` on all 1347 training examples, float32.

Table 1, per-product milliseconds for ``k`` products (``--k``, default 8), each mode of
:class:`~landscape_core.hessian.HessianOperator` with ``batched`` off and on: ``loop`` = ``k`` calls of
``matvec``; ``matmat`` = one block call (``rev_rev``: one gradient graph per block; ``fwd_rev``: vmapped
tangents; ``batched``: one ``is_grads_batched`` double backward). Interleaved, median of ``--repeats``.

Table 2, top-5 eigenvalues: the engine's single-vector Lanczos (``tol=1e-6, value_tol=1e-6``) against a
block Lanczos experiment written here (block size ``b``, full reorthogonalisation in float64, stop when
every wanted Ritz residual ``||B_j S_last||`` is below ``rtol * max|theta|``), HVP counts, time and
max relative error against the float64 ARPACK values. Block Lanczos pays only if a block product costs
well under ``b`` single products.

Threads: ``landscape_core.threads.apply_policy("bench")``. Run: ``python bench/bench_blocks.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from landscape_core.functional import LossFunction  # noqa: E402
from landscape_core.hessian import hessian_operator  # noqa: E402
from landscape_core.lanczos import lanczos  # noqa: E402
from landscape_core.operators import LinearOperator  # noqa: E402
from landscape_core.threads import apply_policy  # noqa: E402

warnings.filterwarnings("ignore", message=".*create_graph=True.*")


def block_lanczos_top(op: LinearOperator, k: int, b: int, rtol: float, max_blocks: int = 60,
                      seed: int = 0) -> tuple[np.ndarray, int]:
    """Top-``k`` Ritz values of a block Krylov space (block size ``b``), and the products used."""
    n, start = op.dim, op.matvecs
    Q, _ = torch.linalg.qr(torch.randn(n, b, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    basis, T, B_prev = Q, None, None
    vals = np.zeros(k)
    for _ in range(max_blocks):
        W = op.matmat(Q.to(op.dtype)).double()
        A = Q.T @ W
        W = W - basis @ (basis.T @ W)  # full reorthogonalisation, twice
        W = W - basis @ (basis.T @ W)
        Q_next, B = torch.linalg.qr(W)
        m = basis.shape[1]
        Tn = torch.zeros(m, m, dtype=torch.float64)
        if T is not None:
            Tn[: m - b, : m - b] = T
            Tn[m - 2 * b : m - b, m - b :] = B_prev.T
            Tn[m - b :, m - 2 * b : m - b] = B_prev
        Tn[m - b :, m - b :] = (A + A.T) / 2
        T = Tn
        theta, S = torch.linalg.eigh(T)
        vals = theta[-k:].flip(0).numpy()
        res = (B @ S[m - b :, -k:]).norm(dim=0)
        if bool((res <= rtol * theta.abs().max()).all()):
            break
        B_prev, Q = B, Q_next
        basis = torch.cat([basis, Q], dim=1)
    return vals, op.matvecs - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    threads = apply_policy("bench")
    from landscape_core.runs import checkpoints_dir, load_run

    run = load_run(checkpoints_dir() / "digits-sgd")
    X, y = run.train_data
    lf = LossFunction(run.model.eval(), X.reshape(len(X), -1).contiguous(), y, batch_size=None)
    k = args.k
    V = torch.randn(sum(p.numel() for p in lf.params0.values()), k, generator=torch.Generator().manual_seed(0))
    print(f"# bench_blocks: digits MLP, 1347 examples, torch threads {threads}, k={k}, "
          f"{args.repeats} interleaved repeats (medians), ms per product", flush=True)
    for mode in ("retained", "rev_rev", "fwd_rev"):
        for batched in (False, True):
            op = hessian_operator(lf, mode=mode, batched=batched)
            op.matmat(V[:, :2])  # graphs / warm-up
            loop, block = [], []
            for _ in range(args.repeats):
                t = time.perf_counter()
                for j in range(k):
                    op.matvec(V[:, j])
                loop.append(time.perf_counter() - t)
                t = time.perf_counter()
                op.matmat(V)
                block.append(time.perf_counter() - t)
            lo, bl = statistics.median(loop) / k * 1e3, statistics.median(block) / k * 1e3
            print(f"hvp block {mode:8s} batched={batched!s:5s}: loop={lo:.3f}ms matmat={bl:.3f}ms "
                  f"ratio={bl / lo:.3f}", flush=True)

    from bench_tools import arpack_top5  # the float64 reference of bench_tools

    ref = arpack_top5(run.model.eval(), lf.X, lf.y)
    op = hessian_operator(lf)
    t = time.perf_counter()
    r = lanczos(op, 5, tol=1e-6, value_tol=1e-6)
    t = time.perf_counter() - t
    err = float(np.max(np.abs(r.eigenvalues.numpy() - ref) / np.abs(ref)))
    print(f"top5 single-vector Lanczos: {r.matvecs} HVPs {t:.3f}s max rel err {err:.2e}", flush=True)
    for b in (5, 6, 8):
        for rtol in (1e-3, 1e-4):
            op = hessian_operator(lf)
            t = time.perf_counter()
            vals, mv = block_lanczos_top(op, 5, b, rtol)
            t = time.perf_counter() - t
            err = float(np.max(np.abs(vals - ref) / np.abs(ref)))
            print(f"top5 block Lanczos b={b} rtol={rtol:g}: {mv} HVPs {t:.3f}s max rel err {err:.2e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
