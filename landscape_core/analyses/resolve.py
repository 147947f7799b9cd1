"""The one resolver from "a run, a run folder or a loss function" to a :class:`LossFunction`."""

from __future__ import annotations

import os
from typing import Any, Literal

import torch

from ..functional import LossFunction, loss_function_for_run
from ..runs import Run, load_run

Source = Run | LossFunction | str | os.PathLike


def as_run(source: Run | str | os.PathLike) -> Run:
    """A loaded :class:`Run` from a run or a run folder path.

    Raises:
        ValueError: ``source`` is neither a ``Run`` nor a path (RunError when the folder is not a run).
    """
    if isinstance(source, Run):
        return source
    if isinstance(source, (str, os.PathLike)):
        return load_run(source)
    raise ValueError(f"expected a Run or a run folder path, got {type(source).__name__}")


def loss_function(
    source: Any,
    *,
    samples: int | None = None,
    split: Literal["train", "test"] = "train",
    seed: int = 0,
    device: str | torch.device | None = "cpu",
    dtype: torch.dtype | None = None,
) -> LossFunction:
    """The analysis loss closure of ``source``.

    Args:
        source: a ``LossFunction`` (returned as is: ``samples``/``split``/``seed``/``device`` ignored),
            a loaded ``Run`` or a run folder path (the loss on a fixed, seeded subset of ``samples``
            examples of ``split``, eval mode, detached weights: ``loss_function_for_run``).
        samples: examples of the subset (``None``: all of the split).
        split: ``"train"`` or ``"test"``.
        seed: seed of the subset.
        device, dtype: where and in which precision the loss is evaluated (``None``: the model's).

    Raises:
        ValueError: an unknown source type, ``samples`` not a positive integer, or a bad split.
    """
    if isinstance(source, LossFunction):
        return source
    if not isinstance(source, (Run, str, os.PathLike)):
        raise ValueError(f"expected a Run, a run folder path or a LossFunction, got {type(source).__name__}")
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 1):
        raise ValueError(f"samples must be a positive integer or None (all), got {samples!r}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return loss_function_for_run(as_run(source), split=split, samples=samples, seed=seed, dtype=dtype, device=device)


__all__ = ["Source", "as_run", "loss_function"]
