"""Structural matching of a foreign state dict to a registry architecture (mlp, cnn, resnet20).

A checkpoint trained elsewhere holds the same tensors as our model under other names: a user's
``nn.Sequential`` MLP (``0.weight``, ``2.weight``...), a class with ``fc1/fc2/fc3``, the public CIFAR
ResNet-20 layouts (``conv1/bn1/layer1.0.conv1/.../layer3.2.bn2``, ``shortcut`` or ``downsample``
projections or none at all, an ``fc`` or ``linear`` head). Matching works on *layers*, not names:

1. Tensors are grouped into layers by their prefix (``layer1.0.bn1.running_mean`` -> ``layer1.0.bn1``)
   and each layer is classified by its tensors: Linear (2-D ``weight`` [+ ``bias``]), Conv2d (4-D
   ``weight`` [+ ``bias``]) or BatchNorm (``running_mean`` and ``running_var``, with ``weight``/``bias``).
   Anything else is refused, naming its first key.
2. Within each kind, file layers are put in *graph order* by the numbers in their names (``layer2.0``
   before ``layer2.1``, ``conv1`` before ``conv2``; a segment without a number, such as ``shortcut``,
   ``downsample`` or ``fc``, comes after its numbered siblings), and paired in order with the
   reference model's layers (registration order = graph order).
3. Every pair must agree in tensor names and shapes, BatchNorm buffers included. Layers whose names
   give the same order key are tried in every order; exactly one fit is accepted, several are refused
   as ambiguous, none as a mismatch naming the first file key that does not fit.

The architecture settings are read off the shapes (MLP widths, CNN channels, ResNet width and shortcut
type: 19 convolutions = parameter-free "option A", 21 = projection "option B"). The activation of an
MLP/CNN is invisible in the weights: it is taken from the caller (default ``relu``) and the result says
so. Nothing is guessed silently: the result carries the full mapping (file key -> model key, shape).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .models import MODELS

_BN_LEAVES = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}
_MAX_TIE = 5  # layers sharing one order key that are tried in every order (5! = 120 orders)
_INF = math.inf


class MatchError(ValueError):
    """The state dict does not match the architecture; the message is one line naming the first key."""


@dataclass(frozen=True)
class MappingRow:
    """One tensor of the mapping: its key in the file, its key in the model, its shape."""

    file_key: str
    model_key: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict:
        return {"file_key": self.file_key, "model_key": self.model_key, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MappingRow:
        return cls(str(d["file_key"]), str(d["model_key"]), tuple(int(s) for s in d["shape"]))


@dataclass(frozen=True)
class MatchResult:
    """A structural match: the full model spec, the key mapping and what was inferred or assumed."""

    spec: dict
    rows: tuple[MappingRow, ...]
    renamed: bool
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        return {"spec": self.spec, "rows": [r.to_dict() for r in self.rows], "renamed": self.renamed,
                "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MatchResult:
        return cls(dict(d["spec"]), tuple(MappingRow.from_dict(r) for r in d["rows"]), bool(d["renamed"]),
                   tuple(d.get("notes", ())))

    def apply(self, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The file's tensors under the model's keys (in the model's order)."""
        return {r.model_key: state[r.file_key] for r in self.rows}


# --- layers -----------------------------------------------------------------------------------
@dataclass
class _Layer:
    prefix: str
    kind: str  # "linear", "conv" or "bn"
    tensors: dict[str, Tensor]  # leaf name -> tensor
    order: tuple[float, ...] = ()

    def key(self, leaf: str) -> str:
        return f"{self.prefix}.{leaf}" if self.prefix else leaf

    @property
    def first_key(self) -> str:
        return self.key(next(iter(self.tensors)))


def _segment_number(seg: str) -> float:
    m = re.search(r"\d+", seg)
    return float(m.group()) if m else _INF


def _order_key(prefix: str) -> tuple[float, ...]:
    return tuple(_segment_number(s) for s in prefix.split(".")) if prefix else ()


def _layers(state: Mapping[str, Tensor]) -> list[_Layer]:
    """Group tensors by layer prefix and classify each layer; refuse anything that is not Linear/Conv/BN."""
    groups: dict[str, dict[str, Tensor]] = {}
    for k, v in state.items():
        prefix, _, leaf = k.rpartition(".")
        groups.setdefault(prefix, {})[leaf] = v
    out = []
    for prefix, t in groups.items():
        leaves = set(t)
        w = t.get("weight")
        if {"running_mean", "running_var"} <= leaves and leaves <= _BN_LEAVES:
            kind = "bn"
        elif w is not None and leaves <= {"weight", "bias"} and w.ndim in (2, 4):
            kind = "linear" if w.ndim == 2 else "conv"
        else:
            first = f"{prefix}.{next(iter(t))}" if prefix else next(iter(t))
            raise MatchError(f"cannot match {first!r}: its layer is not a Linear, Conv2d or BatchNorm layer")
        out.append(_Layer(prefix, kind, t, _order_key(prefix)))
    return out


def _by_kind(layers: Sequence[_Layer], kind: str) -> list[_Layer]:
    return [lay for lay in layers if lay.kind == kind]


def _sorted(layers: list[_Layer]) -> list[list[_Layer]]:
    """Layers in graph order, as groups of layers sharing one order key (a tie group)."""
    ordered = sorted(layers, key=lambda lay: lay.order)  # stable: ties keep file order, then are permuted
    return [list(g) for _, g in itertools.groupby(ordered, key=lambda lay: lay.order)]


def _fit(f: _Layer, r: _Layer) -> str | None:
    """``None`` when file layer ``f`` fits reference layer ``r``, else the reason (naming the file key)."""
    fl = set(f.tensors) | ({"num_batches_tracked"} if f.kind == "bn" else set())
    rl = set(r.tensors)
    if fl != rl:
        extra = sorted(fl - rl)
        missing = sorted(rl - fl)
        what = f"has {extra[0]!r} but the model's layer does not" if extra else f"lacks {missing[0]!r}"
        return f"{f.first_key!r} ({f.kind} layer {f.prefix!r} {what})"
    for leaf, t in f.tensors.items():
        if tuple(t.shape) != tuple(r.tensors[leaf].shape):
            return f"{f.key(leaf)!r}: shape {tuple(t.shape)} vs model {r.key(leaf)!r} {tuple(r.tensors[leaf].shape)}"
    return None


def _pair_kind(file_layers: list[_Layer], ref_layers: list[_Layer], kind: str, arch: str) -> list[tuple[_Layer, _Layer]]:
    if len(file_layers) != len(ref_layers):
        extra = ""
        if len(file_layers) > len(ref_layers):
            extra = f"; first extra: {_sorted(file_layers)[-1][-1].first_key!r}"
        raise MatchError(f"the file has {len(file_layers)} {kind} layers, {arch} has {len(ref_layers)}{extra}")
    pairs: list[tuple[_Layer, _Layer]] = []
    i = 0
    for group in _sorted(file_layers):
        refs = ref_layers[i : i + len(group)]
        i += len(group)
        if len(group) == 1:
            why = _fit(group[0], refs[0])
            if why is not None:
                raise MatchError(f"first unmatched key {why}")
            pairs.append((group[0], refs[0]))
            continue
        names = ", ".join(repr(g.prefix) for g in group)
        if len(group) > _MAX_TIE:
            raise MatchError(f"ambiguous layer order: {names} carry no numbers that order them")
        fits = [p for p in itertools.permutations(group) if all(_fit(f, r) is None for f, r in zip(p, refs))]
        if not fits:
            why = next(w for f, r in zip(group, refs) if (w := _fit(f, r)) is not None)
            raise MatchError(f"first unmatched key {why}")
        if len(fits) > 1:
            raise MatchError(f"ambiguous layer order: {names} fit the model in {len(fits)} ways "
                             f"(number the layers, e.g. fc1/fc2, or pass the model definition)")
        pairs.extend(zip(fits[0], refs))
    return pairs


# --- inference of the architecture ---------------------------------------------------------------
@dataclass(frozen=True)
class Inferred:
    """What the weights say: architecture name, settings, input width/channels, classes, notes."""

    name: str
    kwargs: dict
    in_features: int  # MLP: input features; CNN/ResNet: input channels
    num_classes: int
    spatial: int | None = None  # CNN: H*W/16 seen by the head (None otherwise)
    notes: tuple[str, ...] = ()


def infer_architecture(state: Mapping[str, Tensor], *, activation: str | None = None) -> Inferred:
    """Read the registry architecture and its settings off the shapes (see the module docstring).

    Raises:
        MatchError: no registry architecture has this layer structure (the message says why).
    """
    layers = _layers(state)
    lin, conv, bn = (_sorted(_by_kind(layers, k)) for k in ("linear", "conv", "bn"))
    lin_l = [lay for g in lin for lay in g]
    conv_l = [lay for g in conv for lay in g]
    n_lin, n_conv, n_bn = len(lin_l), len(conv_l), sum(len(g) for g in bn)
    act = activation or "relu"
    act_note = (f"activation {act!r} given by the user" if activation else
                "activation is not visible in the weights: assumed 'relu' (the default; set it if yours differs)")
    if n_lin == 0:
        raise MatchError(f"no Linear layer found (first key {next(iter(state))!r}); registry models end in one")
    head = lin_l[-1]
    classes = int(head.tensors["weight"].shape[0])
    if n_conv == 0:
        if n_bn not in (0, n_lin - 1):
            raise MatchError(f"an MLP with BatchNorm has one per hidden layer ({n_lin - 1}); the file has {n_bn}")
        d_in = int(lin_l[0].tensors["weight"].shape[1])
        widths = [int(lay.tensors["weight"].shape[0]) for lay in lin_l[:-1]]
        kw: dict[str, Any] = {"activation": act, "batchnorm": n_bn > 0}
        if widths and len(set(widths)) == 1:
            kw.update(width=widths[0], depth=len(widths))
        elif widths:
            kw["widths"] = widths
        else:
            kw.update(depth=0)
        return Inferred("mlp", kw, d_in, classes, None, (act_note,))
    c_in = int(conv_l[0].tensors["weight"].shape[1])
    width = int(conv_l[0].tensors["weight"].shape[0])
    if n_conv == 2 and n_lin == 1 and n_bn in (0, 2):
        head_in = int(head.tensors["weight"].shape[1])
        spatial, rem = divmod(head_in, 2 * width)
        if rem:
            raise MatchError(f"head {head.first_key!r} takes {head_in} features, not a multiple of 2 x {width} channels")
        kw = {"channels": width, "activation": act, "batchnorm": n_bn > 0}
        return Inferred("cnn", kw, c_in, classes, spatial, (act_note,))
    if n_conv in (19, 21) and n_lin == 1 and n_bn == n_conv:
        shortcut = "zeropad" if n_conv == 19 else "projection"
        note = ("no shortcut convolutions: parameter-free zero-padding shortcuts ('option A')" if n_conv == 19 else
                "1x1 projection shortcuts ('option B')")
        return Inferred("resnet20", {"width": width, "shortcut": shortcut}, c_in, classes, None, (note,))
    raise MatchError(
        f"no registry architecture has {n_conv} conv, {n_bn} BatchNorm and {n_lin} Linear layers "
        f"(mlp: 0 conv; cnn: 2; resnet20: 19 or 21); export other models as ONNX"
    )


def reference_state(spec: Mapping[str, Any]) -> dict[str, Tensor]:
    """The state dict of the spec's model, built on the meta device (no memory, no initialisation)."""
    try:
        with torch.device("meta"):
            model = MODELS[spec["name"]](**spec["kwargs"])
    except (TypeError, ValueError, KeyError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MatchError(f"model spec does not build: {msg}") from None
    return dict(model.state_dict())


def match_state_dict(state: Mapping[str, Tensor], spec: Mapping[str, Any], notes: Sequence[str] = ()) -> MatchResult:
    """Map ``state`` onto the model of ``spec`` (full spec: name and kwargs with input shape and classes).

    Identical key sets match by name (shapes checked); otherwise layers are paired structurally.

    Raises:
        MatchError: a one-line reason naming the first file key that does not fit, or the ambiguity.
    """
    ref = reference_state(spec)
    if set(state) == set(ref):
        bad = [k for k in ref if tuple(state[k].shape) != tuple(ref[k].shape)]
        if bad:
            k = bad[0]
            raise MatchError(f"first unmatched key {k!r}: shape {tuple(state[k].shape)} vs model {tuple(ref[k].shape)}")
        rows = tuple(MappingRow(k, k, tuple(ref[k].shape)) for k in ref)
        return MatchResult(dict(spec), rows, False, tuple(notes))
    f_layers, r_layers = _layers(state), _layers(ref)
    rows_l: list[MappingRow] = []
    pairs: list[tuple[_Layer, _Layer]] = []
    for kind in ("conv", "bn", "linear"):
        pairs += _pair_kind(_by_kind(f_layers, kind), _by_kind(r_layers, kind), kind, spec["name"])
    by_ref = {id(r): f for f, r in pairs}
    extra_notes = []
    for r in r_layers:  # rows in the model's (graph) order
        f = by_ref[id(r)]
        for leaf, t in r.tensors.items():
            if leaf not in f.tensors:  # BatchNorm's num_batches_tracked, absent in old checkpoints
                extra_notes.append(f"{r.key(leaf)} absent from the file: set to 0 (it does not affect eval mode)")
                continue
            rows_l.append(MappingRow(f.key(leaf), r.key(leaf), tuple(t.shape)))
    return MatchResult(dict(spec), tuple(rows_l), True, (*notes, *extra_notes))


def fill_missing(state: Mapping[str, Tensor], result: MatchResult) -> dict[str, Tensor]:
    """``result.apply(state)`` plus zero ``num_batches_tracked`` buffers the file did not carry."""
    out = result.apply(state)
    ref = reference_state(result.spec)
    for k, v in ref.items():
        if k not in out:
            out[k] = torch.zeros(v.shape, dtype=v.dtype)
    return {k: out[k] for k in ref}


__all__ = ["Inferred", "MappingRow", "MatchError", "MatchResult", "fill_missing", "infer_architecture",
           "match_state_dict", "reference_state"]
