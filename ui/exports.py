"""Download payloads for the analysis pages: surfaces as ``.npz`` / ``.vtp`` (ParaView) / ``.png``,
figures as self-contained interactive HTML, tables as CSV.

Everything returns ``bytes`` for ``st.download_button``. PNG is written by a small pure-NumPy encoder
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

from landscape_core.export import PNG_SIGNATURE, png_bytes

from .figures import color_values, surface_arrays, trajectory_xy

# --- npz -----------------------------------------------------------------------------------------


def surface_npz_bytes(surface: Mapping[str, Any]) -> bytes:
    """``.npz`` with ``alphas``, ``betas`` (2-D), ``loss``, ``accuracy`` (engine layout: ``loss[j, i]``
    at ``(alphas[i], betas[j])``), ``center_loss``, optional ``trajectory_xy`` / ``run_coords`` and
    ``meta_json`` (directions, seed, settings) so the surface can be reproduced."""
    x, y, Z = surface_arrays(surface, "loss")
    arrays: dict[str, np.ndarray] = {"alphas": x.astype(np.float64), "loss": Z.astype(np.float64)}
    if y is not None:
        arrays["betas"] = y.astype(np.float64)
    try:
        arrays["accuracy"] = surface_arrays(surface, "accuracy")[2].astype(np.float64)
    except ValueError:
        pass
    if surface.get("center_loss") is not None:
        arrays["center_loss"] = np.float64(surface["center_loss"])
    traj = surface.get("trajectory")
    if traj:
        tx, ty = trajectory_xy(traj)
        arrays["trajectory_xy"] = np.stack([tx.astype(np.float64), ty.astype(np.float64)], 1)
        for k in ("steps", "true_loss", "plane_loss", "residual_norm"):
            if traj.get(k) is not None:
                arrays[f"trajectory_{k}"] = np.asarray(traj[k], np.float64)
    if surface.get("run_coords"):
        arrays["run_coords"] = np.asarray(surface["run_coords"], np.float64)
    meta = {k: surface.get(k) for k in ("directions", "seed", "settings", "labels", "request", "grid", "dims")}
    arrays["meta_json"] = np.array(json.dumps(meta, default=str))
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def arrays_npz_bytes(**arrays: Any) -> bytes:
    """Any named arrays as a compressed ``.npz``."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


# --- vtp (VTK XML PolyData) ------------------------------------------------------------------------


def _vtk_floats(a: np.ndarray) -> str:
    return " ".join(f"{float(v):.9g}" if np.isfinite(v) else "nan" for v in np.asarray(a).reshape(-1))


def surface_vtp_bytes(surface: Mapping[str, Any], *, log: bool = False) -> bytes:
    """The 2-D surface as a VTK XML PolyData file (``.vtp``, ASCII): points ``(alpha, beta, z)`` with
    z the loss (or log10 loss), one quad per grid cell, ``loss`` and ``accuracy`` as point data.

    A 1-D scan becomes a polyline. Opens in ParaView for publication-quality renderings.
    """
    x, y, Z = surface_arrays(surface, "loss")
    try:
        acc = surface_arrays(surface, "accuracy")[2]
    except ValueError:
        acc = None
    zc = color_values(Z, log).astype(np.float64)
    if y is None:
        pts = np.stack([x, np.zeros_like(x), zc], 1)
        n = len(x)
        conn = " ".join(str(i) for i in range(n))
        cells = f'<Lines><DataArray type="Int32" Name="connectivity" format="ascii">{conn}</DataArray>' \
                f'<DataArray type="Int32" Name="offsets" format="ascii">{n}</DataArray></Lines>'
        n_lines, n_polys = 1, 0
        vals, accv = Z.reshape(-1), None if acc is None else acc.reshape(-1)
    else:
        ny, nx = Z.shape
        X, Y = np.meshgrid(x, y)  # (ny, nx), point index j*nx + i
        pts = np.stack([X.ravel(), Y.ravel(), zc.ravel()], 1)
        quads = []
        for j in range(ny - 1):
            for i in range(nx - 1):
                p = j * nx + i
                quads.append((p, p + 1, p + nx + 1, p + nx))
        q = np.asarray(quads, np.int64).reshape(-1, 4)
        conn = " ".join(str(int(v)) for v in q.ravel())
        offs = " ".join(str(4 * (k + 1)) for k in range(len(q)))
        cells = f'<Polys><DataArray type="Int32" Name="connectivity" format="ascii">{conn}</DataArray>' \
                f'<DataArray type="Int32" Name="offsets" format="ascii">{offs}</DataArray></Polys>'
        n_lines, n_polys = 0, len(q)
        vals, accv = Z.ravel(), None if acc is None else acc.ravel()
    point_data = f'<DataArray type="Float64" Name="loss" format="ascii">{_vtk_floats(vals)}</DataArray>'
    if accv is not None:
        point_data += f'<DataArray type="Float64" Name="accuracy" format="ascii">{_vtk_floats(accv)}</DataArray>'
    title = escape(json.dumps({"labels": surface.get("labels"), "seed": surface.get("seed")}, default=str))
    xml = (
        '<?xml version="1.0"?>\n'
        f'<!-- Landscape Explorer loss surface {title} -->\n'
        '<VTKFile type="PolyData" version="0.1" byte_order="LittleEndian">\n'
        '<PolyData>\n'
        f'<Piece NumberOfPoints="{len(pts)}" NumberOfVerts="0" NumberOfLines="{n_lines}" NumberOfStrips="0" '
        f'NumberOfPolys="{n_polys}">\n'
        f'<PointData Scalars="loss">{point_data}</PointData>\n'
        f'<Points><DataArray type="Float64" NumberOfComponents="3" format="ascii">{_vtk_floats(pts)}</DataArray></Points>\n'
        f'{cells}\n'
        '</Piece>\n</PolyData>\n</VTKFile>\n'
    )
    return xml.encode()


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
    surface: Mapping[str, Any],
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
    x, y, Z = surface_arrays(surface, metric)
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

    if trajectory is not None:
        for px, py in zip(*trajectory_xy(trajectory)):
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
