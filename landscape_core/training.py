"""Training loop: ``train(TrainConfig) -> TrainResult`` (history, trajectory, run folder) and ``compare``.

The loop is deliberately plain: shuffled mini-batches drawn from a ``torch.Generator`` seeded by
``cfg.seed`` (so two optimizers with the same seed see the same batches), a model initialised by
``build_model(spec, seed=cfg.init_seed)`` (so they start from the same weights), one optimizer step
per batch (SAM: two forward-backward passes, the second with BatchNorm statistics frozen), and a
full-data eval-mode evaluation after every epoch through :class:`~landscape_core.functional.LossFunction`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .data import load_dataset
from .functional import LossFunction
from .health import check_training
from .models import build_model, has_batchnorm, model_spec
from .optimizers import ADAM_FAMILY, make_optimizer, make_schedule
from .params import detached_buffers, detached_params, model_hash
from .runs import save_run, unique_run_path, validate_run_name
from .sam import SAM, bn_stats_frozen
from .sharpness import SharpnessTracker
from .train_config import TrainConfig

#: per-epoch training callback: receives a dict (epoch, step, fraction, losses, accuracies, ...)
EpochCallback = Callable[[dict], None]
Budget = Literal["steps", "grad-evals"]
_EVAL_BATCH = 1024
_PROGRESS_EVERY = 20


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` returns. ``model`` is in eval mode; ``path`` is ``None`` when nothing was saved.

    ``trajectory`` is ``(snapshots, steps)`` as saved in the run (``snapshots[name]``: ``(S, *shape)``).
    """

    model: nn.Module
    meta: dict
    history: list[dict]
    path: Path | None
    cancelled: bool
    trajectory: tuple[dict[str, Tensor], Tensor] | None = field(default=None, repr=False)

    @property
    def final(self) -> dict:
        return self.meta["final"]

    def to_dict(self) -> dict:
        return {
            "name": self.meta.get("name"), "path": str(self.path) if self.path else None,
            "cancelled": self.cancelled, "final": dict(self.meta["final"]), "history": list(self.history),
            "weights_hash": model_hash(self.model), "steps": self.meta["steps"],
            "grad_evals": self.meta["grad_evals"],
        }


def snapshot_steps(total_steps: int, snapshots: int) -> list[int]:
    """``snapshots`` step numbers evenly spaced over ``0..total_steps`` (both ends included)."""
    if snapshots <= 0:
        return []
    if total_steps <= 0:
        return [0]
    n = min(snapshots, total_steps + 1)
    return sorted({round(i * total_steps / (n - 1)) for i in range(n)})


def training_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, criterion: Callable[[Tensor, Tensor], Tensor],
    xb: Tensor, yb: Tensor,
) -> tuple[Tensor, int]:
    """One optimizer step on one batch; returns ``(detached loss at w, gradient evaluations used)``.

    SAM-type optimizers evaluate the closure twice (at ``w``, then at ``w + e``); the second pass runs
    under :func:`bn_stats_frozen`, so BatchNorm running statistics move once per step.
    """
    passes = 0

    def closure() -> Tensor:
        nonlocal passes
        optimizer.zero_grad(set_to_none=True)
        with bn_stats_frozen(model) if passes else contextlib.nullcontext():
            batch_loss = criterion(model(xb), yb)
            batch_loss.backward()
        passes += 1
        return batch_loss.detach()

    loss = optimizer.step(closure)
    optimizer.zero_grad(set_to_none=True)
    return loss, passes


def weight_norm(model: nn.Module) -> float:
    """``||theta||_2`` over all parameters (buffers excluded), in float64: what weight decay shrinks."""
    with torch.no_grad():
        return math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in model.parameters()))


def _check_finite(loss: float, step: int, cfg: TrainConfig) -> None:
    if not math.isfinite(loss):
        raise ValueError(f"training diverged at step {step} (loss={loss}) with lr={cfg.lr}: lower the learning rate")


def _sharpness_tracker(cfg: TrainConfig, X: Tensor, y: Tensor):
    if cfg.sharpness_every <= 0:
        return None
    return SharpnessTracker(X, y, every=cfg.sharpness_every, lr=cfg.lr, optimizer=cfg.optimizer,
                            momentum=cfg.momentum, seed=cfg.seed, samples=cfg.sharpness_samples)


def train(
    cfg: TrainConfig,
    *,
    progress: EpochCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    out_dir: str | Path | None = None,
    name: str | None = None,
    path: str | Path | None = None,
    extra_meta: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train a model as ``cfg`` says and (optionally) save it as a run folder.

    Args:
        cfg: the settings.
        progress: called with ``{"epoch", "epochs", "step", "steps", "fraction", "train_loss",
            "train_acc", "test_loss", "test_acc", "message"}`` every ~20 steps and after every epoch
            (metrics are the latest full-data evaluation), plus ``"event"``: ``"init"``, ``"step"`` or
            ``"epoch"`` (an epoch just ended and was evaluated).
        should_stop: polled every step; returning True stops cleanly (``cancelled=True``; the run is
            only saved if ``cfg.save_if_cancelled``).
        out_dir: save the run in this folder as ``name`` (``name-2``... if taken).
        name: run name (default :meth:`TrainConfig.auto_name`).
        path: save exactly here instead (error if it exists). Neither ``out_dir`` nor ``path``: not saved.
        extra_meta: merged into the run metadata (e.g. ``budget`` from :func:`compare`).

    Returns:
        :class:`TrainResult` with the eval-mode model, run metadata, per-epoch history and path.
    """
    if name is not None:
        validate_run_name(name)
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {cfg.device!r} requested but CUDA is not available")
    bundle = load_dataset(cfg.dataset)
    Xtr, ytr = bundle.train
    Xte, yte = bundle.test
    n = len(ytr)
    if cfg.batch_size > n:
        raise ValueError(f"batch_size {cfg.batch_size} is larger than the {n} training examples")
    spec = model_spec(cfg.model, bundle.input_shape, bundle.num_classes, **cfg.model_kwargs(bundle))
    model = build_model(spec, seed=cfg.init_seed).to(device)
    opt = make_optimizer(cfg.optimizer, model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                         nesterov=cfg.nesterov, weight_decay=cfg.weight_decay, rho=cfg.rho,
                         adaptive=cfg.adaptive, beta2=cfg.beta2)
    per_step = 2 if (isinstance(opt, SAM) and opt.perturbs) else 1
    n_used = n  # train-mode BatchNorm cannot normalise a batch of one: drop such a last example
    if has_batchnorm(model):
        if cfg.batch_size < 2:
            raise ValueError(f"batch_size {cfg.batch_size} is too small for BatchNorm (needs >= 2)")
        if n % cfg.batch_size == 1:
            n_used = n - 1
    steps_per_epoch = math.ceil(n_used / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_grad_evals is not None:
        total_steps = min(total_steps, cfg.max_grad_evals // per_step)
        if total_steps < 1:
            raise ValueError(f"max_grad_evals={cfg.max_grad_evals} allows no {cfg.optimizer} step")
    epochs = math.ceil(total_steps / steps_per_epoch)
    sched = make_schedule(cfg.schedule, opt, total_steps)
    criterion = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(cfg.seed)
    Xd, yd = Xtr.to(device), ytr.to(device)
    train_lf = LossFunction(model, Xtr, ytr, batch_size=_EVAL_BATCH, device=device)
    test_lf = LossFunction(model, Xte, yte, batch_size=_EVAL_BATCH, device=device)
    tracker = _sharpness_tracker(cfg, Xtr, ytr)

    def evaluate() -> dict:
        params = detached_params(model, clone=False)
        train_lf.buffers = test_lf.buffers = detached_buffers(model)
        tl, ta = train_lf.evaluate(params)
        vl, va = test_lf.evaluate(params)
        return {"train_loss": tl, "train_acc": ta, "test_loss": vl, "test_acc": va}

    snap_at = set(snapshot_steps(total_steps, cfg.snapshots))
    snaps: list[dict[str, Tensor]] = []
    snap_steps: list[int] = []

    def snapshot(step: int) -> None:
        if step in snap_at and (not snap_steps or snap_steps[-1] != step):
            snaps.append({k: v.detach().to("cpu", copy=True) for k, v in model.named_parameters()})
            snap_steps.append(step)

    history: list[dict] = []
    health = None  # a landscape_core.health.Divergence once training is diverged / at chance
    sharp_records: list[dict] = []
    latest_sharp: float | None = None
    metrics = evaluate()
    snapshot(0)
    step, grad_evals, cancelled = 0, 0, False
    t_start = time.perf_counter()
    train_seconds = 0.0
    epochs_run = 0

    def report(epoch: int, message: str, event: str) -> None:
        if progress is not None:
            progress({"epoch": epoch, "epochs": epochs, "step": step, "steps": total_steps,
                      "fraction": step / total_steps, **metrics, "message": message, "event": event})

    report(0, "initialised", "init")
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=gen).to(device)
        for i in range(0, n_used, cfg.batch_size):
            if step >= total_steps:
                break
            if should_stop is not None and should_stop():
                cancelled = True
                break
            idx = perm[i : i + cfg.batch_size]
            loss, passes = training_step(model, opt, criterion, Xd[idx], yd[idx])
            sched.step()
            step += 1
            grad_evals += passes
            if step % _PROGRESS_EVERY == 0 or step == total_steps:
                _check_finite(float(loss), step, cfg)
            snapshot(step)
            if tracker is not None:
                rec = tracker.maybe_measure(step, model, opt)
                if rec is not None:
                    sharp_records.append(dict(rec))
                    latest_sharp = rec.get("lambda_max", latest_sharp)
            if step % _PROGRESS_EVERY == 0:
                report(epoch, f"epoch {epoch}/{epochs} step {step}/{total_steps} batch loss {float(loss):.4g}",
                       "step")
        model.eval()
        seconds = time.perf_counter() - t0
        train_seconds += seconds
        epochs_run += 1
        if cancelled and step == 0:
            break
        if epoch % cfg.eval_every and not (cancelled or step >= total_steps or epoch == epochs):
            continue  # evaluated every eval_every epochs (and at the end) only
        metrics = evaluate()
        _check_finite(metrics["train_loss"], step, cfg)
        row = {"epoch": epoch, **metrics, "lr": opt.param_groups[0]["lr"], "seconds": seconds,
               "grad_evals": grad_evals, "step": step, "weight_norm": weight_norm(model)}
        if tracker is not None:
            row["sharpness"] = latest_sharp
        history.append(row)
        health = check_training(history, num_classes=bundle.num_classes, lr=cfg.lr, batch_size=cfg.batch_size,
                                n_test=len(yte), optimizer=cfg.optimizer,
                                lambda_max=max((r.get("lambda_max") or 0.0 for r in sharp_records), default=None))
        report(epoch, f"epoch {epoch}/{epochs}: train loss {metrics['train_loss']:.4g}, "
                      f"test acc {metrics['test_acc']:.3f}" + (" (cancelled)" if cancelled else ""), "epoch")
        if cancelled or step >= total_steps or (health is not None and health.stop):
            break
    model.eval()
    total_seconds = time.perf_counter() - t_start
    if snap_steps and snap_steps[-1] != step:  # cancelled: keep the point where it stopped
        snap_at.add(step)
        snapshot(step)

    final = dict(metrics)
    final["gen_gap"] = final["test_loss"] - final["train_loss"]
    final["acc_gap"] = final["train_acc"] - final["test_acc"]
    run_name = name or cfg.auto_name()
    meta: dict[str, Any] = {
        "name": run_name,
        "model": spec,
        "dataset": cfg.dataset,
        "config": cfg.to_dict(),
        "optimizer": {k: getattr(cfg, k) for k in ("optimizer", "lr", "momentum", "nesterov", "weight_decay",
                                                   "rho", "adaptive", "batch_size", "epochs", "schedule",
                                                   "seed", "init_seed")},
        "history": history,
        "final": final,
        "timings": {"total_seconds": total_seconds,
                    "seconds_per_epoch": train_seconds / max(epochs_run, 1)},
        "grad_evals": grad_evals,
        "steps": step,
        "total_steps": total_steps,
        "cancelled": cancelled,
        "status": "ok" if health is None else health.status,
        "health": None if health is None else health.to_dict(),
    }
    if tracker is not None:
        meta["sharpness"] = sharp_records
    if extra_meta:
        meta.update(extra_meta)
    trajectory = None
    if snaps:
        stacked = {k: torch.stack([s[k] for s in snaps]) for k in snaps[0]}
        trajectory = (stacked, torch.tensor(snap_steps, dtype=torch.int64))
    saved: Path | None = None
    if (path is not None or out_dir is not None) and (not cancelled or cfg.save_if_cancelled):
        target = Path(path) if path is not None else unique_run_path(out_dir, run_name)
        meta["name"] = target.name
        saved = save_run(target, model.to("cpu"), meta, trajectory)
    model = model.to("cpu").eval()
    return TrainResult(model=model, meta=meta, history=history, path=saved, cancelled=cancelled,
                       trajectory=trajectory)


def _overrides(entry: str | Mapping[str, Any], base: TrainConfig) -> dict:
    ov = {"optimizer": entry} if isinstance(entry, str) else dict(entry)
    if "optimizer" not in ov:
        raise ValueError(f"compare entry {entry!r} names no optimizer")
    if "lr" not in ov and ov["optimizer"] != base.optimizer:
        if ov["optimizer"] in ADAM_FAMILY and base.optimizer not in ADAM_FAMILY:
            ov["lr"] = 1e-3  # the usual Adam default; SGD-type learning rates make Adam diverge
    return ov


def compare(
    base_cfg: TrainConfig,
    optimizers: Sequence[str | Mapping[str, Any]],
    *,
    budget: Budget = "steps",
    out_dir: str | Path | None = None,
    progress: EpochCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    name_prefix: str | None = None,
) -> list[TrainResult]:
    """Train several optimizers from the same initialisation on the same batch order.

    Args:
        base_cfg: shared settings (data, model, seed, init_seed, epochs...).
        optimizers: names (``["sgd", "adam", "sam"]``) or override dicts (``{"optimizer": "sam",
            "rho": 0.1}``). Adam-family entries get ``lr=1e-3`` unless given (when the base is SGD-type).
        budget: ``"steps"``: every run takes the same number of optimizer steps; ``"grad-evals"``: the same
            number of gradient evaluations, so SAM (2 per step) takes half the steps.
        out_dir: save each run there (``<prefix>-<optimizer>``); ``None``: nothing saved.
        progress: as for :func:`train`, with ``fraction`` over all runs and ``run``/``runs``/``optimizer``.
        should_stop: stops the current run and skips the rest.

    Returns:
        One :class:`TrainResult` per entry; ``meta["budget"]`` records the budget.
    """
    if budget not in ("steps", "grad-evals"):
        raise ValueError(f"budget must be 'steps' or 'grad-evals', got {budget!r}")
    if not optimizers:
        raise ValueError("compare needs at least one optimizer")
    cfgs = [base_cfg.replace(**_overrides(e, base_cfg)) for e in optimizers]
    bundle = load_dataset(base_cfg.dataset)
    steps = base_cfg.epochs * math.ceil(len(bundle.train[1]) / base_cfg.batch_size)
    if budget == "grad-evals":
        evals = base_cfg.max_grad_evals or steps
        cfgs = [c.replace(max_grad_evals=evals) for c in cfgs]
    prefix = name_prefix or f"{base_cfg.dataset['name']}-{base_cfg.model}-cmp-s{base_cfg.seed}"
    results: list[TrainResult] = []
    for i, c in enumerate(cfgs):
        if should_stop is not None and should_stop():
            break

        def sub(info: dict, i: int = i, c: TrainConfig = c) -> None:
            if progress is not None:
                progress({**info, "fraction": (i + info["fraction"]) / len(cfgs), "run": i + 1,
                          "runs": len(cfgs), "optimizer": c.optimizer,
                          "message": f"[{c.optimizer} {i + 1}/{len(cfgs)}] {info['message']}"})

        run_steps = steps if c.max_grad_evals is None else min(steps, c.max_grad_evals // c.grad_evals_per_step)
        info = {"kind": budget, "steps": run_steps, "grad_evals": run_steps * c.grad_evals_per_step,
                "reference_steps": steps}
        name = f"{prefix}-{c.optimizer}" + (f"-{i + 1}" if [x.optimizer for x in cfgs].count(c.optimizer) > 1
                                           else "")
        res = train(c, progress=sub, should_stop=should_stop, out_dir=out_dir, name=name,
                    extra_meta={"budget": info})
        results.append(res)
        if res.cancelled:
            break
    return results
