"""Training trajectories projected onto their PCA plane, with the off-plane residual of every point.

Following Li et al. (2018, section 7), the plane is spanned by the top principal directions of
``theta_i - theta_final`` and passes through the final weights. A snapshot ``theta_i`` projects to

    c_i = argmin_c || (theta_i - theta_final) - sum_j c_ij d_j ||     (least squares, float64),

and its residual ``r_i = || (theta_i - theta_final) - sum_j c_ij d_j ||`` says how far it lies off the
plane. The loss *drawn* at ``c_i`` on a surface plot is ``L(theta_final + sum_j c_ij d_j)`` (the
``plane_loss``), which equals the snapshot's own loss (``true_loss``) only when the residual is small.
Both are reported so a plot cannot silently pass one off as the other.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .directions import PCAResult, pca_directions
from .evaluator import evaluate_points
from .params import Params
from .progress import ProgressFn
from .results import floats

#: warn when a snapshot lies further off the plane than this fraction of max_j ||theta_j - theta_final||
OFF_PLANE_EXTENT = 0.25
#: warn when |true_loss - plane_loss| exceeds this fraction of the loss range along the path
LOSS_GAP = 0.10


@dataclass(frozen=True)
class TrajectoryProjection:
    """A trajectory in PCA coordinates.

    Attributes:
        steps: ``(S,)`` training step of each snapshot.
        coords: ``(S, k)`` coordinates in the plane (parameter-space units, final point at 0).
        residual_norm: ``(S,)`` distance of each snapshot from the plane.
        relative_residual: ``(S,)`` ``residual / ||theta_i - theta_final||`` (0 for the final point).
        true_loss: ``(S,)`` loss at each snapshot (with the final point's buffers).
        plane_loss: ``(S,)`` loss at the projected point ``theta_final + sum_j c_ij d_j``.
        explained_variance_ratio: ``(k,)`` of the PCA.
    """

    steps: np.ndarray
    coords: np.ndarray
    residual_norm: np.ndarray
    relative_residual: np.ndarray
    true_loss: np.ndarray
    plane_loss: np.ndarray
    explained_variance_ratio: np.ndarray

    @property
    def max_relative_residual(self) -> float:
        return float(np.max(self.relative_residual)) if len(self.relative_residual) else 0.0

    @property
    def distance(self) -> np.ndarray:
        """``(S,)`` ``||theta_i - theta_final|| = sqrt(||c_i||^2 + r_i^2)`` (orthonormal PCA directions)."""
        return np.sqrt((np.asarray(self.coords, np.float64) ** 2).sum(axis=1) + self.residual_norm ** 2)

    @property
    def extent_residual(self) -> np.ndarray:
        """``(S,)`` ``r_i / max_j ||theta_j - theta_final||``: off-plane distance in units of the path's extent.

        Unlike ``relative_residual`` it is not ~1 near the end of training, where ``theta_i - theta_final``
        is tiny and mostly noise: it measures how far a point sits off the plane *at the plot's scale*.
        """
        extent = float(self.distance.max()) if len(self.steps) else 0.0
        return self.residual_norm / extent if extent > 0 else np.zeros_like(self.residual_norm)

    @property
    def loss_gap(self) -> np.ndarray:
        """``(S,)`` ``|true_loss - plane_loss| / (max true_loss - min true_loss)``: how wrong the surface value
        drawn under each snapshot is, in units of the loss range along the path."""
        gap = np.abs(self.true_loss - self.plane_loss)
        span = float(np.nanmax(self.true_loss) - np.nanmin(self.true_loss)) if len(self.true_loss) else 0.0
        return gap / span if span > 0 else np.zeros_like(gap)

    def off_plane_verdict(self) -> dict[str, Any]:
        """Whether the plot misrepresents the path: a warning only when it matters for reading it.

        Warns when some snapshot lies further off the plane than ``OFF_PLANE_EXTENT`` (25%) of the path's
        extent, or when the surface value under a snapshot differs from its true loss by more than
        ``LOSS_GAP`` (10%) of the loss range along the path.

        Returns:
            ``{"warn", "max_extent_residual", "max_loss_gap", "step" (the worst snapshot's step), "note"}``.
        """
        ext, gap = self.extent_residual, self.loss_gap
        i_ext = int(np.argmax(ext)) if len(ext) else 0
        i_gap = int(np.nanargmax(gap)) if len(gap) else 0
        max_ext = float(ext[i_ext]) if len(ext) else 0.0
        max_gap = float(gap[i_gap]) if len(gap) else 0.0
        parts = []
        if max_gap > LOSS_GAP:
            parts.append(f"at step {int(self.steps[i_gap])} the surface shows {self.plane_loss[i_gap]:.4g} but the "
                         f"checkpoint's loss is {self.true_loss[i_gap]:.4g} ({max_gap:.0%} of the loss range along "
                         f"the path; threshold {LOSS_GAP:.0%})")
        if max_ext > OFF_PLANE_EXTENT:
            parts.append(f"the snapshot at step {int(self.steps[i_ext])} lies {max_ext:.0%} of the path's extent off "
                         f"the plane (threshold {OFF_PLANE_EXTENT:.0%})")
        if parts:
            note = "The plane misrepresents part of the path: " + "; ".join(parts) + ". Compare the two curves below."
        else:
            note = (f"Every snapshot lies within {max_ext:.0%} of the path's extent of the plane and the surface "
                    f"values match the true losses within {max_gap:.0%} of the loss range (warnings above "
                    f"{OFF_PLANE_EXTENT:.0%} / {LOSS_GAP:.0%}).")
        step = int(self.steps[i_gap if max_gap > LOSS_GAP else i_ext]) if len(self.steps) else 0
        return {"warn": bool(parts), "max_extent_residual": max_ext, "max_loss_gap": max_gap, "step": step,
                "note": note}

    def to_dict(self) -> dict:
        def f(a: np.ndarray) -> list:
            return [f(x) if np.ndim(x) else (float(x) if math.isfinite(float(x)) else None) for x in a]

        return {
            "steps": [int(s) for s in self.steps],
            "coords": f(self.coords),
            "residual_norm": f(self.residual_norm),
            "relative_residual": f(self.relative_residual),
            "true_loss": f(self.true_loss),
            "plane_loss": f(self.plane_loss),
            "explained_variance_ratio": f(self.explained_variance_ratio),
            "max_relative_residual": self.max_relative_residual,
            "off_plane": self.off_plane_verdict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrajectoryProjection:
        """Inverse of :meth:`to_dict` (``None`` entries come back as ``nan``)."""
        coords = floats(d["coords"])
        return cls(
            steps=np.asarray(d["steps"], dtype=np.int64), coords=coords.reshape(len(d["steps"]), -1),
            residual_norm=floats(d["residual_norm"]), relative_residual=floats(d["relative_residual"]),
            true_loss=floats(d["true_loss"]), plane_loss=floats(d["plane_loss"]),
            explained_variance_ratio=floats(d["explained_variance_ratio"]),
        )


def project_snapshots(
    loss_fn: Any,
    snapshots: Mapping[str, Tensor],
    steps: Tensor | np.ndarray | None = None,
    *,
    pca: PCAResult | None = None,
    final: Params | None = None,
    k: int = 2,
    progress: ProgressFn | None = None,
) -> TrajectoryProjection:
    """Project snapshots (``name -> (S, *shape)``) onto a PCA plane through ``final``.

    Args:
        loss_fn: loss closure for ``true_loss`` / ``plane_loss``.
        snapshots: the trajectory.
        steps: step numbers (default ``0..S-1``).
        pca: precomputed PCA (default: computed here from the snapshots, ``k`` directions).
        final: the plane's origin (default ``loss_fn.params0``).
    """
    final = loss_fn.params0 if final is None else final
    if pca is None:
        pca = pca_directions(snapshots, final, k=k)
    names = list(final)
    S = int(snapshots[names[0]].shape[0])
    delta = torch.cat(
        [(snapshots[n].double().cpu() - final[n].double().cpu()).reshape(S, -1) for n in names], dim=1
    )  # (S, n)
    V = torch.stack([torch.cat([d[n].double().cpu().reshape(-1) for n in names]) for d in pca.directions])  # (k, n)
    coords = torch.linalg.lstsq(V.T, delta.T).solution.T  # (S, k), exact for orthonormal V
    resid = (delta - coords @ V).norm(dim=1)
    dist = delta.norm(dim=1)
    rel = torch.where(dist > 0, resid / dist.clamp_min(1e-300), torch.zeros_like(dist))
    true_loss = np.empty(S)
    for i in range(S):
        theta = {n: snapshots[n][i].to(final[n].device, final[n].dtype) for n in names}
        true_loss[i] = loss_fn.evaluate(theta)[0]
        if progress is not None:
            progress(0.5 * (i + 1) / S, f"snapshot {i + 1}/{S}")
    plane_loss, _ = evaluate_points(loss_fn, pca.directions, coords.numpy(), origin=final)
    if progress is not None:
        progress(1.0, "projected trajectory")
    steps_arr = np.arange(S) if steps is None else np.asarray(torch.as_tensor(steps).cpu().numpy()).reshape(-1)
    return TrajectoryProjection(
        steps=steps_arr,
        coords=coords.numpy(),
        residual_norm=resid.numpy(),
        relative_residual=rel.numpy(),
        true_loss=true_loss,
        plane_loss=np.asarray(plane_loss, dtype=np.float64),
        explained_variance_ratio=np.asarray(pca.explained_variance_ratio, dtype=np.float64),
    )


__all__ = ["LOSS_GAP", "OFF_PLANE_EXTENT", "TrajectoryProjection", "project_snapshots"]
