"""The app's surface downloads are the engine's files: a downloaded ``.npz`` loads with
``landscape_core.load_npz`` and a ``.vtp`` reads back with ``landscape_core.export.read_vtp_array``."""

from __future__ import annotations

import io

import numpy as np

from landscape_core import load_npz
from landscape_core.analyses.surface import compute_surface
from landscape_core.export import read_vtp_array
from landscape_core.runs import checkpoints_dir, load_run
from ui import exports

RUN = checkpoints_dir() / "moons-tiny"


def test_downloaded_npz_loads_with_the_engine_reader(tmp_path, monkeypatch):
    monkeypatch.setenv("LANDSCAPE_CACHE", str(tmp_path / "cache"))
    res = compute_surface(load_run(RUN), dims=2, directions="pca", grid=5, samples=64)
    for given in (res, res.to_dict(), res.surface):  # typed result, its dict form, the bare surface
        data = exports.surface_npz_bytes(given)
        back = load_npz(data)
        np.testing.assert_array_equal(back.alphas, res.surface.alphas)
        np.testing.assert_array_equal(back.betas, res.surface.betas)
        # to_dict() stores float64 values as Python floats: exact
        np.testing.assert_array_equal(back.loss, res.surface.loss)
        np.testing.assert_array_equal(back.accuracy, res.surface.accuracy)
        assert back.center_loss == res.surface.center_loss and back.seed == res.surface.seed
        assert back.directions.kind == "pca" and back.directions.labels == res.surface.directions.labels
    # the typed result carries its tensors: the file holds the directions themselves
    back = load_npz(io.BytesIO(exports.surface_npz_bytes(res)))
    assert len(back.directions.directions) == 2
    for da, db in zip(res.surface.directions.directions, back.directions.directions):
        assert all(np.array_equal(da[k].float().numpy(), db[k].numpy()) for k in da)
    z = np.load(io.BytesIO(exports.surface_npz_bytes(res)))
    np.testing.assert_allclose(z["trajectory_xy"], res.trajectory.coords[:, :2])


def test_downloaded_vtp_reads_back_with_the_engine_reader(tmp_path, monkeypatch):
    monkeypatch.setenv("LANDSCAPE_CACHE", str(tmp_path / "cache"))
    res = compute_surface(load_run(RUN), dims=2, directions="random", grid=4, samples=64)
    data = exports.surface_vtp_bytes(res)
    np.testing.assert_array_equal(read_vtp_array(data, "loss"), res.surface.loss.ravel())
    pts = read_vtp_array(data, "Points").reshape(-1, 3)
    np.testing.assert_array_equal(pts[:, 2], res.surface.loss.ravel())
    assert len(read_vtp_array(data, "offsets")) == 3 * 3  # one quad per grid cell
