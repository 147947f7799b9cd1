"""Training loop: ``train(TrainConfig) -> TrainResult`` (history, trajectory, run folder) and ``compare``.

The loop is deliberately plain: shuffled mini-batches drawn from a ``torch.Generator`` seeded by
``cfg.seed`` (so two optimizers with the same seed see the same batches), a model initialised by
``build_model(spec, seed=cfg.init_seed)`` (so they start from the same weights), one optimizer step
per batch (SAM: two forward-backward passes, the second with BatchNorm statistics frozen), and a
full-data eval-mode evaluation after every epoch through :class:`~landscape_core.functional.LossFunction`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .data import SEQUENCE_TASKS, DataBundle, DatasetSpec, load_dataset
from .functional import LossFunction
from .health import check_training
from .models import MODELS, TOKEN_MODELS, build_model, has_batchnorm, model_spec
from .optimizers import ADAM_FAMILY, OPTIMIZERS, SCHEDULES, is_sam, make_optimizer, make_schedule
from .params import detached_buffers, detached_params, model_hash
from .runs import save_run, unique_run_path, validate_run_name
from .sam import SAM, bn_stats_frozen
from .sharpness import SharpnessTracker

#: per-epoch training callback: receives a dict (epoch, step, fraction, losses, accuracies, ...)
EpochCallback = Callable[[dict], None]
Budget = Literal["steps", "grad-evals"]
_EVAL_BATCH = 1024
_PROGRESS_EVERY = 20


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (stored in ``run.json`` as ``config``).

    Attributes:
        dataset: a :class:`DatasetSpec` dict (``{"name": "digits", ...}``); normalised on creation.
        model: registry name (``mlp``, ``cnn``, ``resnet20``, ``cnn1d``, ``transformer``, ``lstm``, ``gru``).
        width, depth: MLP hidden width and number of hidden layers (``64, 2`` = 64-64-C); the
            Transformer's width and blocks; the LSTM / GRU hidden size and layers.
        heads: Transformer attention heads (must divide ``width``).
        activation: hidden activation (``relu``, ``tanh``, ...), MLP and CNN.
        batchnorm: BatchNorm after each hidden layer (MLP, CNN; ResNet-20 always has it).
        channels: CNN base channels (also ResNet-20's base width).
        optimizer: one of ``sgd, adam, adamw, sam, asam, sam-adam``.
        lr: learning rate (> 0). momentum, nesterov: SGD momentum. weight_decay: L2 / decoupled.
        rho, adaptive: SAM radius and ASAM switch.
        beta2: second-moment decay of the Adam family (0.999 default; 0.98 for long full-batch runs).
        batch_size: mini-batch size, 1..n_train (checked against the data in :func:`train`).
        epochs: passes over the training set.
        schedule: ``constant``, ``step`` (x0.1 at 50% and 75%) or ``cosine``, applied per step.
        seed: data order (and the default init seed). init_seed: weight initialisation seed.
        snapshots: trajectory snapshots, evenly spaced over steps incl. init and final (0 = none).
        sharpness_every: measure lambda_max every k steps (0 = off); sharpness_samples: on that many
            training examples.
        max_grad_evals: stop once this many gradient evaluations are spent (equal-compute budgets;
            SAM spends 2 per step).
        eval_every: evaluate (train / test loss and accuracy, weight norm: one history row) every k
            epochs and after the last; 1 = every epoch. Long full-batch runs (grokking) use k > 1.
        save_if_cancelled: save the partial run when training is cancelled.
        device: ``cpu`` or ``cuda``.
    """

    dataset: dict = field(default_factory=lambda: {"name": "digits"})
    model: str = "mlp"
    width: int = 64
    depth: int = 2
    activation: str = "relu"
    batchnorm: bool = False
    channels: int = 16
    heads: int = 4
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    rho: float = 0.05
    adaptive: bool = False
    beta2: float = 0.999
    batch_size: int = 64
    epochs: int = 10
    schedule: str = "constant"
    seed: int = 0
    init_seed: int | None = None
    snapshots: int = 12
    sharpness_every: int = 0
    sharpness_samples: int = 256
    max_grad_evals: int | None = None
    eval_every: int = 1
    save_if_cancelled: bool = False
    device: str = "cpu"

    def __post_init__(self) -> None:
        ds = self.dataset
        if isinstance(ds, str):
            ds = {"name": ds}
        elif isinstance(ds, DatasetSpec):
            ds = ds.to_dict()
        if not isinstance(ds, Mapping):
            raise ValueError(f"dataset must be a dataset spec dict, got {ds!r}")
        object.__setattr__(self, "dataset", DatasetSpec.from_dict(dict(ds)).to_dict())
        if self.init_seed is None:
            object.__setattr__(self, "init_seed", self.seed)
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; choose from {', '.join(sorted(MODELS))}")
        tokens = self.dataset["name"] in SEQUENCE_TASKS
        if tokens != (self.model in TOKEN_MODELS):
            raise ValueError(
                f"dataset {self.dataset['name']!r} has token inputs: choose model {', '.join(TOKEN_MODELS)}; got "
                f"{self.model!r}" if tokens else
                f"model {self.model!r} needs a token dataset ({', '.join(SEQUENCE_TASKS)}), got {self.dataset['name']!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose from {', '.join(SCHEDULES)}")
        checks: list[tuple[str, bool]] = [
            ("lr", self.lr > 0 and math.isfinite(self.lr)),
            ("momentum", 0.0 <= self.momentum < 1.0),
            ("weight_decay", 0.0 <= self.weight_decay < math.inf),
            ("rho", 0.0 <= self.rho < math.inf),
            ("beta2", 0.0 <= self.beta2 < 1.0),
            ("width", self.width >= 1),
            ("depth", self.depth >= 0),
            ("channels", self.channels >= 1),
            ("heads", self.heads >= 1),
            ("eval_every", self.eval_every >= 1),
            ("batch_size", self.batch_size >= 1),
            ("epochs", self.epochs >= 1),
            ("snapshots", self.snapshots == 0 or self.snapshots >= 2),
            ("sharpness_every", self.sharpness_every >= 0),
            ("sharpness_samples", self.sharpness_samples >= 1),
            ("max_grad_evals", self.max_grad_evals is None or self.max_grad_evals >= 2),
        ]
        need = {
            "lr": "> 0", "momentum": "in [0, 1)", "weight_decay": ">= 0", "rho": ">= 0", "width": ">= 1",
            "depth": ">= 0", "channels": ">= 1", "batch_size": ">= 1", "epochs": ">= 1",
            "snapshots": "0 or >= 2", "sharpness_every": ">= 0", "sharpness_samples": ">= 1",
            "max_grad_evals": ">= 2", "heads": ">= 1", "eval_every": ">= 1", "beta2": "in [0, 1)",
        }
        for name, ok in checks:
            if not ok:
                raise ValueError(f"{name} must be {need[name]}, got {getattr(self, name)!r}")
        if self.nesterov and self.momentum == 0 and self.optimizer in ("sgd", "sam", "asam"):
            raise ValueError("nesterov needs momentum > 0, got momentum=0")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")

    @property
    def grad_evals_per_step(self) -> int:
        """2 for SAM-type optimizers with rho > 0 (ascent + descent pass), else 1."""
        return 2 if (is_sam(self.optimizer) and self.rho > 0) else 1

    def model_kwargs(self, bundle: DataBundle | None = None) -> dict:
        """Registry kwargs of the model (token models also take ``bundle.vocab_size``)."""
        if self.model == "mlp":
            return {"width": self.width, "depth": self.depth, "activation": self.activation,
                    "batchnorm": self.batchnorm}
        if self.model in ("cnn", "cnn1d"):
            return {"channels": self.channels, "activation": self.activation, "batchnorm": self.batchnorm}
        if self.model in TOKEN_MODELS:
            vocab = None if bundle is None else bundle.vocab_size
            if bundle is not None and vocab is None:
                raise ValueError(f"model {self.model!r} needs a token dataset (modular_addition, parity), "
                                 f"got {self.dataset['name']!r}")
            kw: dict[str, Any] = {"width": self.width, "depth": self.depth}
            if self.model == "transformer":
                kw["heads"] = self.heads
            return kw if vocab is None else {**kw, "vocab_size": vocab}
        return {"width": self.channels}

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(unknown)}")
        return cls(**d)

    def auto_name(self) -> str:
        return f"{self.dataset['name']}-{self.model}-{self.optimizer}-s{self.seed}"


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
