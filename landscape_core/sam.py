"""Sharpness-Aware Minimization (SAM, Foret et al. 2020) and adaptive SAM (ASAM, Kwon et al. 2021).

SAM minimises the worst loss in a ball of radius ``rho`` around the weights,
``min_w max_{||e|| <= rho} L(w + e)``, with a one-step approximation of the inner maximisation::

    g   = grad L(w)                                   # first forward-backward, at w
    e   = rho * g / ||g||                             # SAM ascent step, ||e|| = rho
        = rho * T^2 g / ||T g||,  T = |w| + eta       # ASAM (elementwise T): ||T^-1 e|| = rho
    w_old = w;  w = w + e                             # first_step()
    g'  = grad L(w + e)                               # second forward-backward, at w + e
    w   = w_old                                       # second_step(): restore exactly (copy back)
    w   = base_optimizer_update(w, g')                # ... then the base optimizer's step

``||.||`` is the global Euclidean norm over all parameters that have a gradient. ASAM's adaptive
ball ``{e : ||T^-1 e|| <= rho}`` makes the sharpness invariant to per-weight rescalings. With
``rho = 0`` no perturbation happens at all and the update is the base optimizer's, bit for bit.

The second forward pass sees perturbed weights, so it must not move BatchNorm running statistics:
wrap it in :func:`bn_stats_frozen` (the training loop does), so the statistics move once per step.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

_EPS = 1e-12  # guards the division by ||T g|| when the gradient vanishes


class _FlatBuffers:
    """Flat work vectors for one parameter group, with per-parameter views into them.

    ``w``: exact copy of the weights before the ascent; ``g``: the gradient (ASAM: ``T g``); ``e``: ASAM
    work space (``T``, then ``T T g``). Allocated once, reused every step.
    """

    def __init__(self, params: list[Tensor]) -> None:
        self.params = list(params)
        n = sum(p.numel() for p in params)
        p0 = params[0]
        self.w, self.g, self.e = (torch.empty(n, dtype=p0.dtype, device=p0.device) for _ in range(3))
        self.w_views, self.g_views, self.e_views = (self._views(v) for v in (self.w, self.g, self.e))

    def _views(self, flat: Tensor) -> list[Tensor]:
        out, i = [], 0
        for p in self.params:
            out.append(flat[i : i + p.numel()].view(p.shape))
            i += p.numel()
        return out

    def matches(self, params: list[Tensor]) -> bool:
        return len(params) == len(self.params) and all(a is b for a, b in zip(params, self.params))


class SAM(Optimizer):
    """SAM / ASAM wrapping any base optimizer class.

    Args:
        params: parameters or parameter groups (as for any ``torch.optim`` optimizer).
        base_optimizer: an optimizer *class* (e.g. ``torch.optim.SGD``); it is constructed here on the
            same parameter groups, so learning-rate schedulers on this object drive it too.
        rho: radius of the neighbourhood (>= 0). ``0`` reproduces the base optimizer exactly.
        adaptive: ASAM (Kwon et al. 2021) with ``T = |w| + eta`` elementwise.
        eta: ASAM's offset keeping ``T`` positive for zero weights (0.01 in the paper).
        **base_kwargs: passed to ``base_optimizer`` (lr, momentum, weight_decay, betas...).

    Example:
        >>> opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
        >>> loss_fn(model(x), y).backward(); opt.first_step(zero_grad=True)
        >>> with bn_stats_frozen(model): loss_fn(model(x), y).backward()
        >>> opt.second_step(zero_grad=True)
    """

    def __init__(
        self,
        params,
        base_optimizer: type[Optimizer],
        *,
        rho: float = 0.05,
        adaptive: bool = False,
        eta: float = 0.01,
        **base_kwargs: Any,
    ) -> None:
        if not (rho >= 0.0 and rho < float("inf")):
            raise ValueError(f"SAM rho must be a finite number >= 0, got {rho}")
        if eta < 0.0:
            raise ValueError(f"ASAM eta must be >= 0, got {eta}")
        if not (isinstance(base_optimizer, type) and issubclass(base_optimizer, Optimizer)):
            raise ValueError(f"base_optimizer must be a torch.optim.Optimizer class, got {base_optimizer!r}")
        defaults = dict(rho=float(rho), adaptive=bool(adaptive), eta=float(eta), **base_kwargs)
        super().__init__(params, defaults)
        self.base_optimizer = base_optimizer(self.param_groups, **base_kwargs)
        self.param_groups = self.base_optimizer.param_groups  # one set of groups: schedulers see both
        self.defaults.update(self.base_optimizer.defaults)
        self._perturbed = False
        self._saved: list[tuple[list[Tensor], list[Tensor]]] = []  # (moved params, their old values)
        self._buffers: dict[int, _FlatBuffers] = {}

    @property
    def perturbs(self) -> bool:
        """Whether a step perturbs the weights at all (some group has ``rho > 0``)."""
        return any(g["rho"] > 0 for g in self.param_groups)

    def _flat_buffers(self, index: int, params: list[Tensor]) -> _FlatBuffers | None:
        """Flat work buffers of group ``index`` (reused every step); ``None`` for mixed dtypes/devices."""
        cached = self._buffers.get(index)
        if cached is not None and cached.matches(params):
            return cached
        if len({(p.dtype, p.device) for p in params}) != 1:
            return None
        self._buffers[index] = _FlatBuffers(params)
        return self._buffers[index]

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Ascent: remember ``w`` and move to ``w + e`` with ``e = rho T^2 g / ||T g||``."""
        if self._perturbed:
            raise RuntimeError("SAM.first_step called twice without second_step")
        if not self.perturbs:  # rho = 0: the base optimizer, untouched
            if zero_grad:
                self.zero_grad()
            return
        work: list[tuple[dict, list[Tensor], _FlatBuffers | None, list[Tensor] | None]] = []
        squares: list[float] = []
        for index, group in enumerate(self.param_groups):
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            buf = self._flat_buffers(index, params)
            if buf is not None:  # one flat copy of w and of T g: few kernel launches for many tensors
                torch._foreach_copy_(buf.w_views, params)  # exact copy of w
                torch._foreach_copy_(buf.g_views, [p.grad for p in params])
                if group["adaptive"]:
                    torch.abs(buf.w, out=buf.e).add_(group["eta"])  # T = |w| + eta
                    buf.g.mul_(buf.e)  # T g
                squares.append(float(torch.dot(buf.g, buf.g)))
                work.append((group, params, buf, None))
            else:  # mixed dtypes / devices: per-tensor path
                old = [p.detach().clone() for p in params]
                tg = [p.grad for p in params]
                t = None
                if group["adaptive"]:
                    t = torch._foreach_abs(params)
                    torch._foreach_add_(t, group["eta"])
                    tg = torch._foreach_mul(t, tg)
                squares.extend(float(n) ** 2 for n in torch._foreach_norm(tg))
                if t is not None:
                    torch._foreach_mul_(t, tg)  # T (T g)
                work.append((group, params, None, [old, t if t is not None else tg]))
        gnorm = math.sqrt(sum(squares))
        for group, params, buf, slow in work:  # ||T g|| is global over all groups
            if group["rho"] == 0:
                continue
            scale = group["rho"] / (gnorm + _EPS)
            if buf is not None:
                if group["adaptive"]:  # e = rho * T (T g) / ||T g||
                    buf.e.mul_(buf.g)
                    torch._foreach_add_(params, buf.e_views, alpha=scale)
                else:  # e = rho * g / ||g||
                    torch._foreach_add_(params, buf.g_views, alpha=scale)
                self._saved.append((params, buf.w_views))
            else:
                old, direction = slow
                torch._foreach_add_(params, direction, alpha=scale)
                self._saved.append((params, old))
        self._perturbed = True
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Restore the stored weights exactly, then take the base optimizer's step with the new grads."""
        if self._perturbed:
            for params, old in self._saved:  # exact restore by copying w back: no w + e - e round-off
                torch._foreach_copy_(params, old)
            self._saved, self._perturbed = [], False
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad()

    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:  # type: ignore[override]
        """One full SAM step. ``closure`` computes the loss and calls ``backward()`` (grads are zeroed here).

        It is evaluated at ``w`` and, unless ``rho = 0``, again at ``w + e``. Returns the loss at ``w``.
        BatchNorm models: freeze running statistics for the second call yourself (see
        :func:`bn_stats_frozen`), or use the training loop which does it.
        """
        if closure is None:
            raise ValueError("SAM.step needs a closure that recomputes the loss and its gradient")
        closure = torch.enable_grad()(closure)
        self.zero_grad()
        loss = closure()
        if self.perturbs:  # rho = 0: one pass and the base step, exactly the base optimizer
            self.first_step(zero_grad=True)
            closure()
        self.second_step()
        return loss

    def state_dict(self) -> dict:
        """The base optimizer's state (momentum, Adam moments) and the shared groups (with rho, adaptive, eta)."""
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        if self._perturbed:
            raise RuntimeError("cannot load a state between SAM.first_step and SAM.second_step")
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups
        self._buffers = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base_optimizer.zero_grad(set_to_none=set_to_none)


_BN = nn.modules.batchnorm._BatchNorm


@contextlib.contextmanager
def bn_stats_frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, forward passes leave BatchNorm running statistics exactly as they were.

    The running mean / variance / batch counter of every BatchNorm layer are saved on entry and copied
    back on exit (so even ``momentum=None`` cumulative averages are untouched). Normalisation inside
    the block still uses batch statistics in train mode, as SAM's second pass should.
    """
    saved: list[tuple[Tensor, Tensor]] = []
    for m in model.modules():
        if isinstance(m, _BN):
            for b in (m.running_mean, m.running_var, m.num_batches_tracked):
                if b is not None:
                    saved.append((b, b.detach().clone()))
    try:
        yield model
    finally:
        with torch.no_grad():
            for buf, old in saved:
                buf.copy_(old)
