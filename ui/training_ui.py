"""The Train page: settings form -> ``TrainConfig``, cost estimate, live training with progress and curves.

Training runs in the script thread; ``train(progress=...)`` calls back every ~20 steps and after every
epoch, and the callback updates an ``st.progress`` bar and an ``st.empty`` chart (never ``st.*`` from
another thread). Stopping: the Stop button makes Streamlit rerun, which interrupts the script at the next
``st.*`` call inside the callback, so ``train`` never reaches its save; the run folder is written
atomically at the very end, so no partial run can appear in the workspace.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from pathlib import Path

import streamlit as st

from landscape_core.data import DATASETS, TORCHVISION, DataError, DatasetSpec, load_dataset
from landscape_core.health import run_health
from landscape_core.models import MODELS
from landscape_core.optimizers import ADAM_FAMILY, OPTIMIZERS, SCHEDULES
from landscape_core.runs import RunError
from landscape_core.surface import Surface
from landscape_core.training import TrainConfig, TrainResult, train

from . import models_ui
from .cache import clear_caches
from .common import guide_link, show_error
from .state import presentation, refresh_active_run_caption, set_active_run, workspace
from .training_figures import learning_curves, sharpness_figure

LR_CHOICES = [1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
_EPOCH_END = re.compile(r"^epoch \d+/\d+:")


@st.cache_data(show_spinner=False, max_entries=32)
def dataset_problem(spec: dict) -> str | None:
    """``None`` if the dataset loads, else the one-line ``DataError``/``ValueError`` message."""
    try:
        load_dataset(spec)
    except (DataError, ValueError) as e:
        return str(e).splitlines()[0]
    return None


@st.cache_data(show_spinner=False, max_entries=32)
def dataset_size(spec: dict) -> int:
    """Number of training examples of a (loadable) dataset."""
    return int(len(load_dataset(spec).train[1]))


def dataset_spec_from_widgets(prefix: str = "train") -> dict:
    """Dataset picker (name + size settings) -> a DatasetSpec dict."""
    name = st.selectbox("Dataset", DATASETS, key=f"{prefix}_dataset",
                        help="digits, moons, circles and spirals are built in; MNIST / Fashion-MNIST / "
                             "CIFAR-10 need a local copy (LANDSCAPE_DATA).")
    kw: dict = {"name": name}
    if name in ("moons", "circles", "spirals"):
        kw["n_samples"] = st.select_slider("Examples", [200, 500, 1000, 2000], value=1000, key=f"{prefix}_n")
        kw["noise"] = st.select_slider("Noise", [0.0, 0.05, 0.1, 0.2, 0.3], value=0.1, key=f"{prefix}_noise")
    elif name in TORCHVISION:
        kw["train_size"] = st.select_slider("Training examples", [1000, 2000, 5000, 10000, 60000], value=5000,
                                            key=f"{prefix}_ntrain")
        kw["test_size"] = 2000
    kw.update(models_ui.task_widgets(name, prefix))  # issue 15: modulus / train fraction, parity length
    return DatasetSpec.from_dict(kw).to_dict()


def train_form() -> tuple[TrainConfig | None, str | None]:
    """Draw the settings widgets; return ``(config, run name)`` or ``(None, None)`` when settings are invalid."""
    simple = presentation()
    c1, c2, c3 = st.columns(3)
    with c1:
        st.markdown("**Data and model**")
        ds = dataset_spec_from_widgets("train")
        problem = dataset_problem(ds)
        if problem:
            show_error(problem)
        model = st.selectbox("Model", list(MODELS), key="train_model", help=models_ui.MODEL_HELP)
        models_ui.pairing_hint(ds["name"], model)
        width, depth, channels, bn, act = 64, 2, 16, False, "relu"
        extra = models_ui.model_widgets(model, "train")  # issue 15: transformer / lstm / gru / cnn1d
        if model == "mlp":
            width = st.select_slider("Width", [4, 8, 16, 32, 64, 128, 256], value=64, key="train_width")
            depth = st.slider("Hidden layers", 1, 6, 2, key="train_depth")
        elif model not in models_ui.NEW_MODELS:
            channels = st.select_slider("Channels", [4, 8, 16, 32], value=16 if model == "cnn" else 8,
                                        key="train_channels")
        if model != "resnet20" and model not in models_ui.NEW_MODELS:
            act = st.selectbox("Activation", ["relu", "tanh", "gelu"], key="train_act")
            bn = st.toggle("BatchNorm", value=False, key="train_bn")
    with c2:
        st.markdown("**Optimizer**")
        opt = st.selectbox("Optimizer", OPTIMIZERS, key="train_opt")
        default_lr = 1e-3 if opt in ADAM_FAMILY else 0.05
        lr = st.select_slider("Learning rate", LR_CHOICES, value=default_lr, key=f"train_lr_{opt in ADAM_FAMILY}",
                              format_func=lambda v: f"{v:g}", help="log-spaced")
        momentum = 0.0 if opt in ADAM_FAMILY else st.slider("Momentum", 0.0, 0.99, 0.9, 0.01, key="train_mom")
        wd = 0.0 if simple else st.select_slider("Weight decay", [0.0, 1e-5, 1e-4, 5e-4, 1e-3, 1e-2], value=0.0,
                                                  key="train_wd", format_func=lambda v: f"{v:g}")
        rho, adaptive = 0.05, opt == "asam"
        if opt in ("sam", "asam"):
            rho = st.select_slider("SAM radius ρ", [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0],
                                   value=0.05 if opt == "sam" else 0.5, key=f"train_rho_{opt}")
            adaptive = st.toggle("ASAM (scale-invariant radius)", value=opt == "asam", key=f"train_asam_{opt}")
        schedule = "constant" if simple else st.selectbox("Schedule", SCHEDULES, key="train_sched")
    with c3:
        st.markdown("**Budget**")
        batch = st.select_slider("Batch size", [8, 16, 32, 64, 128, 256, 512], value=64, key="train_bs")
        epochs = st.slider("Epochs", 1, 100, 10, key="train_epochs")
        seed = st.number_input("Seed", 0, 10_000, 0, key="train_seed")
        sharp_every = 0
        if not simple and st.toggle("Track sharpness (λ_max every k steps)", key="train_sharp"):
            sharp_every = st.select_slider("every k steps", [5, 10, 20, 50, 100], value=20, key="train_sharp_k")
        name = st.text_input("Run name (optional)", key="train_name", placeholder="automatic")
    if problem:
        return None, None
    try:
        cfg = TrainConfig(dataset=ds, model=model, width=width, depth=depth, activation=act, batchnorm=bn,
                          channels=channels, optimizer=opt, lr=float(lr), momentum=float(momentum),
                          weight_decay=float(wd), rho=float(rho), adaptive=bool(adaptive), batch_size=int(batch),
                          epochs=int(epochs), schedule=schedule, seed=int(seed), sharpness_every=int(sharp_every),
                          snapshots=12).replace(**extra)
    except ValueError as e:
        show_error(e)
        return None, None
    return cfg, (name.strip() or None)


@st.cache_data(show_spinner=False, max_entries=64)
def step_seconds(cfg_dict: dict) -> float:
    """Seconds of one optimizer step for these settings (median of a few timed steps on one batch)."""
    import torch

    from landscape_core.models import build_model, model_spec
    from landscape_core.optimizers import make_optimizer

    cfg = TrainConfig.from_dict(cfg_dict)
    b = load_dataset(cfg.dataset)
    X, y = b.train
    xb, yb = X[: cfg.batch_size], y[: cfg.batch_size]
    model = build_model(model_spec(cfg.model, b.input_shape, b.num_classes, **cfg.model_kwargs(b)), seed=0).train()
    opt = make_optimizer("sgd", model.parameters(), lr=1e-6)
    times = []
    for _ in range(4):
        t0 = time.perf_counter()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xb), yb).backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def estimate_seconds(cfg: TrainConfig) -> tuple[float, int]:
    """``(seconds, steps)``: timed step x steps x gradient evaluations per step, plus per-epoch evaluation."""
    n = dataset_size(cfg.dataset)
    steps = cfg.epochs * math.ceil(n / cfg.batch_size)
    per = step_seconds(cfg.to_dict()) * cfg.grad_evals_per_step
    return per * steps + 0.02 * cfg.epochs, steps


def make_progress(bar, chart, status) -> tuple[Callable[[dict], None], list[dict]]:
    """A ``train(progress=...)`` callback drawing into the given placeholders; returns it and its rows."""
    rows: list[dict] = []

    def cb(info: dict) -> None:
        bar.progress(min(max(float(info.get("fraction", 0.0)), 0.0), 1.0), text=info.get("message", ""))
        if _EPOCH_END.match(info.get("message", "")):
            rows.append({k: info[k] for k in ("epoch", "train_loss", "test_loss", "train_acc", "test_acc")})
            chart.plotly_chart(learning_curves(rows, title="Learning curves (live)"),
                               key=f"live_{len(rows)}_{time.monotonic_ns()}")
            status.caption(f"epoch {info['epoch']}/{info['epochs']} · test acc {info['test_acc']:.1%}")

    return cb, rows


def run_training(cfg: TrainConfig, name: str | None, *, out_dir: Path | None = None) -> TrainResult | None:
    """Train with live progress into the workspace; the saved run becomes the active run."""
    bar = st.progress(0.0, text="starting")
    status = st.empty()
    chart = st.empty()
    cb, _ = make_progress(bar, chart, status)
    try:
        res = train(cfg, progress=cb, out_dir=out_dir or workspace(), name=name)
    except (ValueError, DataError, RunError) as e:
        bar.empty()
        show_error(e)
        return None
    bar.empty()
    chart.empty()
    status.empty()
    if res.path is not None:
        set_active_run(str(res.path))
        refresh_active_run_caption()  # the sidebar was drawn before training
        clear_caches()
        st.session_state["train_last"] = {"path": str(res.path), "meta": res.meta}
    return res


def _request_stop() -> None:
    st.session_state["train_stopped"] = True


def show_result(last: dict) -> None:
    """Final metrics, learning curves and (if tracked) sharpness of the last trained run."""
    meta = last["meta"]
    final = meta["final"]
    health = run_health(meta)
    if health is None:
        st.success(f"Saved run **{meta['name']}** to the workspace; it is now the active run.")
    else:
        st.error(f"{health['message']} Run **{meta['name']}** is saved and marked **{health['status']}**.",
                 icon="⚠️")
    c = st.columns(4)
    c[0].metric("test accuracy", f"{final['test_acc']:.1%}")
    c[1].metric("train accuracy", f"{final['train_acc']:.1%}")
    c[2].metric("loss gap (test - train)", f"{final['gen_gap']:.3f}")
    c[3].metric("s / epoch", f"{meta['timings']['seconds_per_epoch']:.2f}")
    st.plotly_chart(learning_curves(meta["history"], title="Learning curves"), key="train_curves")
    if meta.get("sharpness"):
        st.plotly_chart(sharpness_figure(meta["sharpness"], meta["config"]["lr"]), key="train_sharpness")
        guide_link("sharpness", "Why 2/lr? Sharpness and the edge of stability")


def render_train_page() -> None:
    """Draw the Train page."""
    if st.session_state.pop("train_stopped", False):
        st.warning("Training stopped. Nothing was saved.")
    cfg, name = train_form()
    if cfg is None:
        return
    blocked = False  # a configuration the estimate cannot build cannot train either: one error, no button
    try:
        secs, steps = estimate_seconds(cfg)
        st.caption(f"about {secs:.1f} s on this machine ({steps} steps x {cfg.grad_evals_per_step} gradient "
                   f"evaluation{'s' if cfg.grad_evals_per_step > 1 else ''} per step)")
    except (ValueError, DataError, RuntimeError) as e:
        show_error(e)
        blocked = True
    b1, b2 = st.columns([1, 5])
    go_ = b1.button("Train", type="primary", key="train_go", disabled=blocked)
    b2.button("Stop", key="train_stop", on_click=_request_stop, help="Stops training; nothing is saved.")
    if go_:
        res = run_training(cfg, name)
        if res is None:
            return
    last = st.session_state.get("train_last")
    if last and Path(last["path"]).exists():
        show_result(last)


# --- Compare optimizers ---------------------------------------------------------------------------

COMPARE_CURVATURE = {"top_k": 1, "trace": True, "trace_probes": 20, "trace_method": "hutchinson",
                     "smallest": False, "samples": 256, "seed": 0}
COMPARE_SURFACE = {"directions": "runs", "grid": 21, "samples": 256, "span": 1.0, "seed": 0}


def compare_form() -> tuple[TrainConfig | None, list[dict], str]:
    """Widgets for a comparison: shared settings, optimizers, budget. Returns ``(base, entries, budget)``."""
    c1, c2, c3 = st.columns(3)
    with c1:
        st.markdown("**Shared settings**")
        ds = dataset_spec_from_widgets("cmp")
        problem = dataset_problem(ds)
        if problem:
            show_error(problem)
        model = st.selectbox("Model", list(MODELS), key="cmp_model", help=models_ui.MODEL_HELP)
        models_ui.pairing_hint(ds["name"], model)
        extra = models_ui.model_widgets(model, "cmp")  # issue 15: transformer / lstm / gru / cnn1d
        width, depth = 32, 2
        if model == "mlp":
            width = st.select_slider("MLP width", [8, 16, 32, 64, 128], value=32, key="cmp_width")
            depth = st.slider("Hidden layers", 1, 4, 2, key="cmp_depth")
        epochs = st.slider("Epochs", 1, 50, 8, key="cmp_epochs")
        batch = st.select_slider("Batch size", [16, 32, 64, 128, 256], value=64, key="cmp_bs")
        seed = st.number_input("Seed (initialisation and data order)", 0, 10_000, 0, key="cmp_seed")
    with c2:
        st.markdown("**Optimizers**")
        opts = st.multiselect("Optimizers", ["sgd", "sam", "adam", "asam", "adamw"], default=["sgd", "sam", "adam"],
                              key="cmp_opts")
        lr_sgd = st.select_slider("SGD / SAM learning rate", LR_CHOICES, value=0.05, key="cmp_lr_sgd",
                                  format_func=lambda v: f"{v:g}")
        lr_adam = st.select_slider("Adam learning rate", LR_CHOICES, value=1e-3, key="cmp_lr_adam",
                                   format_func=lambda v: f"{v:g}")
        rho = st.select_slider("SAM radius ρ", [0.01, 0.02, 0.05, 0.1, 0.2, 0.5], value=0.05, key="cmp_rho")
    with c3:
        st.markdown("**Budget**")
        budget_label = st.radio("Compare at", ["equal optimizer steps", "equal gradient evaluations"],
                                key="cmp_budget",
                                help="SAM spends two gradient evaluations per step: with equal gradient "
                                     "evaluations it takes half as many steps as SGD and Adam.")
        budget = "steps" if budget_label.startswith("equal optimizer") else "grad-evals"
    if problem or not opts:
        if not opts:
            st.info("Pick at least one optimizer.")
        return None, [], budget
    entries = []
    for o in opts:
        e: dict = {"optimizer": o, "lr": float(lr_adam if o in ADAM_FAMILY else lr_sgd)}
        if o in ("sam", "asam"):
            e["rho"] = float(rho) if o == "sam" else float(max(rho, 0.1) * 5)
            e["adaptive"] = o == "asam"
        entries.append(e)
    try:
        base = TrainConfig(dataset=ds, model=model, width=int(width), depth=int(depth), activation="tanh",
                           batch_size=int(batch), epochs=int(epochs), seed=int(seed), snapshots=10).replace(**extra)
    except ValueError as e:
        show_error(e)
        return None, [], budget
    return base, entries, budget


def run_compare(base: TrainConfig, entries: list[dict], budget: str) -> list[str] | None:
    """Train every entry from the same init and data order with live progress; returns the saved run paths."""
    from landscape_core.training import compare

    bar = st.progress(0.0, text="starting")
    chart = st.empty()
    histories: dict[str, list[dict]] = {}

    def cb(info: dict) -> None:
        bar.progress(min(max(float(info.get("fraction", 0.0)), 0.0), 1.0), text=info.get("message", ""))
        msg = info.get("message", "")
        inner = msg.split("] ", 1)[-1]
        if _EPOCH_END.match(inner):
            histories.setdefault(info["optimizer"], []).append(
                {k: info[k] for k in ("epoch", "train_loss", "test_loss", "train_acc", "test_acc")})
            from .training_figures import compare_curves

            chart.plotly_chart(compare_curves(histories, metric="test_acc", title="Test accuracy (live)"),
                               key=f"cmp_live_{time.monotonic_ns()}")

    stamp = time.strftime("%H%M%S")
    try:
        results = compare(base, entries, budget=budget, out_dir=workspace(), progress=cb,
                          name_prefix=f"cmp-{base.dataset['name']}-{stamp}")
    except (ValueError, DataError, RunError) as e:
        bar.empty()
        show_error(e)
        return None
    bar.empty()
    chart.empty()
    clear_caches()
    paths = [str(r.path) for r in results if r.path is not None]
    st.session_state["cmp_last"] = {"paths": paths, "budget": budget}
    return paths


@st.cache_data(show_spinner=False, max_entries=16)
def plane_trajectories(paths: tuple[str, ...], hashes: tuple[str, ...]) -> dict[str, dict]:
    """Each run's trajectory snapshots projected onto the plane through the runs' final points.

    The plane is ``landscape_core.directions.plane_through(A, B, C)`` (origin A, orthonormal e1, e2), or
    the line A->B for two runs. Coordinates are ``(s - A) . e_i``; the part of ``s - A`` off the plane is
    not shown (see the Guide on what projections can hide).
    """
    import torch

    from landscape_core import directions as D
    from landscape_core.params import detached_params, flatten

    from .cache import load_run_cached

    runs = [load_run_cached(p) for p in paths]
    thetas = [detached_params(r.model) for r in runs]
    names = list(thetas[0])
    if len(runs) >= 3:
        _, e1, e2, _ = D.plane_through(thetas[0], thetas[1], thetas[2])
        basis = [flatten({k: e1[k] for k in names}).double(), flatten({k: e2[k] for k in names}).double()]
    else:
        _, d = D.line_through(thetas[0], thetas[1])
        basis = [flatten({k: d[k] for k in names}).double()]
        basis[0] = basis[0] / float(basis[0].norm()) ** 2  # t coordinate: 0 at A, 1 at B
    a = flatten({k: thetas[0][k] for k in names}).double()
    out: dict[str, dict] = {}
    for r in runs:
        try:
            snaps, steps = r.trajectory()
        except RunError:
            continue
        S = int(snaps[names[0]].shape[0])
        M = torch.cat([snaps[k].double().reshape(S, -1) for k in names], dim=1) - a
        coords = [(M @ b).tolist() for b in basis]
        out[r.name] = {"x": coords[0], "y": coords[1] if len(coords) > 1 else [0.0] * S,
                       "steps": [int(s) for s in steps.tolist()]}
    return out


def compare_metrics(paths: list[str], *, with_curvature: bool = True, progress=None) -> list[dict]:
    """One row per run: accuracy, gaps, lambda_max, trace (± stderr), seconds per epoch, steps, grad evals."""
    from .analysis import HessianSettings, cached_hessian
    from .cache import load_run_cached

    rows = []
    for i, p in enumerate(paths):
        run = load_run_cached(p)
        m = run.meta
        f = m["final"]
        row = {"run": run.name, "optimizer": m["config"]["optimizer"], "test_acc": f["test_acc"],
               "acc_gap": f["acc_gap"], "loss_gap": f["gen_gap"], "sec_per_epoch": m["timings"]["seconds_per_epoch"],
               "steps": m["steps"], "grad_evals": m["grad_evals"]}
        if with_curvature:
            if progress is not None:
                progress(i / len(paths), f"curvature of {run.name}")
            h = cached_hessian(p, run.weights_hash, HessianSettings(**COMPARE_CURVATURE))
            row["lambda_max"] = h.eigenvalues[0]
            row["trace"] = h.trace["mean"]
            row["trace_stderr"] = h.trace["stderr"]
        rows.append(row)
    return rows


def _show_compare(last: dict) -> None:
    from .analysis import SurfaceSettings, cached_surface
    from .cache import load_run_cached

    paths = [p for p in last["paths"] if Path(p).exists()]
    if not paths:
        return
    budget = "equal optimizer steps" if last["budget"] == "steps" else "equal gradient evaluations (SAM: 2 per step)"
    st.subheader("Results")
    st.caption(f"Same initialisation and data order; budget: **{budget}**. Curvature on 256 training examples: "
               "top-1 Lanczos and a 20-probe Hutchinson trace (± one standard error).")
    with st.status("Measuring curvature...", expanded=False) as status:
        rows = compare_metrics(paths)
        status.update(label="Curvature measured", state="complete")
    import pandas as pd

    df = pd.DataFrame(rows).set_index("run")
    st.dataframe(df, column_config={
        "test_acc": st.column_config.NumberColumn("test acc", format="percent"),
        "acc_gap": st.column_config.NumberColumn("acc gap", format="percent"),
        "loss_gap": st.column_config.NumberColumn("loss gap", format="%.3f"),
        "lambda_max": st.column_config.NumberColumn("λ_max", format="%.3f"),
        "trace": st.column_config.NumberColumn("trace", format="%.2f"),
        "trace_stderr": st.column_config.NumberColumn("± stderr", format="%.2f"),
        "sec_per_epoch": st.column_config.NumberColumn("s / epoch", format="%.2f"),
    })
    for p in paths:
        health = run_health(load_run_cached(p).meta)
        if health is not None:
            st.error(f"**{load_run_cached(p).name}** ({health['status']}): {health['message']}", icon="⚠️")
    histories = {load_run_cached(p).name: load_run_cached(p).meta["history"] for p in paths}
    _compare_curves_fragment(histories)
    if len(paths) >= 2:
        runs = [load_run_cached(p) for p in paths]
        try:
            with st.spinner("Loss surface in the plane of the final weights..."):
                surf = cached_surface(paths[0], runs[0].weights_hash,
                                      SurfaceSettings(**COMPARE_SURFACE, runs=tuple(paths[1:3]))).surface
                trajs = plane_trajectories(tuple(paths[:3]), tuple(r.weights_hash for r in runs[:3]))
        except (ValueError, RunError) as e:
            show_error(e)
            return
        _shared_plane_fragment(surf, trajs, two_d=len(paths) >= 3)
        guide_link("pca-trajectories", "What a projected trajectory can and cannot show")


@st.fragment
def _compare_curves_fragment(histories: dict) -> None:
    from .training_figures import compare_curves

    c1, c2 = st.columns(2)
    metric = c1.selectbox("Curve", ["test_acc", "train_loss", "test_loss", "train_acc"], key="cmp_metric")
    x = c2.selectbox("x axis", ["epoch", "grad_evals", "step"], key="cmp_x")
    st.plotly_chart(compare_curves(histories, metric=metric, x=x), key="cmp_curves")


@st.fragment
def _shared_plane_fragment(surf: Surface, trajs: dict, two_d: bool) -> None:
    from .training_figures import shared_plane_figure

    kind = "contour"
    if two_d:
        kind = st.radio("View", ["contour", "3d"], horizontal=True, key="cmp_plane_kind")
        st.caption("The plane through the three final weight vectors (first run at the origin); every run's "
                   "trajectory is projected onto it.")
    else:
        st.caption("The line through the two final weight vectors: t = 0 is the first run, t = 1 the second.")
    fig = shared_plane_figure(surf, trajs if two_d else {}, kind=kind if two_d else "1d", log=two_d)
    st.plotly_chart(fig, key="cmp_plane")


def render_compare_page() -> None:
    """Draw the Compare optimizers page."""
    base, entries, budget = compare_form()
    if base is not None:
        try:
            n = dataset_size(base.dataset)
            steps = base.epochs * math.ceil(n / base.batch_size)
            per = step_seconds(base.to_dict())
            evals = sum(steps * (2 if e["optimizer"] in ("sam", "asam") else 1) for e in entries)
            if budget == "grad-evals":
                evals = steps * len(entries)
            st.caption(f"about {per * evals + 0.05 * base.epochs * len(entries):.1f} s "
                       f"({len(entries)} runs, {steps} steps each at equal steps)")
        except (ValueError, DataError) as e:
            show_error(e)
        if st.button("Run comparison", type="primary", key="cmp_go"):
            run_compare(base, entries, budget)
    last = st.session_state.get("cmp_last")
    if last:
        _show_compare(last)
