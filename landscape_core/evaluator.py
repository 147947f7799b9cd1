"""The batched evaluator: loss and accuracy at many points ``theta0 + C @ D`` of parameter space at once.

:mod:`landscape_core.surface` keeps the ``Surface`` type and the grids; :mod:`landscape_core.model_chain`
says how a model decomposes (chain of leaves, MLP op list, conv-BatchNorm folding). Speed comes from
evaluating many grid points at once:

* the parameters of ``P`` grid points are built as one small matmul per tensor,
  ``W[p] = W0 + C[p] @ D`` with ``C`` the ``(P, k)`` grid coefficients, and the network is run on all
  of them together with ``torch.func.vmap`` over ``functional_call``, so every Linear/Conv layer
  becomes one batched matmul;
* for chain models (``nn.Sequential``, the zoo's MLP and CNN) whose first parametrised layer is a
  Linear or Conv2d, that layer's pre-activation is affine in the coefficients,
  ``X W(a,b)^T = X W0^T + a X D1^T + b X D2^T`` (+ ``b0 + a db1 + b db2``), so the three products are
  computed once per data batch and every grid point costs one small combination there.
* for chains of Linear / eval-BatchNorm1d / activation layers (MLPs) an explicit path replaces vmap:
  one ``bmm`` per layer with the bias folded in as a row of the weights (the activations carry a
  column of ones), ``tanh`` rewritten exactly as ``2 sigmoid(2x) - 1`` with the factors folded into
  the neighbouring weights (sigmoid is about twice as fast on CPU), narrow outputs padded to 16
  columns, cache-sized blocks of examples and reused work buffers;
* networks with convolutions after the first layer are evaluated one grid point at a time (vmap turns
  convolutions with per-point weights into grouped convolutions, which are slower than a loop).

Chunks of grid points are sized to stay under a memory budget (default 512 MB) and can be farmed out
with :func:`landscape_core.parallel.parallel_map` (joblib loky, or a Dask cluster).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from .model_chain import chain_leaves, dry_run_max_activation, fold_conv_bn, has_conv, linear_chain_ops
from .params import Params
from .progress import ProgressFn
from .threads import INTRA_OP

DEFAULT_MEMORY_BUDGET = 512 * 2**20  # bytes per chunk of grid points
#: Stacked per-point weights the MLP fast path keeps hot per chunk (about a per-core L2 cache).
WEIGHT_CACHE_BYTES = 2 * 2**20
#: MLP width from which the fast path runs plain batched GEMMs (``BatchedEvaluator._chunk_wide``), and
#: the activation entries per block there.
WIDE_MLP = 256
WIDE_BLOCK_ELEMS = 2**21


# --- the batched evaluator --------------------------------------------------------------------------


def _activate_(h: Tensor, op: tuple) -> Tensor:
    """Apply an activation op of :func:`~landscape_core.model_chain.linear_chain_ops` in place."""
    kind = op[0]
    if kind == "sigmoid":
        return torch.sigmoid_(h)
    if kind == "tanh":
        return torch.tanh_(h)
    if kind == "relu":
        return torch.relu_(h)
    return op[1](h)


def _ce_sums(h: Tensor, yy: Tensor) -> tuple[Tensor, Tensor]:
    """Per point: summed cross-entropy and correct count of logits ``h`` ``(P, n, C)`` against ``yy``.

    Cross-entropy = logsumexp - picked logit; one max pass gives both the shift and the argmax.
    """
    P, n = h.shape[0], h.shape[1]
    m, idx = h.max(-1)
    lse = m + (h - m.unsqueeze(-1)).exp_().sum(-1).log_()
    picked = h.gather(-1, yy.view(1, n, 1).expand(P, n, 1)).squeeze(-1)
    return (lse - picked).sum(1).double().cpu(), (idx == yy).sum(1).double().cpu()


class BatchedEvaluator:
    """Loss and accuracy at many points ``origin + sum_j c_j d_j`` at once (see module docstring).

    Args:
        loss_fn: a :class:`~landscape_core.functional.LossFunction` (its model is never modified).
        origin: the centre point (default ``loss_fn.params0``).
        directions: one or two direction dicts.
        memory_budget: bytes of activations and parameters per chunk of points.
        fast_first_layer: use the affine first-layer shortcut when the model allows it.
    """

    def __init__(
        self,
        loss_fn: Any,
        origin: Params | None,
        directions: Sequence[Mapping[str, Tensor]],
        *,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        fast_first_layer: bool = True,
    ) -> None:
        self.loss_fn = loss_fn
        like = loss_fn.params0
        origin = like if origin is None else origin
        dev, dt = loss_fn.device, loss_fn.dtype
        for d in (origin, *directions):
            if d.keys() != like.keys():
                raise ValueError(f"direction keys do not match the model's parameters: {sorted(set(d) ^ set(like))[:5]}")
        self.names = list(like)
        self.k = len(directions)
        self.origin = {n: origin[n].detach().to(dev, dt) for n in self.names}
        # D[n]: (k, numel) so that W[p] = W0 + C[p] @ D
        self.D = {n: torch.stack([d[n].detach().to(dev, dt).reshape(-1) for d in directions]) for n in self.names}
        self.buffers = loss_fn.buffers
        self.model = loss_fn.model
        self.is_ce = loss_fn.loss_name == "cross_entropy"
        self._criterion = loss_fn._criterion
        self.plan = self._make_plan() if fast_first_layer else None
        if self.plan is not None and self.plan["rest"] is not None and has_conv(self.plan["rest"]):
            # convolutions after the first layer: vmap would turn them into slow grouped convolutions and
            # the shortcut saves little, so such models take the generic path (one point at a time)
            self.plan = None
        n_params = sum(v.numel() for v in self.origin.values())
        x1 = loss_fn.batches[0][0][:1]
        act = dry_run_max_activation(self.model, self.origin, self.buffers, x1)
        bytes_per = torch.finfo(dt).bits // 8
        per_point = bytes_per * (4 * loss_fn.batch_size * act + 2 * n_params)
        self.chunk = max(1, int(memory_budget // max(per_point, 1)))
        self.block_elems = 2**18  # activation entries per block in the MLP fast path (fits in cache)
        if self.plan is not None:
            self._precompute()
            if self.plan["ops"] is not None and isinstance(self.plan["layer"], nn.Linear):
                # MLP fast path: points per chunk sized by the BYTES OF WEIGHTS they need (every point has
                # its own weight matrices, read once per block of examples): up to WEIGHT_CACHE_BYTES of
                # stacked weights, so small MLPs batch 16 points and wide ones (width 1024: ~8 MB per point)
                # take one point at a time with large example blocks (well-shaped GEMMs, weights reused
                # over hundreds of examples) instead of 16-example blocks that are bound by weight traffic.
                wbytes = bytes_per * sum(  # (in + 1) x out per layer: weights plus the bias row
                    (self.origin[op[1]].shape[1] + 1) * self.origin[op[1]].shape[0]
                    for op in self.plan["ops"] if op[0] == "linear")
                self.chunk = max(1, min(self.chunk, 16, int(WEIGHT_CACHE_BYTES // max(wbytes, 1))))
        # conv nets evaluated point by point: BatchNorm folded into the convs, channels_last inputs
        self._conv = fold_conv_bn(self.model) if self.plan is None and has_conv(self.model) else None
        self._x_cl: dict[int, Tensor] = {}
        self._buffers: dict[int, dict[tuple, Tensor]] = {}
        self.k_align = 1  # pad the matmuls' inner dimension to a multiple of this (1: no padding)

    # -- plan for chain models with a Linear/Conv first layer --
    def _make_plan(self) -> dict | None:
        leaves = chain_leaves(self.model)
        if not leaves:
            return None
        first = next((i for i, (_, m) in enumerate(leaves) if any(True for _ in m.parameters())), None)
        if first is None:
            return None
        for _, m in leaves[:first]:
            if any(True for _ in m.buffers()):
                return None
        pfx, layer = leaves[first]
        if type(layer) not in (nn.Linear, nn.Conv2d):
            return None
        if isinstance(layer, nn.Conv2d) and layer.padding_mode != "zeros":
            return None
        local = {n for n, _ in layer.named_parameters()}
        rest = nn.Sequential(*[m for _, m in leaves[first + 1 :]])
        # map names of the rest chain ("j.name") to the model's full names
        rest_map: dict[str, str] = {}
        for j, (p, m) in enumerate(leaves[first + 1 :]):
            for n, _ in m.named_parameters():
                rest_map[f"{j}.{n}"] = f"{p}.{n}" if p else n
        rest_buf: dict[str, str] = {}
        for j, (p, m) in enumerate(leaves[first + 1 :]):
            for n, _ in m.named_buffers():
                rest_buf[f"{j}.{n}"] = f"{p}.{n}" if p else n
        full = {f"{pfx}.{n}" if pfx else n for n in local}
        if set(rest_map.values()) | full != set(self.names) or not set(rest_buf.values()) <= set(self.buffers):
            return None
        ops = linear_chain_ops(leaves[first + 1 :], self.buffers)
        wname = f"{pfx}.weight" if pfx else "weight"
        bname = (f"{pfx}.bias" if pfx else "bias") if layer.bias is not None else None
        return {
            "pre": nn.Sequential(*[m for _, m in leaves[:first]]),
            "layer": layer,
            "w": wname,
            "b": bname,
            "rest": rest if len(rest) else None,
            "rest_map": rest_map,
            "rest_buf": {k: self.buffers[v] for k, v in rest_buf.items()},
            "ops": ops,
        }

    def _layer_apply(self, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        layer = self.plan["layer"]
        if isinstance(layer, nn.Linear):
            return nn.functional.linear(x, w, b)
        return nn.functional.conv2d(x, w, b, layer.stride, layer.padding, layer.dilation, layer.groups)

    @torch.inference_mode()
    def _precompute(self) -> None:
        plan = self.plan
        w0, wn = self.origin[plan["w"]], plan["w"]
        b0 = self.origin[plan["b"]] if plan["b"] else None
        self._pre: list[tuple[Tensor, Tensor]] = []
        for Xb, _yb in self.loss_fn.batches:
            x = plan["pre"](Xb) if len(plan["pre"]) else Xb
            z0 = self._layer_apply(x, w0, b0)
            zs = torch.stack([self._layer_apply(x, self.D[wn][j].reshape(w0.shape), None) for j in range(self.k)])
            self._pre.append((z0, zs))
        if plan["ops"] is not None and isinstance(plan["layer"], nn.Linear):
            db = self.D[plan["b"]] if plan["b"] else None
            self._pre_aug = []
            for z0, zs in self._pre:
                zb = zs if db is None else zs + db[:, None, :]
                self._pre_aug.append(torch.cat([z0[None], zb]).contiguous())

    # -- evaluation --
    def _stack(self, C: Tensor, names: Mapping[str, str]) -> dict[str, Tensor]:
        out = {}
        for local, full in names.items():
            w0 = self.origin[full]
            out[local] = torch.addmm(w0.reshape(1, -1), C, self.D[full]).reshape(C.shape[0], *w0.shape)
        return out

    @torch.inference_mode()
    def __call__(self, coords: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Loss and accuracy at each row of ``coords`` (``(M, k)``), as float64 arrays of length M."""
        C_all = torch.as_tensor(np.asarray(coords, dtype=np.float64)).reshape(-1, self.k)
        M = C_all.shape[0]
        loss = torch.zeros(M, dtype=torch.float64)
        correct = torch.zeros(M, dtype=torch.float64)
        starts = list(range(0, M, self.chunk))

        def run(s: int) -> None:
            with torch.inference_mode():
                C = C_all[s : s + self.chunk].to(self.loss_fn.device, self.loss_fn.dtype)
                lo, co = self._chunk(C)
                loss[s : s + len(C)] = lo
                correct[s : s + len(C)] = co

        threads = INTRA_OP.configured()
        if self._mlp_fast and self.loss_fn.device.type == "cpu" and threads > 1 and len(starts) > 1:
            # The MLP path's ops are small (cache-sized blocks): OpenMP inside each op mostly waits at
            # barriers, badly so on busy machines. Run whole chunks on parallel Python threads instead
            # (torch releases the GIL), each single-threaded, and restore the setting afterwards.
            from concurrent.futures import ThreadPoolExecutor

            with INTRA_OP.single():
                with ThreadPoolExecutor(max_workers=min(threads, len(starts))) as pool:
                    list(pool.map(run, starts))
        else:
            for s in starts:
                run(s)
        acc = (correct / self.loss_fn.n).numpy() if self.is_ce else np.full(M, np.nan)
        return loss.numpy(), acc

    @property
    def _mlp_fast(self) -> bool:
        return self.plan is not None and self.plan["ops"] is not None and type(self.plan["layer"]) is nn.Linear

    def _chunk(self, C: Tensor) -> tuple[Tensor, Tensor]:
        if self._mlp_fast:
            return self._chunk_linear_chain(C)
        P = C.shape[0]
        loss = torch.zeros(P, dtype=torch.float64)
        correct = torch.zeros(P, dtype=torch.float64)
        crit = vmap(self._criterion, in_dims=(0, None))
        if self.plan is not None:
            plan = self.plan
            rest_params = self._stack(C, plan["rest_map"]) if plan["rest"] is not None else None
            db = self.D[plan["b"]] if plan["b"] else None
            conv = isinstance(plan["layer"], nn.Conv2d)
            if plan["rest"] is not None:
                def rest_one(p, h):
                    return functional_call(plan["rest"], (p, plan["rest_buf"]), (h,))

                rest_fn = vmap(rest_one, in_dims=(0, 0))
        else:
            params = self._stack(C, {n: n for n in self.names})

            def full_one(p, x):
                return functional_call(self.model, (p, self.buffers), (x,))

            if self._conv is not None:  # one point at a time through the BatchNorm-folded copy
                gm = self._conv["module"]

                def full_fn(p, x):
                    return torch.stack([functional_call(gm, self._folded({k: v[i] for k, v in p.items()}), (x,))
                                        for i in range(P)])
            elif has_conv(self.model):  # vmap turns convs into slow grouped convs: loop over points
                def full_fn(p, x):
                    return torch.stack([full_one({k: v[i] for k, v in p.items()}, x) for i in range(P)])
            else:
                full_fn = vmap(full_one, in_dims=(0, None))
        for bi, (Xb, yb, w) in enumerate(self.loss_fn.iter_batches()):
            if self.plan is not None:
                z0, zs = self._pre[bi]

                def first_layer(Cs: Tensor, z0: Tensor = z0, zs: Tensor = zs) -> Tensor:
                    q = Cs.shape[0]
                    z = torch.addmm(z0.reshape(1, -1), Cs, zs.reshape(self.k, -1)).reshape(q, *z0.shape)
                    if db is not None:
                        bias = Cs @ db  # (q, out)
                        z = z + (bias[:, None, :, None, None] if conv else bias.reshape(q, *([1] * (z0.ndim - 1)), -1))
                    return z

                out = first_layer(C) if plan["rest"] is None else rest_fn(rest_params, first_layer(C))
            else:
                out = full_fn(params, self._channels_last(bi, Xb))
            loss += w * crit(out, yb).double().cpu()
            if self.is_ce:
                correct += (out.argmax(-1) == yb).sum(1).double().cpu()
        return loss, correct


    def _channels_last(self, bi: int, Xb: Tensor) -> Tensor:
        """Batch ``bi`` in channels_last layout for conv nets on CPU (measured ~1.5x per ResNet-20 point)."""
        if not (has_conv(self.model) and self.plan is None and Xb.ndim == 4 and Xb.device.type == "cpu"):
            return Xb
        if bi not in self._x_cl:
            self._x_cl[bi] = Xb.contiguous(memory_format=torch.channels_last)
        return self._x_cl[bi]

    def _folded(self, p: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """One grid point's parameters for the BatchNorm-folded copy (``s = gamma / sqrt(var + eps)``)."""
        keep, bufs = self._conv["keep"], self.buffers
        out = {k: v for k, v in p.items() if k in keep}
        out.update({k: v for k, v in bufs.items() if k in keep})
        for c, b, eps, affine in self._conv["pairs"]:
            rm, rv = bufs[f"{b}.running_mean"], bufs[f"{b}.running_var"]
            inv = torch.rsqrt(rv + eps)
            scale = p[f"{b}.weight"] * inv if affine else inv
            shift = p[f"{b}.bias"] if affine else torch.zeros_like(rm)
            out[f"{c}.weight"] = p[f"{c}.weight"] * scale[:, None, None, None]
            conv_b = p.get(f"{c}.bias")
            out[f"{c}.bias"] = shift + scale * ((conv_b if conv_b is not None else 0) - rm)
        return out

    @staticmethod
    def _fold_tanh(stacked: list) -> float:
        """Rewrite ``linear -> tanh -> linear`` as ``linear' -> sigmoid -> linear''`` (in place on ``stacked``).

        ``tanh(x) = 2 sigmoid(2x) - 1`` and sigmoid is about twice as fast as tanh on CPU; the factor 2
        goes into the producing layer (``W, b -> 2W, 2b``) and the affine ``2s - 1`` into the consuming
        layer (``W, b -> 2W, b - W 1``), so no extra pass over the activations is needed. Exact up to
        rounding (absolute error ~ machine epsilon). Returns the scale for the first layer's output.
        """
        first_scale = 1.0
        for i, op in enumerate(stacked):
            if op[0] != "tanh":
                continue
            prev = stacked[i - 1] if i > 0 else None
            nxt = stacked[i + 1] if i + 1 < len(stacked) else None
            if (prev is not None and prev[0] != "linear") or nxt is None or nxt[0] != "linear":
                continue
            if prev is None:
                first_scale = 2.0
            else:
                stacked[i - 1] = ("linear", 2 * prev[1], None if prev[2] is None else 2 * prev[2])
            W, b = nxt[1], nxt[2]  # W: (P, in, out), b: (P, 1, out)
            shift = -W.sum(1, keepdim=True)
            stacked[i + 1] = ("linear", 2 * W, shift if b is None else b + shift)
            stacked[i] = ("sigmoid",)
        return first_scale

    def _chunk_linear_chain(self, C: Tensor) -> tuple[Tensor, Tensor]:
        """MLP fast path: explicit batched matmuls with the bias as a ones column, cache-sized blocks."""
        plan = self.plan
        P = C.shape[0]
        loss = torch.zeros(P, dtype=torch.float64)
        correct = torch.zeros(P, dtype=torch.float64)
        stacked = []
        for op in plan["ops"]:
            kind = op[0]
            if kind == "linear":
                W = self._stack(C, {"w": op[1]})["w"].transpose(1, 2)  # (P, in, out)
                b = self._stack(C, {"b": op[2]})["b"].unsqueeze(1) if op[2] else None
                stacked.append((kind, W, b))
            elif kind == "bn":
                _, wn, bn, rm, rv, eps = op
                g = self._stack(C, {"g": wn})["g"] if wn else torch.ones(P, rm.numel(), dtype=rm.dtype)
                sh = self._stack(C, {"s": bn})["s"] if bn else torch.zeros(P, rm.numel(), dtype=rm.dtype)
                inv = torch.rsqrt(rv + eps)
                scale = g * inv
                stacked.append((kind, scale.unsqueeze(1), (sh - rm * scale).unsqueeze(1)))
            else:
                stacked.append(op)
        first_scale = self._fold_tanh(stacked)
        width = max([self._pre[0][0].shape[-1]] + [op[1].shape[-1] for op in stacked if op[0] == "linear"])
        if width >= WIDE_MLP:
            return self._chunk_wide(C, stacked, first_scale, width)
        # bias folded into each matmul: activations carry a trailing column of ones, weights a bias row
        for i, op in enumerate(stacked):
            if op[0] == "linear":
                W, b = op[1], op[2]
                bias_row = b if b is not None else torch.zeros_like(W[:, :1, :])
                pad = (-(W.shape[1] + 1)) % self.k_align  # zero rows so K is a multiple of k_align
                rows = [W, bias_row] + ([torch.zeros_like(W[:, :pad, :])] if pad else [])
                Wa = torch.cat(rows, dim=1)
                out_f = Wa.shape[-1]
                if out_f % 16:  # narrow outputs (e.g. 10 logits): MKL's batched GEMM is ~4x faster at 16
                    Wa = torch.cat([Wa, Wa.new_zeros(P, Wa.shape[1], (-out_f) % 16)], dim=2)
                stacked[i] = ("linear", Wa.contiguous(), out_f)
        # first layer: h = [1, C] @ [z0; z1 + db1; z2 + db2] (one small GEMM, no broadcast copies)
        C_aug = first_scale * torch.cat([torch.ones_like(C[:, :1]), C], dim=1)
        width = max([self._pre[0][0].shape[-1]] + [op[1].shape[-1] for op in stacked if op[0] == "linear"])
        block = max(8, int(self.block_elems // (P * width)))
        crit = None if self.is_ce else vmap(self._criterion, in_dims=(0, None))
        # work buffers are kept across blocks and chunks: fresh multi-MB tensors cost page faults every time
        buffers = self._buffers.setdefault(threading.get_ident(), {})  # one set per worker thread

        def ones_buffer(n: int, F: int, slot: int) -> Tensor:
            key = ("ones", P, n, F, slot)
            if key not in buffers:
                buf = torch.zeros(P, n, F + 1 + (-(F + 1)) % self.k_align, dtype=C.dtype, device=C.device)
                buf[..., F] = 1.0
                buffers[key] = buf
            return buffers[key]

        def out_buffer(n: int, F: int, slot: int) -> Tensor:
            key = ("out", P, n, F, slot)
            if key not in buffers:
                buffers[key] = torch.empty(P, n, F, dtype=C.dtype, device=C.device)
            return buffers[key]

        for bi, (_Xb, yb, _w) in enumerate(self.loss_fn.iter_batches()):
            z_aug = self._pre_aug[bi]  # (k + 1, N_b, F1)
            for s in range(0, len(yb), block):
                yy = yb[s : s + block]
                n = len(yy)
                F1 = z_aug.shape[-1]
                h = out_buffer(n, F1, -1)
                torch.mm(C_aug, z_aug[:, s : s + n].reshape(self.k + 1, -1), out=h.view(P, n * F1))
                aug = None  # h with a ones column, when the last op wrote into one
                for i, op in enumerate(stacked):
                    kind = op[0]
                    if kind == "linear":
                        if aug is None:
                            aug = ones_buffer(n, h.shape[-1], i)
                            aug[..., : h.shape[-1]] = h
                        h = out_buffer(n, op[1].shape[-1], i)
                        torch.bmm(aug, op[1], out=h)
                        h = h[..., : op[2]] if op[2] != h.shape[-1] else h
                        aug = None
                    elif kind == "bn":
                        h = h.mul_(op[1]).add_(op[2])
                    else:
                        F = h.shape[-1]
                        nxt = stacked[i + 1][0] if i + 1 < len(stacked) else None
                        if nxt == "linear" and kind in ("sigmoid", "tanh", "relu"):
                            aug = ones_buffer(n, F, i)
                            view = aug[..., :F]
                            if kind == "sigmoid":
                                torch.sigmoid(h, out=view)
                            elif kind == "tanh":
                                torch.tanh(h, out=view)
                            else:
                                torch.clamp_min(h, 0.0, out=view)
                            h = view
                        else:
                            h = _activate_(h, op)
                block_loss, block_correct = self._block_sums(h, yy, crit)
                loss += block_loss
                correct += block_correct
        return loss / self.loss_fn.n, correct

    def _block_sums(self, h: Tensor, yy: Tensor, crit) -> tuple[Tensor, Tensor | float]:
        """Summed loss (and correct count, cross-entropy only) per point of one block's outputs ``h``."""
        if self.is_ce:
            return _ce_sums(h, yy)
        return crit(h, yy).double().cpu() * len(yy), 0.0

    def _chunk_wide(self, C: Tensor, stacked: list, first_scale: float, width: int) -> tuple[Tensor, Tensor]:
        """Wide-MLP path: per block, ``h <- b + h W`` as one batched GEMM per layer (``baddbmm``).

        At width >= :data:`WIDE_MLP` the matmuls are compute-bound on their own: the narrow path's ones
        column (an extra copy of every activation and an odd inner dimension ``K = in + 1``) costs more
        than it saves. Blocks hold ``WIDE_BLOCK_ELEMS`` activation entries (all examples of a batch for
        one point at width 1024), so every point's weights are reused over many examples.
        """
        P = C.shape[0]
        loss = torch.zeros(P, dtype=torch.float64)
        correct = torch.zeros(P, dtype=torch.float64)
        C_aug = first_scale * torch.cat([torch.ones_like(C[:, :1]), C], dim=1)
        ops = [op if op[0] != "linear" else
               ("linear", op[1].contiguous(), op[2] if op[2] is not None else op[1].new_zeros(P, 1, op[1].shape[-1]))
               for op in stacked]
        block = max(8, int(WIDE_BLOCK_ELEMS // (P * width)))
        crit = None if self.is_ce else vmap(self._criterion, in_dims=(0, None))
        for bi, (_Xb, yb, _w) in enumerate(self.loss_fn.iter_batches()):
            z_aug = self._pre_aug[bi]  # (k + 1, N_b, F1)
            F1 = z_aug.shape[-1]
            for s0 in range(0, len(yb), block):
                yy = yb[s0 : s0 + block]
                n = len(yy)
                h = torch.mm(C_aug, z_aug[:, s0 : s0 + n].reshape(self.k + 1, -1)).view(P, n, F1)
                for op in ops:
                    kind = op[0]
                    if kind == "linear":
                        h = torch.baddbmm(op[2], h, op[1])
                    elif kind == "bn":
                        h = h.mul_(op[1]).add_(op[2])
                    else:
                        h = _activate_(h, op)
                block_loss, block_correct = self._block_sums(h, yy, crit)
                loss += block_loss
                correct += block_correct
        return loss / self.loss_fn.n, correct


def _eval_job(job: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Top-level (picklable) work function: evaluate one chunk of grid points in a worker."""
    loss_fn, origin, directions, coords, threads, budget = job
    if threads:
        torch.set_num_threads(threads)
    ev = BatchedEvaluator(loss_fn, origin, directions, memory_budget=budget)
    return ev(coords)


def evaluate_points(
    loss_fn: Any,
    directions: Sequence[Mapping[str, Tensor]],
    coords: np.ndarray,
    *,
    origin: Params | None = None,
    n_jobs: int = 1,
    scheduler: Any = None,
    progress: ProgressFn | None = None,
    chunk: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> tuple[np.ndarray, np.ndarray]:
    """Loss and accuracy at ``origin + coords @ directions`` for every row of ``coords`` ``(M, k)``."""
    coords = np.asarray(coords, dtype=np.float64).reshape(len(coords), -1)
    M = len(coords)
    if M == 0:
        return np.zeros(0), np.zeros(0)
    if n_jobs == 1 and scheduler is None:
        ev = BatchedEvaluator(loss_fn, origin, directions, memory_budget=memory_budget)
        if chunk is not None:
            step = chunk
        elif progress is None:
            step = M  # one call: the evaluator chunks (and parallelises) internally
        else:  # ~20 progress updates, each large enough to keep the evaluator's threads busy
            step = max(ev.chunk * max(1, INTRA_OP.configured()), math.ceil(M / 20))
        parts_l, parts_a = [], []
        for s in range(0, M, step):
            lo, ac = ev(coords[s : s + step])
            parts_l.append(lo)
            parts_a.append(ac)
            if progress is not None:
                progress(min(1.0, (s + step) / M), f"{min(s + step, M)}/{M} grid points")
        return np.concatenate(parts_l), np.concatenate(parts_a)
    from .parallel import parallel_map, split_evenly

    workers = (os.cpu_count() or 1) if n_jobs == -1 else n_jobs
    n_chunks = max(1, min(M, (4 * workers) if chunk is None else math.ceil(M / chunk)))
    threads = max(1, (os.cpu_count() or 1) // max(1, workers)) if scheduler is None else 0
    idx = split_evenly(list(range(M)), n_chunks)
    jobs = [(loss_fn, origin, list(directions), coords[ix[0] : ix[-1] + 1], threads, memory_budget) for ix in idx]
    results = parallel_map(_eval_job, jobs, n_jobs=n_jobs, scheduler=scheduler, progress=progress)
    return np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results])


__all__ = ["DEFAULT_MEMORY_BUDGET", "BatchedEvaluator", "evaluate_points"]
