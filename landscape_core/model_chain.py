"""How a model decomposes for batched evaluation: its chain of leaf modules, the explicit op list of
Linear / eval-BatchNorm1d / activation chains (MLPs), eval-mode BatchNorm folded into the preceding
convolutions, and the largest activation of one example (to size chunks of grid points).

Used by :class:`landscape_core.evaluator.BatchedEvaluator`; pure functions of a module and its buffers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call


def chain_leaves(model: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """The model as a flat chain of ``(name prefix, module)``, or ``None`` if it is not a plain chain."""
    from .models import MLP, SmallCNN

    if isinstance(model, MLP):
        roots: list[tuple[str, nn.Module]] = [("net", model.net)]
    elif isinstance(model, SmallCNN):
        roots = [("features", model.features), ("head", model.head)]
    elif isinstance(model, nn.Sequential):
        roots = [("", model)]
    else:
        return None
    leaves: list[tuple[str, nn.Module]] = []

    def walk(prefix: str, m: nn.Module) -> None:
        if isinstance(m, nn.Sequential):
            for name, child in m._modules.items():  # not named_children(): it skips a module used twice
                if child is not None:
                    walk(f"{prefix}.{name}" if prefix else name, child)
        else:
            leaves.append((prefix, m))

    for prefix, m in roots:
        walk(prefix, m)
    return leaves


def dry_run_max_activation(model: nn.Module, params: Mapping[str, Tensor], buffers: Mapping[str, Tensor], x1: Tensor) -> int:
    """Largest activation (entries per example) seen in a forward pass of one example."""
    sizes = [x1[0].numel()]
    hooks = [m.register_forward_hook(lambda _m, _i, o: sizes.append(o[0].numel() if isinstance(o, Tensor) and o.ndim > 0 else 0))
             for m in model.modules()]
    try:
        with torch.inference_mode():
            functional_call(model, ({**params}, {**buffers}), (x1,))
    finally:
        for h in hooks:
            h.remove()
    return max(sizes)


def has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())


def fold_conv_bn(model: nn.Module) -> dict | None:
    """A private copy of ``model`` with every eval-mode ``Conv2d -> BatchNorm2d`` pair fused, or ``None``.

    ``BN(conv(x; W, c)) = conv(x; s * W, s * (c - mu) + beta)`` with ``s = gamma / sqrt(var + eps)`` per
    output channel: the grid point's conv weights absorb its BatchNorm (see
    :meth:`BatchedEvaluator._folded`), so each point runs one op fewer per layer with no activation
    pass for the normalisation. Traced with ``torch.fx``; a conv whose output feeds anything besides
    the BatchNorm, a model fx cannot trace, or no pair at all gives ``None`` (the plain path is used).
    """
    import copy

    from torch import fx

    try:
        gm = fx.symbolic_trace(copy.deepcopy(model).eval())
    except Exception:  # noqa: BLE001 - any tracing failure just means "no fused copy"
        return None
    mods = dict(gm.named_modules())
    pairs: list[tuple[str, str]] = []
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or type(mods.get(node.target)) is not nn.BatchNorm2d:
            continue
        bn, prev = mods[node.target], node.args[0]
        if not (isinstance(prev, fx.Node) and prev.op == "call_module" and type(mods.get(prev.target)) is nn.Conv2d
                and len(prev.users) == 1 and bn.track_running_stats and bn.running_mean is not None):
            continue
        pairs.append((prev.target, node.target))
        node.replace_all_uses_with(prev)
        gm.graph.erase_node(node)
    if not pairs:
        return None
    gm.graph.lint()
    gm.recompile()
    gm.delete_all_unused_submodules()  # the fused BatchNorms
    for conv_name, _ in pairs:
        conv = mods[conv_name]
        if conv.bias is None:
            conv.bias = nn.Parameter(torch.zeros(conv.out_channels, dtype=conv.weight.dtype, device=conv.weight.device))
    keep = {k for k, _ in gm.named_parameters()} | {k for k, _ in gm.named_buffers()}
    info = [(c, b, mods[b].eps, mods[b].affine) for c, b in pairs]
    return {"module": gm, "pairs": info, "keep": keep}


INPLACE_ACT: dict[type, Callable[[nn.Module], Callable[[Tensor], Tensor]]] = {
    nn.Sigmoid: lambda m: torch.sigmoid_,
    nn.GELU: lambda m: (lambda h, a=m.approximate: nn.functional.gelu(h, approximate=a)),
    nn.ELU: lambda m: (lambda h, a=m.alpha: nn.functional.elu_(h, a)),
    nn.Softplus: lambda m: (lambda h, b=m.beta, t=m.threshold: nn.functional.softplus(h, b, t)),
    nn.Identity: lambda m: (lambda h: h),
    nn.Dropout: lambda m: (lambda h: h),  # eval mode
}


def linear_chain_ops(leaves: list[tuple[str, nn.Module]], buffers: Mapping[str, Tensor]) -> list[tuple] | None:
    """Linear / eval-BatchNorm1d / activation chain as explicit ops, or ``None`` if anything else occurs."""
    ops: list[tuple] = []
    full = lambda p, n: f"{p}.{n}" if p else n  # noqa: E731
    for p, m in leaves:
        if type(m) is nn.Linear:
            ops.append(("linear", full(p, "weight"), full(p, "bias") if m.bias is not None else None))
        elif type(m) is nn.BatchNorm1d and m.track_running_stats and m.running_mean is not None:
            rm, rv = buffers[full(p, "running_mean")], buffers[full(p, "running_var")]
            ops.append(("bn", full(p, "weight") if m.affine else None, full(p, "bias") if m.affine else None,
                        rm, rv, m.eps))
        elif type(m) is nn.Tanh:
            ops.append(("tanh",))
        elif type(m) is nn.ReLU:
            ops.append(("relu",))
        elif type(m) in INPLACE_ACT:
            ops.append(("act", INPLACE_ACT[type(m)](m)))
        else:
            return None
    return ops


__all__ = ["INPLACE_ACT", "chain_leaves", "dry_run_max_activation", "fold_conv_bn", "has_conv", "linear_chain_ops"]
