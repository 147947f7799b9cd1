"""Self-contained HTML reports of one or more runs: settings to reproduce, metrics, curves, surfaces, spectra.

One HTML file that opens offline and makes no network request: inline CSS, charts drawn here as inline
SVG (line charts for learning curves and mode connectivity, grouped bars for Hessian spectra, scatter
for PCA trajectories) and loss surfaces as banded, contour-like heat maps encoded as a base64 PNG
(written with ``zlib`` + ``struct``) inside an SVG with axes and a colour bar. Every table is also
embedded as a ``data:text/csv`` download link and can be written as CSV files (``csv_dir``).

Sections (``<h2 id=...>``, stable): ``settings`` "Settings to reproduce" (the exact ``python -m
landscape_core train ...`` command that retrains each run, and its ``run.json`` settings), ``metrics``,
``curves`` "Learning curves", ``surfaces`` "Loss surfaces", ``spectra`` "Hessian spectra",
``trajectories``, ``connectivity`` "Mode connectivity" (only with two or more runs).

Analyses that are not stored in a run (surfaces, spectra, trajectories, paths) are computed with the
engine's high-level entry points when ``compute_missing`` is true (small budgets: ``samples`` training
examples, a 21 x 21 grid), or taken from ``precomputed``. A section that cannot be produced says why in
one line instead of failing the whole report.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .export import png_bytes

ProgressFn = Callable[[float, str], None]
SECTIONS: dict[str, str] = {
    "settings": "Settings to reproduce",
    "metrics": "Metrics",
    "curves": "Learning curves",
    "surfaces": "Loss surfaces",
    "spectra": "Hessian spectra",
    "trajectories": "Trajectories",
    "connectivity": "Mode connectivity",
}
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
# viridis anchor colours (matplotlib's perceptually uniform map), interpolated linearly
_VIRIDIS = np.array([
    (68, 1, 84), (72, 40, 120), (62, 73, 137), (49, 104, 142), (38, 130, 142),
    (31, 158, 137), (53, 183, 121), (110, 206, 88), (181, 222, 43), (253, 231, 37),
], dtype=np.float64)


# ================================================================================================
# small formatting helpers
# ================================================================================================
def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _fmt(x: Any, digits: int = 4) -> str:
    if isinstance(x, bool) or x is None:
        return "–" if x is None else str(x)
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    v = _num(x)
    if v is None:
        return "–" if isinstance(x, (float, np.floating)) else str(x)
    if v == 0:
        return "0"
    if abs(v) >= 1e5 or abs(v) < 1e-3:
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}g}"


# ================================================================================================
# inline SVG charts
# ================================================================================================
def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering ``[lo, hi]`` (steps of 1, 2, 2.5 or 5 times a power of ten)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks, t = [], start
    while t <= hi + 1e-9 * step:
        ticks.append(round(t, 12))
        t += step
    return ticks


@dataclass
class _Frame:
    """A plot area mapping data coordinates to SVG pixels (``logy``: log10 y axis)."""

    x0: float
    x1: float
    y0: float
    y1: float
    width: int = 520
    height: int = 300
    left: int = 62
    right: int = 16
    top: int = 30
    bottom: int = 44
    logy: bool = False

    def sx(self, x: float) -> float:
        span = self.x1 - self.x0 or 1.0
        return self.left + (x - self.x0) / span * (self.width - self.left - self.right)

    def sy(self, y: float) -> float:
        span = self.y1 - self.y0 or 1.0
        return self.height - self.bottom - (y - self.y0) / span * (self.height - self.top - self.bottom)

    def ty(self, y: float) -> float | None:
        """Data value -> axis value (log10 on a log axis; ``None`` if not drawable)."""
        v = _num(y)
        if v is None:
            return None
        if self.logy:
            return math.log10(v) if v > 0 else None
        return v


def _range(values: Sequence[float], pad: float = 0.05) -> tuple[float, float]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return 0.0, 1.0
    lo, hi = min(vals), max(vals)
    if hi == lo:
        d = abs(lo) * 0.1 or 1.0
        return lo - d, hi + d
    d = (hi - lo) * pad
    return lo - d, hi + d


def _axes_svg(f: _Frame, title: str, xlabel: str, ylabel: str, xticks: Sequence[float] | None = None,
              xticklabels: Sequence[str] | None = None) -> list[str]:
    out = [f'<rect x="{f.left}" y="{f.top}" width="{f.width - f.left - f.right}" '
           f'height="{f.height - f.top - f.bottom}" fill="#fff" stroke="#bbb"/>']
    for t in nice_ticks(f.y0, f.y1):
        y = f.sy(t)
        label = _fmt(10**t, 3) if f.logy else _fmt(t, 3)
        out.append(f'<line x1="{f.left}" x2="{f.width - f.right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{f.left - 5}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_esc(label)}</text>')
    xt = list(xticks) if xticks is not None else nice_ticks(f.x0, f.x1)
    for i, t in enumerate(xt):
        x = f.sx(t)
        label = xticklabels[i] if xticklabels is not None else _fmt(t, 3)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{f.height - f.bottom}" y2="{f.height - f.bottom + 4}" '
                   f'stroke="#888"/>')
        out.append(f'<text x="{x:.1f}" y="{f.height - f.bottom + 16}" text-anchor="middle" class="tick">'
                   f'{_esc(label)}</text>')
    out.append(f'<text x="{f.width / 2:.0f}" y="18" text-anchor="middle" class="title">{_esc(title)}</text>')
    out.append(f'<text x="{(f.left + f.width - f.right) / 2:.0f}" y="{f.height - 8}" text-anchor="middle" '
               f'class="label">{_esc(xlabel)}</text>')
    ylab = ylabel + (" (log scale)" if f.logy else "")
    out.append(f'<text x="14" y="{(f.top + f.height - f.bottom) / 2:.0f}" text-anchor="middle" class="label" '
               f'transform="rotate(-90 14 {(f.top + f.height - f.bottom) / 2:.0f})">{_esc(ylab)}</text>')
    return out


def _legend_svg(f: _Frame, items: Sequence[tuple[str, str, str]]) -> list[str]:
    """Legend rows under the plot: ``(label, colour, dash)``."""
    out, x, y = [], f.left, f.height + 4
    for label, color, dash in items:
        w = 34 + 7 * len(label)
        if x + w > f.width and x > f.left:
            x, y = f.left, y + 16
        out.append(f'<line x1="{x}" x2="{x + 22}" y1="{y:.0f}" y2="{y:.0f}" stroke="{color}" stroke-width="2.5"'
                   + (f' stroke-dasharray="{dash}"' if dash else "") + "/>")
        out.append(f'<text x="{x + 26}" y="{y + 4:.0f}" class="tick">{_esc(label)}</text>')
        x += w
    return out


def _svg_wrap(f: _Frame, parts: list[str], legend_rows: int, kind: str) -> str:
    h = f.height + (16 * legend_rows + 8 if legend_rows else 0)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {kind}" width="{f.width}" height="{h}" '
            f'viewBox="0 0 {f.width} {h}" role="img">' + "".join(parts) + "</svg>")


def _legend_rows(f: _Frame, labels: Sequence[str]) -> int:
    rows, x = 1, f.left
    for label in labels:
        w = 34 + 7 * len(label)
        if x + w > f.width and x > f.left:
            rows, x = rows + 1, f.left
        x += w
    return rows if labels else 0


def line_chart(series: Sequence[Mapping[str, Any]], *, title: str, xlabel: str, ylabel: str,
               logy: bool = False, width: int = 520, height: int = 300, markers: bool = False) -> str:
    """An SVG line chart. Each series: ``{"name", "x", "y", "color"?, "dash"?}`` (``None`` gaps skipped)."""
    xs = [v for s in series for v in s["x"] if _num(v) is not None]
    f0 = _Frame(0, 1, 0, 1, width=width, height=height, logy=logy)
    ys = [f0.ty(v) for s in series for v in s["y"]]
    x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if x1 == x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    y0, y1 = _range([v for v in ys if v is not None])
    f = _Frame(x0, x1, y0, y1, width=width, height=height, logy=logy)
    parts = _axes_svg(f, title, xlabel, ylabel)
    legend = []
    for i, s in enumerate(series):
        color = s.get("color") or PALETTE[i % len(PALETTE)]
        dash = s.get("dash", "")
        pts = []
        segs: list[list[str]] = [[]]
        for x, y in zip(s["x"], s["y"]):
            yv, xv = f.ty(y), _num(x)
            if yv is None or xv is None:
                segs.append([])
                continue
            p = f"{f.sx(xv):.1f},{f.sy(yv):.1f}"
            segs[-1].append(p)
            pts.append(p)
        for seg in segs:
            if len(seg) == 1 and not markers:  # an isolated point between gaps
                cx, cy = seg[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.6" fill="{color}"/>')
            if len(seg) >= 2:
                parts.append(f'<polyline class="series" fill="none" stroke="{color}" stroke-width="2" points="{" ".join(seg)}"'
                             + (f' stroke-dasharray="{dash}"' if dash else "") + "/>")
        if markers or len(pts) == 1:
            for p in pts:
                cx, cy = p.split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2.6" fill="{color}"/>')
        legend.append((str(s.get("name", f"series {i + 1}")), color, dash))
    parts += _legend_svg(f, legend)
    return _svg_wrap(f, parts, _legend_rows(f, [lab for lab, _, _ in legend]), "line")


def bar_chart(groups: Sequence[Mapping[str, Any]], categories: Sequence[str], *, title: str, xlabel: str,
              ylabel: str, width: int = 520, height: int = 300) -> str:
    """Grouped SVG bars: ``groups`` = ``[{"name", "values": [per category]}]``."""
    vals = [_num(v) for g in groups for v in g["values"]]
    lo, hi = _range([v for v in vals if v is not None] + [0.0], pad=0.08)
    lo = min(lo, 0.0)
    nc = max(len(categories), 1)
    f = _Frame(-0.5, nc - 0.5, lo, hi, width=width, height=height)
    parts = _axes_svg(f, title, xlabel, ylabel, xticks=list(range(nc)), xticklabels=list(categories))
    ng = max(len(groups), 1)
    slot = (f.sx(1) - f.sx(0)) * 0.8
    bw = slot / ng
    legend = []
    for gi, g in enumerate(groups):
        color = g.get("color") or PALETTE[gi % len(PALETTE)]
        for ci, v in enumerate(g["values"]):
            v = _num(v)
            if v is None:
                continue
            x = f.sx(ci) - slot / 2 + gi * bw
            ya, yb = f.sy(max(v, 0.0)), f.sy(min(v, 0.0))
            parts.append(f'<rect class="bar" x="{x:.1f}" y="{ya:.1f}" width="{max(bw - 1, 1):.1f}" '
                         f'height="{max(yb - ya, 0.5):.1f}" fill="{color}"><title>{_esc(g["name"])} '
                         f'{_esc(categories[ci])}: {_fmt(v)}</title></rect>')
        legend.append((str(g["name"]), color, ""))
    zero = f.sy(0.0)
    parts.append(f'<line x1="{f.left}" x2="{f.width - f.right}" y1="{zero:.1f}" y2="{zero:.1f}" stroke="#444"/>')
    parts += _legend_svg(f, legend)
    return _svg_wrap(f, parts, _legend_rows(f, [lab for lab, _, _ in legend]), "bars")


def scatter_chart(series: Sequence[Mapping[str, Any]], *, title: str, xlabel: str, ylabel: str,
                  width: int = 420, height: int = 340, connect: bool = True,
                  annotate: Mapping[int, str] | None = None) -> str:
    """SVG scatter (equal-aspect not enforced); ``connect`` joins each series' points in order."""
    xs = [_num(v) for s in series for v in s["x"]]
    ys = [_num(v) for s in series for v in s["y"]]
    x0, x1 = _range([v for v in xs if v is not None], pad=0.1)
    y0, y1 = _range([v for v in ys if v is not None], pad=0.1)
    f = _Frame(x0, x1, y0, y1, width=width, height=height)
    parts = _axes_svg(f, title, xlabel, ylabel)
    legend = []
    for i, s in enumerate(series):
        color = s.get("color") or PALETTE[i % len(PALETTE)]
        pts = [(f.sx(x), f.sy(y)) for x, y in zip(s["x"], s["y"]) if _num(x) is not None and _num(y) is not None]
        if connect and len(pts) >= 2:
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-opacity="0.5" stroke-width="1.5" '
                         f'points="{" ".join(f"{a:.1f},{b:.1f}" for a, b in pts)}"/>')
        n = len(pts)
        for j, (a, b) in enumerate(pts):
            r = 4.5 if j in (0, n - 1) else 3.0
            fill = "#fff" if j == 0 else color
            parts.append(f'<circle class="point" cx="{a:.1f}" cy="{b:.1f}" r="{r}" fill="{fill}" stroke="{color}" '
                         f'stroke-width="1.5"/>')
        for j, text in (annotate or {}).items():
            if -n <= j < n:
                a, b = pts[j]
                parts.append(f'<text x="{a + 6:.1f}" y="{b - 6:.1f}" class="tick">{_esc(text)}</text>')
        legend.append((str(s.get("name", f"series {i + 1}")), color, ""))
    parts += _legend_svg(f, legend)
    return _svg_wrap(f, parts, _legend_rows(f, [lab for lab, _, _ in legend]), "scatter")


# -- heat maps through a PNG written by hand ---------------------------------------------------------

def colormap(t: np.ndarray) -> np.ndarray:
    """Viridis colours for values in [0, 1] (``(..., 3)`` uint8)."""
    t = np.clip(np.asarray(t, dtype=np.float64), 0.0, 1.0) * (len(_VIRIDIS) - 1)
    i = np.minimum(np.floor(t).astype(int), len(_VIRIDIS) - 2)
    frac = (t - i)[..., None]
    return np.round(_VIRIDIS[i] * (1 - frac) + _VIRIDIS[i + 1] * frac).astype(np.uint8)


def _upsample(z: np.ndarray, factor: int) -> np.ndarray:
    nb, na = z.shape
    xi = np.linspace(0, na - 1, (na - 1) * factor + 1)
    yi = np.linspace(0, nb - 1, (nb - 1) * factor + 1)
    tmp = np.stack([np.interp(xi, np.arange(na), row) for row in z])
    return np.stack([np.interp(yi, np.arange(nb), col) for col in tmp.T], axis=1)


def heatmap_chart(loss: Any, alphas: Sequence[float], betas: Sequence[float], *, title: str,
                  vmin: float | None = None, vmax: float | None = None, levels: int = 14,
                  log: bool = True, width: int = 400, height: int = 360,
                  points: Sequence[Mapping[str, Any]] = ()) -> str:
    """A banded (contour-like) heat map of a 2-D surface, ``loss[j, i]`` at ``(alphas[i], betas[j])``.

    Colour = viridis of the (log10) loss quantised into ``levels`` bands between ``vmin`` and ``vmax``
    (shared between runs when given). ``points``: markers ``{"x", "y", "label"}`` (e.g. the trained
    weights at the origin).
    """
    z = np.array([[np.nan if v is None else float(v) for v in row] for row in loss], dtype=np.float64)
    if z.ndim != 2 or z.shape != (len(betas), len(alphas)):
        raise ValueError(f"surface of shape {z.shape} does not match {len(betas)} x {len(alphas)} coordinates")
    tf = (lambda a: np.log10(np.maximum(a, 1e-12))) if log else (lambda a: a)
    zt = tf(z)
    finite = zt[np.isfinite(zt)]
    lo = tf(np.array(vmin)) if vmin is not None else (finite.min() if finite.size else 0.0)
    hi = tf(np.array(vmax)) if vmax is not None else (finite.max() if finite.size else 1.0)
    lo, hi = float(lo), float(hi)
    if hi <= lo:
        hi = lo + 1e-6
    zt = np.where(np.isfinite(zt), zt, hi)  # diverged points show as the top band
    factor = max(1, int(round(160 / max(zt.shape))))
    up = _upsample(np.clip(zt, lo, hi), factor)
    band = np.floor((up - lo) / (hi - lo) * levels).clip(0, levels - 1)
    rgb = colormap(band / max(levels - 1, 1))[::-1]  # first row of the image = largest beta
    uri = "data:image/png;base64," + base64.b64encode(png_bytes(rgb)).decode()
    f = _Frame(float(alphas[0]), float(alphas[-1]), float(betas[0]), float(betas[-1]), width=width - 58,
               height=height, left=52, bottom=44)
    parts = _axes_svg(f, title, "alpha (direction 1)", "beta (direction 2)")
    x, y = f.sx(f.x0), f.sy(f.y1)
    w, h = f.sx(f.x1) - x, f.sy(f.y0) - y
    parts.append(f'<image class="surface" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" '
                 f'preserveAspectRatio="none" style="image-rendering:pixelated" href="{uri}"/>')
    for p in points:
        px, py = f.sx(float(p["x"])), f.sy(float(p["y"]))
        parts.append(f'<path d="M{px - 6:.1f},{py:.1f}h12M{px:.1f},{py - 6:.1f}v12" stroke="#fff" stroke-width="2.5"/>'
                     f'<path d="M{px - 6:.1f},{py:.1f}h12M{px:.1f},{py - 6:.1f}v12" stroke="#000" stroke-width="1"/>')
        if p.get("label"):
            parts.append(f'<text x="{px + 7:.1f}" y="{py - 7:.1f}" class="tick" fill="#fff">{_esc(p["label"])}</text>')
    # colour bar
    cb_x, cb_w = width - 48, 12
    top, bottom = f.top, f.height - f.bottom
    step = (bottom - top) / levels
    for k in range(levels):
        c = colormap(np.array([k / max(levels - 1, 1)]))[0]
        yk = bottom - (k + 1) * step
        parts.append(f'<rect x="{cb_x}" y="{yk:.1f}" width="{cb_w}" height="{step + 0.5:.1f}" '
                     f'fill="rgb({c[0]},{c[1]},{c[2]})"/>')
    for t in nice_ticks(lo, hi, 4):
        yt = bottom - (t - lo) / (hi - lo) * (bottom - top)
        label = _fmt(10**t, 2) if log else _fmt(t, 3)
        parts.append(f'<text x="{cb_x + cb_w + 3}" y="{yt + 4:.1f}" class="tick">{_esc(label)}</text>')
    frame = _Frame(0, 1, 0, 1, width=width, height=height)
    return _svg_wrap(frame, parts, 0, "heatmap")


# ================================================================================================
# report content
# ================================================================================================
_FLAG = {  # TrainConfig field -> train CLI flag
    "model": "--model", "width": "--width", "depth": "--depth", "activation": "--activation",
    "channels": "--channels", "optimizer": "--optimizer", "lr": "--lr", "momentum": "--momentum",
    "weight_decay": "--weight-decay", "rho": "--rho", "batch_size": "--batch-size", "epochs": "--epochs",
    "schedule": "--schedule", "seed": "--seed", "init_seed": "--init-seed", "max_grad_evals": "--max-grad-evals",
    "snapshots": "--snapshots", "sharpness_every": "--sharpness-every", "sharpness_samples": "--sharpness-samples",
    "device": "--device",
}
_BOOL_FLAG = {"batchnorm": "--batchnorm", "nesterov": "--nesterov", "adaptive": "--adaptive"}
_DATA_FLAG = {"name": "--dataset", "seed": "--data-seed", "train_size": "--train-size", "test_size": "--test-size",
              "n_samples": "--n-samples", "noise": "--noise"}


def retrain_command(meta: Mapping[str, Any]) -> str:
    """The ``python -m landscape_core train ...`` command that retrains a run with identical settings."""
    cfg = meta.get("config")
    if not isinstance(cfg, Mapping):
        raise ValueError(f"run {meta.get('name')!r} stores no training config (not trained by this tool)")
    parts = ["python", "-m", "landscape_core", "train"]
    for k, flag in _DATA_FLAG.items():
        v = (cfg.get("dataset") or {}).get(k)
        if v is not None:
            parts += [flag, _arg(v)]
    for k, flag in _FLAG.items():
        v = cfg.get(k)
        if v is not None:
            parts += [flag, _arg(v)]
    for k, flag in _BOOL_FLAG.items():
        if cfg.get(k):
            parts.append(flag)
    parts += ["--name", _arg(meta.get("name", "run"))]
    return " ".join(parts)


def _arg(v: Any) -> str:
    s = repr(v) if isinstance(v, float) else str(v)
    return s if s and all(c.isalnum() or c in "._-+:/" for c in s) else "'" + s.replace("'", "'\\''") + "'"


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flat(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out


def _table_html(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
                name: str | None = None) -> str:
    if not rows:
        return '<p class="note">No rows.</p>'
    cols = list(columns or rows[0].keys())
    head = "".join(f"<th>{_esc(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_esc(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>" for r in rows)
    link = ""
    if name:
        uri = "data:text/csv;base64," + base64.b64encode(csv_text(rows, cols).encode()).decode()
        link = f'<p class="csv"><a download="{_esc(name)}.csv" href="{uri}">Download {_esc(name)}.csv</a></p>'
    return f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>{link}'


def csv_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """CSV of ``rows`` (empty cells for missing / non-finite values)."""
    cols = list(columns or (rows[0].keys() if rows else []))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        out = []
        for c in cols:
            v = r.get(c)
            if isinstance(v, float) and not math.isfinite(v):
                v = None
            out.append("" if v is None else v)
        w.writerow(out)
    return buf.getvalue()


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:1.8rem;margin:0 0 4px}h2{margin-top:38px;border-bottom:2px solid #d8dde6;padding-bottom:4px}
h3{margin:18px 0 6px;font-size:1.05rem}
nav a{margin-right:14px;color:#2457a6;text-decoration:none}nav{margin:10px 0 6px}
.note{color:#5a6272;font-size:.92rem}.err{color:#a12b2b}
pre{background:#1d2330;color:#e8ecf3;padding:10px 12px;border-radius:6px;overflow-x:auto;white-space:pre-wrap;
word-break:break-all;font-size:.85rem}
.table-wrap{overflow-x:auto}table{border-collapse:collapse;font-size:.85rem;background:#fff;margin:6px 0}
th,td{border:1px solid #d8dde6;padding:3px 8px;text-align:right}th{background:#eef1f6}
td:first-child,th:first-child{text-align:left}
.charts{display:flex;flex-wrap:wrap;gap:14px}.charts svg{background:#fff;border:1px solid #d8dde6;border-radius:6px;
max-width:100%;height:auto}
svg text{font-family:system-ui,sans-serif}svg .tick{font-size:11px;fill:#333}svg .label{font-size:12px;fill:#333}
svg .title{font-size:13px;font-weight:600;fill:#1d2330}
.csv a{font-size:.85rem;color:#2457a6}
details{margin:6px 0}
"""


@dataclass(frozen=True)
class Report:
    """A built report.

    Attributes:
        html: the self-contained document.
        sections: ids of the sections it contains, in order.
        tables: every table by name (``metrics``, ``settings``, ...), as lists of row dicts.
        notes: per-section messages (what could not be computed and why).
        seconds: time to build.
    """

    html: str
    sections: tuple[str, ...]
    tables: dict[str, list[dict]] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"sections": list(self.sections), "tables": {k: len(v) for k, v in self.tables.items()},
                "notes": self.notes, "seconds": self.seconds}


class _Builder:
    def __init__(self, runs: list, *, compute: bool, samples: int | None, grid: int, top_k: int,
                 precomputed: Mapping[str, Mapping[str, Any]], progress: ProgressFn | None) -> None:
        self.runs = runs
        self.compute = compute
        self.samples = samples
        self.grid = grid
        self.top_k = top_k
        self.pre = precomputed
        self.progress = progress
        self.tables: dict[str, list[dict]] = {}
        self.notes: dict[str, list[str]] = {}
        self.cache: dict[tuple[str, str], Any] = {}
        self.sec_done, self.sec_total = 0, 1  # for progress: sections finished / all

    def note(self, section: str, msg: str) -> str:
        self.notes.setdefault(section, []).append(msg)
        return f'<p class="note err">{_esc(msg)}</p>'

    def fetch(self, run: Any, kind: str, fn: Callable[[], Any], section: str, who: str, failed: str,
              missing: str) -> tuple[dict | None, str | None]:
        """:meth:`analysis`, or ``(None, note)`` when it fails (``who: failed<error>``) or is absent
        (``who: missing``): one run that cannot be analysed never sinks the report."""
        try:
            d = self.analysis(run, kind, fn)
        except Exception as e:  # noqa: BLE001
            return None, self.note(section, f"{who}: {failed}{_one_line(e)}")
        if d is None:
            return None, self.note(section, f"{who}: {missing}")
        return d, None

    def analysis(self, run: Any, kind: str, fn: Callable[[], Any]) -> dict | None:
        """A run's analysis ``kind`` as a dict: precomputed, or computed now (``None`` if not allowed)."""
        key = (str(run.path), kind)
        if key in self.cache:
            return self.cache[key]
        pre = self.pre.get(str(run.path), {}) or self.pre.get(run.name, {})
        if kind in pre and pre[kind] is not None:
            val = pre[kind]
        elif not self.compute:
            val = None
        else:
            res = fn()
            val = res.to_dict() if hasattr(res, "to_dict") else res
        self.cache[key] = val
        return val

    # -- sections ---------------------------------------------------------------------------------
    def settings(self) -> str:
        out, rows = [], []
        for r in self.runs:
            meta = r.meta
            out.append(f"<h3>{_esc(r.name)}</h3>")
            try:
                out.append(f'<pre class="cmd">{_esc(retrain_command(meta))}</pre>')
            except ValueError as e:
                out.append(self.note("settings", str(e)))
            tf = ((meta.get("config") or {}).get("dataset") or {}).get("test_fraction", 0.25)
            if tf != 0.25:
                out.append(self.note("settings", f"{r.name}: dataset test_fraction={tf} has no train flag; "
                                                 "set it through the Python API (TrainConfig.dataset)"))
            flat = {"run": r.name, **_flat({"model": meta.get("model", {}), "dataset": meta.get("dataset", {}),
                                            "config": meta.get("config", {})})}
            flat["weights_hash"] = meta.get("weights_hash")
            flat["versions"] = json.dumps(meta.get("versions", {}))
            rows.append(flat)
            settings_json = {k: meta.get(k) for k in ("model", "dataset", "config", "optimizer", "budget", "versions")
                             if meta.get(k) is not None}
            out.append(f"<details><summary>run.json settings</summary><pre>{_esc(json.dumps(settings_json, indent=1))}"
                       "</pre></details>")
        cols = sorted({k for row in rows for k in row}, key=lambda k: (k != "run", k))
        rows = [{c: row.get(c) for c in cols} for row in rows]
        self.tables["settings"] = rows
        out.append(f'<p class="csv"><a download="settings.csv" href="data:text/csv;base64,'
                   f'{base64.b64encode(csv_text(rows, cols).encode()).decode()}">Download settings.csv</a></p>')
        return "".join(out)

    def metrics(self) -> str:
        rows = []
        for r in self.runs:
            m = r.meta
            fin = m.get("final") or {}
            opt = m.get("optimizer") or m.get("config") or {}
            budget = m.get("budget") or {}
            row = {
                "run": r.name, "optimizer": opt.get("optimizer"), "lr": opt.get("lr"),
                "batch_size": opt.get("batch_size"), "epochs": opt.get("epochs"), "steps": m.get("steps"),
                "grad_evals": m.get("grad_evals"), "budget": budget.get("kind", "steps"),
                "train_loss": fin.get("train_loss"), "test_loss": fin.get("test_loss"),
                "train_acc": fin.get("train_acc"), "test_acc": fin.get("test_acc"),
                "gen_gap": fin.get("gen_gap"), "acc_gap": fin.get("acc_gap"),
                "seconds_per_epoch": (m.get("timings") or {}).get("seconds_per_epoch"),
            }
            hess = self.cache.get((str(r.path), "hessian"))
            if hess:
                row["lambda_max"] = (hess.get("eigenvalues") or [None])[0]
                row["trace"] = (hess.get("trace") or {}).get("mean")
            row["weights_hash"] = str(m.get("weights_hash", ""))[:12]
            rows.append(row)
        self.tables["metrics"] = rows
        note = ('<p class="note">gen_gap = test loss - train loss; acc_gap = train accuracy - test accuracy. '
                "Runs differ in optimizer steps and gradient evaluations where the columns say so (SAM spends "
                "2 gradient evaluations per step).</p>")
        return note + _table_html(rows, name="metrics")

    def curves(self) -> str:
        loss_s, acc_s, rows = [], [], []
        for i, r in enumerate(self.runs):
            hist = r.meta.get("history") or []
            if not hist:
                self.note("curves", f"run {r.name!r} stores no per-epoch history")
                continue
            color = PALETTE[i % len(PALETTE)]
            ep = [h.get("epoch") for h in hist]
            loss_s += [{"name": f"{r.name} train", "x": ep, "y": [h.get("train_loss") for h in hist], "color": color},
                       {"name": f"{r.name} test", "x": ep, "y": [h.get("test_loss") for h in hist], "color": color,
                        "dash": "5 3"}]
            acc_s += [{"name": f"{r.name} train", "x": ep, "y": [h.get("train_acc") for h in hist], "color": color},
                      {"name": f"{r.name} test", "x": ep, "y": [h.get("test_acc") for h in hist], "color": color,
                       "dash": "5 3"}]
            for h in hist:
                rows.append({"run": r.name, **{k: h.get(k) for k in ("epoch", "step", "grad_evals", "train_loss",
                                                                      "test_loss", "train_acc", "test_acc", "lr",
                                                                      "seconds")}})
        self.tables["learning_curves"] = rows
        if not loss_s:
            return "".join(f'<p class="note err">{_esc(n)}</p>' for n in self.notes.get("curves", []))
        charts = (line_chart(loss_s, title="Loss per epoch (solid: train, dashed: test)", xlabel="epoch",
                             ylabel="loss", logy=True, markers=True)
                  + line_chart(acc_s, title="Accuracy per epoch (solid: train, dashed: test)", xlabel="epoch",
                               ylabel="accuracy", markers=True))
        extra = "".join(f'<p class="note err">{_esc(n)}</p>' for n in self.notes.get("curves", []))
        return f'<div class="charts">{charts}</div>{extra}' + _csv_link(rows, "learning_curves")

    def surfaces(self) -> str:
        from .surface import compute_surface

        results = []
        for k, r in enumerate(self.runs):
            self._progress(f"surface {r.name}", k, len(self.runs))
            d, msg = self.fetch(r, "surface", lambda r=r: compute_surface(
                r, dims=2, directions="random", grid=self.grid, span=1.0, samples=self.samples, seed=0),
                "surfaces", r.name, "surface failed: ", "no surface stored (not computed)")
            if msg:
                results.append((r, None, msg))
                continue
            if d.get("dims", 2) != 2 or d.get("betas") is None:
                results.append((r, None, self.note("surfaces", f"{r.name}: stored surface is not 2-D")))
                continue
            results.append((r, d, ""))
        ok = [d for _, d, _ in results if d is not None]
        if not ok:
            return "".join(msg for _, _, msg in results)
        vals = np.array([v for d in ok for row in d["loss"] for v in row if v is not None and math.isfinite(v)])
        vmin = float(vals.min()) if vals.size else None
        vmax = float(min(vals.max(), np.quantile(vals, 0.98) * 1.5)) if vals.size else None
        rows, charts = [], []
        for r, d, msg in results:
            if d is None:
                charts.append(msg)
                continue
            title = f"{r.name}: loss (min {_fmt(d.get('min_loss'))}, center {_fmt(d.get('center_loss'))})"
            charts.append(heatmap_chart(d["loss"], d["alphas"], d["betas"], title=title, vmin=vmin, vmax=vmax,
                                        points=[{"x": 0.0, "y": 0.0, "label": "trained"}]))
            for j, b in enumerate(d["betas"]):
                for i, a in enumerate(d["alphas"]):
                    rows.append({"run": r.name, "alpha": a, "beta": b, "loss": d["loss"][j][i]})
        self.tables["surfaces"] = rows
        s = ok[0].get("settings", {})
        note = (f'<p class="note">Filter-normalised random directions (Li et al. 2018), direction seed 0, '
                f'{self.grid} x {self.grid} grid over [-1, 1]^2, {_esc(s.get("samples", self.samples))} training '
                "examples; one shared log colour scale (banded like contours) for every run.</p>")
        return note + f'<div class="charts">{"".join(charts)}</div>' + _csv_link(rows, "surfaces")

    def spectra(self) -> str:
        from .curvature import analyze_hessian

        groups, rows, msgs = [], [], []
        for k, r in enumerate(self.runs):
            self._progress(f"Hessian {r.name}", k, len(self.runs))
            d, msg = self.fetch(r, "hessian", lambda r=r: analyze_hessian(
                r, top_k=self.top_k, trace=True, trace_probes=30, samples=self.samples, seed=0, smallest=False),
                "spectra", r.name, "Hessian analysis failed: ", "no Hessian analysis stored (not computed)")
            if msg:
                msgs.append(msg)
                continue
            eig = list(d.get("eigenvalues") or [])
            groups.append({"name": r.name, "values": eig})
            tr = d.get("trace") or {}
            for i, v in enumerate(eig):
                rows.append({"run": r.name, "index": i + 1, "eigenvalue": v,
                             "residual": (d.get("residuals") or [None] * len(eig))[i] if d.get("residuals") else None})
            self.tables.setdefault("trace", []).append({"run": r.name, "trace": tr.get("mean"),
                                                        "trace_stderr": tr.get("stderr"), "matvecs": d.get("matvecs"),
                                                        "lambda_max": eig[0] if eig else None})
        self.tables["spectra"] = rows
        if not groups:
            return "".join(msgs)
        k = max(len(g["values"]) for g in groups)
        chart = bar_chart(groups, [f"λ{i + 1}" for i in range(k)], title="Top Hessian eigenvalues",
                          xlabel="eigenvalue index", ylabel="eigenvalue")
        note = (f'<p class="note">Lanczos with full reorthogonalisation on {_esc(self.samples)} training examples '
                "(eval mode); trace by Hutch++ with a fixed budget, with its standard error.</p>")
        return (note + f'<div class="charts">{chart}</div>' + "".join(msgs)
                + _table_html(self.tables["trace"], name="trace") + _csv_link(rows, "spectra"))

    def trajectories(self) -> str:
        from .trajectory import project_trajectory

        charts, rows, summary = [], [], []
        for k, r in enumerate(self.runs):
            self._progress(f"trajectory {r.name}", k, len(self.runs))
            d, msg = self.fetch(r, "trajectory", lambda r=r: project_trajectory(r, samples=self.samples, seed=0),
                                "trajectories", r.name, "trajectory not available: ",
                                "no trajectory projection stored (not computed)")
            if msg:
                charts.append(msg)
                continue
            coords = d.get("coords") or []
            xs = [c[0] for c in coords]
            ys = [c[1] if len(c) > 1 else 0.0 for c in coords]
            ev = d.get("explained_variance_ratio") or []
            title = f"{r.name}: PCA plane ({', '.join(f'{100 * v:.0f}%' for v in ev[:2] if v is not None)} var.)"
            charts.append(scatter_chart([{"name": r.name, "x": xs, "y": ys, "color": PALETTE[k % len(PALETTE)]}],
                                        title=title, xlabel="PC 1", ylabel="PC 2", annotate={0: "init", -1: "final"}))
            for i, s in enumerate(d.get("steps") or []):
                rows.append({"run": r.name, "step": s, "pc1": xs[i], "pc2": ys[i],
                             "true_loss": (d.get("true_loss") or [None] * len(xs))[i],
                             "plane_loss": (d.get("plane_loss") or [None] * len(xs))[i],
                             "relative_residual": (d.get("relative_residual") or [None] * len(xs))[i]})
            summary.append({"run": r.name, "explained_var_pc1": ev[0] if ev else None,
                            "explained_var_pc2": ev[1] if len(ev) > 1 else None,
                            "max_relative_residual": d.get("max_relative_residual")})
        self.tables["trajectories"] = rows
        note = ('<p class="note">Each run in its own PCA plane of theta_i - theta_final (open circle: '
                "initialisation; the final weights are at the origin). A large off-plane residual means the "
                "plane shows the path only roughly.</p>")
        return (note + f'<div class="charts">{"".join(charts)}</div>'
                + (_table_html(summary) if summary else "") + _csv_link(rows, "trajectories"))

    def connectivity(self) -> str:
        from .connectivity import connect_runs

        series, rows, summary, msgs = [], [], [], []
        pairs = [(self.runs[0], b) for b in self.runs[1:]][:4]
        for k, (a, b) in enumerate(pairs):
            self._progress(f"path {a.name} -> {b.name}", k, len(pairs))
            key = f"connectivity:{b.path}"
            d, msg = self.fetch(a, key, lambda a=a, b=b: connect_runs(a, b, curve="linear", n_points=21,
                                                                      samples=self.samples, seed=0),
                                "connectivity", f"{a.name} -> {b.name}", "", "not computed")
            if msg:
                msgs.append(msg)
                continue
            label = f"{a.name} → {b.name}"
            series.append({"name": label, "x": d["ts"], "y": d["loss"]})
            for t, v, acc in zip(d["ts"], d["loss"], d.get("accuracy") or [None] * len(d["ts"])):
                rows.append({"pair": label, "t": t, "loss": v, "accuracy": acc})
            summary.append({"pair": label, "barrier": d.get("barrier"), "barrier_t": d.get("barrier_t"),
                            "loss_a": (d.get("endpoint_losses") or [None, None])[0],
                            "loss_b": (d.get("endpoint_losses") or [None, None])[1]})
        self.tables["connectivity"] = rows
        if not series:
            return "".join(msgs)
        chart = line_chart(series, title="Loss along the straight line between runs", xlabel="t (0 = first run)",
                           ylabel="loss", logy=True, markers=True)
        note = ('<p class="note">Linear interpolation (1 - t) theta_A + t theta_B on the same fixed subset; '
                "barrier = max_t [L(t) - ((1 - t) L_A + t L_B)].</p>")
        return (note + f'<div class="charts">{chart}</div>' + "".join(msgs) + _table_html(summary, name="barriers")
                + _csv_link(rows, "connectivity"))

    def _progress(self, msg: str, k: int, n: int) -> None:
        if self.progress is not None:
            self.progress(min(1.0, (self.sec_done + k / max(n, 1)) / max(self.sec_total, 1)), msg)


def _csv_link(rows: Sequence[Mapping[str, Any]], name: str) -> str:
    if not rows:
        return ""
    uri = "data:text/csv;base64," + base64.b64encode(csv_text(rows).encode()).decode()
    return f'<p class="csv"><a download="{_esc(name)}.csv" href="{uri}">Download {_esc(name)}.csv</a></p>'


def _one_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return s[0] if s else type(e).__name__


def _load(runs: Sequence[Any]) -> list:
    from .runs import Run, load_run

    out = []
    for r in runs:
        out.append(r if isinstance(r, Run) else load_run(r))
    if not out:
        raise ValueError("a report needs at least one run")
    return out


def build_report(
    run_paths: Sequence[Any],
    *,
    sections: Sequence[str] = tuple(SECTIONS),
    compute_missing: bool = True,
    samples: int | None = 512,
    grid: int = 21,
    top_k: int = 5,
    precomputed: Mapping[str, Mapping[str, Any]] | None = None,
    title: str | None = None,
    progress: ProgressFn | None = None,
) -> Report:
    """Build the report of ``run_paths`` (folders or loaded runs); see the module docstring.

    Args:
        run_paths: run folders (or :class:`~landscape_core.runs.Run` objects).
        sections: which sections, from :data:`SECTIONS` (``connectivity`` needs two or more runs).
        compute_missing: compute surfaces / spectra / trajectories / paths not given in ``precomputed``.
        samples: training examples for those analyses (``None``: all).
        grid: surface grid points per axis. top_k: Hessian eigenvalues.
        precomputed: ``{run path or name: {"surface": SurfaceResult dict, "hessian": ..., "trajectory": ...}}``.
        title: document title.
        progress: ``progress(fraction, message)``.
    """
    t0 = time.perf_counter()
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        raise ValueError(f"unknown report section {bad[0]!r}; choose from {', '.join(SECTIONS)}")
    if grid < 3:
        raise ValueError(f"grid must be >= 3, got {grid}")
    runs = _load(run_paths)
    b = _Builder(runs, compute=compute_missing, samples=samples, grid=grid, top_k=top_k,
                 precomputed=precomputed or {}, progress=progress)
    wanted = [s for s in SECTIONS if s in sections and not (s == "connectivity" and len(runs) < 2)]
    # analyses first (spectra feed the metrics table), then render in document order
    order = [s for s in ("surfaces", "spectra", "trajectories", "connectivity") if s in wanted]
    order += [s for s in wanted if s not in order]
    b.sec_total = len(order)
    bodies: dict[str, str] = {}
    for i, s in enumerate(order):
        b.sec_done = i
        if progress is not None:
            progress(i / len(order), f"section {SECTIONS[s]}")
        bodies[s] = getattr(b, s)()
    if progress is not None:
        progress(1.0, "report done")
    names = ", ".join(r.name for r in runs)
    doc_title = title or f"Landscape Explorer report: {names}"
    nav = "".join(f'<a href="#{s}">{_esc(SECTIONS[s])}</a>' for s in wanted)
    body = "".join(f'<section><h2 id="{s}">{_esc(SECTIONS[s])}</h2>{bodies[s]}</section>' for s in wanted)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    doc = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">"
        f"<title>{_esc(doc_title)}</title><style>{_CSS}</style></head><body><main>"
        f"<h1>{_esc(doc_title)}</h1><p class=\"note\">Generated {_esc(stamp)} by landscape_core "
        f"for {len(runs)} run(s). Self-contained: no scripts, no network requests; tables download as CSV."
        f"</p><nav>{nav}</nav>{body}</main></body></html>\n"
    )
    return Report(html=doc, sections=tuple(wanted), tables=b.tables, notes=b.notes,
                  seconds=time.perf_counter() - t0)


def report_html(run_paths: Sequence[Any], **kwargs: Any) -> str:
    """The report as an HTML string (same arguments as :func:`build_report`)."""
    return build_report(run_paths, **kwargs).html


def write_tables(tables: Mapping[str, Sequence[Mapping[str, Any]]], csv_dir: str | os.PathLike) -> list[Path]:
    """Write every non-empty table as ``<csv_dir>/<name>.csv``; returns the files."""
    d = Path(csv_dir)
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for name, rows in tables.items():
        if rows:
            p = d / f"{name}.csv"
            p.write_text(csv_text(rows))
            out.append(p)
    return out


def write_report(
    run_paths: Sequence[Any],
    out: str | os.PathLike,
    *,
    sections: Sequence[str] = tuple(SECTIONS),
    compute_missing: bool = True,
    samples: int | None = 512,
    progress: ProgressFn | None = None,
    csv_dir: str | os.PathLike | None = None,
    **kwargs: Any,
) -> Path:
    """Write the self-contained HTML report to ``out`` (and its tables as CSV into ``csv_dir``)."""
    rep = build_report(run_paths, sections=sections, compute_missing=compute_missing, samples=samples,
                       progress=progress, **kwargs)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(rep.html, encoding="utf-8")
    os.replace(tmp, out)
    if csv_dir is not None:
        write_tables(rep.tables, csv_dir)
    return out


__all__ = ["SECTIONS", "Report", "bar_chart", "build_report", "csv_text", "heatmap_chart", "line_chart",
           "nice_ticks", "png_bytes", "report_html", "retrain_command", "scatter_chart", "write_report",
           "write_tables"]
