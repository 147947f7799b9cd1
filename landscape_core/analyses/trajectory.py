"""A run's training trajectory projected onto the PCA plane through its final weights."""

from __future__ import annotations

from typing import Any

from ..directions import PCAResult
from ..progress import ProgressFn
from ..trajectory import TrajectoryProjection, project_snapshots
from .resolve import as_run, loss_function


def project_trajectory(
    run: Any,
    *,
    pca: PCAResult | None = None,
    samples: int | None = 512,
    split: str = "train",
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> TrajectoryProjection:
    """Project a run's stored trajectory onto the PCA plane through its final weights.

    Args:
        run: a loaded :class:`~landscape_core.runs.Run` (or its folder) with trajectory snapshots.
        pca: precomputed directions (default: top-2 PCA of ``theta_i - theta_final``).
        samples: examples used for the losses (``None``: all).
        split: ``"train"`` or ``"test"``.
        seed: seed of the fixed analysis subset.
    """
    run = as_run(run)
    snaps, steps = run.trajectory()
    loss_fn = loss_function(run, split=split, samples=samples, seed=seed, device=None)  # type: ignore[arg-type]
    return project_snapshots(loss_fn, snaps, steps, pca=pca, progress=progress)


__all__ = ["TrajectoryProjection", "project_trajectory"]
