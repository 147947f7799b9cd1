"""Pure SVG / HTML rendering for the self-contained reports: charts, tables, CSV, the stylesheet.

No computation of analyses here (that is :mod:`landscape_core.report`): every function takes plain
numbers and returns markup. Line charts (learning curves, mode connectivity), grouped bars (Hessian
spectra), scatter plots (PCA trajectories) are inline SVG; loss surfaces are banded, contour-like heat
maps encoded as a base64 PNG (:func:`landscape_core.export.png_bytes`) inside an SVG with axes and a
colour bar. Tables come with a ``data:text/csv`` download link.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .constants import PALETTE
from .export import png_bytes
from .results import finite as _num

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


def _csv_link(rows: Sequence[Mapping[str, Any]], name: str) -> str:
    if not rows:
        return ""
    uri = "data:text/csv;base64," + base64.b64encode(csv_text(rows).encode()).decode()
    return f'<p class="csv"><a download="{_esc(name)}.csv" href="{uri}">Download {_esc(name)}.csv</a></p>'


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


__all__ = ["PALETTE", "bar_chart", "colormap", "csv_text", "heatmap_chart", "line_chart", "nice_ticks",
           "scatter_chart"]
