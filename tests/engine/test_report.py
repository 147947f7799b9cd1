"""Tests for landscape_core.report: PNG/SVG primitives, exact retrain commands, sections, CSV, offline HTML, CLI."""

import base64
import io
import json
import re
import shlex
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from landscape_core.cli import build_parser, main
from landscape_core.report import (
    SECTIONS,
    bar_chart,
    build_report,
    colormap,
    heatmap_chart,
    line_chart,
    nice_ticks,
    png_bytes,
    retrain_command,
    scatter_chart,
    write_report,
)
from landscape_core.runs import checkpoints_dir, read_meta
from landscape_core.training import TrainConfig, train

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs")
    base = TrainConfig(dataset={"name": "moons", "n_samples": 160}, width=6, depth=1, epochs=3, batch_size=40,
                       snapshots=4, lr=0.1)
    a = train(base, path=d / "moons-sgd").path
    b = train(base.replace(optimizer="adam", lr=0.01), path=d / "moons-adam").path
    return [a, b]


def test_png_encoder_round_trips_through_pillow():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(7, 11, 3), dtype=np.uint8)
    img = Image.open(io.BytesIO(png_bytes(rgb)))
    img.load()
    assert img.size == (11, 7) and img.mode == "RGB"
    assert np.array_equal(np.asarray(img), rgb)
    with pytest.raises(ValueError):
        png_bytes(np.zeros((3, 3)))


def test_colormap_endpoints_are_viridis():
    c = colormap(np.array([0.0, 1.0, -1.0, 2.0]))
    assert c[0].tolist() == [68, 1, 84] and c[1].tolist() == [253, 231, 37]
    assert c[2].tolist() == c[0].tolist() and c[3].tolist() == c[1].tolist()


@pytest.mark.parametrize("lo,hi", [(0, 1), (-3.2, 17.9), (0.001, 0.0042), (-1e4, 5e3)])
def test_nice_ticks_cover_range_with_round_steps(lo, hi):
    t = nice_ticks(lo, hi)
    assert 2 <= len(t) <= 11
    assert all(lo - 1e-12 <= x <= hi + 1e-12 for x in t)
    steps = np.diff(t)
    assert np.allclose(steps, steps[0])
    mant = steps[0] / 10 ** np.floor(np.log10(steps[0]))
    assert any(abs(mant - m) < 1e-9 for m in (1, 2, 2.5, 5, 10))


def test_line_bar_scatter_are_valid_svg_with_one_mark_per_series():
    svg = line_chart([{"name": "a", "x": [1, 2, 3], "y": [1.0, 0.5, 0.2]},
                      {"name": "b", "x": [1, 2, 3], "y": [2.0, None, 0.4]}], title="t", xlabel="x", ylabel="y",
                     logy=True)
    root = ET.fromstring(svg)
    lines = root.findall(f".//{SVG}polyline")
    assert len(lines) == 1  # series b has a gap: its isolated points are dots, not a line
    assert len(root.findall(f".//{SVG}circle")) == 2
    assert int(root.get("width")) > 0 and int(root.get("height")) > 0
    bars = ET.fromstring(bar_chart([{"name": "r1", "values": [3, 1]}, {"name": "r2", "values": [2, -1]}],
                                   ["l1", "l2"], title="b", xlabel="k", ylabel="v"))
    rects = bars.findall(f".//{SVG}rect[@class='bar']")
    assert len(rects) == 4
    heights = sorted(float(r.get("height")) for r in rects)
    assert heights[-1] == pytest.approx(3 * heights[0], rel=0.05)  # bar length proportional to |value|
    sc = ET.fromstring(scatter_chart([{"name": "p", "x": [0, 1, 2], "y": [0, 1, 0]}], title="s", xlabel="x",
                                     ylabel="y"))
    assert len(sc.findall(f".//{SVG}circle")) == 3


def test_heatmap_png_puts_lowest_loss_in_the_darkest_band_at_the_right_place():
    a = np.linspace(-1, 1, 9)
    b = np.linspace(-1, 1, 5)
    loss = 1.0 + (a[None, :] - 0.5) ** 2 + (b[:, None] + 1.0) ** 2  # minimum at alpha=0.5, beta=-1 (bottom)
    svg = heatmap_chart(loss.tolist(), a.tolist(), b.tolist(), title="h", log=False, levels=10)
    root = ET.fromstring(svg)
    img = root.find(f".//{SVG}image")
    href = img.get("href")
    assert href.startswith("data:image/png;base64,")
    px = np.asarray(Image.open(io.BytesIO(base64.b64decode(href.split(",", 1)[1]))).convert("RGB"))
    h, w, _ = px.shape
    dark = colormap(np.array([0.0]))[0]
    bright = colormap(np.array([1.0]))[0]
    # bottom row (beta = -1) at alpha = 0.5 (3/4 of the width) is the minimum; top-left corner is the maximum
    assert px[h - 1, round(0.75 * (w - 1))].tolist() == dark.tolist()
    assert px[0, 0].tolist() == bright.tolist()
    with pytest.raises(ValueError, match="does not match"):
        heatmap_chart(loss.tolist(), b.tolist(), a.tolist(), title="bad")


@pytest.mark.parametrize("name", ["digits-sgd", "digits-sam", "digits-adam"])
def test_retrain_command_rebuilds_the_exact_config(name):
    from landscape_core.cli.train import config_from_args

    meta = read_meta(checkpoints_dir() / name)
    cmd = retrain_command(meta)
    argv = shlex.split(cmd)
    assert argv[:4] == ["python", "-m", "landscape_core", "train"]
    args = build_parser().parse_args(argv[3:])
    cfg = config_from_args(args)
    assert cfg.to_dict() == TrainConfig.from_dict(meta["config"]).to_dict()
    assert args.name == name


def test_report_has_every_section_and_is_offline(two_runs, tmp_path):
    seen = []
    rep = build_report(two_runs, samples=64, grid=7, top_k=3, progress=lambda f, m: seen.append(f))
    assert rep.sections == tuple(SECTIONS)
    doc = rep.html
    for sid, title in SECTIONS.items():
        assert f'<h2 id="{sid}">{title}</h2>' in doc
    assert rep.notes == {}, rep.notes
    assert seen and seen[-1] == 1.0 and all(0 <= f <= 1 for f in seen)
    # nothing that a browser would fetch: no scripts, no external src/href, only data: URIs and anchors
    assert "<script" not in doc.lower() and "<link" not in doc.lower() and "@import" not in doc
    refs = re.findall(r'(?:src|href)="([^"]*)"', doc)
    assert refs and all(r.startswith(("data:", "#")) for r in refs), [r[:40] for r in refs if not r.startswith(("data:", "#"))]
    assert len(re.findall(r"<svg ", doc)) >= 2 + 2 + 1 + 2 + 1  # curves, surfaces, spectra, trajectories, path
    # metrics table carries lambda_max from the spectra section, equal to the spectra table's first eigenvalue
    m = {r["run"]: r for r in rep.tables["metrics"]}
    sp = [r for r in rep.tables["spectra"] if r["index"] == 1]
    for r in sp:
        assert m[r["run"]]["lambda_max"] == pytest.approx(r["eigenvalue"])
    one = build_report(two_runs[:1], samples=64, grid=5, sections=("settings", "connectivity"))
    assert one.sections == ("settings",)  # connectivity needs two runs


def test_csv_files_are_readable_by_pandas(two_runs, tmp_path):
    out = write_report(two_runs, tmp_path / "r" / "report.html", samples=64, grid=5, top_k=2,
                       csv_dir=tmp_path / "csv")
    assert out.is_file() and out.read_text().startswith("<!DOCTYPE html>")
    expect = {
        "metrics": ["run", "optimizer", "lr", "test_acc", "train_acc", "gen_gap", "lambda_max", "trace"],
        "learning_curves": ["run", "epoch", "train_loss", "test_loss", "train_acc", "test_acc"],
        "surfaces": ["run", "alpha", "beta", "loss"],
        "spectra": ["run", "index", "eigenvalue"],
        "trace": ["run", "trace", "trace_stderr"],
        "trajectories": ["run", "step", "pc1", "pc2", "true_loss"],
        "connectivity": ["pair", "t", "loss"],
        "settings": ["run", "config.lr", "config.optimizer", "model.name"],
    }
    for name, cols in expect.items():
        df = pd.read_csv(tmp_path / "csv" / f"{name}.csv")
        assert set(cols) <= set(df.columns), (name, list(df.columns))
    met = pd.read_csv(tmp_path / "csv" / "metrics.csv")
    assert list(met["run"]) == ["moons-sgd", "moons-adam"]
    assert np.allclose(met["gen_gap"], met["test_loss"] - met["train_loss"])
    surf = pd.read_csv(tmp_path / "csv" / "surfaces.csv")
    assert len(surf) == 2 * 25 and surf["loss"].notna().all()
    lc = pd.read_csv(tmp_path / "csv" / "learning_curves.csv")
    assert len(lc) == 2 * 3
    # the embedded CSV link carries the same table
    doc = out.read_text()
    uri = re.search(r'download="metrics.csv" href="data:text/csv;base64,([^"]+)"', doc).group(1)
    emb = pd.read_csv(io.StringIO(base64.b64decode(uri).decode()))
    assert list(emb["run"]) == list(met["run"]) and np.allclose(emb["test_acc"], met["test_acc"])


def test_without_compute_sections_say_why_and_precomputed_is_used(two_runs):
    rep = build_report(two_runs, compute_missing=False, sections=("metrics", "surfaces", "spectra"))
    assert "not computed" in rep.html and set(rep.notes) == {"surfaces", "spectra"}
    a = np.linspace(-1, 1, 3).tolist()
    fake = {"dims": 2, "alphas": a, "betas": a, "loss": [[3, 2, 3], [2, 1, 2], [3, 2, 3]], "min_loss": 1,
            "center_loss": 1, "settings": {"samples": 10}}
    rep2 = build_report(two_runs[:1], compute_missing=False, sections=("surfaces",),
                        precomputed={str(two_runs[0]): {"surface": fake}})
    assert rep2.notes == {} and rep2.tables["surfaces"][4]["loss"] == 1
    with pytest.raises(ValueError, match="unknown report section"):
        build_report(two_runs, sections=("metrics", "vibes"))


def test_report_cli_json(two_runs, tmp_path, capsys):
    out = tmp_path / "rep.html"
    assert main(["report", *map(str, two_runs), "--out", str(out), "--samples", "64", "--grid", "5",
                 "--sections", "settings,metrics,curves", "--csv-dir", str(tmp_path / "c"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["out"] == str(out) and res["sections"] == ["settings", "metrics", "curves"]
    assert res["seconds"] > 0 and out.is_file()
    assert (tmp_path / "c" / "metrics.csv").is_file()
    assert main(["report", str(two_runs[0]), "--out", str(tmp_path / "x.txt")]) == 2
    assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "y.html")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(e.startswith("error:") for e in err)
