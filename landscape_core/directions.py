"""Directions in parameter space for loss-landscape plots: random (filter / layer / none), PCA, Hessian,
gradient, and lines / planes through runs.

Filter normalisation (Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets"): draw a Gaussian
direction ``d`` shaped like the weights ``theta`` and rescale every filter (the dim-0 slice of a tensor
with ``ndim >= 2``: an output neuron of a Linear layer, an output channel of a Conv layer) so that

    d_{l,i} <- d_{l,i} * ||theta_{l,i}|| / ||d_{l,i}||.

The plot then measures distance in units of the filters' own scale, which makes surfaces of different
networks comparable and invariant to function-preserving rescalings (scaling a ReLU layer by c and the
next by 1/c, or a layer feeding a BatchNorm).

1-D tensors (biases, BatchNorm affine parameters) are zeroed by default (``ignore_1d=True``), as in Li
et al. With ``ignore_1d=False`` they are kept and rescaled *as a whole* to the norm of the matching
weight vector (for a 1-D tensor a "filter" of size 1 would just copy ``|theta|`` elementwise and lose
the random sign structure, so filter and layer normalisation coincide for 1-D tensors here).

``normalization="layer"`` rescales each whole tensor to the weight tensor's norm; ``"none"`` keeps the
raw Gaussian (``ignore_1d`` still applies).

Two random directions are made orthogonal *before* normalising, by Gram-Schmidt on the raw Gaussians
done separately inside every normalisation unit (each filter for ``"filter"``, each tensor for
``"layer"``, the whole vector for ``"none"``). Because normalisation only rescales whole units, the
normalised directions stay exactly orthogonal (units with a single entry cannot be orthogonalised and
are left as drawn).

Every direction set records its kind, seed and settings (:class:`DirectionSet`) so a surface can be
reproduced; ``DirectionSet.save``/``load`` store the tensors in safetensors.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from .params import Params, dot, flatten, norm, randn_like, unflatten

Normalization = Literal["filter", "layer", "none"]
NORMALIZATIONS: tuple[str, ...] = ("filter", "layer", "none")
_EPS = 1e-12


def _check_normalization(normalization: str) -> None:
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {normalization!r}; choose 'filter', 'layer' or 'none'")


def _make_generator(seed: int | None, generator: torch.Generator | None) -> torch.Generator:
    if generator is not None:
        return generator
    if seed is None:  # fresh randomness from the global RNG (still reproducible under torch.manual_seed)
        seed = int(torch.randint(0, 2**62, (1,)).item())
    return torch.Generator().manual_seed(int(seed))


def _units(t: Tensor, normalization: str) -> Tensor:
    """View ``t`` as ``(units, entries)``: the rows are what normalisation rescales independently."""
    if normalization == "filter" and t.ndim >= 2:
        return t.reshape(t.shape[0], -1)
    return t.reshape(1, -1)


def _normalize_tensor(d: Tensor, w: Tensor, normalization: str, ignore_1d: bool) -> Tensor:
    if d.ndim <= 1 and ignore_1d:
        return torch.zeros_like(d)
    if normalization == "none":
        return d.clone()
    d2, w2 = _units(d.double(), normalization), _units(w.double(), normalization)
    factor = w2.norm(dim=1, keepdim=True) / (d2.norm(dim=1, keepdim=True) + _EPS)
    return (d2 * factor).reshape(d.shape).to(d.dtype)


def normalize_direction(
    direction: Mapping[str, Tensor],
    params: Mapping[str, Tensor],
    *,
    normalization: Normalization = "filter",
    ignore_1d: bool = True,
) -> Params:
    """Rescale ``direction`` to the scale of ``params`` (a new dict; inputs untouched).

    Args:
        direction: a dict shaped like ``params``.
        params: the weights that set the scale (usually the trained point theta0).
        normalization: ``"filter"`` (each dim-0 slice of each tensor with ndim >= 2 gets the norm of
            the matching weight slice), ``"layer"`` (each tensor gets the weight tensor's norm) or
            ``"none"``.
        ignore_1d: zero 1-D tensors (biases, norm layers). When kept they are rescaled as a whole to
            the weight vector's norm.
    """
    _check_normalization(normalization)
    if direction.keys() != params.keys():
        raise ValueError(f"direction and params differ in keys: {sorted(set(direction) ^ set(params))[:5]}")
    for k in params:
        if direction[k].shape != params[k].shape:
            raise ValueError(f"direction[{k!r}] has shape {tuple(direction[k].shape)}, params {tuple(params[k].shape)}")
    return {k: _normalize_tensor(direction[k], params[k], normalization, ignore_1d) for k in params}


def random_direction(
    params: Params,
    *,
    normalization: Normalization = "filter",
    ignore_1d: bool = True,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> Params:
    """A Gaussian direction shaped like ``params``, normalised (Li et al. 2018).

    Entries are drawn from ``generator`` (else a generator seeded with ``seed``; with neither, from the
    global torch RNG) in sorted-key order, so the same seed gives the same direction whatever the dict
    order.
    """
    _check_normalization(normalization)
    g = _make_generator(seed, generator)
    raw = randn_like(params, g)
    return normalize_direction(raw, params, normalization=normalization, ignore_1d=ignore_1d)


def _orthogonalize_units(r1: Params, r2: Params, normalization: str, ignore_1d: bool) -> Params:
    """Gram-Schmidt ``r2`` against ``r1`` inside every normalisation unit (see module docstring)."""
    if normalization == "none":
        keep = {k: not (v.ndim <= 1 and ignore_1d) for k, v in r1.items()}
        a = torch.cat([r1[k].double().reshape(-1) for k in r1 if keep[k]] or [torch.zeros(0)])
        b = torch.cat([r2[k].double().reshape(-1) for k in r2 if keep[k]] or [torch.zeros(0)])
        c = float(a @ b) / max(float(a @ a), _EPS)
        return {k: (r2[k].double() - c * r1[k].double()).to(r2[k].dtype) if keep[k] else r2[k].clone() for k in r2}
    out = {}
    for k in r1:
        a, b = _units(r1[k].double(), normalization), _units(r2[k].double(), normalization)
        if a.shape[1] < 2:
            out[k] = r2[k].clone()
            continue
        c = (a * b).sum(1, keepdim=True) / ((a * a).sum(1, keepdim=True) + _EPS)
        out[k] = (b - c * a).reshape(r2[k].shape).to(r2[k].dtype)
    return out


def random_plane(
    params: Params,
    *,
    normalization: Normalization = "filter",
    ignore_1d: bool = True,
    seed: int | None = 0,
    generator: torch.Generator | None = None,
) -> tuple[Params, Params]:
    """Two orthogonal normalised random directions ``(d1, d2)``.

    ``d2``'s raw Gaussian is Gram-Schmidt-orthogonalised against ``d1``'s before both are normalised
    (per normalisation unit, so ``dot(d1, d2) == 0`` also after filter normalisation).
    """
    _check_normalization(normalization)
    g = _make_generator(seed, generator)
    r1 = randn_like(params, g)
    r2 = randn_like(params, g)
    r2 = _orthogonalize_units(r1, r2, normalization, ignore_1d)
    kw = {"normalization": normalization, "ignore_1d": ignore_1d}
    return normalize_direction(r1, params, **kw), normalize_direction(r2, params, **kw)


# --- PCA of a trajectory ------------------------------------------------------------------------


@dataclass(frozen=True)
class PCAResult:
    """Principal directions of a training trajectory around its final point.

    Attributes:
        directions: ``k`` unit-norm parameter dicts (rows of V^T of ``M = U S V^T``).
        explained_variance_ratio: ``s_j^2 / sum_i s_i^2`` for the first ``k`` components.
        singular_values: ``s_1..s_k``.
        coords: ``(S, k)`` coordinates of each snapshot, ``U S`` (float64).
    """

    directions: list[Params]
    explained_variance_ratio: np.ndarray
    singular_values: np.ndarray
    coords: np.ndarray | None = None

    def to_dict(self) -> dict:
        return {
            "k": len(self.directions),
            "explained_variance_ratio": [float(x) for x in self.explained_variance_ratio],
            "singular_values": [float(x) for x in self.singular_values],
        }


def pca_directions(snapshots: Mapping[str, Tensor], final: Params, k: int = 2) -> PCAResult:
    """PCA of ``theta_i - theta_final`` over the snapshots (Li et al. 2018, section 7).

    Builds the ``S x n`` float64 matrix ``M`` whose rows are ``theta_i - theta_final`` (no centring:
    the plane passes through the final point) and takes its thin SVD. Directions are the top-``k``
    right singular vectors, signed so that each one's largest-magnitude entry is positive.

    Args:
        snapshots: ``name -> (S, *shape)`` tensors (keys of ``final`` are used; extra keys ignored).
        final: the final parameters.
        k: number of directions.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    missing = [n for n in final if n not in snapshots]
    if missing:
        raise ValueError(f"snapshots lack parameters {missing[:5]}")
    S = int(next(iter(snapshots.values())).shape[0]) if snapshots else 0
    rows = []
    for name, w in final.items():
        s = snapshots[name]
        if s.shape[0] != S or tuple(s.shape[1:]) != tuple(w.shape):
            raise ValueError(f"snapshots[{name!r}] has shape {tuple(s.shape)}, expected ({S}, *{tuple(w.shape)})")
        rows.append((s.double().to("cpu") - w.double().to("cpu")).reshape(S, -1))
    M = torch.cat(rows, dim=1)
    rank_budget = min(M.shape)
    if k > rank_budget:
        raise ValueError(f"k={k} directions need at least {k} snapshots and parameters, got {S} snapshots")
    U, s, Vt = torch.linalg.svd(M, full_matrices=False)
    total = float((s**2).sum())
    if total <= 0:
        raise ValueError("all snapshots equal the final point: the trajectory has no extent to analyse")
    V = Vt[:k].clone()
    U = U[:, :k].clone()
    for j in range(k):
        if V[j, V[j].abs().argmax()] < 0:
            V[j], U[:, j] = -V[j], -U[:, j]
    dirs = [unflatten(V[j].to(next(iter(final.values())).dtype), final) for j in range(k)]
    dirs = [{n: d[n].to(final[n].device, final[n].dtype) for n in final} for d in dirs]
    return PCAResult(
        directions=dirs,
        explained_variance_ratio=(s[:k] ** 2 / total).numpy(),
        singular_values=s[:k].numpy(),
        coords=(U * s[:k]).numpy(),
    )


# --- Hessian and gradient directions -------------------------------------------------------------


def hessian_directions(loss_fn: Any, k: int = 2, seed: int = 0) -> tuple[list[Params], np.ndarray]:
    """Top-``k`` Hessian eigenvectors at ``loss_fn.params0`` (Lanczos) as unit-norm parameter dicts.

    Returns ``(directions, eigenvalues)``; eigenvectors are signed so their largest entry is positive.
    """
    from .hessian import hessian_operator
    from .lanczos import lanczos

    op = hessian_operator(loss_fn)
    res = lanczos(op, k=k, seed=seed)
    vecs = torch.as_tensor(res.eigenvectors)
    vals = np.asarray(torch.as_tensor(res.eigenvalues).double().cpu().numpy())
    if vecs.ndim == 1:
        vecs = vecs[:, None]
    like = loss_fn.params0
    if vecs.shape[0] != sum(v.numel() for v in like.values()) and vecs.shape[1] == sum(v.numel() for v in like.values()):
        vecs = vecs.T
    order = np.argsort(-vals)[:k]
    dirs = []
    for j in order:
        v = vecs[:, int(j)].double().cpu()
        v = v / v.norm().clamp_min(_EPS)
        if v[v.abs().argmax()] < 0:
            v = -v
        d = unflatten(v, {n: t.cpu() for n, t in like.items()})
        dirs.append({n: d[n].to(like[n].device, like[n].dtype) for n in like})
    return dirs, vals[order]


def gradient_direction(
    loss_fn: Any,
    params: Params | None = None,
    normalization: Normalization = "filter",
    *,
    ignore_1d: bool = True,
) -> Params:
    """The steepest-descent direction ``-grad L(params)``, normalised like a random direction."""
    _check_normalization(normalization)
    params = loss_fn.params0 if params is None else params
    g = loss_fn.gradient(params)
    neg = {k: -v for k, v in g.items()}
    if normalization == "none":
        n = norm(neg)
        neg = {k: v / max(n, _EPS) for k, v in neg.items()}
    return normalize_direction(neg, params, normalization=normalization, ignore_1d=ignore_1d)


# --- lines and planes through runs --------------------------------------------------------------


def line_through(theta_a: Params, theta_b: Params) -> tuple[Params, Params]:
    """``(origin, d)`` with ``origin = theta_a`` and ``d = theta_b - theta_a``: t=0 is A, t=1 is B."""
    if theta_a.keys() != theta_b.keys():
        raise ValueError("the two runs have different parameter names (different architectures?)")
    return {k: v.clone() for k, v in theta_a.items()}, {k: theta_b[k] - theta_a[k] for k in theta_a}


def plane_through(
    theta_a: Params, theta_b: Params, theta_c: Params
) -> tuple[Params, Params, Params, np.ndarray]:
    """The plane through three points, with an orthonormal basis (Garipov et al. 2018, Fig. 1).

    ``origin = theta_a``, ``d1 = (b - a)/||b - a||``, ``d2`` = the part of ``c - a`` orthogonal to
    ``d1``, unit norm. Returns ``(origin, d1, d2, coords)`` with ``coords`` the ``(3, 2)`` float64
    coordinates of A, B, C in that basis (A at (0, 0), B at (||b - a||, 0)), so each run sits at its
    true position and distances on the plot are Euclidean distances in parameter space.
    """
    for t in (theta_b, theta_c):
        if t.keys() != theta_a.keys():
            raise ValueError("the runs have different parameter names (different architectures?)")
    like = {k: v.cpu() for k, v in theta_a.items()}
    a = flatten({k: v.double().cpu() for k, v in theta_a.items()})
    u = flatten({k: theta_b[k].double().cpu() for k in theta_a}) - a
    v = flatten({k: theta_c[k].double().cpu() for k in theta_a}) - a
    nu = float(u.norm())
    if nu <= _EPS:
        raise ValueError("runs A and B have identical weights: no line to span")
    e1 = u / nu
    v_perp = v - float(v @ e1) * e1
    nv = float(v_perp.norm())
    if nv <= 1e-6 * max(nu, float(v.norm())):
        raise ValueError("the three runs are collinear: they do not span a plane")
    e2 = v_perp / nv
    coords = np.array([[0.0, 0.0], [nu, 0.0], [float(v @ e1), nv]])

    def back(x: Tensor) -> Params:
        d = unflatten(x, like)
        return {k: d[k].to(theta_a[k].device, theta_a[k].dtype) for k in theta_a}

    return {k: t.clone() for k, t in theta_a.items()}, back(e1), back(e2), coords


# --- a reproducible record of directions ---------------------------------------------------------

DirectionKind = Literal["random", "pca", "hessian", "gradient", "runs"]


@dataclass(frozen=True)
class DirectionSet:
    """Directions plus everything needed to reproduce them.

    Attributes:
        kind: ``"random"``, ``"pca"``, ``"hessian"``, ``"gradient"`` or ``"runs"``.
        directions: one or two parameter dicts.
        seed: the random seed (``None`` where no randomness is involved).
        normalization: ``"filter"``, ``"layer"`` or ``"none"``.
        ignore_1d: whether 1-D tensors were zeroed.
        explained_variance: PCA explained-variance ratios (``None`` for other kinds).
        labels: axis labels, e.g. ``("PC1 (87.1%)", "PC2 (9.3%)")``.
        extra: further JSON-able facts (Hessian eigenvalues, coordinates of runs in the plane...).
    """

    kind: str
    directions: list[Params]
    seed: int | None = None
    normalization: str = "filter"
    ignore_1d: bool = True
    explained_variance: tuple[float, ...] | None = None
    labels: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)
    #: norms / cosine / count of the directions when read back by :meth:`from_dict` (no tensors there)
    summary: dict | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.summary is not None and not self.directions:
            return  # read back from to_dict(): facts without tensors
        if not 1 <= len(self.directions) <= 2:
            raise ValueError(f"a direction set holds 1 or 2 directions, got {len(self.directions)}")
        _check_normalization(self.normalization)

    def to_dict(self) -> dict:
        """Settings and facts without tensors (JSON-able)."""
        if not self.directions and self.summary is not None:
            facts = dict(self.summary)
        else:
            facts = {
                "n_directions": len(self.directions),
                "norms": [norm(d) for d in self.directions],
                "cosine": (
                    dot(self.directions[0], self.directions[1])
                    / max(norm(self.directions[0]) * norm(self.directions[1]), _EPS)
                    if len(self.directions) == 2
                    else None
                ),
            }
        return {
            "kind": self.kind,
            "n_directions": facts["n_directions"],
            "seed": self.seed,
            "normalization": self.normalization,
            "ignore_1d": self.ignore_1d,
            "explained_variance": None if self.explained_variance is None else [float(x) for x in self.explained_variance],
            "labels": list(self.labels),
            "norms": facts["norms"],
            "cosine": facts["cosine"],
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DirectionSet:
        """Read back :meth:`to_dict`: settings and facts, no tensors (``directions`` is empty)."""
        ev = d.get("explained_variance")
        return cls(
            kind=d["kind"], directions=[], seed=d.get("seed"), normalization=d.get("normalization", "filter"),
            ignore_1d=bool(d.get("ignore_1d", True)), explained_variance=None if ev is None else tuple(ev),
            labels=tuple(d.get("labels") or ()), extra=dict(d.get("extra") or {}),
            summary={"n_directions": int(d.get("n_directions", 0)), "norms": list(d.get("norms") or []),
                     "cosine": d.get("cosine")},
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write the tensors and settings to a safetensors file."""
        from safetensors.torch import save_file

        tensors = {f"d{i}/{k}": v.detach().cpu().contiguous() for i, d in enumerate(self.directions) for k, v in d.items()}
        meta = {
            "kind": self.kind,
            "seed": self.seed,
            "normalization": self.normalization,
            "ignore_1d": self.ignore_1d,
            "explained_variance": None if self.explained_variance is None else list(self.explained_variance),
            "labels": list(self.labels),
            "extra": self.extra,
            "order": [list(d.keys()) for d in self.directions],
        }
        save_file(tensors, str(path), metadata={"direction_set": json.dumps(meta)})

    @classmethod
    def load(cls, path: str | os.PathLike) -> DirectionSet:
        """Read a file written by :meth:`save`."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("direction_set", "null") or "null")
            if meta is None:
                raise ValueError(f"{path} is not a saved direction set (no metadata)")
            dirs = [{k: f.get_tensor(f"d{i}/{k}") for k in order} for i, order in enumerate(meta["order"])]
        ev = meta.get("explained_variance")
        return cls(
            kind=meta["kind"],
            directions=dirs,
            seed=meta.get("seed"),
            normalization=meta.get("normalization", "filter"),
            ignore_1d=bool(meta.get("ignore_1d", True)),
            explained_variance=None if ev is None else tuple(float(x) for x in ev),
            labels=tuple(meta.get("labels", ())),
            extra=meta.get("extra", {}),
        )



__all__ = [
    "NORMALIZATIONS", "DirectionSet", "PCAResult", "gradient_direction", "hessian_directions",
    "line_through", "normalize_direction", "pca_directions", "plane_through", "random_direction",
    "random_plane",
]
