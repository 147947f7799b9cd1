"""Download payloads for the analysis pages: surfaces as ``.npz`` / ``.vtp`` (ParaView) / ``.png``,
figures as self-contained interactive HTML, tables as CSV.

Everything returns ``bytes`` for ``st.download_button``. Surfaces are the engine's typed results
(``Surface`` / ``SurfaceResult``, or their ``to_dict()``); ``.npz`` and ``.vtp`` come from the engine's
one writer each (:mod:`landscape_core.export`), so a downloaded ``.npz`` loads with
``landscape_core.load_npz``. PNG is written by a small pure-NumPy encoder
(colour-mapped grid, zlib-compressed scanlines, CRC-checked chunks; PNG spec, W3C 2003) because
Plotly's static export needs kaleido, which is not installed.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape

import numpy as np

from landscape_core.analyses.surface import SurfaceResult
from landscape_core.directions import DirectionSet
from landscape_core.export import PNG_SIGNATURE, npz_bytes, png_bytes, vtp_bytes
from landscape_core.surface import Surface
from landscape_core.trajectory import TrajectoryProjection

from .figures import color_values

SurfaceLike = Surface | SurfaceResult | Mapping[str, Any]


def _nan_grid(d: Mapping[str, Any], key: str, like: np.ndarray) -> np.ndarray:
    v = d.get(key)
    return np.full_like(like, np.nan) if v is None else np.asarray(
        [[np.nan if x is None else x for x in row] for row in v] if like.ndim == 2 else
        [np.nan if x is None else x for x in v], np.float64)


def as_surface(surface: SurfaceLike) -> tuple[Surface, SurfaceResult | None]:
    """The engine :class:`Surface` (and its :class:`SurfaceResult` when given one) behind a download.

    A mapping is read as ``Surface.to_dict()`` / ``SurfaceResult.to_dict()`` (the engine's key names);
    ``accuracy``, ``center_loss`` and ``directions`` may be missing (``nan`` / a ``"custom"`` set).
    """
    if isinstance(surface, SurfaceResult):
        return surface.surface, surface
    if isinstance(surface, Surface):
        return surface, None
    d = surface
    if "run" in d and "weights_hash" in d and "directions" in d:
        res = SurfaceResult.from_dict(dict(d))
        return res.surface, res
    loss = np.asarray([[np.nan if x is None else x for x in row] for row in d["loss"]]
                      if d.get("betas") is not None else [np.nan if x is None else x for x in d["loss"]], np.float64)
    dirs = d.get("directions")
    ds = DirectionSet.from_dict(dirs) if dirs else DirectionSet(
        "custom", [], None, "none", False, labels=tuple(d.get("labels") or ()),
        summary={"n_directions": 1 if d.get("betas") is None else 2, "norms": [], "cosine": None})
    surf = Surface(
        alphas=np.asarray(d["alphas"], np.float64),
        betas=None if d.get("betas") is None else np.asarray(d["betas"], np.float64),
        loss=loss, accuracy=_nan_grid(d, "accuracy", loss),
        center_loss=float("nan") if d.get("center_loss") is None else float(d["center_loss"]),
        center_accuracy=float("nan") if d.get("center_accuracy") is None else float(d["center_accuracy"]),
        directions=ds, seed=d.get("seed"), settings=dict(d.get("settings") or {}),
    )
    return surf, None


def _trajectory_xy(traj: TrajectoryProjection | Mapping[str, Any] | None) -> np.ndarray | None:
    """``(S, 2)`` plane coordinates of a projected trajectory (``TrajectoryProjection`` or its dict)."""
    if traj is None:
        return None
    if isinstance(traj, TrajectoryProjection):
        return np.asarray(traj.coords, np.float64)[:, :2]
    if traj.get("coords") is not None:
        return np.asarray(traj["coords"], np.float64)[:, :2]
    return np.stack([np.asarray(traj["x"], np.float64), np.asarray(traj["y"], np.float64)], 1)


# --- npz -----------------------------------------------------------------------------------------


def surface_npz_bytes(surface: SurfaceLike, trajectory: Any = None) -> bytes:
    """The engine's surface file (:func:`landscape_core.export.npz_bytes`: loads back with
    ``landscape_core.load_npz``), plus ``center_loss``, the projected trajectory (``trajectory_xy`` and
    ``trajectory_<steps|true_loss|plane_loss|residual_norm>``) and ``run_coords`` when present."""
    surf, res = as_surface(surface)
    extra: dict[str, np.ndarray] = {"center_loss": np.float64(surf.center_loss)}
    if trajectory is None:
        trajectory = res.trajectory if res is not None else (
            surface.get("trajectory") if isinstance(surface, Mapping) else None)
    xy = _trajectory_xy(trajectory)
    if xy is not None:
        extra["trajectory_xy"] = xy
        t = trajectory.to_dict() if isinstance(trajectory, TrajectoryProjection) else trajectory
        for k in ("steps", "true_loss", "plane_loss", "residual_norm"):
            if t.get(k) is not None:
                extra[f"trajectory_{k}"] = np.asarray([np.nan if v is None else v for v in t[k]], np.float64)
    points = res.points if res is not None else None
    if points:
        extra["run_coords"] = np.asarray([p["coords"] for p in points], np.float64)
    return npz_bytes(surf, extra=extra)


def arrays_npz_bytes(**arrays: Any) -> bytes:
    """Any named arrays as a compressed ``.npz``."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


# --- vtp (VTK XML PolyData) ------------------------------------------------------------------------


def surface_vtp_bytes(surface: SurfaceLike, *, log: bool = False) -> bytes:
    """The surface as VTK XML PolyData (:func:`landscape_core.export.vtp_bytes`): points
    ``(alpha, beta, z)`` with z the loss (or log10 loss), one quad per grid cell, ``loss`` and
    ``accuracy`` as point data; a 1-D scan becomes a polyline. Opens in ParaView."""
    return vtp_bytes(as_surface(surface)[0], log=log, cells="quads")


# --- png -------------------------------------------------------------------------------------------


def colormap_lut(colorscale: str = "Viridis", n: int = 256) -> np.ndarray:
    """``(n, 3)`` uint8 lookup table sampled from a Plotly colorscale."""
    from plotly.colors import sample_colorscale

    cols = sample_colorscale(colorscale, list(np.linspace(0.0, 1.0, n)), colortype="rgb")
    out = np.zeros((n, 3), np.uint8)
    for k, c in enumerate(cols):
        nums = c[c.index("(") + 1 : c.index(")")].split(",")
        out[k] = [int(round(float(v))) for v in nums[:3]]
    return out



def surface_png_bytes(
    surface: SurfaceLike,
    *,
    metric: str = "loss",
    log: bool = False,
    colorscale: str = "Viridis",
    zrange: tuple[float, float] | None = None,
    scale: int | None = None,
    trajectory: Mapping[str, Any] | None = None,
) -> tuple[bytes, tuple[int, int]]:
    """A colour-mapped image of the 2-D surface (beta up, alpha right), each grid cell ``scale`` pixels
    wide (default: enough for ~400 px), the trained point (0, 0) in white and an optional trajectory in
    red. Returns ``(png, (width, height))``. A 1-D scan becomes a one-row strip."""
    surf, _ = as_surface(surface)
    if metric not in ("loss", "accuracy"):
        raise ValueError(f"unknown metric {metric!r}; choose 'loss' or 'accuracy'")
    x, y = np.asarray(surf.alphas, np.float64), None if surf.betas is None else np.asarray(surf.betas, np.float64)
    Z = np.asarray(surf.loss if metric == "loss" else surf.accuracy, np.float64)
    C = color_values(Z, log).astype(np.float64)
    if y is None:
        C = C[None, :]
    lo, hi = zrange if zrange is not None else (np.nanmin(C), np.nanmax(C))
    t = np.clip((C - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)
    t = np.where(np.isfinite(t), t, 1.0)
    lut = colormap_lut(colorscale)
    img = lut[np.round(t * (len(lut) - 1)).astype(int)]  # (ny, nx, 3), row j = beta_j
    ny, nx = C.shape
    s = scale or max(1, int(np.ceil(400 / max(nx, ny))))
    img = np.repeat(np.repeat(img, s, axis=0), s, axis=1)

    def mark(px: float, py: float, color: tuple[int, int, int], r: int) -> None:
        if y is None:
            return
        ci = np.interp(px, x, np.arange(nx)) * s + s / 2
        cj = np.interp(py, y, np.arange(ny)) * s + s / 2
        i0, j0 = int(round(ci)), int(round(cj))
        img[max(j0 - r, 0) : j0 + r + 1, max(i0 - r, 0) : i0 + r + 1] = color

    xy = _trajectory_xy(trajectory)
    if xy is not None:
        for px, py in xy:
            mark(float(px), float(py), (214, 39, 40), max(1, s // 3))
    mark(0.0, 0.0, (255, 255, 255), max(2, s // 2))
    img = img[::-1]  # PNG rows go top-down: put the largest beta at the top
    return png_bytes(img), (img.shape[1], img.shape[0])


def read_png_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` from a PNG's IHDR chunk (raises ``ValueError`` when not a PNG)."""
    if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    return struct.unpack(">II", data[16:24])


# --- html / csv -------------------------------------------------------------------------------------


def figure_html_bytes(fig: Any, *, title: str = "Landscape Explorer figure") -> bytes:
    """A self-contained interactive HTML page of a Plotly figure (plotly.js embedded: works offline)."""
    html = fig.to_html(include_plotlyjs=True, full_html=True, config={"displaylogo": False})
    return html.replace("<head>", f"<head><title>{escape(title)}</title>", 1).encode()


def table_csv_bytes(rows: Sequence[Mapping[str, Any]] | Any) -> bytes:
    """Rows (list of dicts) or a DataFrame as UTF-8 CSV."""
    import pandas as pd

    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    return df.to_csv(index=False).encode()


def json_bytes(obj: Any) -> bytes:
    """Any JSON-able result (e.g. a ``to_dict()``) as pretty JSON."""
    return json.dumps(obj, indent=2, default=str).encode()
