"""Architecture checks for uploads: which model the weights build, and on which data it is evaluated.

Weights are checked against the architecture (a run's ``run.json`` spec, a spec chosen by the user, or
one read off the layers structurally by :mod:`landscape_core.matching`) *on the meta device first*, so
a hostile spec asking for a billion-unit layer costs no memory: missing / unexpected keys and shape
mismatches are reported in one line. A dataset spec is re-normalised (its ``root`` folder dropped), so
a hostile ``run.json`` cannot point data loading at an arbitrary folder.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .data import DatasetSpec, analysis_subset
from .graph_import import GraphError, onnx_module, parse_onnx
from .matching import Inferred, MappingRow, MatchError, fill_missing, infer_architecture, match_state_dict
from .models import MODELS
from .runs import STEPS_KEY, TRAJ_FILE
from .upload_files import EVAL_SAMPLES, MAX_SPEC_LIST, UploadError, short_list
from .upload_tensors import check_finite


# --- architecture checks -----------------------------------------------------------------------
def normalise_spec(spec: Mapping[str, Any], input_shape: tuple[int, ...] | None, num_classes: int | None) -> dict:
    """``{"name", "kwargs"}`` with input_shape / num_classes filled from the dataset when absent."""
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise UploadError(f"model spec must be a dict with a 'name', got {spec!r}"[:200])
    name = spec["name"]
    if name not in MODELS:
        raise UploadError(f"unknown model {name!r}; choose from {', '.join(sorted(MODELS))}")
    kwargs = spec.get("kwargs")
    if kwargs is None:
        kwargs = {k: v for k, v in spec.items() if k != "name"}
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise UploadError("model spec 'kwargs' must be a dict of named arguments")
    try:
        kw = json.loads(json.dumps(dict(kwargs)))  # plain JSON values only (no objects smuggled in)
    except (TypeError, ValueError):
        raise UploadError("model spec 'kwargs' must hold plain JSON values") from None
    for k, v in kw.items():
        if isinstance(v, (list, dict)) and len(v) > MAX_SPEC_LIST:
            raise UploadError(f"model spec argument {k!r} has {len(v)} items; at most {MAX_SPEC_LIST} allowed")
    if "input_shape" not in kw and input_shape is not None:
        kw["input_shape"] = list(input_shape)
    if "num_classes" not in kw and num_classes is not None:
        kw["num_classes"] = int(num_classes)
    return {"name": name, "kwargs": kw}


def spec_str(spec: Mapping[str, Any]) -> str:
    """A spec in words, e.g. ``mlp(width=16, depth=2)`` (input shape and classes left out)."""
    kw = {k: v for k, v in spec["kwargs"].items() if k not in ("input_shape", "num_classes")}
    return f"{spec['name']}({', '.join(f'{k}={v}' for k, v in kw.items())})"


def _reference_state(spec: Mapping[str, Any]) -> dict[str, Tensor]:
    """The state dict the spec's model would have, built on the meta device (no memory, no init cost)."""
    try:
        with torch.device("meta"):
            model = MODELS[spec["name"]](**spec["kwargs"])
    except (TypeError, ValueError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UploadError(f"model spec {spec_str(spec)} does not build: {msg}") from None
    except Exception as e:  # e.g. absurd sizes in a hostile run.json
        raise UploadError(f"model spec {spec_str(spec)} does not build ({type(e).__name__})") from None
    return dict(model.state_dict())


def _match_state(state: Mapping[str, Tensor], spec: Mapping[str, Any]) -> dict[str, Tensor]:
    """Check keys, shapes and dtypes against the spec's model; return tensors cast to the model dtypes."""
    ref = _reference_state(spec)
    missing = [k for k in ref if k not in state]
    unexpected = [k for k in state if k not in ref]
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(ref[k].shape)}"
        for k in ref
        if k in state and tuple(state[k].shape) != tuple(ref[k].shape)
    ]
    dtypes = [
        f"{k}: {state[k].dtype} vs {ref[k].dtype}"
        for k in ref
        if k in state and state[k].is_floating_point() != ref[k].is_floating_point()
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {short_list(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {short_list(unexpected)}")
    if shapes:
        problems.append(f"shape mismatch {short_list(shapes, 2)}")
    if dtypes and not shapes:
        problems.append(f"dtype mismatch {short_list(dtypes, 2)}")
    if problems:
        raise UploadError(f"weights do not fit {spec_str(spec)}: " + "; ".join(problems))
    return {k: state[k].to(ref[k].dtype) for k in ref}


def check_trajectory(traj: Mapping[str, Tensor], params: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], Tensor]:
    """Trajectory snapshots of a run zip checked against the weights: ``(snapshots, steps)``."""
    traj = dict(traj)
    steps = traj.pop(STEPS_KEY, None)
    if steps is None or steps.ndim != 1:
        raise UploadError(f"{TRAJ_FILE} has no 1-D {STEPS_KEY} tensor")
    unknown = [k for k in traj if k not in params]
    if unknown:
        raise UploadError(f"{TRAJ_FILE} has snapshots of unknown tensors {short_list(unknown)}")
    s = len(steps)
    bad = [k for k, v in traj.items() if tuple(v.shape) != (s, *params[k].shape)]
    if bad:
        raise UploadError(f"{TRAJ_FILE}: snapshot shapes do not match the model ({short_list(bad)})")
    check_finite(traj)
    return {k: v.to(params[k].dtype) for k, v in traj.items()}, steps.to(torch.int64)


# --- dataset -----------------------------------------------------------------------------------
def import_dataset_spec(dataset: Mapping[str, Any] | str | None, meta_dataset: Any) -> DatasetSpec:
    """The dataset an import is evaluated on; a bare name equal to the run's own keeps the run's full spec."""
    if isinstance(dataset, str) and isinstance(meta_dataset, Mapping) and meta_dataset.get("name") == dataset:
        dataset = None
    src = dataset if dataset is not None else (meta_dataset if meta_dataset is not None else "digits")
    try:
        if isinstance(src, str):
            return DatasetSpec(name=src)
        if isinstance(src, Mapping):
            return DatasetSpec.from_dict({k: v for k, v in src.items() if k != "root"})
        if isinstance(src, DatasetSpec):
            return DatasetSpec.from_dict(src.to_dict())
    except (TypeError, ValueError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UploadError(f"bad dataset spec: {msg}") from None
    raise UploadError(f"dataset must be a name or a spec dict, got {type(src).__name__}")


def evaluate_import(model: nn.Module, bundle) -> dict[str, float]:
    """Loss and accuracy of the imported model on at most ``EVAL_SAMPLES`` examples per split, and the gaps."""
    from .functional import LossFunction

    out: dict[str, float] = {}
    for split, (X, y) in (("train", bundle.train), ("test", bundle.test)):
        Xs, ys = analysis_subset(X, y, EVAL_SAMPLES, seed=0)
        loss, acc = LossFunction(model, Xs, ys, batch_size=1024).evaluate()
        out[f"{split}_loss"], out[f"{split}_acc"] = float(loss), float(acc)
    out["gen_gap"] = out["test_loss"] - out["train_loss"]
    out["acc_gap"] = out["train_acc"] - out["test_acc"]
    return out


def guess_model_spec(state: Mapping[str, Tensor]) -> tuple[dict | None, str | None]:
    """Guess ``(model spec, dataset name)`` from tensor names and shapes (best effort, may be ``None``)."""
    keys = list(state)
    if any(k.startswith("layers.") for k in keys) and "conv.weight" in state and "fc.weight" in state:
        c, width = int(state["conv.weight"].shape[1]), int(state["conv.weight"].shape[0])
        k = int(state["fc.weight"].shape[0])
        ds = "cifar10" if c == 3 else "mnist"
        return {"name": "resnet20", "kwargs": {"width": width, "num_classes": k}}, ds
    if "features.0.weight" in state and state["features.0.weight"].ndim == 4:
        w = state["features.0.weight"]
        bn = any(k.endswith("running_mean") for k in keys)
        kw = {"channels": int(w.shape[0]), "batchnorm": bn, "activation": "relu"}
        ds = {1: "digits", 3: "cifar10"}.get(int(w.shape[1]))
        return {"name": "cnn", "kwargs": kw}, ds
    lin = sorted(
        (int(m.group(1)), k) for k in keys if (m := re.fullmatch(r"net\.(\d+)\.weight", k)) and state[k].ndim == 2
    )
    if lin:
        shapes = [tuple(state[k].shape) for _, k in lin]
        if all(shapes[i][0] == shapes[i + 1][1] for i in range(len(shapes) - 1)):
            widths = [s[0] for s in shapes[:-1]]
            d_in, k = shapes[0][1], shapes[-1][0]
            bn = any(x.endswith("running_mean") for x in keys)
            kw: dict[str, Any] = {"activation": "relu", "batchnorm": bn}
            if widths and all(w == widths[0] for w in widths):
                kw.update(width=widths[0], depth=len(widths))
            else:
                kw["widths"] = widths
            ds = {(64, 10): "digits", (784, 10): "mnist", (3072, 10): "cifar10", (2, 2): "moons", (2, 3): "spirals"}
            return {"name": "mlp", "kwargs": kw}, ds.get((d_in, k))
    try:  # renamed layouts (fc1/fc2, nn.Sequential, public CIFAR ResNets): read off the layer structure
        inf = infer_architecture(state)
    except MatchError:
        return None, None
    return {"name": inf.name, "kwargs": dict(inf.kwargs)}, embedded_default(registry_plan(inf))


_EMBEDDED = {  # (flattened input size, classes) -> embedded dataset whose input fits
    (64, 10): "digits", (2, 2): "moons", (2, 3): "spirals", (784, 10): "mnist", (3072, 10): "cifar10",
}
_EMBEDDED_SHAPES = {"digits": (1, 8, 8), "moons": (2,), "spirals": (2,), "mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


def load_onnx_upload(buf: bytes) -> tuple[nn.Module, Any]:
    """An ONNX upload as ``(torch module, parsed proto)``; graph errors become :class:`UploadError`."""
    try:
        proto = parse_onnx(buf)
        return onnx_module(proto), proto
    except GraphError as e:
        raise UploadError(str(e)) from None


@dataclass
class ModelPlan:
    """How to build the model once the data's input shape is known."""

    name: str
    kwargs: dict  # without input_shape / num_classes
    num_classes: int | None
    fits: Callable[[tuple[int, ...]], str | None]  # input shape -> None or why it does not fit
    notes: list[str]


def registry_plan(inf: Inferred) -> ModelPlan:
    """A :class:`ModelPlan` for a registry architecture read off the weights (what input shapes it takes)."""
    def fits(shape: tuple[int, ...]) -> str | None:
        if inf.name == "mlp":
            return None if math.prod(shape) == inf.in_features else f"the model takes {inf.in_features} input features"
        if len(shape) != 3 or shape[0] != inf.in_features:
            return f"the model takes images with {inf.in_features} channels (C, H, W)"
        if inf.name == "cnn" and (shape[1] // 4) * (shape[2] // 4) != inf.spatial:
            return f"the model's head expects images of {4 * math.isqrt(inf.spatial or 0)}x{4 * math.isqrt(inf.spatial or 0)}"
        return None

    return ModelPlan(inf.name, dict(inf.kwargs), inf.num_classes, fits, list(inf.notes))


def embedded_default(plan: ModelPlan) -> str | None:
    """The embedded dataset whose input shape and classes fit the plan, or ``None``."""
    for (size, k), name in _EMBEDDED.items():
        if (plan.num_classes is None or plan.num_classes == k) and plan.fits(_EMBEDDED_SHAPES[name]) is None:
            if size == math.prod(_EMBEDDED_SHAPES[name]):
                return name
    return None


def first_line(e: BaseException) -> str:
    """The informative line of an exception's message (torch puts it second), at most 200 characters."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return (lines[1] if len(lines) > 1 else (lines[0] if lines else type(e).__name__))[:200]


def probe_outputs(model: nn.Module, in_shape: tuple[int, ...]) -> int:
    """Run the model on zero batches of 2 and 3 examples: outputs must be ``(batch, K)``; returns K."""
    ks = []
    for b in (2, 3):
        try:
            with torch.no_grad():
                out = model(torch.zeros(b, *in_shape))
        except Exception as e:  # a foreign graph can fail in many ways
            raise UploadError(f"the model does not run on a batch of {b} inputs of shape {in_shape} "
                              f"({type(e).__name__}: {first_line(e)}); export it with a dynamic batch size") from None
        if not isinstance(out, Tensor) or out.ndim != 2 or out.shape[0] != b:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise UploadError(f"the model's output on a batch of {b} is {got}; expected (batch, classes) logits")
        ks.append(int(out.shape[1]))
    return ks[0]


def fit_state(state: dict[str, Tensor], spec: dict) -> tuple[dict[str, Tensor], tuple[MappingRow, ...], bool, list[str]]:
    """Tensors under the model's keys, by name when the keys are the model's own, else structurally."""
    ref = _reference_state(spec)
    if set(state) == set(ref):
        out = _match_state(state, spec)
        return out, tuple(MappingRow(k, k, tuple(v.shape)) for k, v in out.items()), False, []
    try:
        res = match_state_dict(state, spec)
    except MatchError as e:
        if 2 * len(set(state) & set(ref)) >= len(state):  # mostly our own layout: name missing / added keys
            _match_state(state, spec)
        raise UploadError(f"weights do not fit {spec_str(spec)}: {e}") from None
    bad = [r.file_key for r in res.rows if state[r.file_key].is_floating_point() != ref[r.model_key].is_floating_point()]
    if bad:
        raise UploadError(f"weights do not fit {spec_str(spec)}: dtype mismatch {bad[0]}")
    mapped = fill_missing(state, res)
    return {k: v.to(ref[k].dtype) for k, v in mapped.items()}, res.rows, True, list(res.notes)
