"""Surface files: ``.npz`` (arrays + JSON settings + directions) and ``.vtp`` (VTK PolyData for ParaView).

``save_npz`` writes everything needed to redraw *and reproduce* a surface: the grid, loss and accuracy
arrays, the settings and direction metadata as JSON, and the directions themselves flattened to
float32 vectors with their parameter names and shapes. ``load_npz`` reads it back into a
:class:`~landscape_core.surface.Surface` (no pickle involved: ``allow_pickle=False``). ``npz_bytes``
and ``vtp_bytes`` return the same files as bytes (the app's downloads use them), optionally with extra
named arrays (a projected trajectory, run positions) that ``load_npz`` ignores.

``save_vtp`` writes the 2-D surface as a triangulated height field in the VTK XML PolyData format
(``<VTKFile type="PolyData">``): point ``(i, j)`` sits at ``(alpha_i, beta_j, z_scale * loss[j, i])``,
each grid cell is split into two triangles, and the point data arrays ``loss`` and ``accuracy`` carry
the values for colouring. Data are written either as ASCII or as base64-encoded binary blocks (each
prefixed by its byte count as a UInt64, ``header_type="UInt64"``), both of which ParaView reads.
"""

from __future__ import annotations

import base64
import io
import json
import os
import struct
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import torch

from .directions import DirectionSet
from .surface import Surface

_FORMAT = "landscape-surface-npz/1"


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode an ``(H, W, 3)`` uint8 image as PNG (8-bit truecolour, filter 0 on every scanline).

    Written here so reports and downloads need neither matplotlib nor kaleido.
    """
    img = np.ascontiguousarray(np.asarray(rgb, np.uint8))
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {img.shape}")
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[r].tobytes() for r in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def npz_bytes(surface: Surface, *, extra: Mapping[str, Any] | None = None) -> bytes:
    """The ``.npz`` file of ``surface`` as bytes (what :func:`save_npz` writes).

    Args:
        surface: the surface (its directions are stored when it carries their tensors; a surface read
            back from ``to_dict()`` has none, and the file then holds only their metadata).
        extra: further named arrays (e.g. ``trajectory_xy``, ``run_coords``); names must not clash with
            the format's own (``alphas``, ``betas``, ``loss``, ``accuracy``, ``meta_json``,
            ``direction_<i>``).
    """
    ds = surface.directions
    names = list(ds.directions[0].keys()) if ds.directions else []
    meta = {
        "format": _FORMAT,
        "center_loss": surface.center_loss,
        "center_accuracy": surface.center_accuracy,
        "seed": surface.seed,
        "settings": surface.settings,
        "seconds": surface.seconds,
        "directions": {
            "kind": ds.kind, "seed": ds.seed, "normalization": ds.normalization, "ignore_1d": ds.ignore_1d,
            "explained_variance": None if ds.explained_variance is None else list(ds.explained_variance),
            "labels": list(ds.labels), "extra": ds.extra,
            "names": names, "shapes": [list(ds.directions[0][n].shape) for n in names],
            "summary": None if ds.directions else ds.to_dict(),
        },
    }
    arrays = {
        "alphas": np.asarray(surface.alphas, dtype=np.float64),
        "betas": np.asarray(surface.betas if surface.betas is not None else [], dtype=np.float64),
        "loss": np.asarray(surface.loss, dtype=np.float64),
        "accuracy": np.asarray(surface.accuracy, dtype=np.float64),
        "meta_json": np.array(json.dumps(meta, default=float)),
    }
    for i, d in enumerate(ds.directions):
        arrays[f"direction_{i}"] = torch.cat([d[n].detach().cpu().float().reshape(-1) for n in names]).numpy()
    for k, v in (extra or {}).items():
        if k in arrays or k.startswith("direction_"):
            raise ValueError(f"extra array name {k!r} clashes with the surface file's own arrays")
        arrays[k] = np.asarray(v)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def save_npz(surface: Surface, path: str | os.PathLike, *, extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``surface`` to a compressed ``.npz`` file (:func:`npz_bytes`) and return its path."""
    path = Path(path)
    data = npz_bytes(surface, extra=extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def load_npz(path: str | os.PathLike | bytes | IO[bytes]) -> Surface:
    """Read a file written by :func:`save_npz` (a path, the bytes of :func:`npz_bytes`, or a binary file)."""
    if isinstance(path, (bytes, bytearray)):
        path = io.BytesIO(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta_json"]))
            if meta.get("format") != _FORMAT:
                raise ValueError(f"{path} is not a surface file (format {meta.get('format')!r})")
            arr = {k: z[k] for k in z.files}
    except (KeyError, OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a readable surface file: {e}") from None
    dm = meta["directions"]
    dirs = []
    i = 0
    while f"direction_{i}" in arr:
        flat, off, d = torch.from_numpy(arr[f"direction_{i}"].copy()), 0, {}
        for n, shp in zip(dm["names"], dm["shapes"]):
            k = int(np.prod(shp)) if shp else 1
            d[n] = flat[off : off + k].reshape(shp)
            off += k
        dirs.append(d)
        i += 1
    ev = dm.get("explained_variance")
    ds = DirectionSet(
        kind=dm["kind"], directions=dirs, seed=dm.get("seed"), normalization=dm.get("normalization", "none"),
        ignore_1d=dm.get("ignore_1d", True), explained_variance=None if ev is None else tuple(ev),
        labels=tuple(dm.get("labels", ())), extra=dm.get("extra", {}),
        summary=None if dirs else (dm.get("summary") or {"n_directions": 0, "norms": [], "cosine": None}),
    )
    betas = arr["betas"] if arr["betas"].size else None
    return Surface(
        alphas=arr["alphas"], betas=betas, loss=arr["loss"], accuracy=arr["accuracy"],
        center_loss=float(meta["center_loss"]), center_accuracy=float(meta["center_accuracy"]),
        directions=ds, seed=meta.get("seed"), settings=meta.get("settings", {}), seconds=float(meta.get("seconds", 0)),
    )


def _data_array(parent: ET.Element, values: np.ndarray, vtk_type: str, encoding: str, **attrs: str) -> None:
    el = ET.SubElement(parent, "DataArray", type=vtk_type, format="ascii" if encoding == "ascii" else "binary", **attrs)
    if encoding == "ascii":
        if vtk_type.startswith("Float"):
            el.text = " ".join("nan" if not np.isfinite(x) else repr(float(x)) for x in values.ravel())
        else:
            el.text = " ".join(str(int(x)) for x in values.ravel())
    else:
        np_type = {"Float64": "<f8", "Int64": "<i8"}[vtk_type]
        raw = np.ascontiguousarray(values, dtype=np_type).tobytes()
        el.text = base64.b64encode(np.uint64(len(raw)).tobytes() + raw).decode("ascii")


def vtp_bytes(
    surface: Surface,
    *,
    z_scale: float = 1.0,
    log: bool = False,
    encoding: Literal["ascii", "base64"] = "ascii",
    cells: Literal["triangles", "quads"] = "triangles",
) -> bytes:
    """A surface as VTK XML PolyData (``.vtp``), as bytes: a height field for 2-D, a polyline for 1-D.

    Point ``(i, j)`` sits at ``(alpha_i, beta_j, z_scale * loss[j, i])`` (index ``j * na + i``); a 1-D
    scan's point ``i`` at ``(alpha_i, 0, z_scale * loss[i])``.

    Args:
        surface: a :class:`Surface`.
        z_scale: height = ``z_scale * loss`` (non-finite losses become NaN heights).
        log: height = ``z_scale * log10(loss)`` instead (the ``loss`` point data stay the loss).
        encoding: ``"ascii"`` or ``"base64"`` (binary blocks with a UInt64 byte-count header).
        cells: each grid cell as two ``"triangles"`` or one ``"quads"`` polygon.
    """
    if encoding not in ("ascii", "base64"):
        raise ValueError(f"encoding must be 'ascii' or 'base64', got {encoding!r}")
    if cells not in ("triangles", "quads"):
        raise ValueError(f"cells must be 'triangles' or 'quads', got {cells!r}")
    na = len(surface.alphas)
    nb = 1 if surface.betas is None else len(surface.betas)
    betas = np.zeros(1) if surface.betas is None else surface.betas
    A, B = np.meshgrid(surface.alphas, betas)  # (nb, na), point index j * na + i
    loss = np.asarray(surface.loss, dtype=np.float64).reshape(nb, na)
    acc = np.asarray(surface.accuracy, dtype=np.float64).reshape(nb, na)
    with np.errstate(divide="ignore", invalid="ignore"):
        height = np.log10(np.where(loss > 0, loss, np.nan)) if log else loss
    pts = np.stack([A.ravel(), B.ravel(), z_scale * height.ravel()], axis=1)
    if surface.betas is None:
        polys, offsets, n_lines = np.arange(na), np.array([na]), 1
    else:
        i, j = np.meshgrid(np.arange(na - 1), np.arange(nb - 1))
        p = (j * na + i).ravel()
        if cells == "quads":
            polys = np.stack([p, p + 1, p + na + 1, p + na], 1)
        else:
            polys = np.concatenate([np.stack([p, p + 1, p + na + 1], 1), np.stack([p, p + na + 1, p + na], 1)])
        offsets, n_lines = polys.shape[1] * np.arange(1, len(polys) + 1), 0
    n_polys = 0 if n_lines else len(polys)
    root = ET.Element("VTKFile", type="PolyData", version="1.0", byte_order="LittleEndian", header_type="UInt64")
    poly = ET.SubElement(root, "PolyData")
    piece = ET.SubElement(
        poly, "Piece", NumberOfPoints=str(na * nb), NumberOfVerts="0", NumberOfLines=str(n_lines),
        NumberOfStrips="0", NumberOfPolys=str(n_polys),
    )
    pd = ET.SubElement(piece, "PointData", Scalars="loss")
    _data_array(pd, loss.ravel(), "Float64", encoding, Name="loss")
    _data_array(pd, acc.ravel(), "Float64", encoding, Name="accuracy")
    points = ET.SubElement(piece, "Points")
    _data_array(points, pts, "Float64", encoding, NumberOfComponents="3", Name="Points")
    topo = ET.SubElement(piece, "Lines" if n_lines else "Polys")
    _data_array(topo, np.asarray(polys).ravel(), "Int64", encoding, Name="connectivity")
    _data_array(topo, offsets, "Int64", encoding, Name="offsets")
    buf = io.BytesIO()
    ET.ElementTree(root).write(buf, encoding="utf-8", xml_declaration=True)
    return buf.getvalue()


def save_vtp(
    surface: Surface,
    path: str | os.PathLike,
    *,
    z_scale: float = 1.0,
    encoding: Literal["ascii", "base64"] = "ascii",
) -> Path:
    """Write a 2-D surface as a ``.vtp`` height field (:func:`vtp_bytes`) and return its path."""
    if surface.betas is None:
        raise ValueError("a .vtp height field needs a 2-D surface (this one is 1-D)")
    data = vtp_bytes(surface, z_scale=z_scale, encoding=encoding)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def read_vtp_array(path: str | os.PathLike | bytes, name: str) -> np.ndarray:
    """Read one named ``DataArray`` back from a ``.vtp`` written by :func:`save_vtp` (ascii or base64)."""
    root = ET.fromstring(path) if isinstance(path, (bytes, bytearray)) else ET.parse(path).getroot()
    for el in root.iter("DataArray"):
        if el.get("Name") == name:
            np_type = {"Float64": "<f8", "Int64": "<i8"}[el.get("type")]
            if el.get("format") == "ascii":
                return np.array((el.text or "").split(), dtype=np.float64).astype(np_type)
            raw = base64.b64decode(el.text or "")
            n = int(np.frombuffer(raw[:8], dtype="<u8")[0])
            return np.frombuffer(raw[8 : 8 + n], dtype=np_type).copy()
    raise ValueError(f"{path} has no DataArray named {name!r}")


__all__ = ["PNG_SIGNATURE", "load_npz", "npz_bytes", "png_bytes", "read_vtp_array", "save_npz", "save_vtp", "vtp_bytes"]
