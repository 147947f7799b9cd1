"""Models outside the registry: ONNX graphs (safe for uploads) and trusted local model definitions (CLI/API).

Why ONNX and not ``torch.export`` (``.pt2``)? Both describe any architecture as a graph, but
``torch.export.load`` reads pickled weights and constants through an unrestricted torch loader (weights-only off)
and ``pickle.loads`` (torch/export/pt2_archive/_package.py), so a crafted ``.pt2`` runs code on load
(tests/reliability/test_import_formats.py shows it). An ONNX file is a protobuf message: parsing it runs
no Python from the file, and ``onnx2torch`` turns each node into a torch module from its own fixed
table of converters (an unknown operator is refused, never looked up by name). What is checked here:

- the bytes parse as an ``onnx.ModelProto`` with a graph (size checked by the caller);
- no tensor points at *external data* (a file path the loader would open: path traversal / file
  read), no sparse initializers, operators only from the standard domains;
- the graph is converted from the in-memory proto (never from a path), then every floating-point
  *initializer* (ONNX's name for weights) becomes an ``nn.Parameter``: onnx2torch keeps those that are
  not Gemm/Conv weights (e.g. LayerNorm scales, attention projections) as buffers, which curvature
  would silently leave out. ``Constant`` nodes stay constants.

The result is a ``torch.fx.GraphModule`` built only from torch operations, so it supports
``functional_call`` and double backward (Hessian-vector products).

A trusted local model definition (``file.py:ClassName``) is *executed*: it is for the command line
and the Python API only, never for the web upload, and a run remembers the file's SHA-256 so a
changed file is refused when the run is loaded again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

GRAPH_FILE = "model.onnx"
ONNX_MODEL = "onnx"  # model spec name of an ONNX graph run
MODEL_DEF = "model_def"  # model spec name of a trusted local model definition
MAX_NODES = 50_000
ONNX_OPSET = 17  # the newest opset the installed onnx2torch converts reliably
_DOMAINS = ("", "ai.onnx")
EXPORT_HINT = (
    "torch.onnx.export(model.eval(), (x,), 'model.onnx', dynamo=False, opset_version=17, "
    "input_names=['x'], dynamic_axes={'x': {0: 'batch'}})"
)


class GraphError(ValueError):
    """A model graph or model definition was refused; one-line message."""


def looks_like_onnx(buf: bytes) -> bool:
    """An ONNX ModelProto starts with field 1 (``ir_version``, a small varint): byte ``0x08``, then 3..15."""
    return len(buf) > 2 and buf[0] == 0x08 and 3 <= buf[1] <= 15


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:200]


def _tensors_of(graph) -> list:
    """Every TensorProto of a graph: initializers and Constant/attribute tensors, subgraphs included."""
    out = list(graph.initializer)
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                out.append(attr.t)
            out.extend(attr.tensors)
            if attr.HasField("g"):
                out.extend(_tensors_of(attr.g))
            for g in attr.graphs:
                out.extend(_tensors_of(g))
    return out


def parse_onnx(buf: bytes):
    """Parse and check an ONNX model from bytes (no file is opened, nothing from it is executed).

    Raises:
        GraphError: not ONNX, external data, custom operator domains, or too large a graph.
    """
    import onnx

    if not looks_like_onnx(buf):
        raise GraphError("the file is not an ONNX model (no ModelProto header)")
    try:
        proto = onnx.load_model_from_string(buf)
    except Exception as e:  # DecodeError and friends
        raise GraphError(f"the ONNX file is corrupt or truncated ({type(e).__name__})") from None
    g = proto.graph
    if not g.node or not g.output or not g.input:
        raise GraphError("the ONNX file holds no graph (no nodes, inputs or outputs)")
    if len(g.node) > MAX_NODES:
        raise GraphError(f"the ONNX graph has {len(g.node)} nodes; at most {MAX_NODES} are accepted")
    if len(g.sparse_initializer):
        raise GraphError("sparse initializers are not supported; export dense weights")
    for t in _tensors_of(g):
        if t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data):
            where = next((e.value for e in t.external_data if e.key == "location"), "?")
            raise GraphError(
                f"tensor {t.name!r} keeps its data in an external file ({where!r}); external data is refused "
                f"(save with save_as_external_data=False)"
            )
    for node in g.node:
        if node.domain not in _DOMAINS:
            raise GraphError(f"node {node.name or node.op_type!r} uses operator {node.domain}.{node.op_type} "
                             f"from a custom domain; only standard ONNX operators are accepted")
    for op in proto.opset_import:
        if op.domain not in _DOMAINS and op.domain != "ai.onnx.ml":
            raise GraphError(f"the model imports the custom operator set {op.domain!r}; refused")
    if len(proto.functions):
        try:
            from onnx import inliner

            proto = inliner.inline_local_functions(proto)
        except Exception as e:
            raise GraphError(f"the ONNX model's local functions could not be inlined: {_first_line(e)}") from None
    return proto


def _opset(proto) -> int:
    return max((op.version for op in proto.opset_import if op.domain in _DOMAINS), default=0)


def onnx_module(proto) -> nn.Module:
    """An ``nn.Module`` (torch.fx) from a checked ModelProto; float initializers become parameters.

    Raises:
        GraphError: an operator the converter does not know (with the export command that works).
    """
    from onnx2torch import convert

    def _convert(p):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return convert(p)

    try:
        gm = _convert(proto)
    except Exception as e:  # NotImplementedError for unknown ops, others for malformed graphs
        if _opset(proto) > ONNX_OPSET:
            try:
                from onnx import version_converter

                gm = _convert(version_converter.convert_version(proto, ONNX_OPSET))
            except Exception:
                gm = None
            if gm is not None:
                return _initializers_to_parameters(gm)
        msg = _first_line(e)
        m = re.search(r"operation_type='(\w+)', version=(\d+)", msg)
        what = f"operator {m.group(1)} (opset {m.group(2)}) is not supported" if m else f"conversion failed: {msg}"
        raise GraphError(f"ONNX graph: {what}; export with {EXPORT_HINT}") from None
    return _initializers_to_parameters(gm)


def _initializers_to_parameters(gm: nn.Module) -> nn.Module:
    """Turn onnx2torch's floating-point initializer buffers into parameters (in place on a fresh module)."""
    for mod in gm.modules():
        for name, buf in list(mod._buffers.items()):
            if buf is not None and buf.is_floating_point() and name.startswith("onnx_initializer_"):
                del mod._buffers[name]
                mod.register_parameter(name, nn.Parameter(buf.detach().clone()))
    return gm.eval()


def graph_io(proto) -> tuple[tuple[int | None, ...], tuple[int | None, ...]]:
    """Shapes (without the batch dimension; ``None`` for a symbolic size) of the first input and output."""
    def dims(vi) -> tuple[int | None, ...]:
        shape = vi.type.tensor_type.shape
        return tuple(d.dim_value if d.HasField("dim_value") else None for d in shape.dim)[1:]

    init = {t.name for t in proto.graph.initializer}
    inputs = [vi for vi in proto.graph.input if vi.name not in init]
    if len(inputs) != 1:
        raise GraphError(f"the ONNX graph has {len(inputs)} data inputs; exactly one (the batch X) is supported")
    return dims(inputs[0]), dims(proto.graph.output[0])


def load_onnx_module(buf: bytes) -> nn.Module:
    """Parse, check and convert ONNX bytes (what a run folder's ``model.onnx`` is rebuilt with)."""
    return onnx_module(parse_onnx(buf))


# --- trusted local model definitions ---------------------------------------------------------------
def parse_model_def(text: str) -> tuple[Path, str]:
    """``path/to/file.py:ClassName`` -> (path, class name)."""
    path, sep, cls = str(text).rpartition(":")
    if not sep or not path.endswith(".py") or not cls.isidentifier():
        raise GraphError(f"model definition must be FILE.py:ClassName, got {text!r}")
    return Path(path), cls


def file_sha256(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def build_model_def(path: str | os.PathLike, class_name: str, kwargs: Mapping[str, Any],
                    sha256: str | None = None) -> nn.Module:
    """Import ``class_name`` from the *trusted* local file ``path`` and instantiate it with ``kwargs``.

    This executes the file: never call it with anything a user uploaded. With ``sha256`` the file must
    be unchanged since the run was created.
    """
    p = Path(path)
    if not p.is_file():
        raise GraphError(f"model definition file {str(p)!r} not found")
    digest = file_sha256(p)
    if sha256 is not None and digest != sha256:
        raise GraphError(f"model definition {str(p)!r} changed since the run was created (SHA-256 differs)")
    spec = importlib.util.spec_from_file_location(f"landscape_user_model_{digest[:12]}", p)
    if spec is None or spec.loader is None:
        raise GraphError(f"cannot import {str(p)!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise GraphError(f"importing {p.name} failed: {type(e).__name__}: {_first_line(e)}") from None
    cls = getattr(module, class_name, None)
    if not (inspect.isclass(cls) and issubclass(cls, nn.Module)):
        raise GraphError(f"{p.name} has no nn.Module class named {class_name!r}")
    try:
        with torch.random.fork_rng(devices=[]):
            model = cls(**dict(kwargs))
    except TypeError as e:
        raise GraphError(f"{class_name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) failed: "
                         f"{_first_line(e)}") from None
    return model.eval()


def rebuild(run_path: str | os.PathLike, spec: Mapping[str, Any]) -> nn.Module:
    """Rebuild a non-registry model of a run folder: its ONNX graph file, or its trusted definition."""
    name = spec.get("name")
    if name == ONNX_MODEL:
        f = Path(run_path) / GRAPH_FILE
        if not f.is_file():
            raise GraphError(f"run {run_path} has no {GRAPH_FILE}")
        data = f.read_bytes()
        want = spec.get("kwargs", {}).get("sha256")
        if want and hashlib.sha256(data).hexdigest() != want:
            raise GraphError(f"{f} does not match the SHA-256 in run.json (file changed or corrupt)")
        return load_onnx_module(data)
    if name == MODEL_DEF:
        d = spec.get("def") or {}
        return build_model_def(d.get("path", ""), d.get("class", ""), spec.get("kwargs", {}), d.get("sha256"))
    raise GraphError(f"model {name!r} is not a graph or model-definition model")


__all__ = ["EXPORT_HINT", "GRAPH_FILE", "GraphError", "MODEL_DEF", "ONNX_MODEL", "build_model_def", "file_sha256",
           "graph_io", "load_onnx_module", "looks_like_onnx", "onnx_module", "parse_model_def", "parse_onnx",
           "rebuild"]
