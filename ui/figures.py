"""Plotly figure builders for the analysis pages: surfaces (1D / contour / 3D) with trajectory overlays,
Hessian spectra and densities, estimator convergence, PCA trajectories, connectivity paths, flatness
stem plots and gradient-noise curves.

Surface builders take the engine's typed results (``landscape_core.surface.Surface`` and
``landscape_core.trajectory.TrajectoryProjection``); the others take plain sequences of numbers. None
takes tensors or runs, so they are pure and testable with synthetic data. Conventions (DESIGN.md
section 5): explicit colorscales, float32 arrays, trajectory lines lifted slightly above 3D surfaces, one
shared colour / z range when several surfaces are compared. A 2-D grid is ``Z[j, i]`` at
``(alphas[i], betas[j])``: the engine's layout and Plotly's (row = y).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from landscape_core.connectivity import PathResult
from landscape_core.constants import PALETTE
from landscape_core.flatness import PerturbationProfile
from landscape_core.surface import Surface
from landscape_core.trajectory import TrajectoryProjection

F32 = np.float32
LIFT_FRACTION = 0.01  # trajectory lines float this fraction of the z range above a 3D surface
METRICS = ("loss", "accuracy")
COLORSCALES = ("Viridis", "Cividis", "Plasma", "Turbo")  # the explicit colour scales the pages offer


def _f32(a: Any) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).astype(F32)


def surface_arrays(surface: Surface, metric: str = "loss") -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """``(x, y, Z)`` of a surface in float32; ``y`` is ``None`` for a 1-D scan.

    Raises:
        ValueError: for an unknown ``metric``, or a 2-D grid whose shape is not ``(len(betas), len(alphas))``.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose 'loss' or 'accuracy'")
    x = _f32(surface.alphas)
    Z = _f32(surface.loss if metric == "loss" else surface.accuracy)
    if surface.betas is None:
        return x, None, Z.reshape(-1)
    y = _f32(surface.betas)
    if Z.shape != (len(y), len(x)):
        raise ValueError(f"surface grid has shape {Z.shape}, expected {(len(y), len(x))}")
    return x, y, Z


def color_values(Z: np.ndarray, log: bool) -> np.ndarray:
    """Values as coloured: ``log10(Z)`` (floored at the smallest positive value) when ``log``."""
    Z = np.asarray(Z, dtype=np.float64)
    if not log:
        return Z.astype(F32)
    pos = Z[np.isfinite(Z) & (Z > 0)]
    floor = float(pos.min()) if pos.size else 1e-12
    return np.log10(np.maximum(Z, floor)).astype(F32)


def bilinear(x: np.ndarray, y: np.ndarray, Z: np.ndarray, px: Sequence[float], py: Sequence[float]) -> np.ndarray:
    """Bilinear interpolation of the grid ``Z[j, i] = f(x[i], y[j])`` at points ``(px, py)``.

    Points outside the grid are clamped to its border (they are still drawn, at the edge value).
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    Z = np.asarray(Z, np.float64)
    px = np.clip(np.asarray(px, np.float64), x[0], x[-1])
    py = np.clip(np.asarray(py, np.float64), y[0], y[-1])
    i = np.clip(np.searchsorted(x, px) - 1, 0, len(x) - 2)
    j = np.clip(np.searchsorted(y, py) - 1, 0, len(y) - 2)
    tx = (px - x[i]) / np.where(x[i + 1] > x[i], x[i + 1] - x[i], 1.0)
    ty = (py - y[j]) / np.where(y[j + 1] > y[j], y[j + 1] - y[j], 1.0)
    return (
        (1 - tx) * (1 - ty) * Z[j, i]
        + tx * (1 - ty) * Z[j, i + 1]
        + (1 - tx) * ty * Z[j + 1, i]
        + tx * ty * Z[j + 1, i + 1]
    )


def _axis_labels(surface: Surface) -> tuple[str, str]:
    labels = list(surface.directions.labels)
    labels = labels + ["alpha (direction 1)", "beta (direction 2)"][len(labels):]
    return str(labels[0]), str(labels[1])


def _metric_label(metric: str, log: bool) -> str:
    base = "accuracy" if metric == "accuracy" else "loss"
    return f"log10 {base}" if log else base


def shared_zrange(surfaces: Sequence[Surface], metric: str = "loss", log: bool = False) -> tuple[float, float]:
    """One ``(zmin, zmax)`` covering all surfaces (in the coloured units), for side-by-side comparison."""
    lo, hi = math.inf, -math.inf
    for s in surfaces:
        Z = color_values(surface_arrays(s, metric)[2], log)
        fin = Z[np.isfinite(Z)]
        if fin.size:
            lo, hi = min(lo, float(fin.min())), max(hi, float(fin.max()))
    if not math.isfinite(lo):
        return 0.0, 1.0
    return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)


def trajectory_xy(trajectory: TrajectoryProjection) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` plane coordinates of a projected trajectory (its first two PCA coordinates)."""
    c = np.asarray(trajectory.coords, np.float64)
    return _f32(c[:, 0]), _f32(c[:, 1])


def _hover_steps(trajectory: TrajectoryProjection) -> list[str]:
    return [f"step {int(s)}" for s in trajectory.steps]


def _add_surface_traces(
    fig: go.Figure,
    surface: Surface,
    *,
    kind: str,
    log: bool,
    zrange: tuple[float, float] | None,
    colorscale: str,
    trajectory: TrajectoryProjection | None,
    metric: str,
    row: int | None = None,
    col: int | None = None,
    showscale: bool = True,
    name: str | None = None,
    color: str = PALETTE[0],
) -> None:
    x, y, Z = surface_arrays(surface, metric)
    C = color_values(Z, log)
    label = _metric_label(metric, log)
    rc = {"row": row, "col": col} if row is not None else {}
    if kind == "1d" or y is None:
        if y is not None:  # a 2-D surface shown as 1-D: the slice through beta = 0
            j = int(np.argmin(np.abs(y)))
            C = C[j]
        fig.add_trace(go.Scatter(x=x, y=C, mode="lines+markers", name=name or label, line={"color": color},
                                 hovertemplate="alpha=%{x:.3f}<br>" + label + "=%{y:.4g}<extra></extra>"), **rc)
        fig.update_xaxes(title_text=_axis_labels(surface)[0], **rc)
        fig.update_yaxes(title_text=label, **rc)
        if zrange is not None:
            fig.update_yaxes(range=list(zrange), **rc)
        return
    zmin, zmax = zrange if zrange is not None else (None, None)
    xl, yl = _axis_labels(surface)
    if kind == "contour":
        fig.add_trace(
            go.Contour(x=x, y=y, z=C, colorscale=colorscale, zmin=zmin, zmax=zmax, showscale=showscale,
                       ncontours=30, contours={"coloring": "heatmap", "showlines": True},
                       line={"width": 0.5}, colorbar={"title": {"text": label}}, name=name or label,
                       hovertemplate="alpha=%{x:.3f}<br>beta=%{y:.3f}<br>" + label + "=%{z:.4g}<extra></extra>"),
            **rc,
        )
        fig.add_trace(go.Scatter(x=[0.0], y=[0.0], mode="markers", name="trained point",
                                 marker={"symbol": "star", "size": 13, "color": "white",
                                         "line": {"color": "black", "width": 1}},
                                 showlegend=row is None), **rc)
        if trajectory is not None:
            tx, ty = trajectory_xy(trajectory)
            fig.add_trace(go.Scatter(x=tx, y=ty, mode="lines+markers", name="trajectory",
                                     line={"color": "#d62728", "width": 2}, marker={"size": 5},
                                     text=_hover_steps(trajectory), hoverinfo="text+x+y",
                                     showlegend=row is None), **rc)
        fig.update_xaxes(title_text=xl, **rc)
        fig.update_yaxes(title_text=yl, **rc)
        return
    if kind != "3d":
        raise ValueError(f"unknown surface kind {kind!r}; choose '1d', 'contour' or '3d'")
    fig.add_trace(
        go.Surface(x=x, y=y, z=C, colorscale=colorscale, cmin=zmin, cmax=zmax, showscale=showscale,
                   colorbar={"title": {"text": label}}, name=name or label, opacity=0.95),
        **rc,
    )
    if trajectory is not None:
        tx, ty = trajectory_xy(trajectory)
        fin = C[np.isfinite(C)]
        span = float(fin.max() - fin.min()) if fin.size else 1.0
        tz = bilinear(x, y, C, tx, ty) + LIFT_FRACTION * max(span, 1e-12)
        fig.add_trace(go.Scatter3d(x=tx, y=ty, z=tz.astype(F32), mode="lines+markers", name="trajectory",
                                   line={"color": "#d62728", "width": 5}, marker={"size": 3, "color": "#d62728"},
                                   text=_hover_steps(trajectory), showlegend=row is None), **rc)
    scene = {"xaxis": {"title": {"text": xl}}, "yaxis": {"title": {"text": yl}}, "zaxis": {"title": {"text": label}}}
    if zrange is not None:
        scene["zaxis"]["range"] = list(zrange)
    if row is None:
        fig.update_layout(scene=scene)
    else:
        fig.update_scenes(scene, row=row, col=col)


def surface_figure(
    surface: Surface,
    *,
    kind: str = "3d",
    log: bool = False,
    zrange: tuple[float, float] | None = None,
    colorscale: str = "Viridis",
    trajectory: TrajectoryProjection | None = None,
    title: str | None = None,
    metric: str = "loss",
    height: int = 520,
) -> go.Figure:
    """A loss (or accuracy) surface as a 1-D line, a filled contour or a 3-D surface.

    Args:
        surface: the engine's :class:`~landscape_core.surface.Surface`.
        kind: ``"1d"``, ``"contour"`` or ``"3d"``; a 2-D surface shown as ``"1d"`` gives its beta = 0 slice.
        log: colour (and z) by ``log10`` of the value: shows structure near a minimum.
        zrange: fixed ``(zmin, zmax)`` in coloured units, to share one scale between figures.
        colorscale: an explicit Plotly colorscale name.
        trajectory: optional projected trajectory (its PCA coordinates and steps): drawn over the
            contour, and lifted onto the 3-D surface (bilinear value + 1% of the z range).
        title: figure title.
        metric: ``"loss"`` or ``"accuracy"``.
        height: pixels.
    """
    fig = go.Figure()
    _add_surface_traces(fig, surface, kind=kind, log=log, zrange=zrange, colorscale=colorscale,
                        trajectory=trajectory, metric=metric)
    fig.update_layout(title={"text": title} if title else None, height=height,
                      margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
                      legend={"orientation": "h", "y": -0.12})
    return fig


def surfaces_side_by_side(
    surfaces: Sequence[tuple[str, Surface]],
    *,
    kind: str = "contour",
    log: bool = False,
    colorscale: str = "Viridis",
    metric: str = "loss",
    trajectories: Mapping[str, TrajectoryProjection] | None = None,
    height: int = 460,
) -> go.Figure:
    """Several runs' surfaces on one shared colour / z scale, side by side (one column per run)."""
    if not surfaces:
        raise ValueError("no surfaces to compare")
    zr = shared_zrange([s for _, s in surfaces], metric, log)
    n = len(surfaces)
    spec = {"type": "scene"} if kind == "3d" else {}
    fig = make_subplots(rows=1, cols=n, subplot_titles=[name for name, _ in surfaces],
                        specs=[[dict(spec) for _ in range(n)]], horizontal_spacing=0.04)
    for i, (name, s) in enumerate(surfaces):
        _add_surface_traces(fig, s, kind=kind, log=log, zrange=zr, colorscale=colorscale,
                            trajectory=(trajectories or {}).get(name), metric=metric, row=1, col=i + 1,
                            showscale=(i == n - 1), name=name, color=PALETTE[i % len(PALETTE)])
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10}, showlegend=(kind == "1d"))
    return fig


# --- curvature ------------------------------------------------------------------------------------


def spectrum_figure(
    eigenvalues: Sequence[float],
    residuals: Sequence[float] | None = None,
    exact: Sequence[float] | None = None,
    *,
    title: str = "Top Hessian eigenvalues",
) -> go.Figure:
    """Top-k eigenvalues (index vs value) with residual error bars ``||H v - lambda v||`` and, when
    known, the exact eigenvalues (dense Hessian) as open circles on the same axis."""
    ev = _f32(eigenvalues)
    idx = np.arange(1, len(ev) + 1)
    err = None
    if residuals is not None:
        err = {"type": "data", "array": _f32(residuals), "visible": True}
    fig = go.Figure(go.Scatter(x=idx, y=ev, mode="markers", name="estimate (Lanczos)", error_y=err,
                               marker={"size": 10, "color": PALETTE[0]}))
    if exact is not None:
        ex = np.sort(_f32(exact))[::-1][: max(len(ev), 1)]
        fig.add_trace(go.Scatter(x=np.arange(1, len(ex) + 1), y=ex, mode="markers", name="exact (dense Hessian)",
                                 marker={"size": 14, "symbol": "circle-open", "color": PALETTE[1],
                                         "line": {"width": 2}}))
    fig.update_layout(title={"text": title}, xaxis_title="index i", yaxis_title="lambda_i",
                      height=380, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def ritz_convergence_figure(ritz_history: Sequence[Sequence[float]], exact: Sequence[float] | None = None,
                            *, top: int = 5) -> go.Figure:
    """Ritz values against the Lanczos iteration (= number of HVPs), with exact eigenvalues as lines.

    ``ritz_history[m]`` holds the Ritz values after ``m + 1`` iterations. Without reorthogonalisation
    duplicated "ghost" copies of the top eigenvalue appear; with it each Ritz value settles on one
    exact eigenvalue.
    """
    xs, ys = [], []
    for m, vals in enumerate(ritz_history):
        for v in vals:
            xs.append(m + 1)
            ys.append(float(v))
    fig = go.Figure(go.Scatter(x=np.asarray(xs, F32), y=np.asarray(ys, F32), mode="markers", name="Ritz values",
                               marker={"size": 4, "color": PALETTE[0]}))
    if exact is not None:
        ex = np.sort(np.asarray(exact, np.float64))
        for k, v in enumerate(list(ex[::-1][:top]) + list(ex[: min(2, len(ex))])):
            fig.add_hline(y=float(v), line={"color": PALETTE[1], "dash": "dot", "width": 1},
                          annotation_text="exact" if k == 0 else None)
    fig.update_layout(title={"text": "Lanczos convergence: Ritz values vs iterations"}, xaxis_title="iteration (HVPs)",
                      yaxis_title="Ritz value", height=380, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def running_mean_figure(samples: Sequence[float], exact: float | None = None, *, title: str = "Hutchinson trace",
                        ylabel: str = "trace estimate", z: float = 1.96) -> go.Figure:
    """Running mean of i.i.d. estimator samples with a ``z``-sigma standard-error band (and the exact
    value when known): shows the estimate stabilising as the probe budget grows."""
    s = np.asarray(samples, np.float64)
    n = np.arange(1, len(s) + 1)
    mean = np.cumsum(s) / n
    sq = np.cumsum(s**2) / n
    var = np.maximum(sq - mean**2, 0.0) * n / np.maximum(n - 1, 1)
    se = np.sqrt(var / n)
    se[0] = np.nan
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=np.concatenate([n, n[::-1]]).astype(F32),
                             y=np.concatenate([mean + z * se, (mean - z * se)[::-1]]).astype(F32),
                             fill="toself", fillcolor="rgba(31,119,180,0.2)", line={"width": 0},
                             name=f"+/- {z:g} s.e.", hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=n.astype(F32), y=mean.astype(F32), mode="lines", name="running mean",
                             line={"color": PALETTE[0]}))
    if exact is not None:
        fig.add_hline(y=float(exact), line={"color": PALETTE[1], "dash": "dash"}, annotation_text="exact")
    fig.update_layout(title={"text": title}, xaxis_title="probe vectors (HVPs)", yaxis_title=ylabel, height=360,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def density_figure(
    grid: Sequence[float],
    density: Sequence[float],
    *,
    log: bool = False,
    exact: Sequence[float] | None = None,
    sigma: float | None = None,
    title: str = "Spectral density (SLQ)",
) -> go.Figure:
    """Smoothed spectral density ``phi(t)`` with optional log y-axis (shows outlier eigenvalues) and
    the exact eigenvalues as a rug (tiny models)."""
    g = _f32(grid)
    d = np.asarray(density, np.float64)
    if log:
        d = np.maximum(d, 1e-12)
    fig = go.Figure(go.Scatter(x=g, y=d.astype(F32), mode="lines", name="density", line={"color": PALETTE[0]},
                               fill="tozeroy"))
    if exact is not None:
        ex = _f32(exact)
        base = float(np.nanmax(d)) if d.size else 1.0
        fig.add_trace(go.Scatter(x=ex, y=np.full(len(ex), base * 0.02 if not log else 1e-6, F32), mode="markers",
                                 name="exact eigenvalues", marker={"symbol": "line-ns-open", "size": 12,
                                                                   "color": PALETTE[1]}))
    sub = f" (sigma = {sigma:.3g})" if sigma is not None else ""
    fig.update_layout(title={"text": title + sub}, xaxis_title="eigenvalue", yaxis_title="density",
                      yaxis_type="log" if log else "linear", height=380,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def layer_heatmap(layers: Sequence[str], columns: Sequence[str], values: Sequence[Sequence[float]],
                  *, colorscale: str = "Viridis", log: bool = True, title: str = "Per-layer curvature") -> go.Figure:
    """A layers x quantities heat map (coloured by log10 |value| by default, annotated with the values)."""
    V = np.asarray(values, np.float64)
    C = np.log10(np.maximum(np.abs(V), 1e-12)) if log else V
    text = [[f"{v:.3g}" for v in row] for row in V]
    fig = go.Figure(go.Heatmap(z=C.astype(F32), x=list(columns), y=list(layers), colorscale=colorscale,
                               text=text, texttemplate="%{text}",
                               colorbar={"title": {"text": "log10 |value|" if log else "value"}}))
    fig.update_layout(title={"text": title}, height=120 + 28 * len(layers), margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      yaxis={"autorange": "reversed"})
    return fig


def sharpness_figure(steps: Sequence[float], sharpness: Sequence[float], lr: float | None,
                     *, xlabel: str = "step") -> go.Figure:
    """lambda_max over training against the gradient-descent stability threshold ``2 / lr``."""
    fig = go.Figure(go.Scatter(x=_f32(steps), y=_f32(sharpness), mode="lines+markers", name="lambda_max",
                               line={"color": PALETTE[0]}))
    if lr:
        fig.add_hline(y=2.0 / float(lr), line={"color": PALETTE[1], "dash": "dash"},
                      annotation_text=f"2/lr = {2.0 / float(lr):.3g}")
    fig.update_layout(title={"text": "Sharpness during training"}, xaxis_title=xlabel, yaxis_title="lambda_max",
                      height=360, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


# --- trajectory ------------------------------------------------------------------------------------


def explained_variance_figure(ratios: Sequence[float]) -> go.Figure:
    """Bar chart of PCA explained-variance ratios with the cumulative share as a line."""
    r = np.asarray(ratios, np.float64)
    idx = [f"PC{i + 1}" for i in range(len(r))]
    fig = go.Figure(go.Bar(x=idx, y=(100 * r).astype(F32), name="explained variance (%)", marker_color=PALETTE[0]))
    fig.add_trace(go.Scatter(x=idx, y=(100 * np.cumsum(r)).astype(F32), mode="lines+markers", name="cumulative (%)",
                             line={"color": PALETTE[1]}))
    fig.update_layout(title={"text": "PCA of the trajectory"}, yaxis_title="% of variance", yaxis_range=[0, 105],
                      height=320, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def path_values_figure(
    x: Sequence[float],
    series: Mapping[str, Sequence[float]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    log: bool = False,
    dashes: Mapping[str, str] | None = None,
) -> go.Figure:
    """Several named curves over a shared x (e.g. true loss vs surface value along a trajectory)."""
    fig = go.Figure()
    for i, (name, ys) in enumerate(series.items()):
        fig.add_trace(go.Scatter(x=_f32(x), y=_f32(ys), mode="lines+markers", name=name,
                                 line={"color": PALETTE[i % len(PALETTE)], "dash": (dashes or {}).get(name, "solid")},
                                 marker={"size": 4}))
    fig.update_layout(title={"text": title}, xaxis_title=xlabel, yaxis_title=ylabel,
                      yaxis_type="log" if log else "linear", height=360, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


# --- mode connectivity -----------------------------------------------------------------------------


PATH_METRICS = ("loss", "accuracy", "excess")


def connectivity_figure(paths: Mapping[str, PathResult], metric: str = "loss",
                        *, title: str | None = None) -> go.Figure:
    """Loss, accuracy or excess over the chord along each path, ``t`` in [0, 1]; A at t=0, B at t=1."""
    if metric not in PATH_METRICS:
        raise ValueError(f"unknown path metric {metric!r}; choose one of {PATH_METRICS}")
    fig = go.Figure()
    for i, (name, p) in enumerate(paths.items()):
        ys = getattr(p, metric)
        fig.add_trace(go.Scatter(x=_f32(p.ts), y=_f32(ys), mode="lines+markers", name=name,
                                 line={"color": PALETTE[i % len(PALETTE)]}, marker={"size": 4}))
    fig.update_layout(title={"text": title or f"{metric} along the paths"}, xaxis_title="t (A = 0, B = 1)",
                      yaxis_title=metric, height=360, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def plane_curve_overlay(fig: go.Figure, points: Mapping[str, Sequence[float]] | None,
                        curves: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None) -> go.Figure:
    """Mark named points (runs, Bezier control point) and draw named curves on a contour figure."""
    for i, (name, (cx, cy)) in enumerate((curves or {}).items()):
        fig.add_trace(go.Scatter(x=_f32(cx), y=_f32(cy), mode="lines", name=name,
                                 line={"color": PALETTE[(i + 1) % len(PALETTE)], "width": 3}))
    for name, (px, py) in (points or {}).items():
        fig.add_trace(go.Scatter(x=[float(px)], y=[float(py)], mode="markers+text", name=name, text=[name],
                                 textposition="top center", marker={"size": 12, "color": "white",
                                                                    "line": {"color": "black", "width": 2}}))
    return fig


# --- flatness and noise ----------------------------------------------------------------------------


def flatness_stem_figure(profiles: Mapping[str, PerturbationProfile], *, log: bool = False) -> go.Figure:
    """Loss increase against perturbation radius, one stem series per run, with 95% confidence intervals.

    Series are offset slightly along x so the stems of several runs do not overlap.
    """
    fig = go.Figure()
    n = max(len(profiles), 1)
    for i, (name, p) in enumerate(profiles.items()):
        r = np.asarray(p.radii, np.float64)
        m = np.asarray(p.mean_increase, np.float64)
        step = float(np.min(np.diff(r))) if len(r) > 1 else 1.0
        rx = r + (i - (n - 1) / 2) * 0.12 * step
        err = {"type": "data", "symmetric": False, "array": (np.asarray(p.ci_high) - m).astype(F32),
               "arrayminus": (m - np.asarray(p.ci_low)).astype(F32), "visible": True}
        color = PALETTE[i % len(PALETTE)]
        sx = np.repeat(rx, 3)
        sy = np.stack([np.zeros_like(m), m, np.full_like(m, np.nan)], 1).reshape(-1)
        fig.add_trace(go.Scatter(x=sx.astype(F32), y=sy.astype(F32), mode="lines", line={"color": color, "width": 1.5},
                                 showlegend=False, hoverinfo="skip", legendgroup=name))
        fig.add_trace(go.Scatter(x=rx.astype(F32), y=m.astype(F32), mode="markers", name=name, error_y=err,
                                 marker={"size": 9, "color": color}, legendgroup=name))
    fig.update_layout(title={"text": "Loss increase under random perturbations"}, xaxis_title="radius (filter-normalised)",
                      yaxis_title="L(theta + r d) - L(theta)", yaxis_type="log" if log else "linear", height=400,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def invariance_figure(measures: Sequence[str], before: Sequence[float], after: Sequence[float]) -> go.Figure:
    """Grouped bars of each flatness measure before and after a function-preserving rescaling
    (invariant measures have equal bars)."""
    fig = go.Figure()
    fig.add_trace(go.Bar(x=list(measures), y=_f32(before), name="original", marker_color=PALETTE[0]))
    fig.add_trace(go.Bar(x=list(measures), y=_f32(after), name="rescaled (same function)", marker_color=PALETTE[1]))
    fig.update_layout(barmode="group", yaxis_type="log", title={"text": "Which measures survive a rescaling?"},
                      height=380, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def noise_figure(batch_sizes: Sequence[float], values: Sequence[float], errors: Sequence[float] | None = None,
                 *, b_simple: float | None = None, ylabel: str = "B_simple") -> go.Figure:
    """Gradient noise scale estimates against batch size (log-log), with the pooled estimate as a line."""
    err = {"type": "data", "array": _f32(errors), "visible": True} if errors is not None else None
    fig = go.Figure(go.Scatter(x=_f32(batch_sizes), y=_f32(values), mode="lines+markers", error_y=err,
                               name=ylabel, marker={"size": 9, "color": PALETTE[0]}))
    if b_simple is not None and math.isfinite(b_simple) and b_simple > 0:
        fig.add_hline(y=float(b_simple), line={"color": PALETTE[1], "dash": "dash"},
                      annotation_text=f"B_simple = {b_simple:.3g}")
    fig.update_layout(title={"text": "Gradient noise scale vs batch size"}, xaxis_title="batch size",
                      yaxis_title=ylabel, xaxis_type="log", height=360, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def figure_arrays(fig: go.Figure | Mapping[str, Any], trace: int = 0, key: str = "z") -> np.ndarray:
    """A trace's array from a figure or its JSON dict (decodes Plotly's base64 ``bdata`` typed arrays).

    Used by tests and exports to read back what a figure really holds.
    """
    import base64

    d = fig if isinstance(fig, Mapping) else fig.to_plotly_json()
    val = d["data"][trace][key]
    if isinstance(val, Mapping) and "bdata" in val:
        arr = np.frombuffer(base64.b64decode(val["bdata"]), dtype=np.dtype(val["dtype"]))
        shape = val.get("shape")
        if shape:
            arr = arr.reshape([int(s) for s in str(shape).split(",")])
        return arr
    return np.asarray(val, dtype=np.float64)


def budget_figure(rows: Sequence[Mapping[str, Any]], quantity: str = "lambda_max", *,
                  exact: float | None = None) -> go.Figure:
    """An estimate against the number of data examples it was computed on: one dot per seed (the
    subsampling spread) and the mean per budget as a line, with the exact full-data value if known."""
    xs = np.asarray([r["samples"] for r in rows], np.float64)
    ys = np.asarray([np.nan if r.get(quantity) is None else r[quantity] for r in rows], np.float64)
    fig = go.Figure(go.Scatter(x=xs.astype(F32), y=ys.astype(F32), mode="markers", name="per data seed",
                               marker={"size": 7, "color": PALETTE[0], "opacity": 0.6}))
    ux = np.unique(xs)
    means = np.array([np.nanmean(ys[xs == u]) for u in ux])
    fig.add_trace(go.Scatter(x=ux.astype(F32), y=means.astype(F32), mode="lines+markers", name="mean",
                             line={"color": PALETTE[1]}))
    if exact is not None:
        fig.add_hline(y=float(exact), line={"color": "black", "dash": "dot"}, annotation_text="reference")
    fig.update_layout(title={"text": f"{quantity} vs sample budget"}, xaxis_title="examples in the loss",
                      xaxis_type="log", yaxis_title=quantity, height=340, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def noise_norms_figure(batch_sizes: Sequence[float], mean_sq: Sequence[float], sem: Sequence[float] | None,
                       predicted: Sequence[float] | None = None) -> go.Figure:
    """Mean squared minibatch-gradient norm against batch size with its standard error, and the fitted
    model ``|G|^2 + tr(Sigma) x_B`` (McCandlish et al. 2018): noise dominates left of ``B_simple``."""
    err = {"type": "data", "array": _f32(sem), "visible": True} if sem is not None else None
    fig = go.Figure(go.Scatter(x=_f32(batch_sizes), y=_f32(mean_sq), mode="markers", error_y=err,
                               name="measured E|G_B|^2", marker={"size": 9, "color": PALETTE[0]}))
    if predicted is not None:
        fig.add_trace(go.Scatter(x=_f32(batch_sizes), y=_f32(predicted), mode="lines", name="fit |G|^2 + tr(Sigma) x_B",
                                 line={"color": PALETTE[1], "dash": "dash"}))
    fig.update_layout(title={"text": "Squared gradient norm vs batch size"}, xaxis_title="batch size B",
                      yaxis_title="|G_B|^2", xaxis_type="log", yaxis_type="log", height=360,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig
