"""Gradient noise scale of a run (McCandlish et al. 2018): the run-level entry points.

The estimators are in :mod:`landscape_core.noise` and take a ``LossFunction``; these resolve a run (or
its folder, or a ready loss) to its analysis loss on ``samples`` examples of ``split`` and record that
choice in the result's settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

from .. import noise as _noise
from ..noise import NoiseResult, NoiseSweep
from .resolve import loss_function


def gradient_noise_scale(source: Any, *, samples: int | None = None, split: Literal["train", "test"] = "train",
                         seed: int = 0, **kwargs: Any) -> NoiseResult:
    """``landscape_core.noise.gradient_noise_scale`` on ``source``'s analysis loss.

    Args:
        source: a ``Run``, a run folder or a ``LossFunction``.
        samples, split: the data (``samples=None``: all of the split); the subset is seeded by ``seed``.
        seed: data subset, batch sampling and bootstrap seed.
        **kwargs: ``b_small``, ``b_big``, ``n_batches``, ``per_layer``, ``finite_population``,
            ``n_bootstrap``, ``params``, ``progress``.
    """
    fn = loss_function(source, samples=samples, split=split, seed=seed, device=None)
    res = _noise.gradient_noise_scale(fn, seed=seed, **kwargs)
    return replace(res, settings={**res.settings, "samples": samples, "split": split})


def noise_vs_batch_size(source: Any, batch_sizes: Sequence[int] = (16, 32, 64, 128, 256), *,
                        samples: int | None = None, split: Literal["train", "test"] = "train", seed: int = 0,
                        **kwargs: Any) -> NoiseSweep:
    """``landscape_core.noise.noise_vs_batch_size`` on ``source``'s analysis loss (see
    :func:`gradient_noise_scale` for the arguments)."""
    fn = loss_function(source, samples=samples, split=split, seed=seed, device=None)
    res = _noise.noise_vs_batch_size(fn, batch_sizes, seed=seed, **kwargs)
    return replace(res, settings={**res.settings, "samples": samples, "split": split})


__all__ = ["NoiseResult", "NoiseSweep", "gradient_noise_scale", "noise_vs_batch_size"]
