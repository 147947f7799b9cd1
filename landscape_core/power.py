"""Power iteration with deflation: the simple reference eigen-solver (largest |lambda| first).

Iterate ``v <- A v / ||A v||`` in the orthogonal complement of the eigenvectors already found
(projection deflation); the Rayleigh quotient ``lambda = v^T A v`` converges to the eigenvalue of
largest magnitude, which may be negative. Each iteration costs one matvec and stops when the relative
residual ``||A v - lambda v|| / |lambda| < tol``. Convergence is linear with rate ``|lambda_2/lambda_1|``,
which is why Lanczos (same matvecs, whole Krylov space) is the default.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from .lanczos import EigenResult
from .operators import LinearOperator, as_operator


def power_iteration(
    op: LinearOperator | Tensor,
    k: int = 1,
    *,
    tol: float = 1e-3,
    max_iter: int = 1000,
    seed: int = 0,
) -> EigenResult:
    """Top-``k`` eigenpairs by magnitude with deflation; ``max_iter`` iterations per eigenpair at most."""
    op = as_operator(op)
    n = op.dim
    if not (isinstance(k, int) and 1 <= k <= n):
        raise ValueError(f"k must be between 1 and the operator size {n}, got {k}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    t0 = time.perf_counter()
    start = op.matvecs
    gen = torch.Generator().manual_seed(seed)
    vecs: list[Tensor] = []
    vals, res = [], []
    all_conv, iters = True, 0

    def deflate(x: Tensor) -> Tensor:
        for u in vecs:
            x = x - torch.dot(u, x) * u
        return x

    for _ in range(k):
        v = deflate(torch.randn(n, generator=gen, dtype=torch.float64).to(op.device, op.dtype))
        v = v / v.norm()
        lam, r, conv = 0.0, float("inf"), False
        for _ in range(max_iter):
            iters += 1
            w = deflate(op.matvec(v))
            lam = float(torch.dot(w.double(), v.double()))
            r = float((w - lam * v).double().norm())
            if r < tol * max(abs(lam), 1e-300):
                conv = True
                break
            nw = w.norm()
            if float(nw) == 0:
                conv = True
                break
            v = w / nw
        all_conv &= conv
        vecs.append(v)
        vals.append(lam)
        res.append(r)
    return EigenResult(
        eigenvalues=torch.tensor(vals, dtype=torch.float64),
        eigenvectors=torch.stack(vecs, dim=1),
        residuals=torch.tensor(res, dtype=torch.float64),
        matvecs=op.matvecs - start,
        seconds=time.perf_counter() - t0,
        converged=all_conv,
        iterations=iters,
    )
