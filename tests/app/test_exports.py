"""Tests for ui/exports.py: every download payload reads back with the right content."""

from __future__ import annotations

import io
import json
import struct
import xml.etree.ElementTree as ET
import zlib

import numpy as np
import pytest
from app_helpers import make_surface

from ui import exports as E
from ui import figures as F


def _surface(nx: int = 9, ny: int = 5) -> dict:
    a = np.linspace(-1, 1, nx)
    b = np.linspace(-0.5, 0.5, ny)
    A, B = np.meshgrid(a, b)
    loss = 1.0 + A**2 + 2 * B**2
    return {"alphas": a.tolist(), "betas": b.tolist(), "loss": loss.tolist(), "accuracy": (0.9 - 0.1 * loss).tolist(),
            "center_loss": 1.0, "seed": 3, "labels": ["d1", "d2"], "settings": {"grid": [nx, ny]},
            "trajectory": {"x": [0.5, 0.0], "y": [0.2, 0.0]}}


def _decode_png(data: bytes) -> np.ndarray:
    """Minimal PNG reader (8-bit RGB, filter 0) to check the encoder round-trips pixels."""
    assert data[:8] == E.PNG_SIGNATURE
    pos, idat, w, h = 8, b"", 0, 0
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        tag = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])
        assert crc == zlib.crc32(tag + body) & 0xFFFFFFFF
        if tag == b"IHDR":
            w, h = struct.unpack(">II", body[:8])
        elif tag == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    rows = np.frombuffer(raw, np.uint8).reshape(h, 1 + 3 * w)
    assert np.all(rows[:, 0] == 0)
    return rows[:, 1:].reshape(h, w, 3)


def test_npz_round_trip():
    s = _surface()
    z = np.load(io.BytesIO(E.surface_npz_bytes(s)))
    np.testing.assert_allclose(z["alphas"], s["alphas"])
    np.testing.assert_allclose(z["betas"], s["betas"])
    np.testing.assert_allclose(z["loss"], np.asarray(s["loss"]), rtol=1e-6)
    np.testing.assert_allclose(z["accuracy"], np.asarray(s["accuracy"]), rtol=1e-6)
    assert float(z["center_loss"]) == 1.0
    np.testing.assert_allclose(z["trajectory_xy"], [[0.5, 0.2], [0.0, 0.0]])
    assert json.loads(str(z["meta_json"]))["seed"] == 3


def test_vtp_parses_with_points_and_quads():
    s = _surface(9, 5)
    root = ET.fromstring(E.surface_vtp_bytes(s))
    piece = root.find("PolyData/Piece")
    assert piece.get("NumberOfPoints") == str(45) and piece.get("NumberOfPolys") == str(8 * 4)
    pts = np.array(piece.find("Points/DataArray").text.split(), float).reshape(-1, 3)
    # point j*nx + i is (alpha_i, beta_j, loss[j, i])
    assert pts[1 * 9 + 2] == pytest.approx([s["alphas"][2], s["betas"][1], s["loss"][1][2]])
    names = [d.get("Name") for d in piece.find("PointData")]
    assert names == ["loss", "accuracy"]
    conn = np.array(piece.find("Polys/DataArray[@Name='connectivity']").text.split(), int)
    assert list(conn[:4]) == [0, 1, 10, 9]
    one = {"alphas": [0, 1, 2], "loss": [3.0, 1.0, 2.0]}
    p1 = ET.fromstring(E.surface_vtp_bytes(one)).find("PolyData/Piece")
    assert p1.get("NumberOfLines") == "1" and p1.get("NumberOfPoints") == "3"


def test_png_signature_size_and_pixels():
    s = _surface(9, 5)
    data, (w, h) = E.surface_png_bytes(s, scale=4, trajectory=None)
    assert data[:8] == E.PNG_SIGNATURE
    assert (w, h) == (36, 20) == E.read_png_size(data)
    img = _decode_png(data)
    lut = E.colormap_lut("Viridis")
    # bottom-left pixel = smallest beta, smallest alpha (a corner, the max loss here -> top of the scale)
    assert tuple(img[-1, 0]) == tuple(lut[-1])
    # centre is marked white (the trained point)
    assert tuple(img[h // 2, w // 2]) == (255, 255, 255)
    with pytest.raises(ValueError):
        E.read_png_size(b"GIF89a" + b"\0" * 30)
    with pytest.raises(ValueError):
        E.png_bytes(np.zeros((3, 3), np.uint8))


def test_html_is_self_contained_plotly_div():
    s = _surface()
    fig = F.surface_figure(make_surface(s["alphas"], s["betas"], s["loss"], s["accuracy"]), kind="contour")
    html = E.figure_html_bytes(fig, title="my surface").decode()
    assert "plotly-graph-div" in html and "<title>my surface</title>" in html
    assert "cdn.plot.ly" not in html.split("<body>")[0]  # plotly.js is inlined, not fetched
    assert len(html) > 1_000_000


def test_csv_and_json():
    csv = E.table_csv_bytes([{"layer": "net.0", "trace": 1.5}, {"layer": "net.2", "trace": 2.0}]).decode()
    assert csv.splitlines() == ["layer,trace", "net.0,1.5", "net.2,2.0"]
    assert json.loads(E.json_bytes({"a": [1, 2]})) == {"a": [1, 2]}
    z = np.load(io.BytesIO(E.arrays_npz_bytes(t=[0, 1], loss=[2.0, 3.0])))
    assert list(z["loss"]) == [2.0, 3.0]
