"""Self-contained HTML reports of one or more runs: settings to reproduce, metrics, curves, surfaces, spectra.

One HTML file that opens offline and makes no network request: inline CSS, charts as inline SVG and
loss surfaces as PNG heat maps inside SVG, all rendered by :mod:`landscape_core.report_charts` (this
module computes through :mod:`landscape_core.analyses` and assembles). Every table is also embedded as
a ``data:text/csv`` download link and can be written as CSV files (``csv_dir``).

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
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .analyses.connectivity import connect_runs
from .analyses.hessian import analyze_hessian
from .analyses.resolve import as_run
from .analyses.surface import compute_surface
from .analyses.trajectory import project_trajectory
from .export import png_bytes
from .progress import ProgressFn
from .report_charts import (
    _CSS,
    PALETTE,
    _csv_link,
    _esc,
    _fmt,
    _table_html,
    bar_chart,
    colormap,
    csv_text,
    heatmap_chart,
    line_chart,
    nice_ticks,
    scatter_chart,
)
from .reproduce import retrain_command

SECTIONS: dict[str, str] = {
    "settings": "Settings to reproduce",
    "metrics": "Metrics",
    "curves": "Learning curves",
    "surfaces": "Loss surfaces",
    "spectra": "Hessian spectra",
    "trajectories": "Trajectories",
    "connectivity": "Mode connectivity",
}


# ================================================================================================
# report content
# ================================================================================================
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
                            "max_relative_residual": d.get("max_relative_residual"),
                            "off_plane": (d.get("off_plane") or {}).get("note")})
        self.tables["trajectories"] = rows
        note = ('<p class="note">Each run in its own PCA plane of theta_i - theta_final (open circle: '
                "initialisation; the final weights are at the origin). A large off-plane residual means the "
                "plane shows the path only roughly.</p>")
        return (note + f'<div class="charts">{"".join(charts)}</div>'
                + (_table_html(summary) if summary else "") + _csv_link(rows, "trajectories"))

    def connectivity(self) -> str:
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


def _one_line(e: BaseException) -> str:
    s = str(e).strip().splitlines()
    return s[0] if s else type(e).__name__


def _load(runs: Sequence[Any]) -> list:
    out = [as_run(r) for r in runs]
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


#: chart functions re-exported for callers of the former single module
__all__ = ["SECTIONS", "Report", "bar_chart", "build_report", "colormap", "csv_text", "heatmap_chart", "line_chart",
           "nice_ticks", "png_bytes", "report_html", "retrain_command", "scatter_chart", "write_report",
           "write_tables"]
