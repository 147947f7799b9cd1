"""Plotly figures for training: learning curves, sharpness against the 2/lr stability line, compare overlays.

All builders take plain lists/dicts (a run's ``history`` rows, sharpness records), so they are cheap
to test and to call on every progress update.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from landscape_core.constants import PALETTE
from landscape_core.surface import Surface

OPT_COLORS = {"sgd": "#1f77b4", "adam": "#2ca02c", "adamw": "#17becf", "sam": "#d62728", "asam": "#ff7f0e",
              "sam-adam": "#9467bd"}


def color_for(name: str, i: int = 0) -> str:
    """A stable colour per optimizer name (fallback palette by index)."""
    return OPT_COLORS.get(name.lower(), PALETTE[i % len(PALETTE)])


def learning_curves(history: Sequence[Mapping], *, title: str | None = None, log_loss: bool = False) -> go.Figure:
    """Loss (left) and accuracy (right) per epoch, train solid and test dashed.

    Args:
        history: rows with ``epoch``, ``train_loss``, ``test_loss``, ``train_acc``, ``test_acc``.
        title: figure title.
        log_loss: log-scale loss axis.
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"))
    ep = [int(r["epoch"]) for r in history]
    for split, dash in (("train", "solid"), ("test", "dash")):
        fig.add_trace(go.Scatter(x=ep, y=[float(r[f"{split}_loss"]) for r in history], name=f"{split} loss",
                                 mode="lines+markers", line={"color": "#1f77b4", "dash": dash}), row=1, col=1)
        fig.add_trace(go.Scatter(x=ep, y=[float(r[f"{split}_acc"]) for r in history], name=f"{split} acc",
                                 mode="lines+markers", line={"color": "#d62728", "dash": dash}), row=1, col=2)
    fig.update_xaxes(title_text="epoch")
    if log_loss:
        fig.update_yaxes(type="log", row=1, col=1)
    fig.update_yaxes(tickformat=".0%", row=1, col=2)
    fig.update_layout(title=title, height=340, margin={"l": 40, "r": 10, "t": 50, "b": 40},
                      legend={"orientation": "h", "y": -0.25})
    return fig


def sharpness_figure(records: Sequence[Mapping], lr: float, *, title: str | None = None) -> go.Figure:
    """lambda_max along training with the gradient-descent stability threshold 2/lr.

    Plain gradient descent on a quadratic with curvature ``lambda`` is stable only while
    ``lambda < 2/lr``; full-batch training tends to hover at this "edge of stability" (Cohen et al., 2021).
    When the records carry the tracker's own ``threshold`` (``(2 + 2*beta)/lr`` with heavy-ball momentum
    ``beta``) and it differs from 2/lr, it is drawn too (dotted).
    """
    steps = [int(r.get("step", i)) for i, r in enumerate(records)]
    lam = [float(r.get("lambda_max", r.get("sharpness", float("nan")))) for r in records]
    fig = go.Figure(go.Scatter(x=steps, y=lam, mode="lines+markers", name="λ_max", line={"color": "#d62728"}))
    fig.add_hline(y=2.0 / lr, line={"dash": "dash", "color": "#555"}, annotation_text=f"2/lr = {2.0 / lr:.3g}")
    thr = [float(r["threshold"]) for r in records if r.get("threshold") is not None]
    if thr and abs(thr[-1] - 2.0 / lr) > 1e-9 * (2.0 / lr):
        fig.add_hline(y=thr[-1], line={"dash": "dot", "color": "#888"},
                      annotation_text=f"with momentum: {thr[-1]:.3g}", annotation_position="bottom right")
    fig.update_layout(title=title or "Sharpness during training", xaxis_title="step", yaxis_title="λ_max",
                      height=320, margin={"l": 40, "r": 10, "t": 50, "b": 40})
    return fig


def compare_curves(histories: Mapping[str, Sequence[Mapping]], *, metric: str = "test_acc",
                   x: str = "epoch", title: str | None = None) -> go.Figure:
    """One line per run of ``metric`` against ``x`` (``epoch``, ``step`` or ``grad_evals``)."""
    fig = go.Figure()
    for i, (name, hist) in enumerate(histories.items()):
        fig.add_trace(go.Scatter(x=[r.get(x, j + 1) for j, r in enumerate(hist)],
                                 y=[float(r[metric]) for r in hist], name=name, mode="lines+markers",
                                 line={"color": color_for(name.split("-")[-1] if name else "", i)}))
    fig.update_layout(title=title or metric.replace("_", " "), xaxis_title=x.replace("_", " "),
                      yaxis_title=metric.replace("_", " "), height=340,
                      margin={"l": 40, "r": 10, "t": 50, "b": 40})
    if metric.endswith("_acc"):
        fig.update_yaxes(tickformat=".0%")
    return fig


def shared_plane_figure(surface: Surface, trajectories: Mapping[str, Mapping], *, kind: str = "contour",
                        log: bool = True, title: str | None = None) -> go.Figure:
    """One surface in a basis shared by several runs, with every run's trajectory drawn on it.

    Args:
        surface: the surface through the runs (``ui.analysis.cached_surface(..., directions="runs")``).
        trajectories: run name -> ``{"x", "y", "steps"}`` plane coordinates (``ui.training_ui.plane_trajectories``).
        kind: ``"contour"`` or ``"3d"`` (lines lifted slightly above the surface).
        log: colour by log10(loss).
    """
    import numpy as np

    from .figures import bilinear, color_values, surface_arrays, surface_figure

    fig = surface_figure(surface, kind=kind, log=log, title=title, colorscale="Viridis")
    x, y, Z = surface_arrays(surface)
    C = color_values(Z, log)
    fin = C[np.isfinite(C)]
    lift = 0.02 * float(fin.max() - fin.min()) if fin.size else 0.0
    for i, (name, t) in enumerate(trajectories.items()):
        color = color_for(name.split("-")[-1], i)
        tx = np.asarray(t["x"], dtype=np.float32)
        ty = np.asarray(t["y"], dtype=np.float32)
        text = [f"{name} step {s}" for s in t.get("steps", range(len(tx)))]
        if kind == "3d" and y is not None:
            tz = (bilinear(x, y, C, tx, ty) + lift).astype(np.float32)
            fig.add_trace(go.Scatter3d(x=tx, y=ty, z=tz, mode="lines+markers", name=name, text=text,
                                       line={"color": color, "width": 6}, marker={"size": 3, "color": color}))
        else:
            fig.add_trace(go.Scatter(x=tx, y=ty, mode="lines+markers", name=name, text=text,
                                     line={"color": color, "width": 2.5}, marker={"size": 6, "color": color}))
            fig.add_trace(go.Scatter(x=tx[-1:], y=ty[-1:], mode="markers", showlegend=False, hoverinfo="skip",
                                     marker={"symbol": "x", "size": 12, "color": color}))
    return fig
