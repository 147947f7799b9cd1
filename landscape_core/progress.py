"""Progress reporting: the one callback type long work takes, and a no-op default."""

from __future__ import annotations

from collections.abc import Callable

#: ``progress(fraction_done, message)``: fraction in [0, 1], a short human-readable message.
ProgressFn = Callable[[float, str], None]


def null_progress(fraction: float, message: str) -> None:
    """The default when no progress callback is given: does nothing."""
