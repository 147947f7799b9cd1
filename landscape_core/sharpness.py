"""Sharpness during training: lambda_max of the loss Hessian every k steps, against the stability threshold.

Gradient descent with step size ``eta`` on a quadratic diverges along directions with curvature above
``2 / eta``; heavy-ball momentum ``beta`` moves the threshold to ``(2 + 2 beta) / eta``. Full-batch
training drives lambda_max up to that threshold and hovers there: the *edge of stability* (Cohen et
al. 2021). For Adam the relevant quantity is the *preconditioned* sharpness ``lambda_max(P^-1 H)`` with
``P = (1 - beta1^t) diag(sqrt(v_hat) + eps)`` built from the optimizer's second-moment state, whose
threshold is ``(2 + 2 beta1) / ((1 - beta1) eta)`` = ``38 / eta`` for ``beta1 = 0.9`` (Cohen et al. 2022,
"Adaptive gradient methods at the edge of stability").

The tracker never touches the training model: each measurement builds an eval-mode copy through
:class:`~landscape_core.functional.LossFunction` on a fixed data subset and runs a few Lanczos steps
warm-started from the previous top eigenvector.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .data import analysis_subset
from .functional import LossFunction
from .hessian import hessian_operator
from .lanczos import lanczos
from .operators import ScaledOperator

_ADAPTIVE = ("adam", "adamw", "sam-adam")


def _opt_name(optimizer: Any) -> str:
    if isinstance(optimizer, str):
        return optimizer.lower()
    return type(optimizer).__name__.lower()


def stability_threshold(lr: float, momentum: float = 0.0) -> float:
    """``(2 + 2 momentum) / lr``: curvature above it makes (heavy-ball) gradient descent unstable."""
    return (2.0 + 2.0 * momentum) / lr


def preconditioned_threshold(lr: float, beta1: float = 0.9) -> float:
    """``(2 + 2 beta1) / ((1 - beta1) lr)``: the edge-of-stability threshold of Adam's preconditioned sharpness."""
    return (2.0 + 2.0 * beta1) / ((1.0 - beta1) * lr)


class SharpnessTracker:
    """Measures lambda_max every ``every`` steps on a fixed subset, for the training loop.

    Args:
        X, y: training data (a seeded subset of ``samples`` examples is used).
        every: measure when ``step % every == 0``.
        lr: learning rate (for the threshold).
        optimizer: its name (``sgd``, ``adam``, ``adamw``, ``sam``, ``asam``, ``sam-adam``) or the object.
        momentum: heavy-ball momentum of SGD.
        seed: subset and Lanczos start seed.
        samples: subset size.
        iters: Lanczos steps per measurement at most (warm starts usually need far fewer).
        loss: the training loss (``cross_entropy`` or ``mse``).
    """

    def __init__(
        self,
        X: Tensor,
        y: Tensor,
        *,
        every: int,
        lr: float,
        optimizer: Any = "sgd",
        momentum: float = 0.0,
        seed: int = 0,
        samples: int = 256,
        iters: int = 20,
        loss: str = "cross_entropy",
        tol: float = 1e-3,
    ) -> None:
        if not (isinstance(every, int) and every >= 1):
            raise ValueError(f"every must be a positive integer, got {every!r}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not (isinstance(iters, int) and iters >= 1):
            raise ValueError(f"iters must be a positive integer, got {iters!r}")
        self.X, self.y = analysis_subset(X, y, samples, seed=seed)
        self.every, self.lr, self.momentum = every, float(lr), float(momentum)
        self.optimizer_name = _opt_name(optimizer)
        self.seed, self.iters, self.loss, self.tol = seed, iters, loss, tol
        self._v: Tensor | None = None
        self._pv: Tensor | None = None
        self.history: list[dict] = []

    @property
    def adaptive(self) -> bool:
        """Adam-type optimizer: the raw threshold does not bound lambda_max, the preconditioned one does."""
        return self.optimizer_name in _ADAPTIVE

    @property
    def threshold(self) -> float:
        """``(2 + 2 momentum) / lr`` for SGD / SAM; ``2 / lr`` (reference only) for Adam-type optimizers."""
        return stability_threshold(self.lr, 0.0 if self.adaptive else self.momentum)

    def maybe_measure(self, step: int, model: nn.Module, optimizer: Any = None) -> dict | None:
        """A measurement dict every ``every`` steps, else ``None``. The model is not modified."""
        if step % self.every != 0:
            return None
        return self.measure(step, model, optimizer)

    def measure(self, step: int, model: nn.Module, optimizer: Any = None) -> dict:
        """``{"step", "lambda_max", "threshold", "residual", "matvecs"}`` (+ preconditioned keys for Adam)."""
        lf = LossFunction(model, self.X, self.y, loss=self.loss)  # eval-mode deep copy
        op = hessian_operator(lf, check=False)
        v0 = self._v if self._v is not None and self._v.numel() == op.dim else None
        r = lanczos(op, 1, which="largest", max_iter=min(self.iters, op.dim), tol=self.tol, seed=self.seed, v0=v0)
        self._v = r.eigenvectors[:, 0].detach().clone()
        rec: dict[str, Any] = {
            "step": int(step),
            "lambda_max": float(r.eigenvalues[0]),
            "threshold": self.threshold,
            "threshold_applies": not self.adaptive,
            "residual": float(r.residuals[0]),
            "matvecs": int(r.matvecs),
        }
        name = self.optimizer_name if optimizer is None or isinstance(optimizer, str) else _opt_name(optimizer)
        if (self.optimizer_name in _ADAPTIVE or name in _ADAPTIVE) and optimizer is not None and not isinstance(
            optimizer, str
        ):
            pre = self._preconditioner(model, optimizer, op.names)
            if pre is not None:
                s, beta1 = pre
                pop = ScaledOperator(op, s.to(op.device, op.dtype))
                pv0 = self._pv if self._pv is not None and self._pv.numel() == op.dim else None
                pr = lanczos(pop, 1, which="largest", max_iter=min(self.iters, op.dim), tol=self.tol,
                             seed=self.seed + 1, v0=pv0)
                self._pv = pr.eigenvectors[:, 0].detach().clone()
                rec["preconditioned_lambda_max"] = float(pr.eigenvalues[0])
                rec["preconditioned_threshold"] = preconditioned_threshold(self.lr, beta1)
                rec["matvecs"] += int(pr.matvecs)
        self.history.append(rec)
        return rec

    @staticmethod
    def _preconditioner(model: nn.Module, optimizer: Any, names: list[str]) -> tuple[Tensor, float] | None:
        """``P^-1/2`` as a flat vector (order of ``names``) from Adam's state, and beta1; None before step 1."""
        base = getattr(optimizer, "base_optimizer", optimizer)
        group = base.param_groups[0]
        beta1, beta2 = group.get("betas", (0.9, 0.999))
        eps = group.get("eps", 1e-8)
        params = dict(model.named_parameters())
        parts = []
        for n in names:
            st = base.state.get(params[n])
            if not st or "exp_avg_sq" not in st:
                return None
            t = float(st["step"])
            v_hat = st["exp_avg_sq"].detach().double() / (1.0 - beta2**t)
            P = (1.0 - beta1**t) * (v_hat.sqrt() + eps)
            parts.append(P.reshape(-1).rsqrt())
        return torch.cat(parts), float(beta1)
