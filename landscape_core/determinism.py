"""Curvature needs a deterministic loss: refuse train-mode dropout / BatchNorm and stochastic models.

Every model curvature operator's factory (Hessian, GGN, Fisher) ends with :func:`checked`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

import torch
from torch import Tensor, nn

from .functional import LossFunction
from .models import MLP
from .operators import ParameterOperator

#: Module types whose forward has no random op (dropout counts: train mode is refused before this is
#: used). A model made of these alone skips the two-evaluation check.
_DETERMINISTIC: frozenset[type] = frozenset({
    nn.Sequential, nn.Linear, nn.Flatten, nn.Identity, nn.Dropout, nn.Conv1d, nn.Conv2d,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.ELU, nn.Softplus,
    nn.LeakyReLU, MLP,  # MLP's forward is ``self.net(x)``
})


def check_deterministic(loss_fn: LossFunction, params: Mapping[str, Tensor] | None = None) -> None:
    """Refuse curvature work on a stochastic loss: train-mode model, active dropout, train-mode BatchNorm.

    Unless every module is one of the built-in deterministic layer types (:data:`_DETERMINISTIC`, with no
    forward hooks and no replaced ``forward``), it also
    evaluates the loss twice and checks the two values are identical (a custom module may draw noise).

    Raises:
        ValueError: naming the offending module or the two differing loss values.
    """
    model = loss_fn.model
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.dropout._DropoutNd) and m.training and m.p > 0:
            raise ValueError(f"dropout module {name!r} is in train mode (p={m.p}): curvature needs eval mode")
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
            raise ValueError(f"BatchNorm module {name!r} is in train mode: curvature needs eval mode")
    if model.training:
        raise ValueError("the loss function's model copy is in train mode: curvature needs eval mode")
    if all(type(m) in _DETERMINISTIC and not (m._forward_hooks or m._forward_pre_hooks or "forward" in vars(m))
           for m in model.modules()):
        return  # built-in layers only (dropout and BatchNorm in eval mode, checked above): no random op
    p = loss_fn.params0 if params is None else {**loss_fn.params0, **params}
    with torch.no_grad():
        a, b = float(loss_fn(p)), float(loss_fn(p))
    if a != b:
        raise ValueError(f"loss is not deterministic: two evaluations gave {a!r} and {b!r}")


OpT = TypeVar("OpT", bound=ParameterOperator)


def checked(op: OpT, check: bool) -> OpT:
    """``op`` after :func:`check_deterministic` of its loss at its point (when ``check``): every model
    curvature operator's factory ends with this."""
    if check:
        check_deterministic(op.loss_fn, op.point())
    return op


__all__ = ["check_deterministic", "checked"]
