"""The ``python -m landscape_core train ...`` command line that retrains a run with identical settings.

Read from the run's ``run.json`` (its ``config``); reports print it under "Settings to reproduce".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_FLAG = {  # TrainConfig field -> train CLI flag
    "model": "--model", "width": "--width", "depth": "--depth", "activation": "--activation",
    "channels": "--channels", "optimizer": "--optimizer", "lr": "--lr", "momentum": "--momentum",
    "weight_decay": "--weight-decay", "rho": "--rho", "batch_size": "--batch-size", "epochs": "--epochs",
    "schedule": "--schedule", "seed": "--seed", "init_seed": "--init-seed", "max_grad_evals": "--max-grad-evals",
    "snapshots": "--snapshots", "sharpness_every": "--sharpness-every", "sharpness_samples": "--sharpness-samples",
    "device": "--device", "heads": "--heads", "beta2": "--beta2", "eval_every": "--eval-every",
}
_BOOL_FLAG = {"batchnorm": "--batchnorm", "nesterov": "--nesterov", "adaptive": "--adaptive"}
_DATA_FLAG = {"name": "--dataset", "seed": "--data-seed", "train_size": "--train-size", "test_size": "--test-size",
              "n_samples": "--n-samples", "noise": "--noise", "modulus": "--modulus", "seq_len": "--seq-len",
              "test_fraction": "--test-fraction"}


def retrain_command(meta: Mapping[str, Any]) -> str:
    """The ``python -m landscape_core train ...`` command that retrains a run with identical settings."""
    cfg = meta.get("config")
    if not isinstance(cfg, Mapping):
        raise ValueError(f"run {meta.get('name')!r} stores no training config (not trained by this tool)")
    parts = ["python", "-m", "landscape_core", "train"]
    for k, flag in _DATA_FLAG.items():
        v = (cfg.get("dataset") or {}).get(k)
        if v is not None:
            parts += [flag, _arg(v)]
    for k, flag in _FLAG.items():
        v = cfg.get(k)
        if v is not None:
            parts += [flag, _arg(v)]
    for k, flag in _BOOL_FLAG.items():
        if cfg.get(k):
            parts.append(flag)
    parts += ["--name", _arg(meta.get("name", "run"))]
    return " ".join(parts)


def _arg(v: Any) -> str:
    s = repr(v) if isinstance(v, float) else str(v)
    return s if s and all(c.isalnum() or c in "._-+:/" for c in s) else "'" + s.replace("'", "'\\''") + "'"


__all__ = ["retrain_command"]
