"""Safe checkpoint import, the pipeline: an untrusted file in, a run folder and an :class:`ImportReport` out.

The steps live in their own modules: :mod:`~landscape_core.upload_files` (size, kind by content),
:mod:`~landscape_core.upload_zip` (zip checks before extraction), :mod:`~landscape_core.upload_tensors`
(weights-only loading, wrappers, prefixes), :mod:`~landscape_core.upload_arch` (architecture and data
checks) and :mod:`~landscape_core.upload_report` (the report). Nothing uploaded is ever executed or
unpickled freely (docs/SECURITY.md); files are written only inside the workspace, the run folder
through the atomic :func:`landscape_core.runs.save_run`; on refusal nothing is written.

Public API: :func:`import_checkpoint` (write a run folder, return the :class:`ImportReport`),
:func:`import_upload` (the same, returning the path), :func:`inspect_upload` (describe a file for the
UI), :func:`import_report` (the report stored with a run) and :class:`UploadError`.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .data import DataError, analysis_subset, load_dataset
from .graph_import import (
    GRAPH_FILE,
    MODEL_DEF,
    ONNX_MODEL,
    GraphError,
    build_model_def,
    file_sha256,
    graph_io,
    parse_model_def,
)
from .health import check_import
from .matching import MappingRow, MatchError, infer_architecture
from .models import MODELS
from .params import weights_hash
from .runs import RUN_JSON, RunError, read_meta, save_run, unique_run_path, validate_run_name, workspace_dir
from .upload_arch import (
    ModelPlan,
    check_trajectory,
    embedded_default,
    evaluate_import,
    first_line,
    fit_state,
    guess_model_spec,
    import_dataset_spec,
    load_onnx_upload,
    normalise_spec,
    probe_outputs,
    registry_plan,
    spec_str,
)
from .upload_files import (
    ACCEPTED_KINDS,
    ACCEPTED_SUFFIXES,
    EVAL_SAMPLES,
    MAX_BYTES,
    UploadError,
    classify,
    read_input,
)
from .upload_report import FORMAT_NAMES, ImportReport, import_report
from .upload_tensors import check_finite, clean_state, load_state, run_zip_contents, zip_user_data
from .upload_zip import extract_run_zip, read_run_zip
from .user_data import (
    DATA_FILE,
    USER_DATA,
    UserDataError,
    UserDataSpec,
    bundle_from_arrays,
    fit_user_data,
    npz_bytes,
    read_user_data,
)


# --- public API --------------------------------------------------------------------------------
def _safe_stem(filename: str) -> str:
    stem = Path(str(filename).replace("\\", "/")).name
    for suf in ACCEPTED_SUFFIXES:
        if stem.lower().endswith(suf):
            stem = stem[: -len(suf)]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.")[:60]
    return stem or "upload"


def inspect_upload(filename: str, data: Any, *, max_bytes: int = MAX_BYTES) -> dict:
    """Describe an upload without importing it: kind, tensors, and a guessed model spec.

    Returns a JSON-able dict ``{"kind", "filename", "bytes", "num_tensors", "num_params",
    "tensors": [{"name", "shape", "dtype"}], "prefix_stripped", "wrapper", "guessed_model",
    "guessed_dataset", "meta"}``. ``guessed_model`` is a spec dict (e.g. MLP widths read off the Linear
    shapes, or a structural match of renamed layers) or ``None``; the activation of an MLP cannot be
    read from weights, so it is a guess (``relu``). For an ONNX graph the tensors are its parameters
    after conversion. Raises :class:`UploadError` for anything :func:`import_upload` would refuse on
    format grounds.
    """
    buf = read_input(data, max_bytes)
    kind = classify(filename, buf)
    meta, wrapper = None, None
    if kind == "run_zip":
        meta, state, _, _ = run_zip_contents(read_run_zip(buf, max_bytes))
    elif kind == "onnx":
        state = dict(load_onnx_upload(buf)[0].state_dict())
    else:
        state, wrapper = load_state(kind, buf, max_bytes)
    state, stripped = clean_state(state)
    if meta:
        guess, ds = meta.get("model"), meta.get("dataset", {}).get("name")
    elif kind == "onnx":
        guess, ds = None, None
    else:
        guess, ds = guess_model_spec(state)
    return {
        "kind": kind,
        "filename": Path(str(filename)).name,
        "bytes": len(buf),
        "num_tensors": len(state),
        "num_params": int(sum(v.numel() for v in state.values())),
        "tensors": [{"name": k, "shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")}
                    for k, v in state.items()],
        "prefix_stripped": stripped,
        "wrapper": wrapper,
        "guessed_model": guess,
        "guessed_dataset": ds,
        "meta": meta,
    }


def import_checkpoint(
    filename: str,
    data: bytes | str | os.PathLike | Any,
    *,
    workspace: str | os.PathLike | None = None,
    model_spec: Mapping[str, Any] | None = None,
    dataset: Mapping[str, Any] | str | None = None,
    user_data: bytes | str | os.PathLike | None = None,
    user_data_name: str | None = None,
    label_column: str = "label",
    activation: str | None = None,
    model_def: str | None = None,
    model_args: Mapping[str, Any] | None = None,
    name: str | None = None,
    max_bytes: int = MAX_BYTES,
    require_spec: bool = False,
) -> ImportReport:
    """Validate a checkpoint, match it to an architecture, and write it as a run folder.

    The format is decided by content (magic number, zip entries): run zips, state dicts (safetensors;
    torch.save files ``.pt/.pth/.th/.bin/.ckpt``, plain, wrapped ``{"state_dict"|"model"|...: ...}`` or
    Lightning), ONNX graphs. State dicts are matched to the registry structurally
    (:mod:`landscape_core.matching`); ONNX graphs become torch modules
    (:mod:`landscape_core.graph_import`); ``model_def`` (``file.py:Class``, CLI and Python API only:
    the file is executed) loads a state dict into the user's own class.

    Args:
        filename: the upload's original name (its extension names the format family).
        data: bytes, a path, or a file-like object with ``getvalue()``/``read()``.
        workspace: where the run folder goes (default :func:`landscape_core.runs.workspace_dir`).
        model_spec: the architecture (``{"name", "kwargs"}`` or flat); default: read off the weights.
        dataset: embedded dataset name or spec; default: the run's own (zip), else the embedded
            dataset whose input shape fits the model.
        user_data: the user's own ``.npz`` / ``.csv`` (bytes or path), stored in the run as ``data.npz``.
        user_data_name: the data file's name (default: from the path).
        label_column: label column of a ``.csv``.
        activation: MLP/CNN activation (not visible in weights; default ``relu``, and the report says so).
        model_def: trusted local model definition ``path.py:ClassName`` (never for web uploads).
        model_args: keyword arguments of ``model_def``'s class.
        name: run name (default from the file); made unique.
        max_bytes: size limit (zips may expand to twice this).
        require_spec: refuse a bare state dict without ``model_spec`` (the old behaviour).

    Returns:
        The :class:`ImportReport` (also stored in ``run.json`` under ``import``).

    Raises:
        UploadError: a one-line reason; nothing is written then.
    """
    if name is not None:
        try:
            validate_run_name(name)
        except ValueError as e:
            raise UploadError(str(e)) from None
    buf = read_input(data, max_bytes)
    kind = classify(filename, buf)
    if model_def is not None:
        if kind not in ("pt", "safetensors"):
            raise UploadError("a model definition (--model-def) goes with a state dict (.pt/.safetensors...), "
                              f"not with {FORMAT_NAMES[kind]}")
        try:
            def_path, _ = parse_model_def(model_def)
        except GraphError as e:
            raise UploadError(str(e)) from None
        if not def_path.is_file():
            raise UploadError(f"model definition file {str(def_path)!r} not found")
    ud = None
    if user_data is not None:
        try:
            ud = read_user_data(user_data_name or str(user_data if isinstance(user_data, (str, os.PathLike))
                                                      else "data"), user_data, label=label_column)
        except UserDataError as e:
            raise UploadError(str(e)) from None
    ws = Path(workspace_dir(workspace))
    ws.mkdir(parents=True, exist_ok=True)
    ws = ws.resolve()

    traj = None
    meta_in: dict | None = None
    wrapper, stripped = None, None
    notes: list[str] = []
    graph_bytes: bytes | None = None
    module: nn.Module | None = None
    zip_extras: dict[str, bytes] = {}
    if kind == "run_zip":
        meta_in, state, traj, zip_extras = run_zip_contents(extract_run_zip(buf, ws, max_bytes))
        if model_spec is None and meta_in["model"].get("name") == ONNX_MODEL:  # an imported graph run, re-uploaded
            graph_bytes = zip_extras.get(GRAPH_FILE)
            if graph_bytes is None:
                raise UploadError(f"run zip has an ONNX model but no {GRAPH_FILE}")
            want = (meta_in["model"].get("kwargs") or {}).get("sha256")
            if want != hashlib.sha256(graph_bytes).hexdigest():
                raise UploadError(f"{GRAPH_FILE} in the zip does not match the SHA-256 in {RUN_JSON}")
            module, proto = load_onnx_upload(graph_bytes)
    elif kind == "onnx":
        module, proto = load_onnx_upload(buf)
        graph_bytes = buf
        state = {k: v.detach() for k, v in module.state_dict().items()}
    else:
        state, wrapper = load_state(kind, buf, max_bytes)
    state, stripped = clean_state(state)
    if not state:
        raise UploadError("the file holds no tensors")
    check_finite(state)
    fmt = FORMAT_NAMES[kind]
    if wrapper:
        fmt += f", weights under {wrapper!r}" + (" (Lightning checkpoint)" if wrapper == "state_dict" else "")
    if stripped:
        fmt += f", prefix {stripped!r} stripped"

    # ---- what the model needs from the data
    plan: ModelPlan | None = None
    spec: dict | None = None
    if kind == "run_zip":
        spec_src = model_spec if model_spec is not None else meta_in.get("model")
    elif kind == "onnx":
        try:
            in_dims, out_dims = graph_io(proto)
        except GraphError as e:
            raise UploadError(str(e)) from None
        k_out = out_dims[-1] if out_dims and out_dims[-1] else None

        def onnx_fits(shape: tuple[int, ...], dims=in_dims) -> str | None:
            ok = len(shape) == len(dims) and all(d is None or d == s for d, s in zip(dims, shape))
            return None if ok else f"the graph's input is {tuple('?' if d is None else d for d in dims)}"

        plan = ModelPlan(ONNX_MODEL, {}, k_out, onnx_fits, [f"ONNX opset {max(o.version for o in proto.opset_import)}, "
                                                        f"{len(proto.graph.node)} nodes"])
        spec_src = None
    elif model_def is not None:
        spec_src = None
        plan = ModelPlan(MODEL_DEF, dict(model_args or {}), None, lambda shape: None,
                     [f"model definition {model_def} (trusted local code)"])
    else:
        spec_src = model_spec
        if spec_src is None:
            if require_spec:
                guess, _ = guess_model_spec(state)
                hint = f"; the shapes suggest {spec_str(normalise_spec(guess, None, None))}" if guess else ""
                raise UploadError(f"a bare state dict needs an architecture: choose a model (name and settings){hint}")
            try:
                plan = registry_plan(infer_architecture(state, activation=activation))
            except MatchError as e:
                raise UploadError(f"no registry architecture matches: {e}") from None

    # ---- the data: the user's own, a named dataset, the run's own, or the embedded one that fits
    bundle = None
    extra_files: dict[str, bytes] = {}
    ds_meta: dict | None = None
    data_desc = ""
    ud_shape = tuple(int(s) for s in ud.X.shape[1:]) if ud is not None else None
    zip_ds = meta_in.get("dataset") if meta_in else None
    if ud is None and dataset is None and isinstance(zip_ds, dict) and zip_ds.get("name") == USER_DATA:
        bundle, ds_meta, blob = zip_user_data(zip_ds, zip_extras.get(DATA_FILE))
        extra_files[DATA_FILE] = blob
        in_shape, classes = tuple(bundle.input_shape), bundle.num_classes
        data_desc = f"the run's own data {UserDataSpec.from_dict(ds_meta).describe()}"
    elif ud is None:
        if dataset is None and meta_in is None and plan is not None:
            dataset = embedded_default(plan)
            if dataset is None:
                raise UploadError(
                    "no embedded dataset fits this model's input; give your own data "
                    "(--data FILE.npz with X, y, or a .csv) or name a dataset"
                )
            notes.append(f"dataset {dataset!r} chosen because its input fits the model")
        if dataset is None and meta_in is None and model_def is None and spec_src is None:
            dataset = "digits"
        if dataset is None and model_def is not None:
            raise UploadError("a model definition needs data to know the input: give --data FILE or --dataset NAME")
        ds_spec = import_dataset_spec(dataset, meta_in.get("dataset") if meta_in else None)
        try:
            bundle = load_dataset(ds_spec)
        except DataError as e:
            if kind != "run_zip":
                raise UploadError(f"dataset {ds_spec.name!r} is not available: {str(e).splitlines()[0]}; "
                                  f"give your own data with --data") from None
        except ValueError as e:
            raise UploadError(f"bad dataset spec: {str(e).splitlines()[0]}") from None
        ds_meta = ds_spec.to_dict()
        in_shape = tuple(bundle.input_shape) if bundle else None
        classes = bundle.num_classes if bundle else None
        if bundle is not None:
            data_desc = (f"embedded dataset {ds_spec.name!r}: {len(bundle.train[1])} train + {len(bundle.test[1])} "
                         f"test examples of shape {in_shape}")
    else:
        in_shape, classes = ud_shape, None
    if plan is not None and in_shape is not None:
        why = plan.fits(in_shape)
        if why is not None:
            where = f"data {ud.source!r} has examples of shape {in_shape}" if ud is not None else (
                f"dataset {ds_meta['name']!r} has input {in_shape}")
            raise UploadError(f"{where}, but {why}")

    # ---- the model
    mapping: tuple[MappingRow, ...]
    renamed = False
    if kind == "run_zip" and module is not None:  # a re-uploaded ONNX run: the graph plus its stored weights
        if weights_hash(state) != meta_in.get("weights_hash"):
            raise UploadError(f"weights do not match the hash stored in {RUN_JSON} (file changed or corrupt)")
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise UploadError(f"weights do not fit the run's {GRAPH_FILE}: {first_line(e)}") from None
        if in_shape is None:
            raise UploadError("the run's dataset is not available")
        k = probe_outputs(module, in_shape)
        spec = {"name": ONNX_MODEL, "kwargs": {"input_shape": list(in_shape), "num_classes": k,
                                                "file": GRAPH_FILE, "sha256": hashlib.sha256(graph_bytes).hexdigest()}}
        model = module.eval()
        mapping = tuple(MappingRow(k_, k_, tuple(v.shape)) for k_, v in model.named_parameters())
    elif kind == "onnx":
        assert module is not None
        k = probe_outputs(module, in_shape)
        spec = {"name": ONNX_MODEL, "kwargs": {"input_shape": list(in_shape), "num_classes": k,
                                                "file": GRAPH_FILE, "sha256": hashlib.sha256(buf).hexdigest()}}
        model = module
        mapping = tuple(MappingRow(k_, k_, tuple(v.shape)) for k_, v in model.named_parameters())
        notes += plan.notes + ["floating-point initializers are parameters (curvature includes them)"]
    elif model_def is not None:
        try:
            path_def, cls_name = parse_model_def(model_def)
            model = build_model_def(path_def, cls_name, plan.kwargs)
        except GraphError as e:
            raise UploadError(str(e)) from None
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise UploadError(f"weights do not fit {cls_name}: {first_line(e)}") from None
        k = probe_outputs(model, in_shape)
        spec = {"name": MODEL_DEF, "kwargs": plan.kwargs,
                "def": {"path": str(path_def.resolve()), "class": cls_name, "sha256": file_sha256(path_def)},
                "input_shape": list(in_shape), "num_classes": k}
        mapping = tuple(MappingRow(k_, k_, tuple(v.shape)) for k_, v in model.state_dict().items())
        notes += plan.notes
    else:
        if plan is not None:
            spec = {"name": plan.name, "kwargs": {**plan.kwargs, "input_shape": list(in_shape),
                                                  "num_classes": int(plan.num_classes)}}
            notes += plan.notes
        else:
            if classes is None and ud is not None:  # the user's data: classes from the head, else the labels
                try:
                    classes = infer_architecture(state).num_classes
                except MatchError:
                    classes = int(max(ud.y.max(), ud.y_test.max() if ud.y_test is not None else 0)) + 1
            spec = normalise_spec(spec_src, in_shape, classes)
        if bundle is not None and ud is None:
            kw = spec["kwargs"]
            if tuple(kw.get("input_shape", ())) != in_shape or kw.get("num_classes") != classes:
                raise UploadError(
                    f"model expects input {tuple(kw.get('input_shape', ()))} and {kw.get('num_classes')} classes, "
                    f"but dataset {ds_meta['name']!r} has input {in_shape} and {classes} classes"
                )
        if meta_in is not None and isinstance(meta_in.get("weights_hash"), str):
            if weights_hash(state) != meta_in["weights_hash"]:
                raise UploadError(f"weights do not match the hash stored in {RUN_JSON} (file changed or corrupt)")
        state, mapping, renamed, more = fit_state(state, spec)
        notes += more
        if traj is not None:
            traj = check_trajectory(traj, state)
        with torch.random.fork_rng(devices=[]):  # building initialises weights: leave the global RNG alone
            model = MODELS[spec["name"]](**spec["kwargs"])
        model.load_state_dict(state, strict=True)
        model.eval()

    # ---- the user's data, checked against the model and stored with the run
    if ud is not None:
        n_out = int(spec.get("num_classes") or spec["kwargs"]["num_classes"])
        try:
            arrays, uspec = fit_user_data(ud, in_shape, n_out)
        except UserDataError as e:
            raise UploadError(str(e)) from None
        bundle = bundle_from_arrays(arrays, uspec)
        extra_files[DATA_FILE] = npz_bytes(arrays)
        ds_meta = uspec.to_dict()
        data_desc = f"your data {uspec.describe()}"
        notes += list(uspec.notes) + ["your data is used as given (no normalisation)"]
    if graph_bytes is not None:
        extra_files[GRAPH_FILE] = graph_bytes

    meta: dict[str, Any] = dict(meta_in or {})
    meta.pop("versions", None)
    meta.pop("weights_hash", None)
    meta["model"] = spec
    meta["dataset"] = ds_meta
    meta["source"] = "upload"
    meta["upload"] = {
        "filename": Path(str(filename).replace("\\", "/")).name[:200],
        "kind": kind,
        "bytes": len(buf),
        "sha256": hashlib.sha256(buf).hexdigest(),
        "prefix_stripped": stripped,
        "wrapper": wrapper,
    }
    metrics: dict[str, float] = {}
    if bundle is not None:
        metrics = evaluate_import(model, bundle)
        meta["final"] = {**metrics, "eval_samples": EVAL_SAMPLES}
        # plausibility: near chance, or far below what the file's metadata claims -> flagged with a cause
        chk = check_import(spec, model.state_dict(), analysis_subset(*bundle.test, EVAL_SAMPLES, seed=0),
                           num_classes=bundle.num_classes, claimed=(meta_in or {}).get("final"), model=model)
        if chk.status != "ok" or "status" not in meta:
            meta["status"], meta["health"] = chk.status, chk.to_dict()
    meta.setdefault("history", [])
    n_params = int(sum(p.numel() for p in model.parameters()))
    report_d = {"kind": kind, "format": fmt, "architecture": spec["name"], "model_spec": spec,
                "n_params": n_params, "mapping": [r.to_dict() for r in mapping], "renamed": renamed,
                "data": data_desc, "dataset": ds_meta, "notes": notes, "metrics": metrics}
    meta["import"] = report_d

    stem = name or (meta_in.get("name") if meta_in and isinstance(meta_in.get("name"), str) else None)
    stem = _safe_stem(stem or filename)
    for _ in range(20):
        target = unique_run_path(ws, stem)
        if target.resolve().parent != ws:
            raise UploadError(f"run name {stem!r} would leave the workspace")
        meta["name"] = target.name
        try:
            path = save_run(target, model, meta, trajectory=traj, extra_files=extra_files)
        except (RunError, OSError):
            if not target.exists():
                raise
            continue  # another import took the name in the meantime: try the next free one
        saved = read_meta(path)
        return ImportReport.from_dict({**report_d, "path": str(path), "name": path.name,
                                       "weights_hash": saved["weights_hash"]})
    raise UploadError(f"could not find a free run name for {stem!r}")


def import_upload(filename: str, data: bytes | str | os.PathLike | Any, *, workspace: str | os.PathLike | None = None,
                  model_spec: Mapping[str, Any] | None = None, dataset: Mapping[str, Any] | str | None = None,
                  name: str | None = None, max_bytes: int = MAX_BYTES, **kwargs: Any) -> Path:
    """:func:`import_checkpoint` returning only the new run folder's path (the Probe page's call)."""
    return Path(import_checkpoint(filename, data, workspace=workspace, model_spec=model_spec, dataset=dataset,
                                  name=name, max_bytes=max_bytes, **kwargs).path)


__all__ = [
    "ACCEPTED_KINDS", "ACCEPTED_SUFFIXES", "MAX_BYTES", "ImportReport", "MappingRow", "UploadError",
    "guess_model_spec", "import_checkpoint", "import_report", "import_upload", "inspect_upload",
]
