"""Curvature benchmark: Lanczos vs power iteration vs ARPACK, Hutch++ vs Hutchinson, HVP vs gradient cost.

Workloads (references measured in the same run):
  (a) top-5 Hessian eigenvalues of the MLP 64-64-64-10 (tanh) on all 1797 digits, float32: our Lanczos
      against power iteration with deflation run to a 1e-3 relative residual; accuracy against ARPACK
      (``scipy.sparse.linalg.eigsh`` on a float64 HVP LinearOperator, tol 1e-12).
  (b) trace: HVPs needed for a 1% relative standard error, Hutch++ (random sketch, cost 2 s + probes)
      and Krylov-aware Hutch++ (s-step Lanczos basis, cost s + probes) vs plain Hutchinson, all
      estimated from measured variances (Hutchinson: per-probe variance; Hutch++: variance of the
      deflated part for several s). "1%" is relative to a reference trace: Krylov-Hutch++ with the
      largest basis and more deflated probes (its standard error is printed; it only sets the scale of
      the 1% target, so an error of e% in it moves the counts by ~2e%).
  (c) ResNet-20 (3x32x32 random inputs, batch 128, eval mode): one HVP against one gradient, both modes.
  (d) which recomputing HVP mode is faster on this device (informational; ``"auto"`` uses the retained
      graph when it fits and otherwise measures the two; ``AUTO_MODE`` in ``landscape_core.hessian`` is
      the fallback before a measurement: rev_rev on CPU won the MLP in every run and ResNet-20 in most).

Run: ``python bench/bench_curvature.py [--quick] [--threads N]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from landscape_core.analyses.cost import median_time  # noqa: E402
from landscape_core.functional import LossFunction  # noqa: E402
from landscape_core.hessian import default_mode, hessian_operator  # noqa: E402
from landscape_core.lanczos import lanczos  # noqa: E402
from landscape_core.power import power_iteration  # noqa: E402
from landscape_core.trace import _probes  # noqa: E402


def line(name: str, ours: float, ref: float, ratio: float, target: float, unit: str = "s") -> None:
    verdict = "PASS" if ratio <= target else "MISS"
    fmt = (lambda x: f"{x:.4g}{unit}") if unit else (lambda x: f"{x:.4g}")
    print(f"{name}: ours={fmt(ours)} reference={fmt(ref)} ratio={ratio:.4g} target<={target:g} {verdict}", flush=True)


def digits_model_and_data(samples: int | None):
    from landscape_core.data import load_dataset
    from landscape_core.models import build_model, model_spec
    from landscape_core.runs import checkpoints_dir, load_run

    ck = checkpoints_dir() / "digits-sgd"
    if (ck / "run.json").is_file():
        run = load_run(ck)
        model, data, src = run.model, run.data, "checkpoints/digits-sgd"
    else:  # train one quickly with plain torch
        data = load_dataset("digits")
        model = build_model(model_spec("mlp", data.input_shape, 10, width=64, depth=3, activation="tanh"), seed=0)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        X, y = data.train
        model.train()
        for _ in range(200):
            opt.zero_grad()
            nn.functional.cross_entropy(model(X), y).backward()
            opt.step()
        model.eval()
        src = "trained here (200 full-batch Adam steps)"
    X = torch.cat([data.train[0], data.test[0]])
    y = torch.cat([data.train[1], data.test[1]])
    if samples is not None:
        X, y = X[:samples], y[:samples]
    return model, X, y, src


def bench_top5(lf: LossFunction, quick: bool) -> dict:
    from scipy.sparse.linalg import LinearOperator, eigsh

    op = hessian_operator(lf)
    n = op.dim
    # ARPACK reference in float64
    op64 = hessian_operator(lf, dtype=torch.float64, check=False)
    A = LinearOperator((n, n), matvec=lambda v: op64.matvec(torch.from_numpy(np.ascontiguousarray(v).reshape(-1)))
                       .numpy(), dtype=np.float64)
    t0 = time.perf_counter()
    ref_vals = np.sort(eigsh(A, k=5, which="LA", tol=1e-12, v0=np.ones(n) / math.sqrt(n))[0])[::-1]
    t_ref = time.perf_counter() - t0
    print(f"# ARPACK float64 reference: {ref_vals.tolist()} ({op64.matvecs} HVPs, {t_ref:.1f}s)", flush=True)
    # ours: Lanczos (float32)
    op.matvecs = 0
    t0 = time.perf_counter()
    r = lanczos(op, k=5, tol=1e-5, seed=0)
    t_l = time.perf_counter() - t0
    # reference solver: power iteration with deflation to 1e-3
    op.matvecs = 0
    t0 = time.perf_counter()
    p = power_iteration(op, k=5, tol=1e-3, max_iter=1000, seed=0)
    t_p = time.perf_counter() - t0
    rel_l = float(np.max(np.abs(r.eigenvalues.numpy() - ref_vals) / np.abs(ref_vals)))
    p_sorted = np.sort(p.eigenvalues.numpy())[::-1]
    rel_p = float(np.max(np.abs(p_sorted - ref_vals) / np.abs(ref_vals)))
    print(f"# Lanczos: {r.eigenvalues.tolist()} ({r.matvecs} HVPs, converged={r.converged}); "
          f"power: {p.eigenvalues.tolist()} ({p.matvecs} HVPs, converged={p.converged}, max rel err {rel_p:.2e})",
          flush=True)
    line("top5-eig rel-err vs ARPACK (Lanczos)", rel_l, 0.0, rel_l, 1e-5, unit="")
    line("top5-eig HVPs Lanczos vs power+deflation", r.matvecs, p.matvecs, r.matvecs / p.matvecs, 0.3, unit="")
    line("top5-eig time Lanczos vs power+deflation", t_l, t_p, t_l / t_p, 0.5)
    return {"top": ref_vals}


def _deflated_variance(op, Qf: torch.Tensor, probes: int, gen: torch.Generator) -> tuple[float, float, int]:
    """Mean and variance of g'^T A g' with g' = (I - QQ^T) g over Rademacher probes."""
    res = []
    for _ in range(probes):
        g = _probes(op.dim, 1, "rademacher", gen, op.device, op.dtype)[:, 0]
        g = g - Qf @ (Qf.T @ g)
        res.append(float(torch.dot(op.matvec(g).double(), g.double())))
    return float(np.mean(res)), float(np.var(res, ddof=1)), probes


def bench_trace(lf: LossFunction, quick: bool) -> None:
    from landscape_core.lanczos import krylov_basis

    op = hessian_operator(lf, check=False)
    n = op.dim
    gen = torch.Generator().manual_seed(1)
    n_h = 30 if quick else 60
    t0 = time.perf_counter()
    est = []
    for _ in range(n_h):
        z = _probes(n, 1, "rademacher", gen, op.device, op.dtype)[:, 0]
        est.append(float(torch.dot(op.matvec(z).double(), z.double())))
    t_h = (time.perf_counter() - t0) / n_h
    var_h = float(np.var(est, ddof=1))
    n_res = 20 if quick else 30
    n_ref = 40 if quick else 80
    # Krylov-aware Hutch++: nested Lanczos bases (the first m columns of one run are the m-step basis)
    kr_sizes = (20, 40, 80)
    V, alpha, _ = krylov_basis(op, _probes(n, 1, "rademacher", gen, op.device, op.dtype)[:, 0], max(kr_sizes))
    kr = []
    for m in kr_sizes:
        mean, var, k = _deflated_variance(op, V[:, :m], n_ref if m == max(kr_sizes) else n_res, gen)
        kr.append((m, m, float(alpha[:m].sum()) + mean, var, k))
    # Hutch++ (Meyer et al.): random sketch S, Q = orth(A S), exact part tr(Q^T A Q): 2 s matvecs
    rs_sizes = (10, 20, 40) if quick else (20, 40)
    S = _probes(n, max(rs_sizes), "rademacher", gen, op.device, op.dtype)
    HS = op.matmat(S).double()
    rs = []
    for s in rs_sizes:
        Q, _ = torch.linalg.qr(HS[:, :s])
        Qf = Q.to(op.dtype)
        top = float(torch.einsum("ij,ij->", Q, op.matmat(Qf).double()))
        mean, var, k = _deflated_variance(op, Qf, n_res, gen)
        rs.append((s, 2 * s, top + mean, var, k))
    _, _, tr, var_ref, k_ref = kr[-1]
    se_ref = math.sqrt(var_ref / k_ref)
    print(f"# trace reference (Krylov-Hutch++, 80-step Lanczos basis + {k_ref} deflated probes): {tr:.6g} "
          f"+- {se_ref:.3g} ({100 * se_ref / abs(tr):.3f}% rel. stderr); Hutchinson {n_h} probes: "
          f"{np.mean(est):.6g} +- {math.sqrt(var_h / n_h):.3g}", flush=True)
    target = (0.01 * abs(tr)) ** 2
    need_h = math.ceil(var_h / target)

    def best(rows, label):
        out = None
        for s, cost, _est, var, _k in rows:
            need = cost + math.ceil(var / target)
            print(f"#   {label} s={s}: deflated variance {var:.4g} (Hutchinson {var_h:.4g}) -> {need} HVPs",
                  flush=True)
            out = need if out is None else min(out, need)
        return out

    b_rs = best(rs, "Hutch++")
    b_kr = best(kr, "Krylov-Hutch++")
    line("trace HVPs for 1% rel. stderr Hutch++ vs Hutchinson", b_rs, need_h, b_rs / need_h, 1 / 3, unit="")
    line("trace HVPs for 1% rel. stderr Krylov-Hutch++ vs Hutchinson", b_kr, need_h, b_kr / need_h, 1 / 3, unit="")
    print(f"# (one HVP on this workload: {1000 * t_h:.1f} ms; Hutchinson would need {need_h} probes; variances "
          f"from {n_h} / {n_res} probes carry ~{100 * math.sqrt(2 / (n_res - 1)):.0f}% sampling error)", flush=True)


def hvp_vs_grad(lf: LossFunction, repeats: int) -> tuple[float, dict[str, float]]:
    p = lf.params0
    t_g = median_time(lambda: lf.gradient(p), repeats)
    out = {}
    for mode in ("retained", "fwd_rev", "rev_rev"):
        op = hessian_operator(lf, mode=mode, check=False)
        v = torch.randn(op.dim, generator=torch.Generator().manual_seed(0)).to(op.dtype)
        out[mode] = median_time(lambda op=op, v=v: op.matvec(v), repeats)
    return t_g, out


def bench_resnet(quick: bool) -> dict[str, float]:
    from landscape_core.models import ResNet20

    torch.manual_seed(0)
    model = ResNet20((3, 32, 32), 10).eval()
    b = 32 if quick else 128
    X = torch.randn(b, 3, 32, 32)
    y = torch.randint(0, 10, (b,))
    lf = LossFunction(model, X, y)
    t_g, t = hvp_vs_grad(lf, 2 if quick else 3)
    auto = "retained"  # what "auto" picks whenever the graph fits the memory budget (it does here)
    for mode, th in t.items():
        if mode != auto:
            print(f"# resnet20 b={b} HVP({mode}, not the default) vs gradient: {th:.4g}s vs {t_g:.4g}s "
                  f"= {th / t_g:.3g}x", flush=True)
    line(f"resnet20 b={b} HVP(auto={auto}) vs gradient", t[auto], t_g, t[auto] / t_g, 3.0)
    return t


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="512 digits, smaller budgets, ResNet batch 32")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1: stable timings on a shared machine; 0 = torch default)")
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    model, X, y, src = digits_model_and_data(512 if args.quick else None)
    lf = LossFunction(model, X, y)
    n = sum(v.numel() for v in lf.params0.values())
    print(f"# bench_curvature: MLP 64-64-64-10 tanh from {src}, {len(y)} digits, {n} parameters, float32, "
          f"torch threads={torch.get_num_threads()}", flush=True)
    bench_top5(lf, args.quick)
    bench_trace(lf, args.quick)
    t_g, t_mlp = hvp_vs_grad(lf, 3)
    for mode, th in t_mlp.items():
        print(f"# MLP digits HVP({mode}) {1000 * th:.1f} ms, gradient {1000 * t_g:.1f} ms", flush=True)
    t_res = bench_resnet(args.quick)
    fastest = {name: min((m for m in t if m != "retained"), key=t.get) for name, t in (("mlp-digits", t_mlp),
                                                                                        ("resnet20", t_res))}
    print(f"# faster recomputing HVP mode on {'cuda' if torch.cuda.is_available() else 'cpu'}: "
          + ", ".join(f"{k}={v}" for k, v in fastest.items()), flush=True)
    print(f"# resnet20 HVP rev_rev / fwd_rev time = {t_res['rev_rev'] / t_res['fwd_rev']:.3g}; MLP "
          f"{t_mlp['rev_rev'] / t_mlp['fwd_rev']:.3g} (auto on cpu = {default_mode('cpu')}; timings on a shared "
          f"machine are noisy, repeat before changing AUTO_MODE)", flush=True)


if __name__ == "__main__":
    main()
