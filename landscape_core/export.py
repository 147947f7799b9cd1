"""Surface files: ``.npz`` (arrays + JSON settings + directions) and ``.vtp`` (VTK PolyData for ParaView).

``save_npz`` writes everything needed to redraw *and reproduce* a surface: the grid, loss and accuracy
arrays, the settings and direction metadata as JSON, and the directions themselves flattened to
float32 vectors with their parameter names and shapes. ``load_npz`` reads it back into a
:class:`~landscape_core.surface.Surface` (no pickle involved: ``allow_pickle=False``).

``save_vtp`` writes the 2-D surface as a triangulated height field in the VTK XML PolyData format
(``<VTKFile type="PolyData">``): point ``(i, j)`` sits at ``(alpha_i, beta_j, z_scale * loss[j, i])``,
each grid cell is split into two triangles, and the point data arrays ``loss`` and ``accuracy`` carry
the values for colouring. Data are written either as ASCII or as base64-encoded binary blocks (each
prefixed by its byte count as a UInt64, ``header_type="UInt64"``), both of which ParaView reads.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path
from typing import Literal

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


def save_npz(surface: Surface, path: str | os.PathLike) -> Path:
    """Write ``surface`` to a compressed ``.npz`` file and return its path."""
    path = Path(path)
    ds = surface.directions
    names = list(ds.directions[0].keys())
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
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return path


def load_npz(path: str | os.PathLike) -> Surface:
    """Read a file written by :func:`save_npz`."""
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


def save_vtp(
    surface: Surface,
    path: str | os.PathLike,
    *,
    z_scale: float = 1.0,
    encoding: Literal["ascii", "base64"] = "ascii",
) -> Path:
    """Write a 2-D surface as a VTK XML PolyData height field (``.vtp``) and return its path.

    Args:
        surface: a 2-D :class:`Surface`.
        path: output file.
        z_scale: height = ``z_scale * loss`` (non-finite losses become NaN heights).
        encoding: ``"ascii"`` or ``"base64"`` (binary blocks with a UInt64 byte-count header).
    """
    if surface.betas is None:
        raise ValueError("a .vtp height field needs a 2-D surface (this one is 1-D)")
    if encoding not in ("ascii", "base64"):
        raise ValueError(f"encoding must be 'ascii' or 'base64', got {encoding!r}")
    na, nb = len(surface.alphas), len(surface.betas)
    A, B = np.meshgrid(surface.alphas, surface.betas)  # (nb, na), point index j * na + i
    loss = np.asarray(surface.loss, dtype=np.float64).reshape(nb, na)
    acc = np.asarray(surface.accuracy, dtype=np.float64).reshape(nb, na)
    pts = np.stack([A.ravel(), B.ravel(), z_scale * loss.ravel()], axis=1)
    i, j = np.meshgrid(np.arange(na - 1), np.arange(nb - 1))
    p = (j * na + i).ravel()
    tris = np.concatenate([np.stack([p, p + 1, p + na + 1], 1), np.stack([p, p + na + 1, p + na], 1)])
    n_polys = len(tris)
    root = ET.Element("VTKFile", type="PolyData", version="1.0", byte_order="LittleEndian", header_type="UInt64")
    poly = ET.SubElement(root, "PolyData")
    piece = ET.SubElement(
        poly, "Piece", NumberOfPoints=str(na * nb), NumberOfVerts="0", NumberOfLines="0", NumberOfStrips="0",
        NumberOfPolys=str(n_polys),
    )
    pd = ET.SubElement(piece, "PointData", Scalars="loss")
    _data_array(pd, loss.ravel(), "Float64", encoding, Name="loss")
    _data_array(pd, acc.ravel(), "Float64", encoding, Name="accuracy")
    points = ET.SubElement(piece, "Points")
    _data_array(points, pts, "Float64", encoding, NumberOfComponents="3", Name="Points")
    polys = ET.SubElement(piece, "Polys")
    _data_array(polys, tris.ravel(), "Int64", encoding, Name="connectivity")
    _data_array(polys, 3 * np.arange(1, n_polys + 1), "Int64", encoding, Name="offsets")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path


def read_vtp_array(path: str | os.PathLike, name: str) -> np.ndarray:
    """Read one named ``DataArray`` back from a ``.vtp`` written by :func:`save_vtp` (ascii or base64)."""
    root = ET.parse(path).getroot()
    for el in root.iter("DataArray"):
        if el.get("Name") == name:
            np_type = {"Float64": "<f8", "Int64": "<i8"}[el.get("type")]
            if el.get("format") == "ascii":
                return np.array((el.text or "").split(), dtype=np.float64).astype(np_type)
            raw = base64.b64decode(el.text or "")
            n = int(np.frombuffer(raw[:8], dtype="<u8")[0])
            return np.frombuffer(raw[8 : 8 + n], dtype=np_type).copy()
    raise ValueError(f"{path} has no DataArray named {name!r}")


__all__ = ["load_npz", "read_vtp_array", "save_npz", "save_vtp"]
