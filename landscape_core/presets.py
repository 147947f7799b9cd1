"""One-click classic optimizer comparisons (presets) on digits (or a local MNIST copy), from one initialisation.

Presets:

- ``adam-vs-sgd``: Adam with its default learning rate (1e-3) vs SGD with a high learning rate vs SGD
  with a low learning rate and a high weight decay (the comparison of Wilson et al. 2017, "The marginal
  value of adaptive gradient methods", and of Keskar & Socher 2017, at toy scale).
- ``sgd-sam-adam``: SGD vs SAM (Foret et al. 2021) vs Adam.

Every configuration starts from the same initial weights and sees the same mini-batch order. A
comparison is made either at equal optimizer *steps* or at equal *gradient evaluations* (``budget``):
SAM costs two gradient evaluations per step, so at equal gradient evaluations it takes half the steps.
The result states which one it is. For each run the table gives test accuracy, lambda_max, Hessian
trace (with standard error), generalization gap and time per epoch, plus a small 2-D loss surface
(filter-normalised random directions, same seed for every run). The numbers are reported as measured.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .progress import ProgressFn

#: Shared model and data settings: the shipped demo architecture (MLP 64-64-64, tanh) on digits.
BASE: dict[str, Any] = {"model": "mlp", "width": 64, "depth": 3, "activation": "tanh", "batch_size": 64,
                        "momentum": 0.9, "seed": 0, "snapshots": 12}
_MNIST = {"name": "mnist", "train_size": 6000, "test_size": 2000}


@dataclass(frozen=True)
class Preset:
    """A named comparison: ``entries`` are ``(label, TrainConfig overrides)``."""

    name: str
    title: str
    description: str
    entries: tuple[tuple[str, dict], ...]


PRESETS: dict[str, Preset] = {
    "adam-vs-sgd": Preset(
        "adam-vs-sgd", "Adam vs SGD (high LR) vs SGD (low LR, high weight decay)",
        "Adam at its default learning rate 1e-3; SGD with momentum at a high learning rate (0.1); SGD with "
        "momentum at a low learning rate (0.01) with a high weight decay (5e-3).",
        (("adam lr=1e-3", {"optimizer": "adam", "lr": 1e-3}),
         ("sgd lr=0.1", {"optimizer": "sgd", "lr": 0.1}),
         ("sgd lr=0.01 wd=5e-3", {"optimizer": "sgd", "lr": 0.01, "weight_decay": 5e-3})),
    ),
    "sgd-sam-adam": Preset(
        "sgd-sam-adam", "SGD vs SAM vs Adam",
        "SGD with momentum (lr 0.05); SAM over the same SGD (lr 0.05, rho 0.05); Adam (lr 1e-3).",
        (("sgd lr=0.05", {"optimizer": "sgd", "lr": 0.05}),
         ("sam lr=0.05 rho=0.05", {"optimizer": "sam", "lr": 0.05, "rho": 0.05}),
         ("adam lr=1e-3", {"optimizer": "adam", "lr": 1e-3})),
    ),
}
#: Columns of a preset's table.
COLUMNS: tuple[str, ...] = (
    "configuration", "optimizer", "lr", "weight_decay", "rho", "budget", "steps", "grad_evals", "test_acc",
    "train_acc", "lambda_max", "trace", "trace_stderr", "gen_gap", "acc_gap", "seconds_per_epoch", "run_path",
)


def mnist_available() -> bool:
    """Whether a local MNIST copy exists (presets never download)."""
    from .data import data_root

    raw = data_root() / "MNIST" / "raw"
    return raw.is_dir() and any(raw.iterdir())


def preset_datasets() -> list[str]:
    """Datasets the presets can use here: ``digits`` always, ``mnist`` when a local copy exists."""
    return ["digits"] + (["mnist"] if mnist_available() else [])


@dataclass(frozen=True)
class PresetResult:
    """A finished preset comparison.

    Attributes:
        name, title, description: the preset.
        budget: ``"steps"`` or ``"grad-evals"``; ``statement``: the sentence saying what was held equal.
        dataset, epochs: what was trained.
        rows: one row per configuration (:data:`COLUMNS`).
        surfaces: ``{configuration: SurfaceResult dict}`` (empty when surfaces were not asked).
        summary: plain statements of what came out (best test accuracy, smallest lambda_max, ...).
        out_dir: where the runs are.
    """

    name: str
    title: str
    description: str
    budget: str
    statement: str
    dataset: str
    epochs: int
    rows: tuple[dict, ...]
    surfaces: dict = field(default_factory=dict)
    summary: tuple[str, ...] = ()
    out_dir: str = ""

    def table(self) -> list[dict]:
        return [{c: r.get(c) for c in COLUMNS} for r in self.rows]

    def to_dict(self) -> dict:
        return {"name": self.name, "title": self.title, "description": self.description, "budget": self.budget,
                "statement": self.statement, "dataset": self.dataset, "epochs": self.epochs,
                "rows": self.table(), "surfaces": dict(self.surfaces), "summary": list(self.summary),
                "out_dir": self.out_dir}


def preset_configs(name: str, *, budget: str = "steps", epochs: int = 15, dataset: str = "digits") -> list:
    """``[(label, TrainConfig, budget_info)]`` of a preset: same init and batch order for all entries."""
    from .data import load_dataset
    from .training import TrainConfig

    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    if budget not in ("steps", "grad-evals"):
        raise ValueError(f"budget must be 'steps' or 'grad-evals', got {budget!r}")
    if not (isinstance(epochs, int) and epochs >= 1):
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if dataset == "digits":
        ds: dict = {"name": "digits"}
    elif dataset == "mnist":
        if not mnist_available():
            raise ValueError("dataset 'mnist' needs a local copy (presets never download); use 'digits'")
        ds = dict(_MNIST)
    else:
        raise ValueError(f"presets run on 'digits' or 'mnist', got {dataset!r}")
    base = TrainConfig.from_dict({**BASE, "dataset": ds, "epochs": epochs})
    n_train = len(load_dataset(base.dataset).train[1])
    steps = epochs * math.ceil(n_train / base.batch_size)
    out = []
    for label, ov in PRESETS[name].entries:
        cfg = base.replace(**ov)
        if budget == "grad-evals":
            cfg = cfg.replace(max_grad_evals=steps)
        run_steps = steps if budget == "steps" else steps // cfg.grad_evals_per_step
        info = {"kind": budget, "steps": run_steps, "grad_evals": run_steps * cfg.grad_evals_per_step,
                "reference_steps": steps}
        out.append((label, cfg, info))
    return out


def _statement(budget: str, infos: list[dict]) -> str:
    if budget == "steps":
        s = infos[0]["steps"]
        extra = [f"{i['label']}: {i['grad_evals']}" for i in infos if i["grad_evals"] != s]
        return (f"Compared at equal optimizer steps ({s} steps each); gradient evaluations differ"
                + (f" ({'; '.join(extra)} instead of {s})" if extra else " nowhere (no SAM run)") + ".")
    g = infos[0]["grad_evals"]
    extra = [f"{i['label']}: {i['steps']} steps" for i in infos if i["steps"] != infos[0]["reference_steps"]]
    if not extra:
        return f"Compared at equal gradient evaluations ({g} each; no SAM run here, so the step counts are equal too)."
    return f"Compared at equal gradient evaluations ({g} each; SAM spends 2 per step, so {'; '.join(extra)})."


def _summary(rows: list[dict]) -> tuple[str, ...]:
    out = []

    def best(key: str, fn: Callable, word: str) -> None:
        ok = [r for r in rows if r.get(key) is not None and math.isfinite(r[key])]
        if ok:
            r = fn(ok, key=lambda r: r[key])
            out.append(f"{word}: {r['configuration']} ({key} = {r[key]:.4g}).")

    best("test_acc", max, "Highest test accuracy")
    best("lambda_max", min, "Smallest lambda_max (flattest by the top eigenvalue)")
    best("trace", min, "Smallest Hessian trace")
    best("gen_gap", min, "Smallest generalization gap (test - train loss)")
    return tuple(out)


def run_preset(
    name: str,
    *,
    out_dir: str | os.PathLike,
    budget: str = "steps",
    epochs: int = 15,
    dataset: str = "digits",
    samples: int | None = 512,
    grid: int = 21,
    surfaces: bool = True,
    trace_probes: int = 20,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PresetResult:
    """Train a preset's configurations, measure sharpness, and compute small surfaces.

    Runs are saved as ``out_dir/<preset>-<k>-<optimizer>``; an existing run folder with the identical
    config is reused instead of retrained.

    Args:
        name: a key of :data:`PRESETS`.
        out_dir: where the runs go.
        budget: ``"steps"`` (equal optimizer steps) or ``"grad-evals"`` (equal gradient evaluations).
        epochs: training epochs (the step budget is ``epochs * steps_per_epoch``).
        dataset: ``"digits"`` or ``"mnist"`` (local copy only).
        samples: training examples for lambda_max, trace and surfaces.
        grid: surface points per axis (``surfaces=False`` skips them).
        trace_probes: Hutchinson probes for the trace.
        progress: ``progress(fraction, message)``.
        should_stop: stops between (and inside) trainings; raises ``ValueError`` when stopped.
    """
    from .runs import RunError, load_run, read_meta
    from .sweep import measure_run
    from .training import TrainConfig, train

    entries = preset_configs(name, budget=budget, epochs=epochs, dataset=dataset)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = len(entries)
    per_run = 3 if surfaces else 2
    total = n * per_run

    def report(done: float, msg: str) -> None:
        if progress is not None:
            progress(min(done / total, 1.0), msg)

    rows, surf, infos = [], {}, []
    for k, (label, cfg, info) in enumerate(entries):
        folder = out / f"{name}-{k + 1}-{cfg.optimizer}"
        run = None
        if folder.is_dir():
            try:
                old = read_meta(folder).get("config")
                # through from_dict: a run saved before a config field existed compares with its default
                if isinstance(old, dict) and TrainConfig.from_dict(old).to_dict() == cfg.to_dict():
                    run = load_run(folder)
            except RunError:
                run = None
            if run is None:
                from .runs import unique_run_path

                folder = unique_run_path(out, folder.name)
        if run is None:
            def sub(i: dict, k: int = k, label: str = label) -> None:
                report(k * per_run + float(i.get("fraction", 0.0)), f"[{label}] {i.get('message', '')}")

            res = train(cfg, progress=sub, should_stop=should_stop, path=folder, extra_meta={
                "budget": info, "preset": {"name": name, "configuration": label}})
            if res.cancelled:
                raise ValueError(f"preset {name!r} stopped during {label!r}")
            run = load_run(res.path)
        report(k * per_run + 1, f"[{label}] measuring lambda_max and trace")
        m = measure_run(run, {"measures": ["lambda_max", "trace"], "samples": samples, "lanczos_iters": 80,
                              "trace_probes": trace_probes, "seed": 0})
        meta = run.meta
        fin = meta.get("final") or {}
        rows.append({
            "configuration": label, "optimizer": cfg.optimizer, "lr": cfg.lr, "weight_decay": cfg.weight_decay,
            "rho": cfg.rho if cfg.optimizer in ("sam", "asam", "sam-adam") else None, "budget": budget,
            "steps": meta.get("steps"), "grad_evals": meta.get("grad_evals"),
            "test_acc": fin.get("test_acc"), "train_acc": fin.get("train_acc"),
            "lambda_max": m["lambda_max"], "trace": m["trace"], "trace_stderr": m["trace_stderr"],
            "gen_gap": fin.get("gen_gap"), "acc_gap": fin.get("acc_gap"),
            "seconds_per_epoch": (meta.get("timings") or {}).get("seconds_per_epoch"), "run_path": str(run.path),
        })
        infos.append({**info, "label": label, "steps": meta.get("steps"), "grad_evals": meta.get("grad_evals")})
        if surfaces:
            from .analyses.surface import compute_surface

            report(k * per_run + 2, f"[{label}] {grid}x{grid} loss surface")
            surf[label] = compute_surface(run, dims=2, directions="random", grid=grid, span=1.0, samples=samples,
                                          seed=0).to_dict()
    report(total, f"preset {name} done")
    p = PRESETS[name]
    return PresetResult(name=name, title=p.title, description=p.description, budget=budget,
                        statement=_statement(budget, infos), dataset=dataset, epochs=epochs, rows=tuple(rows),
                        surfaces=surf, summary=_summary(rows), out_dir=str(out))


#: The grokking lab (Power et al. 2022; Nanda et al. 2023): a 1-block Transformer on ``a + b mod p`` with
#: full-batch AdamW and strong weight decay. Measured here (seed 0, one CPU thread, ~105 s for 2000
#: steps): train accuracy >= 0.99 at step 100; test accuracy sits at ~0.5 (the share of test pairs
#: answered right by memorisation-level features) while the weight norm falls from 57 to ~22, then
#: passes 0.95 at step 1060. After saturation the train loss spikes every ~150 steps (train accuracy
#: briefly drops, sometimes below 0.1): the "slingshot" of Adam near zero loss (Thilak et al. 2022), and
#: here the test jump follows such spikes: with a cosine schedule (spikes gone after ~800 steps) or
#: without LayerNorm (no spikes) test accuracy stayed ~0.5 for 2000 steps; ``beta2=0.98`` did not
#: remove them. A run can therefore end on a spike: read the curves, not just the final numbers.
GROKKING: dict[str, Any] = {
    "modulus": 47, "train_fraction": 0.5, "width": 64, "heads": 4, "depth": 1, "lr": 3e-3, "weight_decay": 1.0,
    "epochs": 2000, "eval_every": 10, "snapshots": 40, "sharpness_every": 100, "sharpness_samples": 256,
    "seed": 0,
}


def grokking_config(**overrides: Any):
    """The grokking lab's :class:`~landscape_core.training.TrainConfig` (full batch: one step per epoch).

    Args:
        overrides: any key of :data:`GROKKING` (``modulus``, ``train_fraction``, ``epochs``, ...) or of
            ``TrainConfig``.
    """
    from .data import load_dataset
    from .training import TrainConfig

    s = {**GROKKING, **overrides}
    frac = float(s.pop("train_fraction"))
    if not 0.05 <= frac <= 0.95:
        raise ValueError(f"train_fraction must be in [0.05, 0.95], got {frac}")
    ds = {"name": "modular_addition", "modulus": int(s.pop("modulus")), "test_fraction": round(1.0 - frac, 6),
          "seed": s["seed"]}
    n_train = len(load_dataset(ds).train[1])
    return TrainConfig.from_dict({"dataset": ds, "model": "transformer", "optimizer": "adamw",
                                  "batch_size": n_train, **s})


def grokking_summary(history: list[dict], *, train_level: float = 0.99, test_level: float = 0.95) -> dict:
    """When train accuracy saturated and when test accuracy jumped, from a run's per-epoch history.

    Returns:
        ``{"train_saturated_step", "test_jump_step", "delay_steps", "final_train_acc", "final_test_acc",
        "weight_norm_start", "weight_norm_at_jump"}``; a step is ``None`` when the level was never reached.
    """
    def first(key: str, level: float) -> dict | None:
        return next((r for r in history if r.get(key) is not None and r[key] >= level), None)

    sat, jump = first("train_acc", train_level), first("test_acc", test_level)
    last = history[-1] if history else {}
    return {
        "train_saturated_step": None if sat is None else sat["step"],
        "test_jump_step": None if jump is None else jump["step"],
        "delay_steps": None if sat is None or jump is None else jump["step"] - sat["step"],
        "final_train_acc": last.get("train_acc"), "final_test_acc": last.get("test_acc"),
        "weight_norm_start": history[0].get("weight_norm") if history else None,
        "weight_norm_at_jump": None if jump is None else jump.get("weight_norm"),
    }


def preset_info() -> list[Mapping[str, Any]]:
    """Name, title and description of every preset (for menus)."""
    return [{"name": p.name, "title": p.title, "description": p.description,
             "configurations": [label for label, _ in p.entries]} for p in PRESETS.values()]


__all__ = ["BASE", "COLUMNS", "GROKKING", "PRESETS", "Preset", "PresetResult", "grokking_config", "grokking_summary",
           "mnist_available", "preset_configs", "preset_datasets", "preset_info", "run_preset"]
