"""Names shared by the engine, the CLI and the UI, defined once.

``ui/`` imports these instead of keeping its own copies (direction kinds for the surface picker, the
optimizer and model registries' names for the training form, the chart palette for reports and figures).
"""

from __future__ import annotations

from .models import MODELS
from .optimizers import OPTIMIZERS

#: direction kinds ``compute_surface`` accepts (``"runs"`` takes other runs: ``("runs", [run_b])``)
DIRECTION_KINDS: tuple[str, ...] = ("random", "pca", "hessian", "gradient", "runs")

#: registry names of the model zoo (``landscape_core.models.MODELS``)
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)

#: colours for series in charts (Tableau 10 order), used by the HTML reports and the app's figures
PALETTE: tuple[str, ...] = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")

__all__ = ["DIRECTION_KINDS", "MODEL_NAMES", "OPTIMIZERS", "PALETTE"]
