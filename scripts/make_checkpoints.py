"""Regenerate the shipped demo runs in ``checkpoints/`` (deletes and recreates the folder, deterministically).

Runs (all digits runs: MLP 64-64-64-10 tanh, the benchmark model, same initialisation and batch order):
- ``digits-sgd``: SGD lr 0.05, momentum 0.9, batch 64, 30 epochs.
- ``digits-adam``: Adam lr 1e-3, batch 64, 30 epochs.
- ``digits-sam``: SAM over SGD (lr 0.05, momentum 0.9, rho 0.05), batch 64, 30 epochs.
- ``digits-sgd-sharp``: large batch (1024) and high lr (0.5) without momentum, 30 epochs: few, large
  steps end in a visibly sharper region (top Hessian eigenvalue ~10x that of ``digits-sgd``).
- ``moons-tiny``: moons, MLP 16-16-2 tanh (354 parameters), SGD: small enough for exact Hessians.
- ``modadd-p47-grokking``: the grokking lab's preset (``presets.grokking_config``: Transformer on a + b mod 47,
  full-batch AdamW, weight decay 1, 2000 steps) with 3 snapshots instead of 40, to stay under 1 MB.

Each run keeps 12 trajectory snapshots. Usage: ``python scripts/make_checkpoints.py [--out DIR]``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from landscape_core.data import load_dataset  # noqa: E402
from landscape_core.functional import LossFunction  # noqa: E402
from landscape_core.models import count_parameters  # noqa: E402
from landscape_core.params import model_hash  # noqa: E402
from landscape_core.presets import grokking_config  # noqa: E402
from landscape_core.training import TrainConfig, train  # noqa: E402

DIGITS = dict(dataset={"name": "digits"}, model="mlp", width=64, depth=3, activation="tanh", epochs=30,
              snapshots=12, seed=0, init_seed=0)
RUNS: dict[str, dict] = {
    "digits-sgd": dict(DIGITS, optimizer="sgd", lr=0.05, momentum=0.9, batch_size=64),
    "digits-adam": dict(DIGITS, optimizer="adam", lr=1e-3, batch_size=64),
    "digits-sam": dict(DIGITS, optimizer="sam", lr=0.05, momentum=0.9, batch_size=64, rho=0.05),
    "digits-sgd-sharp": dict(DIGITS, optimizer="sgd", lr=0.5, momentum=0.0, batch_size=1024),
    "moons-tiny": dict(dataset={"name": "moons", "n_samples": 600, "noise": 0.2}, model="mlp", width=16,
                       depth=2, activation="tanh", optimizer="sgd", lr=0.1, momentum=0.9, batch_size=32,
                       epochs=60, snapshots=12, seed=0, init_seed=0),
    "modadd-p47-grokking": grokking_config(snapshots=3).to_dict(),  # issue 15: the grokking lab's instant view
}
MAX_BYTES = 5 * 1024 * 1024


def _top_eigenvalue(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, iters: int = 50) -> float:
    """Largest Hessian eigenvalue of the training loss by plain power iteration (for the summary table)."""
    f = LossFunction(model, X, y)
    names, vals = list(f.params0), tuple(f.params0.values())

    def loss(*p: torch.Tensor) -> torch.Tensor:
        return f(dict(zip(names, p)))

    g = torch.Generator().manual_seed(0)
    v = tuple(torch.randn(t.shape, generator=g) for t in vals)
    lam = 0.0
    for _ in range(iters):
        n = torch.sqrt(sum((a * a).sum() for a in v))
        v = tuple(a / n for a in v)
        _, hv = torch.autograd.functional.hvp(loss, vals, v)
        lam = float(sum((a * b).sum() for a, b in zip(hv, v)))
        v = hv
    return lam


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "checkpoints"), help="target folder (deleted and recreated)")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(1)  # tiny models; one thread also fixes the floating-point reduction order
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    rows = []
    for name, settings in RUNS.items():
        t0 = time.perf_counter()
        res = train(TrainConfig(**settings), path=out / name, name=name)
        Xtr, ytr = load_dataset(res.meta["dataset"]).train
        lam = _top_eigenvalue(res.model, Xtr, ytr)
        rows.append((name, res, lam, time.perf_counter() - t0))
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    hdr = f"{'run':<18}{'params':>8}{'train_loss':>11}{'train_acc':>10}{'test_loss':>10}{'test_acc':>9}" \
          f"{'gen_gap':>9}{'lam_max':>9}{'sec':>6}  hash"
    print(hdr)
    for name, res, lam, sec in rows:
        f = res.final
        print(f"{name:<18}{count_parameters(res.model):>8}{f['train_loss']:>11.4f}{f['train_acc']:>10.4f}"
              f"{f['test_loss']:>10.4f}{f['test_acc']:>9.4f}{f['gen_gap']:>9.4f}{lam:>9.3f}{sec:>6.1f}  "
              f"{model_hash(res.model)[:12]}")
    du = subprocess.run(["du", "-sh", str(out)], capture_output=True, text=True).stdout.strip()
    print(f"total size: {total / 1024:.0f} KiB ({du})")
    if total > MAX_BYTES:
        print(f"error: checkpoints take {total} bytes, more than the 5 MB budget", file=sys.stderr)
        return 1
    # the home page's analyses, shipped with the runs (scripts/make_demo_cache.py, loaded by file path)
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_demo_cache", Path(__file__).with_name("make_demo_cache.py"))
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    return demo.main(["--checkpoints", str(out)])


if __name__ == "__main__":
    raise SystemExit(main())
