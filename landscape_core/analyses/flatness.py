"""All flatness measures of one minimum, for a run (what the CLI, the UI and sweeps show).

The measures themselves (perturbation profile, epsilon / adaptive sharpness, basin radius) are in
:mod:`landscape_core.flatness` and take a ``LossFunction``; this module resolves a run to its analysis
loss and calls them in turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..flatness import (
    DEFAULT_RADII,
    BasinRadius,
    Normalization,
    PerturbationProfile,
    SharpnessResult,
    adaptive_sharpness,
    basin_radius,
    epsilon_sharpness,
    perturbation_profile,
)
from ..progress import ProgressFn
from ..results import clean as _clean
from ..results import unclean
from .resolve import loss_function


@dataclass(frozen=True)
class FlatnessResult:
    """All flatness measures of one minimum (what the CLI and the UI show)."""

    loss: float
    accuracy: float
    profile: PerturbationProfile
    epsilon_sharpness: SharpnessResult
    adaptive_sharpness: SharpnessResult
    basin: BasinRadius
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "loss": _clean(self.loss),
            "accuracy": _clean(self.accuracy),
            "profile": self.profile.to_dict(),
            "epsilon_sharpness": self.epsilon_sharpness.to_dict(),
            "adaptive_sharpness": self.adaptive_sharpness.to_dict(),
            "basin_radius": self.basin.to_dict(),
            "settings": dict(self.settings),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FlatnessResult:
        """Inverse of :meth:`to_dict`."""
        return cls(
            loss=unclean(d["loss"]), accuracy=unclean(d["accuracy"]),
            profile=PerturbationProfile.from_dict(d["profile"]),
            epsilon_sharpness=SharpnessResult.from_dict(d["epsilon_sharpness"]),
            adaptive_sharpness=SharpnessResult.from_dict(d["adaptive_sharpness"]),
            basin=BasinRadius.from_dict(d["basin_radius"]), settings=dict(d.get("settings") or {}),
        )


def flatness_summary(
    run: Any,
    *,
    samples: int | None = 512,
    seed: int = 0,
    split: Literal["train", "test"] = "train",
    radii: Sequence[float] = DEFAULT_RADII,
    n_directions: int = 20,
    normalization: Normalization = "filter",
    ignore_1d: bool = True,
    epsilon: float = 1e-3,
    rho: float = 0.05,
    ascent_steps: int = 10,
    threshold: float = 0.1,
    basin_directions: int = 10,
    max_radius: float = 1.0,
    progress: ProgressFn | None = None,
) -> FlatnessResult:
    """Perturbation profile, epsilon-sharpness, adaptive sharpness and basin radius of a run.

    Args:
        run: a loaded ``Run`` (evaluated on a seeded subset of ``samples`` examples of ``split``) or
            a ``LossFunction``.
        samples, seed, split: the analysis data (``samples=None``: all); ``seed`` also seeds the
            directions.
        radii, n_directions, normalization, ignore_1d: the perturbation profile.
        epsilon, rho, ascent_steps: epsilon-sharpness box and adaptive-sharpness radius.
        threshold, basin_directions, max_radius: the basin radius.
        progress: ``progress(fraction, message)``.
    """
    loss_fn = loss_function(run, samples=samples, seed=seed, split=split, device=None)

    def stage(lo: float, hi: float) -> ProgressFn | None:
        if progress is None:
            return None
        return lambda f, msg: progress(lo + (hi - lo) * f, msg)

    loss, acc = loss_fn.evaluate()
    prof = perturbation_profile(
        loss_fn, radii=radii, n_directions=n_directions, normalization=normalization, ignore_1d=ignore_1d, seed=seed,
        progress=stage(0.0, 0.5),
    )
    eps = epsilon_sharpness(loss_fn, epsilon=epsilon, steps=ascent_steps, seed=seed)
    if progress is not None:
        progress(0.6, "epsilon-sharpness done")
    ada = adaptive_sharpness(loss_fn, rho=rho, steps=ascent_steps, seed=seed)
    if progress is not None:
        progress(0.7, "adaptive sharpness done")
    basin = basin_radius(
        loss_fn, threshold=threshold, n_directions=basin_directions, max_radius=max_radius,
        normalization=normalization, ignore_1d=ignore_1d, seed=seed + 1, progress=stage(0.7, 1.0),
    )
    settings = {
        "samples": samples, "n_examples": loss_fn.n, "seed": seed, "split": split, "epsilon": epsilon, "rho": rho,
        "ascent_steps": ascent_steps, "threshold": threshold,
    }
    return FlatnessResult(
        loss=loss, accuracy=acc, profile=prof, epsilon_sharpness=eps, adaptive_sharpness=ada, basin=basin,
        settings=settings,
    )


__all__ = ["FlatnessResult", "flatness_summary"]
