"""The loss Hessian as a linear operator: Hessian-vector products over all batches, with a matvec counter.

``hessian_operator(loss_fn)`` never forms the ``n x n`` matrix. Its ``matvec(v)`` returns

    H v = sum_b w_b * d^2 L_b(theta) / d theta^2 . v,     w_b = n_b / N,

the batch Hessians **averaged weighted by batch size**, so the product equals the full-batch Hessian
applied to ``v`` whatever the batch size. Four ways to differentiate twice:

- ``"analytic"``: plain MLPs only, the R-operator written out layer by layer with no autograd graph
  (:mod:`landscape_core.mlp_curvature`; 1.4x faster than ``"retained"``, same arithmetic);
- ``"retained"``: each batch's gradient graph is built once (``create_graph=True``) and reused by every
  product (``retain_graph=True``): one double backward per product (what PyHessian does);
- ``"rev_rev"``: reverse-over-reverse (double backward), rebuilding forward + backward each time;
- ``"fwd_rev"``: forward-over-reverse, ``torch.func.jvp(torch.func.grad(L_b), (theta,), (v,))``.

``"auto"`` takes ``"analytic"`` for a plain MLP, else keeps the graphs when they fit a memory budget and otherwise measures the two recomputing
modes once per (model, data size, device). ``matmat(V)`` computes a block of ``k`` products with shared
work where there is some to share (one gradient graph per block in ``"rev_rev"``, vmapped tangents in
``"fwd_rev"``, optionally one vmapped double backward; see :meth:`HessianOperator.matmat`). The operator holds detached copies of the parameters; the caller's model and parameter dicts are never touched.
Estimators (Lanczos, trace, density) take such an operator *or a plain dense symmetric tensor*
(wrapped in :class:`~landscape_core.operators.DenseOperator`), never a model.

Example:
    >>> op = hessian_operator(loss_fn)                       # doctest: +SKIP
    >>> torch.allclose(op.dense(), torch.func.hessian(...))  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from torch import Tensor
from torch.func import grad, jvp, vmap

from .determinism import checked
from .eval_batchnorm import with_eval_batchnorm
from .functional import LossFunction
from .operators import ParameterOperator
from .params import Params

HVPMode = Literal["auto", "analytic", "retained", "fwd_rev", "rev_rev"]
MODES = ("auto", "analytic", "retained", "fwd_rev", "rev_rev")

#: Faster *recomputing* HVP mode per device type when no measurement is cached (double backward won
#: for small MLPs and ResNet-20 batches on CPU; forward-over-reverse is the usual winner on CUDA).
AUTO_MODE: dict[str, str] = {"cpu": "rev_rev", "cuda": "fwd_rev"}

#: Bytes of autograd-saved tensors the retained gradient graphs may hold (all batches together).
#: Sized for a 2-core, 24 GiB machine shared by a few processes; ``$LANDSCAPE_HVP_MEMORY_MB`` overrides.
DEFAULT_MEMORY_BUDGET = 2 * 2**30
MEMORY_ENV = "LANDSCAPE_HVP_MEMORY_MB"

#: ``"auto"``'s choice of recomputing mode, measured once per (model, data size, device): see
#: :meth:`HessianOperator._measure_recompute`.
_RECOMPUTE_CHOICE: dict[tuple, str] = {}

#: Whether :meth:`HessianOperator.matmat` differentiates a block of ``k`` vectors through a gradient graph
#: in one vmapped double backward (``is_grads_batched=True``) instead of ``k`` backward passes, per device
#: type. Measured on the digits MLP (1347 examples, 1 thread, CPU, ``bench/bench_blocks.py``): the batched
#: pass cost 1.5-4x *more* per product than the loop for k = 2..32 (vmap materialises expanded copies of
#: the saved activations, and the N x 64 matmuls are already near the matmul peak), so the CPU default is
#: the loop. CUDA defaults to batching (wider kernels, fewer launches), not measured here: no GPU; the
#: code path is the one the CPU tests check. Independently of this flag, ``fwd_rev`` vmaps its tangents
#: (1.3-1.8x cheaper per product at k = 4..16: forward and first backward shared by the block) and
#: ``rev_rev`` builds one gradient graph per block (1.7x cheaper per product at k = 8).
BATCHED_GRAPH_DEFAULT: dict[str, bool] = {"cpu": False, "cuda": True}


def default_mode(device: torch.device | str) -> str:
    """The recomputing HVP mode ``"auto"`` falls back to on ``device`` before any measurement."""
    return AUTO_MODE.get(torch.device(device).type, "fwd_rev")


def default_memory_budget() -> int:
    """Retained-graph memory budget in bytes: ``$LANDSCAPE_HVP_MEMORY_MB`` or :data:`DEFAULT_MEMORY_BUDGET`.

    Raises:
        ValueError: the variable is not a non-negative number.
    """
    raw = os.environ.get(MEMORY_ENV, "").strip()
    if not raw:
        return DEFAULT_MEMORY_BUDGET
    try:
        mb = float(raw)
    except ValueError:
        raise ValueError(f"{MEMORY_ENV}={raw!r} is not a number of MiB") from None
    if not mb >= 0:
        raise ValueError(f"{MEMORY_ENV}={raw!r} must be >= 0 MiB")
    return int(mb * 2**20)


class _BudgetExceeded(Exception):
    pass


class HessianOperator(ParameterOperator):
    """Hessian of ``loss_fn`` at ``params`` with respect to the parameters ``names`` (others fixed).

    Build it with :func:`hessian_operator`. Vectors are flat, in the order of ``names``.

    Three ways to compute ``H_b v`` for a batch ``b``:

    - ``"retained"``: the batch gradient ``g_b = dL_b/dtheta`` is built once with ``create_graph=True``
      and kept; each product is one backward pass through it, ``H_b v = d<g_b, v>/dtheta =
      J_{g_b}^T v`` (``torch.autograd.grad(g_b, theta, grad_outputs=v, retain_graph=True)``, the Hessian
      being symmetric). One double-backward per product instead of forward + backward + double-backward,
      at the price of keeping every batch's graph (activations and their derivatives) in memory.
    - ``"rev_rev"``: rebuild the graph for every product (reverse-over-reverse).
    - ``"fwd_rev"``: ``torch.func.jvp(torch.func.grad(L_b), (theta,), (v,))`` (forward-over-reverse).

    ``"auto"`` (the default) uses ``"retained"`` when the graphs fit ``memory_budget`` bytes (measured:
    the bytes autograd saves while building the first batch, extrapolated to all examples), and
    otherwise the recomputing mode measured faster on the first batch for this (model, data size,
    device), a choice cached for the process. The choice is made at the first product; until then
    ``mode`` reads ``"auto"``.

    Attributes:
        names: the differentiated parameters (a layer or block for per-layer analysis).
        dim: their total number of entries.
        matvecs: Hessian-vector products computed so far (each is one pass over all batches).
        mode: ``"retained"``, ``"fwd_rev"`` or ``"rev_rev"`` (``"auto"`` before the first product).
        graph_bytes: bytes held by the retained graphs (0 for the recomputing modes).
        setup_seconds: time spent building graphs / measuring modes (not in any product).
    """

    def __init__(
        self,
        loss_fn: LossFunction,
        params: Mapping[str, Tensor] | None = None,
        *,
        names: Sequence[str] | None = None,
        mode: HVPMode = "auto",
        dtype: torch.dtype | None = None,
        memory_budget: int | None = None,
        batched: bool | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown HVP mode {mode!r}; choose 'auto', 'analytic', 'retained', 'fwd_rev' or 'rev_rev'")
        if memory_budget is not None and not (isinstance(memory_budget, int) and memory_budget >= 0):
            raise ValueError(f"memory_budget must be a non-negative number of bytes, got {memory_budget!r}")
        super().__init__(loss_fn, params, names=names, dtype=dtype)
        self.mode: str = mode
        self.memory_budget = default_memory_budget() if memory_budget is None else memory_budget
        self._graphs: list[tuple[list[Tensor], list[Tensor | None], float]] | None = None
        self._rows = None  # "analytic" mode: the MLPCurvature seen in this operator's parameter order
        self.graph_bytes = 0
        self.setup_seconds = 0.0
        self.batched = BATCHED_GRAPH_DEFAULT.get(self.device.type, False) if batched is None else bool(batched)
        self._graph_loss: LossFunction | None = None

    @property
    def analytic(self):
        """The :class:`~landscape_core.mlp_curvature.MLPCurvature` in ``"analytic"`` mode, else ``None``."""
        return None if self._rows is None else self._rows.mc

    @property
    def _graph_lf(self) -> LossFunction:
        """The loss the gradient graphs are built from (at the first graph, not at construction): eval-mode
        BatchNorms swapped for ones with a written-out second derivative (eval_batchnorm.py: the native
        double backward also forms training-mode terms)."""
        if self._graph_loss is None:
            self._graph_loss = self.loss_fn
            swapped = with_eval_batchnorm(self.loss_fn.model)
            if swapped is not None:
                self._graph_loss = copy.copy(self.loss_fn)
                self._graph_loss.model = swapped
        return self._graph_loss

    # -- retained graphs ------------------------------------------------------------------------
    def _leaves(self) -> dict[str, Tensor]:
        return {k: v.detach().requires_grad_(True) for k, v in self._var.items()}

    def _build_graphs(self, budget: float) -> None:
        """Build and keep every batch's gradient graph; raise :class:`_BudgetExceeded` if it would not fit.

        The first batch is built under a saved-tensor hook that adds up the bytes autograd keeps (forward
        activations and everything the double backward will need); that count, scaled to all examples,
        is compared with ``budget`` before the other batches are built.
        """
        lf = self.loss_fn
        saved = [0]

        def pack(t: Tensor) -> Tensor:
            saved[0] += t.numel() * t.element_size()
            return t

        graphs: list[tuple[list[Tensor], list[Tensor | None], float]] = []
        bytes_total = 0
        for i, (Xb, yb, w) in enumerate(lf.iter_batches()):
            p = self._leaves()
            if i == 0:
                with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                    g = self._grad_graph(p, Xb, yb)
                per_example = saved[0] / len(yb)
                bytes_total = int(per_example * lf.n)
                if bytes_total > budget:
                    raise _BudgetExceeded
            else:
                g = self._grad_graph(p, Xb, yb)
            graphs.append((list(p.values()), g, w))
        self._graphs = graphs
        self.graph_bytes = bytes_total

    def _grad_graph(self, p: dict[str, Tensor], Xb: Tensor, yb: Tensor) -> list[Tensor | None]:
        loss = self._graph_lf.batch_loss({**self._fixed, **p}, Xb, yb)
        if not loss.requires_grad:  # the loss does not depend on these parameters
            return [None] * len(p)
        g = torch.autograd.grad(loss, list(p.values()), create_graph=True, allow_unused=True)
        # a gradient that does not require grad is constant in theta: its Hessian block is zero
        return [gi if gi is not None and gi.requires_grad else None for gi in g]

    def release(self) -> None:
        """Drop the retained graphs / analytic state (they are rebuilt at the next product)."""
        self._graphs = self._rows = None
        self.graph_bytes = 0

    def _try_analytic(self, budget: float) -> bool:
        from .mlp_curvature import named_rows

        self._rows = named_rows(self.loss_fn, self.point(), self._var, budget)
        if self._rows is None:
            return False
        self.graph_bytes = self._rows.mc.state_bytes
        return True

    def analytic_rows(self, Vt: Tensor, fn: str = "products") -> Tensor:
        """``fn`` of the analytic curvature (``products`` or ``residual_quadratic``) on rows ``Vt`` in this
        operator's order (zero outside ``names``)."""
        return self._rows(fn, Vt)

    @staticmethod
    def _retained_hvp(leaves: list[Tensor], g: list[Tensor | None], vs: list[Tensor]) -> list[Tensor | None]:
        outs = [(gi, v) for gi, v in zip(g, vs) if gi is not None]
        if not outs:
            return [None] * len(leaves)
        hv = torch.autograd.grad([o for o, _ in outs], leaves, grad_outputs=[v for _, v in outs],
                                 retain_graph=True, allow_unused=True)
        return list(hv)

    # -- recomputing modes ------------------------------------------------------------------------
    def _batch_hvp(self, vd: Params, Xb: Tensor, yb: Tensor, mode: str) -> tuple[Tensor | None, ...]:
        fixed, lf = self._fixed, self.loss_fn

        if mode == "fwd_rev":
            def f(p: Params) -> Tensor:
                return lf.batch_loss({**fixed, **p}, Xb, yb)

            _, hv = jvp(grad(f), (self._var,), (vd,))
            return tuple(hv[k] for k in self._var)
        p = self._leaves()
        g = self._grad_graph(p, Xb, yb)
        return tuple(self._retained_hvp(list(p.values()), g, list(vd.values())))

    def _cache_key(self) -> tuple:
        lf = self.loss_fn
        shapes = tuple((k, tuple(v.shape)) for k, v in self._var.items())
        return (type(lf.model).__name__, shapes, len(self._fixed), lf.n, lf.batch_size,
                tuple(lf.X.shape[1:]), self.device.type, str(self.dtype))

    def _measure_recompute(self) -> str:
        """Time one product of each recomputing mode on the first batch (after a warm-up); cached."""
        key = self._cache_key()
        if key in _RECOMPUTE_CHOICE:
            return _RECOMPUTE_CHOICE[key]
        Xb, yb, _ = next(self.loss_fn.iter_batches())
        v = torch.randn(self.dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        vd = self._unflatten(v.to(self.device, self.dtype))
        times = {}
        for m in ("rev_rev", "fwd_rev"):
            try:
                self._batch_hvp(vd, Xb, yb, m)  # warm-up
                t0 = time.perf_counter()
                self._batch_hvp(vd, Xb, yb, m)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                times[m] = time.perf_counter() - t0
            except RuntimeError:  # an op without forward-mode AD support: that mode is out
                continue
        choice = min(times, key=times.get) if times else default_mode(self.device)
        _RECOMPUTE_CHOICE[key] = choice
        return choice

    def resolve(self) -> None:
        """Pick the mode now (else at the first product): analytic state / retained graphs built."""
        if self.mode not in ("auto", "retained", "analytic") or self._graphs is not None or self._rows is not None:
            return
        t0 = time.perf_counter()
        budget = self.memory_budget if self.mode == "auto" else float("inf")
        if self.mode in ("auto", "analytic"):
            with torch.no_grad():
                found = self._try_analytic(budget)
            if found:
                self.mode = "analytic"
                self.setup_seconds += time.perf_counter() - t0
                return
            if self.mode == "analytic":
                raise ValueError("mode 'analytic' needs a plain MLP (Linear layers and elementwise activations) "
                                 "under cross-entropy or squared error")
        try:
            self._build_graphs(budget)
            self.mode = "retained"
        except _BudgetExceeded:
            self._graphs = None
            self.mode = self._measure_recompute()
        self.setup_seconds += time.perf_counter() - t0

    def _split(self, v: Tensor) -> list[Tensor]:
        """``v`` as views shaped like the differentiated parameters (one ``split`` call)."""
        if not hasattr(self, "_sizes"):
            self._sizes = [p.numel() for p in self._var.values()]
            self._shapes = [p.shape for p in self._var.values()]
        return [t.view(sh) for t, sh in zip(v.split(self._sizes), self._shapes)]

    def _apply(self, v: Tensor) -> Tensor:
        with torch.enable_grad():
            self.resolve()
            if self.mode == "analytic":
                with torch.no_grad():
                    return self.analytic_rows(v.unsqueeze(0))[0]
            if self.mode == "retained":
                assert self._graphs is not None
                vs = self._split(v)
                parts = ((w, self._retained_hvp(leaves, g, vs)) for leaves, g, w in self._graphs)
            else:
                vd = self._unflatten(v)
                parts = ((w, self._batch_hvp(vd, Xb, yb, self.mode)) for Xb, yb, w in self.loss_fn.iter_batches())
            if len(self.loss_fn.batches) == 1:  # one batch, weight 1: no accumulation pass
                _, hv = next(parts)
                return torch.cat([(torch.zeros_like(p) if h is None else h.detach()).reshape(-1)
                                  for h, p in zip(hv, self._var.values())])
            acc: list[Tensor] | None = None
            for w, hv in parts:
                hv = [torch.zeros_like(p) if h is None else h.detach() for h, p in zip(hv, self._var.values())]
                if acc is None:
                    acc = [w * h for h in hv]
                else:
                    for a, h in zip(acc, hv):
                        a.add_(h, alpha=w)
        assert acc is not None
        return torch.cat([a.reshape(-1) for a in acc])

    # -- blocks of vectors ------------------------------------------------------------------------
    def _flat_rows(self, parts: Sequence[Tensor | None], k: int) -> Tensor:
        """``(k, dim)`` rows from per-parameter ``(k, *shape)`` results (``None`` = zero block)."""
        return torch.cat([
            (torch.zeros(k, p.numel(), device=self.device, dtype=self.dtype) if h is None
             else h.detach().reshape(k, -1)) for h, p in zip(parts, self._var.values())
        ], dim=1)

    def _graph_block(self, leaves: list[Tensor], g: list[Tensor | None], Vt: Tensor) -> Tensor:
        """``(H_b V)^T`` for the rows ``Vt`` (``k x dim``) through one batch's gradient graph ``g``."""
        k = Vt.shape[0]
        if self.batched:
            outs = [(gi, t) for gi, t in zip(g, self._split_rows(Vt)) if gi is not None]
            if not outs:
                return torch.zeros(k, self.dim, device=self.device, dtype=self.dtype)
            try:
                hv = torch.autograd.grad([o for o, _ in outs], leaves, grad_outputs=[t for _, t in outs],
                                         retain_graph=True, allow_unused=True, is_grads_batched=True)
                return self._flat_rows(hv, k)
            except RuntimeError:  # an op without a vmap rule: products one by one from now on
                self.batched = False
        rows = torch.empty(k, self.dim, device=self.device, dtype=self.dtype)
        for j in range(k):  # each product written straight into its row (no stacking copy)
            hv = self._retained_hvp(leaves, g, self._split(Vt[j]))
            torch.cat([(torch.zeros(p.numel(), device=self.device, dtype=self.dtype) if h is None
                        else h.detach().reshape(-1)) for h, p in zip(hv, self._var.values())], out=rows[j])
        return rows

    def _fwd_rev_block(self, Xb: Tensor, yb: Tensor, Vt: Tensor) -> Tensor:
        """Forward-over-reverse for ``k`` tangents at once (``vmap`` of ``jvp(grad(L_b))``)."""
        fixed, lf, k = self._fixed, self.loss_fn, Vt.shape[0]

        def f(p: Params) -> Tensor:
            return lf.batch_loss({**fixed, **p}, Xb, yb)

        def hvp(vd: Params) -> Params:
            return jvp(grad(f), (self._var,), (vd,))[1]

        tangents = dict(zip(self._var, self._split_rows(Vt)))
        try:
            hv = vmap(hvp)(tangents)
            return self._flat_rows([hv[name] for name in self._var], k)
        except RuntimeError:  # no batching rule for some op: one tangent at a time
            return torch.stack([self._flatten(self._batch_hvp(self._unflatten(Vt[j]), Xb, yb, "fwd_rev"))
                                for j in range(k)])

    def _split_rows(self, Vt: Tensor) -> list[Tensor]:
        """``Vt`` (``k x dim``) as per-parameter ``(k, *shape)`` tensors."""
        self._split(Vt[0])  # sets _sizes / _shapes
        k = Vt.shape[0]
        return [t.reshape((k, *sh)) for t, sh in zip(Vt.split(self._sizes, dim=1), self._shapes)]

    def matmat(self, V: Tensor) -> Tensor:
        """``H V`` for an ``n x k`` block, counted as ``k`` matvecs; same numbers as ``k`` matvecs.

        Independent vectors share work: the recomputing ``"rev_rev"`` mode builds each batch's gradient
        graph once per *block* (one forward + backward for ``k`` products), ``"fwd_rev"`` pushes the ``k``
        tangents through one vmapped forward-over-reverse pass, and with ``batched`` (default: CUDA
        only, see :data:`BATCHED_GRAPH_DEFAULT`) the double backward through a gradient graph is one
        vmapped pass (``torch.autograd.grad(..., is_grads_batched=True)``) instead of ``k``. In
        ``"retained"`` mode on CPU it is a loop of single products writing into one output (no gain,
        no loss). An op without a vmap rule makes it fall back to single products.
        """
        if V.ndim != 2 or V.shape[0] != self.dim:
            raise ValueError(f"matmat needs a ({self.dim}, m) matrix, got shape {tuple(V.shape)}")
        k = V.shape[1]
        if k <= 1:
            return super().matmat(V)
        Vt = V.T.to(device=self.device, dtype=self.dtype).contiguous()
        with torch.enable_grad():
            self.resolve()
            if self.mode == "analytic":
                self.matvecs += k
                with torch.no_grad():
                    return self.analytic_rows(Vt).T
            if self.mode == "retained":
                assert self._graphs is not None
                parts = ((w, self._graph_block(leaves, g, Vt)) for leaves, g, w in self._graphs)
            elif self.mode == "rev_rev":
                def rev_rev(Xb: Tensor, yb: Tensor) -> Tensor:
                    p = self._leaves()
                    return self._graph_block(list(p.values()), self._grad_graph(p, Xb, yb), Vt)

                parts = ((w, rev_rev(Xb, yb)) for Xb, yb, w in self.loss_fn.iter_batches())
            else:
                parts = ((w, self._fwd_rev_block(Xb, yb, Vt)) for Xb, yb, w in self.loss_fn.iter_batches())
            acc: Tensor | None = None
            for w, rows in parts:
                if acc is None:
                    acc = rows if w == 1.0 else rows.mul_(w)
                else:
                    acc.add_(rows, alpha=w)
        assert acc is not None
        self.matvecs += k
        return acc.T

    def __repr__(self) -> str:
        return f"HessianOperator(dim={self.dim}, mode={self.mode!r}, names={len(self.names)}, matvecs={self.matvecs})"


def hessian_operator(
    loss_fn: LossFunction,
    params: Mapping[str, Tensor] | None = None,
    *,
    names: Sequence[str] | None = None,
    mode: HVPMode = "auto",
    dtype: torch.dtype | None = None,
    check: bool = True,
    memory_budget: int | None = None,
    batched: bool | None = None,
) -> HessianOperator:
    """The Hessian of ``loss_fn`` at ``params`` (default: the loss function's own weights) as an operator.

    Args:
        loss_fn: fixed-data loss closure (its batches are averaged weighted by batch size).
        params: the point (a full or partial parameter dict; missing entries from ``loss_fn.params0``).
        names: differentiate only these parameters (per-layer / block Hessians); the rest stay fixed.
        mode: ``"retained"``, ``"fwd_rev"``, ``"rev_rev"`` or ``"auto"`` (retained graphs when they fit
            ``memory_budget``, else the recomputing mode measured faster; see :class:`HessianOperator`).
        dtype: compute in this dtype (e.g. ``torch.float64`` for references).
        check: run :func:`~landscape_core.determinism.check_deterministic` first.
        memory_budget: bytes the retained graphs may hold (default :func:`default_memory_budget`).
        batched: blocks of products (``matmat``) through a gradient graph as one vmapped double backward
            (default per device, :data:`BATCHED_GRAPH_DEFAULT`).
    """
    return checked(HessianOperator(loss_fn, params, names=names, mode=mode, dtype=dtype,
                                   memory_budget=memory_budget, batched=batched), check)


def parameter_groups(names: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Group parameter names by owning module (``net.0.weight`` + ``net.0.bias`` -> ``net.0``), in order."""
    groups: dict[str, list[str]] = {}
    for n in names:
        mod = n.rsplit(".", 1)[0] if "." in n else n
        groups.setdefault(mod, []).append(n)
    return list(groups.items())
