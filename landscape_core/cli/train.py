"""``train``: train one model (every TrainConfig field is a flag) and save it as a run folder."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .common import add_device_flag, add_json_flag, resolve_device, tqdm_progress

_ADAM_LR, _SGD_LR = 1e-3, 0.05


def add_training_flags(p: argparse.ArgumentParser, *, optimizer: bool = True) -> None:
    """The flags shared by ``train`` and ``compare`` (values are validated by TrainConfig)."""
    from ..data import DATASETS
    from ..models import ACTIVATIONS, MODELS
    from ..optimizers import OPTIMIZERS, SCHEDULES

    d = p.add_argument_group("data")
    d.add_argument("--dataset", default="digits", choices=DATASETS, help="dataset name (default digits)")
    d.add_argument("--train-size", type=int, default=None, help="cap on training examples")
    d.add_argument("--test-size", type=int, default=None, help="cap on test examples")
    d.add_argument("--noise", type=float, default=0.1, help="noise of synthetic sets (moons, circles, spirals)")
    d.add_argument("--n-samples", type=int, default=1000, help="examples generated for synthetic sets")
    d.add_argument("--data-seed", type=int, default=0, help="train/test split seed")
    d.add_argument("--test-fraction", type=float, default=None,
                   help="held-out share (digits, synthetic, parity: default 0.25; modular_addition: the share of "
                        "the p^2 pairs held out, default 0.25, i.e. train fraction 0.75)")
    d.add_argument("--modulus", type=int, default=None, help="p of modular_addition (default 97)")
    d.add_argument("--seq-len", type=int, default=None, help="bit-string length of parity (default 8)")
    d.add_argument("--data-root", default=None, help="folder with a local torchvision copy")
    m = p.add_argument_group("model")
    m.add_argument("--model", default="mlp", choices=sorted(MODELS))
    m.add_argument("--width", type=int, default=64, help="MLP hidden width")
    m.add_argument("--depth", type=int, default=2, help="MLP hidden layers (--width 64 --depth 2 = 64-64-10)")
    m.add_argument("--activation", default="relu", choices=sorted(ACTIVATIONS))
    m.add_argument("--batchnorm", action="store_true", help="BatchNorm after hidden layers (MLP, CNN)")
    m.add_argument("--channels", type=int, default=16, help="CNN / ResNet-20 / cnn1d base channels")
    m.add_argument("--heads", type=int, default=4, help="Transformer attention heads (--width: model width, "
                                                         "--depth: blocks; LSTM/GRU: hidden size and layers)")
    o = p.add_argument_group("optimization")
    if optimizer:
        o.add_argument("--optimizer", default="sgd", choices=OPTIMIZERS)
    o.add_argument("--lr", type=float, default=None,
                   help=f"learning rate (default {_SGD_LR} for SGD/SAM, {_ADAM_LR} for the Adam family)")
    o.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    o.add_argument("--nesterov", action="store_true")
    o.add_argument("--weight-decay", type=float, default=0.0)
    o.add_argument("--rho", type=float, default=0.05, help="SAM neighbourhood radius")
    o.add_argument("--adaptive", action="store_true", help="ASAM (adaptive SAM)")
    o.add_argument("--beta2", type=float, default=0.999, help="Adam-family second-moment decay (0.98: fewer loss "
                                                             "spikes in long full-batch runs)")
    o.add_argument("--batch-size", type=int, default=64)
    o.add_argument("--full-batch", action="store_true", help="batch size = all training examples (overrides --batch-size)")
    o.add_argument("--epochs", type=int, default=10)
    o.add_argument("--schedule", default="constant", choices=SCHEDULES)
    o.add_argument("--seed", type=int, default=0, help="data order (and init) seed")
    o.add_argument("--init-seed", type=int, default=None, help="initialisation seed (default --seed)")
    o.add_argument("--max-grad-evals", type=int, default=None, help="stop after this many gradient evaluations")
    r = p.add_argument_group("recording")
    r.add_argument("--snapshots", type=int, default=12, help="trajectory snapshots (0 = none)")
    r.add_argument("--sharpness-every", type=int, default=0, help="lambda_max every k steps (0 = off)")
    r.add_argument("--sharpness-samples", type=int, default=256)
    r.add_argument("--eval-every", type=int, default=1,
                   help="evaluate train/test accuracy and weight norm every k epochs (1 = every epoch)")
    r.add_argument("--workspace", default=None, help="workspace folder (default $LANDSCAPE_WORKSPACE or ./workspace)")
    r.add_argument("--name", default=None, help="run name")
    add_device_flag(p)
    add_json_flag(p)


def default_lr(optimizer: str, lr: float | None) -> float:
    from ..optimizers import ADAM_FAMILY

    if lr is not None:
        return lr
    return _ADAM_LR if optimizer in ADAM_FAMILY else _SGD_LR


def config_from_args(args: argparse.Namespace, optimizer: str | None = None):
    """A validated TrainConfig from parsed flags."""
    from ..data import DatasetSpec
    from ..training import TrainConfig

    opt = optimizer or getattr(args, "optimizer", "sgd")
    if args.data_root:  # run specs never store machine paths; the loader reads this variable
        os.environ["LANDSCAPE_DATA"] = args.data_root
    extra = {} if args.test_fraction is None else {"test_fraction": args.test_fraction}
    ds = DatasetSpec(name=args.dataset, seed=args.data_seed, train_size=args.train_size, test_size=args.test_size,
                     n_samples=args.n_samples, noise=args.noise, modulus=args.modulus, seq_len=args.seq_len, **extra)
    batch_size = args.batch_size
    if getattr(args, "full_batch", False):
        from ..data import load_dataset

        batch_size = len(load_dataset(ds).train[1])
    return TrainConfig(
        dataset=ds.to_dict(), model=args.model, width=args.width, depth=args.depth, activation=args.activation,
        batchnorm=args.batchnorm, channels=args.channels, heads=args.heads, optimizer=opt, lr=default_lr(opt, args.lr),
        momentum=args.momentum, nesterov=args.nesterov, weight_decay=args.weight_decay, rho=args.rho,
        adaptive=args.adaptive, beta2=args.beta2, batch_size=batch_size, epochs=args.epochs, schedule=args.schedule,
        seed=args.seed, init_seed=args.init_seed, snapshots=args.snapshots, sharpness_every=args.sharpness_every,
        sharpness_samples=args.sharpness_samples, max_grad_evals=args.max_grad_evals, eval_every=args.eval_every,
        device=resolve_device(args.device),
    )


def progress_bar(desc: str):
    """``(callback, close)``: a training progress callback drawing a tqdm bar (over steps) on stderr."""
    state: dict = {"bar": None, "run": None, "last": 0}

    def cb(info: dict) -> None:
        if state["bar"] is None:
            state["bar"] = tqdm_progress(None, desc)
        update, _ = state["bar"]
        if info.get("run") != state["run"]:  # compare: a new run starts counting from step 0
            state["run"], state["last"] = info.get("run"), 0
        delta, state["last"] = info["step"] - state["last"], info["step"]
        postfix = {"loss": info["train_loss"], "test_acc": info["test_acc"]}
        if "optimizer" in info:
            postfix["opt"] = info["optimizer"]
        update(max(delta, 0), **postfix)

    def close() -> None:
        if state["bar"] is not None:
            state["bar"][1]()

    return cb, close


def run(args: argparse.Namespace) -> dict:
    from ..params import model_hash
    from ..runs import unique_run_path, validate_run_name, workspace_dir
    from ..training import train

    cfg = config_from_args(args)
    name = validate_run_name(args.name) if args.name else None
    if args.out:
        path = Path(args.out)
        name = name or path.name
    else:
        path = unique_run_path(workspace_dir(args.workspace), name or cfg.auto_name())
    cb, close = progress_bar(f"train {cfg.optimizer}")
    t0 = time.perf_counter()
    try:
        res = train(cfg, progress=cb, path=path, name=name or path.name)
    finally:
        close()
    out = {
        "path": str(res.path), "name": res.meta["name"], "weights_hash": model_hash(res.model),
        "final": res.final, "seconds": time.perf_counter() - t0,
        "steps": res.meta["steps"], "grad_evals": res.meta["grad_evals"],
        "status": res.meta.get("status", "ok"), "health": (res.meta.get("health") or {}).get("message"),
    }
    if out["status"] != "ok" and out["health"]:
        print(f"warning: {out['health']}", file=sys.stderr)
    return out


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model (SGD / Adam / SAM ...) and save it as a run")
    add_training_flags(p)
    p.add_argument("--out", default=None, help="run folder to create (default: <workspace>/<auto name>)")
    p.set_defaults(func=run)
