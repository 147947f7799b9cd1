"""The grokking lab on the Train page: the preset (``landscape_core.presets.GROKKING``: full-batch AdamW with
weight decay 1 on ``a + b mod 47``, a 1-block width-64 4-head Transformer, lambda_max every 100 steps,
trajectory snapshots) and the curves of any modular-addition run: train / test accuracy, weight norm and
lambda_max over steps, with :func:`~landscape_core.presets.grokking_summary` (step where train accuracy
saturates, step where test accuracy jumps, the delay between them).

The preset trains through the Train page's own :func:`ui.training_ui.run_training` (live progress, saved to
the workspace, becomes the active run). Its settings lie outside the main form's menus (weight decay 1,
full batch of ~1100 examples, 2000 epochs), so the preset trains directly from ``grokking_config`` instead
of filling the form.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from landscape_core.presets import GROKKING, grokking_config, grokking_summary

from .cache import list_runs_cached, load_run_cached
from .common import guide_link, show_error
from .state import get_active_run
from .training_ui import run_training

STEP_CHOICES = (100, 200, 500, 1000, 2000, 3000, 5000)


def preset_settings(steps: int) -> dict:
    """The preset's settings as shown (with the chosen number of full-batch steps)."""
    return {**GROKKING, "epochs": steps, "optimizer": "adamw", "model": "transformer",
            "dataset": "modular_addition", "batch": "full"}


def preset_section() -> None:
    """The Train page's "Grokking lab" expander: the preset's settings and a button that trains it."""
    with st.expander("Grokking lab: train the preset (Transformer on a + b mod 47, AdamW, weight decay 1)"):
        st.write("Full-batch AdamW with a strong weight decay on half of the 47² pairs: the training accuracy "
                 "saturates within a few hundred steps, the test accuracy jumps much later (grokking). "
                 "lambda_max is measured every 100 steps; 40 trajectory snapshots are kept.")
        guide_link("grokking", "Guide: grokking, what to look at")
        c1, c2 = st.columns([2, 3])
        steps = c1.select_slider("Steps (one full-batch step per epoch)", list(STEP_CHOICES),
                                 value=int(GROKKING["epochs"]), key="grok_steps")
        c1.caption("The full preset (2000) takes about 2 minutes on 2 CPU cores, more when the machine is busy.")
        c2.dataframe([{"setting": k, "value": str(v)} for k, v in preset_settings(int(steps)).items()],
                     hide_index=True, height=240)
        if st.button("Train the grokking preset", type="primary", key="grok_go"):
            try:
                cfg = grokking_config(epochs=int(steps), sharpness_every=min(100, max(int(steps) // 10, 1)))
            except ValueError as e:
                show_error(e)
                return
            run_training(cfg, f"grokking-p{cfg.dataset['modulus']}-{int(steps)}steps")


def grokking_runs() -> list[dict]:
    """Shipped + workspace runs whose dataset is ``modular_addition``."""
    return [r for r in list_runs_cached() if r.get("dataset") == "modular_addition"]


def grokking_figure(history: Sequence[Mapping], sharpness: Sequence[Mapping], summary: Mapping, *,
                    log_x: bool = True) -> go.Figure:
    """Three stacked panels over optimizer steps: train / test accuracy, weight norm, lambda_max.

    Dotted vertical lines mark where train accuracy saturates and where test accuracy jumps
    (:func:`grokking_summary`).
    """
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=("accuracy", "weight norm ||θ||", "sharpness λ_max"))
    steps = [int(r["step"]) for r in history]
    for key, name, color, dash in (("train_acc", "train accuracy", "#1f77b4", "solid"),
                                   ("test_acc", "test accuracy", "#d62728", "solid")):
        fig.add_trace(go.Scatter(x=steps, y=[float(r[key]) for r in history], name=name, mode="lines",
                                 line={"color": color, "dash": dash}), row=1, col=1)
    fig.add_trace(go.Scatter(x=steps, y=[float(r.get("weight_norm") or float("nan")) for r in history],
                             name="weight norm", mode="lines", line={"color": "#2ca02c"}), row=2, col=1)
    if sharpness:
        fig.add_trace(go.Scatter(x=[int(r["step"]) for r in sharpness], y=[float(r["lambda_max"]) for r in sharpness],
                                 name="λ_max", mode="lines+markers", line={"color": "#9467bd"}), row=3, col=1)
    for key, text, color, anchor in (("train_saturated_step", "train saturates", "#1f77b4", "right"),
                                     ("test_jump_step", "test jumps", "#d62728", "left")):
        if summary.get(key) is not None:
            x = int(summary[key])
            fig.add_vline(x=x, line={"dash": "dot", "color": color}, row="all", col=1)
            # an annotation on a log axis takes log10 coordinates (Plotly's convention; shapes take data values)
            fig.add_annotation(x=math.log10(max(x, 1)) if log_x else x, y=0.5, text=text, showarrow=False, xanchor=anchor, font={"color": color},
                               row=1, col=1)
    fig.update_xaxes(type="log" if log_x else "linear")
    fig.update_xaxes(title_text="optimizer step", row=3, col=1)
    fig.update_yaxes(range=[0, 1.02], row=1, col=1)
    fig.update_layout(title={"text": "Grokking: accuracy, weight norm and sharpness over steps"}, height=720,
                      margin={"l": 10, "r": 10, "t": 60, "b": 10}, legend={"orientation": "h", "y": -0.08})
    return fig


def _fmt(step) -> str:
    return "not reached" if step is None else f"{int(step)}"


def curves_section() -> None:
    """Grokking curves of a modular-addition run (the active run first) with the summary numbers, in an
    expander that opens by itself when the active run is a modular-addition run."""
    runs = grokking_runs()
    if not runs:
        return
    paths = [r["path"] for r in runs]
    active = get_active_run()
    with st.expander("Grokking curves of a modular-addition run", expanded=active in paths):
        c1, c2 = st.columns([3, 1])
        path = c1.selectbox("Modular-addition run", paths, index=paths.index(active) if active in paths else 0,
                            format_func=lambda p: next(r["name"] for r in runs if r["path"] == p), key="grok_run")
        log_x = c2.toggle("Log step axis", value=True, key="grok_logx")
        curves(path, log_x=log_x)


def curves(path: str, *, log_x: bool = True) -> None:
    """The summary metrics and the three-panel figure of one run."""
    try:
        meta = load_run_cached(path).meta
    except Exception as e:  # noqa: BLE001 - a broken run folder must not crash the page
        show_error(e)
        return
    history = meta.get("history") or []
    if not history:
        st.info("This run has no training history.")
        return
    s = grokking_summary(history)
    m = st.columns(4)
    m[0].metric("train acc ≥ 99% at step", _fmt(s["train_saturated_step"]))
    m[1].metric("test acc ≥ 95% at step", _fmt(s["test_jump_step"]))
    m[2].metric("delay (steps)", _fmt(s["delay_steps"]))
    m[3].metric("final test accuracy", f"{s['final_test_acc']:.1%}")
    st.plotly_chart(grokking_figure(history, meta.get("sharpness") or [], s, log_x=log_x), key="grok_curves")
    wn0, wnj = s["weight_norm_start"], s["weight_norm_at_jump"]
    if wn0 and wnj:
        st.caption(f"Weight norm {wn0:.3g} at the first evaluation, {wnj:.3g} when the test accuracy jumped: "
                   "weight decay shrinks the memorising solution until a smaller, generalising one wins.")
    if s["test_jump_step"] is None:
        st.caption("The test accuracy did not reach 95% in this run: train longer (or with a larger training "
                   "fraction) to see the jump.")
    guide_link("grokking", "Guide: grokking, what to look at")


def lab() -> None:
    """The Train page's grokking lab: the preset, then the curves of a modular-addition run."""
    preset_section()
    curves_section()
