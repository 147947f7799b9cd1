"""Experiments page, Sweep lab and Presets tabs: grid pickers, resumable sweeps with progress, scatter + Kendall tau.

Sweeps run in the script thread (no ``st.*`` from workers) and write every finished point to
``<workspace>/sweeps/<name>/`` as they go: stopping the app half-way loses only the point in progress,
and pressing *Start / resume* again reuses every finished point. Preset runs are saved in the
workspace itself, so they also show on the Runs page and the analysis pages.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from landscape_core import presets as _presets
from landscape_core import sweep as _sweep
from landscape_core.analyses.surface import SurfaceResult
from landscape_core.report import csv_text

from .common import show_error
from .state import workspace

LR_CHOICES = (0.001, 0.003, 0.01, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
BS_CHOICES = (8, 16, 32, 64, 128, 256, 512)
WD_CHOICES = (0.0, 1e-4, 5e-4, 1e-3, 5e-3)
RHO_CHOICES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
MEASURE_LABELS = {"lambda_max": "λ_max (top Hessian eigenvalue)", "trace": "Hessian trace",
                  "flatness": "flatness: loss rise at radius r", "per_layer": "per-layer λ_max"}
SHORT_LABELS = {"lambda_max": "λ_max", "trace": "trace", "flatness": "flatness", "per_layer": "per-layer λ_max"}
TARGET_LABELS = {"test_acc": "test accuracy", "gen_gap": "generalization gap (test − train loss)",
                 "acc_gap": "accuracy gap (train − test)"}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,59}$")


# ================================================================================================
# sweep lab
# ================================================================================================
def sweeps_dir():
    """``<workspace>/sweeps`` (created)."""
    d = workspace() / "sweeps"
    d.mkdir(parents=True, exist_ok=True)
    return d


def sweep_form() -> tuple[_sweep.SweepSpec, str] | None:
    """Grid pickers -> ``(SweepSpec, sweep name)``; ``None`` (with a message) when the input is invalid."""
    c1, c2, c3 = st.columns(3)
    with c1:
        lrs = st.multiselect("Learning rates", LR_CHOICES, default=[0.01, 0.1, 0.5], key="sw_lrs")
        bss = st.multiselect("Batch sizes", BS_CHOICES, default=[32, 128, 512], key="sw_bs")
        wds = st.multiselect("Weight decays (optional axis)", WD_CHOICES, default=[], key="sw_wd")
    with c2:
        optimizer = st.selectbox("Optimizer", ("sgd", "adam", "sam"), key="sw_opt")
        epochs = st.slider("Epochs per point", 1, 30, 3, key="sw_epochs")
        width = st.select_slider("MLP width", (8, 16, 32, 64, 128), value=32, key="sw_width")
        depth = st.slider("Hidden layers", 1, 4, 2, key="sw_depth")
        rhos = (st.multiselect("SAM radii ρ (optional axis)", RHO_CHOICES, default=[], key="sw_rho")
                if optimizer == "sam" else [])
    with c3:
        measures = st.multiselect("Measures", list(MEASURE_LABELS), default=["lambda_max", "trace", "flatness"],
                                  format_func=SHORT_LABELS.get, key="sw_measures",
                                  help="λ_max: top Hessian eigenvalue (Lanczos); trace: Hutchinson with its standard "
                                       "error; flatness: mean loss rise along random filter-normalised directions at "
                                       "relative radius 0.05; per-layer: λ_max of each layer's Hessian block.")
        samples = st.select_slider("Examples for the measures", (64, 128, 256, 512, 1024), value=256, key="sw_samples")
        train_size = st.selectbox("Training examples", ("all", 1000, 500, 300), key="sw_train_size")
        name = st.text_input("Sweep name (its folder; same name = resume)", value="digits-lr-bs", key="sw_name")
    if not lrs or not bss:
        st.info("Pick at least one learning rate and one batch size.")
        return None
    if not _NAME_RE.match(name or ""):
        show_error(f"invalid sweep name {name!r}: use letters, digits, '.', '_' or '-'")
        return None
    base = {"dataset": {"name": "digits", "train_size": None if train_size == "all" else int(train_size)},
            "model": "mlp", "width": int(width), "depth": int(depth), "activation": "tanh",
            "optimizer": optimizer, "lr": 0.05 if optimizer != "adam" else 1e-3, "epochs": int(epochs),
            "snapshots": 0}
    try:
        spec = _sweep.SweepSpec(base=base, lrs=tuple(sorted(lrs)), batch_sizes=tuple(sorted(bss)),
                                weight_decays=tuple(sorted(wds)) or None, rhos=tuple(sorted(rhos)) or None,
                                measures=tuple(measures) or ("lambda_max",),
                                samples=int(samples), trace_probes=20, flatness_directions=8)
    except ValueError as e:
        show_error(e)
        return None
    return spec, name


def _progress_callback(bar: Any) -> Callable[[float, str], None]:
    def cb(frac: float, msg: str) -> None:
        bar.progress(min(max(float(frac), 0.0), 1.0), text=msg[:140])

    return cb


def run_sweep_ui(spec: _sweep.SweepSpec, name: str) -> dict | None:
    """Run (or resume) the sweep with a progress bar; returns ``SweepResult.to_dict()``."""
    out = sweeps_dir() / name
    slot = st.empty()  # the progress bar while it runs, then the one-line summary
    bar = slot.progress(0.0, text=f"sweep {name}: {len(spec)} points")
    try:
        res = _sweep.run_sweep(spec, out_dir=out, n_jobs=1, progress=_progress_callback(bar))
    except ValueError as e:
        slot.empty()
        show_error(e)
        return None
    d = res.to_dict()
    slot.caption(f"sweep {name}: {d['finished']}/{d['total']} points "
                 f"({d['reused']} reused from an earlier run, {d['computed']} computed now)")
    return d


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def scatter_figure(rows: Sequence[Mapping[str, Any]], measure: str, target: str, *, log_x: bool = True) -> go.Figure:
    """Sharpness measure vs a generalization target, one marker colour per batch size, hover = config."""
    fig = go.Figure()
    ok = [r for r in rows if r.get("status") == "ok" and _finite(r.get(measure)) and _finite(r.get(target))]
    palette = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
    for i, bs in enumerate(sorted({r["batch_size"] for r in ok})):
        sel = [r for r in ok if r["batch_size"] == bs]
        fig.add_trace(go.Scatter(
            x=[float(r[measure]) for r in sel], y=[float(r[target]) for r in sel], mode="markers",
            name=f"batch {bs}", marker={"size": 11, "color": palette[i % len(palette)], "line": {"width": 1}},
            text=[f"lr={r['lr']:g}, batch={r['batch_size']}" for r in sel],
            hovertemplate="%{text}<br>%{x:.4g}, %{y:.4g}<extra></extra>"))
    positive = all(float(r[measure]) > 0 for r in ok) if ok else False
    fig.update_layout(xaxis_title=MEASURE_LABELS.get(measure, measure), yaxis_title=TARGET_LABELS.get(target, target),
                      height=420, margin={"l": 10, "r": 10, "t": 30, "b": 10}, legend={"orientation": "h", "y": -0.2})
    if log_x and positive:
        fig.update_xaxes(type="log")
    return fig


def batch_effect_figure(rows: Sequence[Mapping[str, Any]], measure: str) -> go.Figure:
    """A measure against batch size (log axis), one line per learning rate."""
    fig = go.Figure()
    ok = [r for r in rows if r.get("status") == "ok" and _finite(r.get(measure))]
    for lr in sorted({r["lr"] for r in ok}):
        sel = sorted((r for r in ok if r["lr"] == lr), key=lambda r: r["batch_size"])
        fig.add_trace(go.Scatter(x=[r["batch_size"] for r in sel], y=[float(r[measure]) for r in sel],
                                 mode="lines+markers", name=f"lr {lr:g}"))
    fig.update_layout(xaxis_title="batch size", yaxis_title=MEASURE_LABELS.get(measure, measure), height=380,
                      margin={"l": 10, "r": 10, "t": 30, "b": 10})
    fig.update_xaxes(type="log")
    return fig


def per_layer_figure(rows: Sequence[Mapping[str, Any]]) -> go.Figure | None:
    """Heat map of per-layer λ_max: layers x sweep points (``None`` if not measured)."""
    ok = [r for r in rows if r.get("per_layer")]
    if not ok:
        return None
    layers = list(ok[0]["per_layer"])
    z = [[float(r["per_layer"].get(layer, float("nan"))) for r in ok] for layer in layers]
    labels = [f"lr {r['lr']:g} / bs {r['batch_size']}" for r in ok]
    fig = go.Figure(go.Heatmap(z=z, x=labels, y=layers, colorscale="Viridis", colorbar={"title": "λ_max"}))
    fig.update_layout(height=320, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return fig


def correlation_line(corr: Mapping[str, Any] | None) -> str:
    """Kendall tau with its interval and p-value as one sentence."""
    if not corr or corr.get("tau") is None:
        n = (corr or {}).get("n", 0)
        return f"Kendall τ: not defined with these points (n = {n}; needs 3 or more with distinct values)."
    lo, hi = corr.get("ci_low"), corr.get("ci_high")
    ci = f"95% bootstrap CI [{lo:+.2f}, {hi:+.2f}]" if lo is not None and hi is not None else "no CI"
    return (f"Kendall τ_b = **{corr['tau']:+.2f}**, {ci}, p = {corr['p_value']:.3g}, n = {corr['n']} "
            f"({MEASURE_LABELS.get(corr['measure'], corr['measure'])} vs {TARGET_LABELS.get(corr['target'], corr['target'])}).")


@st.fragment
def sweep_results(result: Mapping[str, Any]) -> None:
    """Table, scatter with Kendall tau, batch-size effect and per-layer view of a sweep result."""
    rows = result["rows"]
    st.markdown(f"**{result['finished']} / {result['total']} points finished** in `{result['out_dir']}`"
                + (" — stopped early; press *Start / resume* to finish it." if result["cancelled"] else "."))
    table = [{c: r.get(c) for c in _sweep.COLUMNS if c not in ("id", "run_path")} for r in rows]
    st.dataframe(table, hide_index=True, width="stretch")
    st.download_button("Download table (CSV)", csv_text([{c: r.get(c) for c in _sweep.COLUMNS} for r in rows]),
                       file_name="sweep.csv", mime="text/csv", key="sw_csv")
    measures = [m for m in result["spec"]["measures"] if m != "per_layer"]
    if not measures:
        return
    c1, c2 = st.columns(2)
    measure = c1.selectbox("Sharpness measure", measures, format_func=MEASURE_LABELS.get, key="sw_plot_measure")
    target = c2.selectbox("Against", list(TARGET_LABELS), format_func=TARGET_LABELS.get, key="sw_plot_target")
    st.plotly_chart(scatter_figure(rows, measure, target), width="stretch", key="sw_scatter")
    corr = next((c for c in result["correlations"] if c["measure"] == measure and c["target"] == target), None)
    st.markdown(correlation_line(corr))
    st.caption("Each point is one trained configuration. τ_b ranks agreement; the interval resamples the points "
               "(seeded bootstrap), so with few points it is wide. Sharpness is measured at the final weights on "
               f"{result['spec']['samples']} training examples.")
    st.markdown("**Batch-size effect on the geometry**")
    st.plotly_chart(batch_effect_figure(rows, measure), width="stretch", key="sw_batch")
    layer_fig = per_layer_figure(rows)
    if layer_fig is not None:
        st.markdown("**Per-layer sharpness** (λ_max of each layer's diagonal Hessian block)")
        st.plotly_chart(layer_fig, width="stretch", key="sw_layers")
    with st.expander("All correlations"):
        st.dataframe(result["correlations"], hide_index=True, width="stretch")


def sweep_lab_ui() -> None:
    """The Sweep lab tab."""
    st.markdown("Train a grid of learning rates × batch sizes on digits, measure sharpness at every trained "
                "point, and see how it ranks against test accuracy and the generalization gap (Keskar et al. "
                "2017; Jiang et al. 2020).")
    form = sweep_form()
    if form is None:
        return
    spec, name = form
    done = 0
    folder = sweeps_dir() / name
    if (folder / "sweep.json").is_file():
        try:
            done = len(_sweep.load_sweep(folder, spec).rows)
        except ValueError:
            done = 0
    st.caption(f"{len(spec)} points × {spec.base['epochs']} epoch(s)"
               + (f"; {done} already finished in `{name}` and will be reused" if done else "")
               + ". Stop any time with the red Stop button at the top right: finished points stay saved.")
    if st.button("Start / resume sweep", type="primary", key="sw_start"):
        res = run_sweep_ui(spec, name)
        if res is not None:
            st.session_state["sweep_result"] = res
    elif done and st.session_state.get("sweep_result", {}).get("out_dir") != str(folder):
        try:
            st.session_state["sweep_result"] = _sweep.load_sweep(folder, spec).to_dict()
        except ValueError as e:
            show_error(e)
    result = st.session_state.get("sweep_result")
    if result:
        sweep_results(result)


# ================================================================================================
# presets
# ================================================================================================
def run_preset_ui(name: str, budget: str, epochs: int, grid: int, samples: int, dataset: str = "digits") -> dict | None:
    """Run a preset with a progress bar (runs saved in the workspace); returns ``PresetResult.to_dict()``."""
    slot = st.empty()  # the progress bar while it runs, then nothing
    bar = slot.progress(0.0, text=f"preset {name}")
    try:
        res = _presets.run_preset(name, out_dir=workspace(), budget=budget, epochs=epochs, grid=grid,
                                  samples=samples, dataset=dataset, progress=_progress_callback(bar))
    except ValueError as e:
        slot.empty()
        show_error(e)
        return None
    slot.empty()
    return res.to_dict()


def preset_results(d: Mapping[str, Any]) -> None:
    """Statement, table, summary and surfaces of a preset result."""
    from .figures import surfaces_side_by_side

    st.subheader(d["title"])
    st.info(d["statement"])
    cols = [c for c in _presets.COLUMNS if c != "run_path"]
    st.dataframe([{c: r.get(c) for c in cols} for r in d["rows"]], hide_index=True, width="stretch")
    st.download_button("Download table (CSV)", csv_text(d["rows"]), file_name=f"{d['name']}.csv", mime="text/csv",
                       key=f"pr_csv_{d['name']}")
    for line in d["summary"]:
        st.markdown(f"- {line}")
    if d.get("surfaces"):
        pairs = [(label, SurfaceResult.from_dict(s).surface) for label, s in d["surfaces"].items()]
        st.plotly_chart(surfaces_side_by_side(pairs, kind="contour", log=True), width="stretch",
                        key=f"pr_surf_{d['name']}")
        st.caption("Filter-normalised random directions, the same seed for every run, one shared log colour scale.")


def presets_ui() -> None:
    """The Presets tab: two one-click comparisons from the same initialisation."""
    st.markdown("Classic comparisons on digits (MLP 64-64-64, tanh), every run from the **same initial weights** "
                "and the same mini-batch order. The results are shown as measured.")
    c1, c2, c3 = st.columns(3)
    budget = c1.radio("Compare at equal", ("steps", "grad-evals"), key="pr_budget",
                      format_func={"steps": "optimizer steps", "grad-evals": "gradient evaluations (SAM = 2/step)"}.get)
    epochs = c2.slider("Epochs", 1, 40, 15, key="pr_epochs")
    grid = c3.select_slider("Surface grid", (5, 11, 15, 21), value=21, key="pr_grid")
    datasets = _presets.preset_datasets()
    dataset = st.selectbox("Dataset", datasets, key="pr_dataset",
                           help="digits is embedded; MNIST appears when a local copy exists (never downloaded).") \
        if len(datasets) > 1 else "digits"
    samples = 512
    b1, b2 = st.columns(2)
    clicked = None
    for col, info in zip((b1, b2), _presets.preset_info()):
        with col:
            st.markdown(f"**{info['title']}**  \n{info['description']}")
            if st.button(f"Run {info['name']}", key=f"pr_run_{info['name']}"):
                clicked = info["name"]
    if clicked:
        res = run_preset_ui(clicked, budget, int(epochs), int(grid), samples, dataset)
        if res is not None:
            st.session_state[f"preset_{clicked}"] = res
    for info in _presets.preset_info():
        d = st.session_state.get(f"preset_{info['name']}")
        if d:
            preset_results(d)
