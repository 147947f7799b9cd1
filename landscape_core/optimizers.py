"""Optimizer and learning-rate schedule factories: sgd / adam / adamw / sam / asam / sam-adam by name.

``make_optimizer`` turns the plain settings stored in a run into a ``torch.optim`` object;
``make_schedule`` gives a per-step ``LambdaLR`` (constant, step decay, cosine).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from .sam import SAM

OPTIMIZERS = ("sgd", "adam", "adamw", "sam", "asam", "sam-adam")
SAM_OPTIMIZERS = ("sam", "asam", "sam-adam")
ADAM_FAMILY = ("adam", "adamw", "sam-adam")
SCHEDULES = ("constant", "step", "cosine")


def is_sam(name: str) -> bool:
    """Whether the named optimizer takes two gradient evaluations per step."""
    return name in SAM_OPTIMIZERS


def make_optimizer(
    name: str,
    params: Iterable,
    *,
    lr: float,
    momentum: float = 0.9,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    rho: float = 0.05,
    adaptive: bool = False,
    beta2: float = 0.999,
) -> Optimizer:
    """Build an optimizer by name.

    Args:
        name: ``sgd`` (heavy-ball momentum, optional Nesterov), ``adam``, ``adamw`` (decoupled weight
            decay, Loshchilov & Hutter 2019), ``sam`` (SAM over SGD with momentum), ``asam`` (adaptive
            SAM over SGD), ``sam-adam`` (SAM over Adam; ``adaptive`` makes it ASAM over Adam).
        params: parameters or parameter groups.
        lr: learning rate (> 0).
        momentum, nesterov: SGD momentum settings (ignored by the Adam family).
        weight_decay: L2 penalty (SGD, Adam) or decoupled decay (AdamW).
        rho: SAM neighbourhood radius (ignored by non-SAM optimizers).
        adaptive: ASAM for ``sam`` / ``sam-adam`` (``asam`` is always adaptive).
        beta2: the Adam family's second-moment decay (``betas = (0.9, beta2)``); 0.98 instead of the
            default 0.999 damps the loss spikes of long full-batch runs near zero loss (grokking, Nanda
            et al. 2023 use 0.98).
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"learning rate must be a positive finite number, got {lr}")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    if nesterov and momentum == 0 and name in ("sgd", "sam", "asam"):
        raise ValueError("nesterov momentum needs momentum > 0, got momentum=0")
    if not 0.0 <= beta2 < 1.0:
        raise ValueError(f"beta2 must be in [0, 1), got {beta2}")
    betas = (0.9, beta2)
    sgd_kw = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, **sgd_kw)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay)
    if name in ("sam", "asam"):
        return SAM(params, torch.optim.SGD, rho=rho, adaptive=adaptive or name == "asam", **sgd_kw)
    return SAM(params, torch.optim.Adam, rho=rho, adaptive=adaptive, lr=lr, betas=betas, weight_decay=weight_decay)


def schedule_factor(name: str, step: int, total_steps: int) -> float:
    """Learning-rate multiplier at ``step`` of ``total_steps``.

    ``constant``: 1. ``step``: 1, then x0.1 from 50% and x0.01 from 75% of the steps.
    ``cosine``: ``0.5 (1 + cos(pi step / total))``, from 1 down to 0 at the last step.
    """
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose from {', '.join(SCHEDULES)}")
    total = max(int(total_steps), 1)
    t = min(max(step, 0), total) / total
    if name == "constant":
        return 1.0
    if name == "step":
        return 1.0 if t < 0.5 else (0.1 if t < 0.75 else 0.01)
    return 0.5 * (1.0 + math.cos(math.pi * t))


def make_schedule(name: str, optimizer: Optimizer, total_steps: int) -> LambdaLR:
    """A per-step scheduler (call ``.step()`` after every optimizer step)."""
    schedule_factor(name, 0, total_steps)  # validates the name
    fn: Callable[[int], float] = lambda s: schedule_factor(name, s, total_steps)  # noqa: E731
    return LambdaLR(optimizer, fn)
