"""``python -m landscape_core import FILE``: turn a checkpoint into a run folder (safely), then analyse it.

Examples::

    python -m landscape_core import model_best.th --out workspace/              # architecture read off the weights
    python -m landscape_core import epoch=3.ckpt --activation tanh --out workspace/
    python -m landscape_core import resnet20.th --data cifar_subset.npz --out workspace/ --json
    python -m landscape_core import model.onnx --data seqs.npz --out workspace/   # any architecture (ONNX graph)
    python -m landscape_core import weights.pt --model-def mynet.py:Net --model-arg width=32 --data d.npz \\
        --out workspace/                                                    # trusted local code (CLI only)
    python -m landscape_core import weights.pt --model mlp --model-arg width=64 --model-arg depth=3 \\
        --model-arg activation=tanh --dataset digits --name my-mlp --out workspace/ --json

The format is decided by content (torch.save zip/pickle loaded weights-only, safetensors, ONNX, run zip);
registry architectures are matched structurally and the key mapping is printed. The checks are those of
:mod:`landscape_core.uploads`. Any refusal is one ``error: ...`` line, exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .common import CLIError, add_json_flag


def parse_model_arg(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE parsed as JSON when possible (``64``, ``true``, ``[32,16]``), else a string."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. width=64), got {text!r}")
    try:
        parsed: Any = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key, parsed


def _megabytes(text: str) -> int:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size in MB, got {text!r}") from None
    if not x > 0:
        raise argparse.ArgumentTypeError(f"size limit must be positive, got {text}")
    return int(x * 2**20)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "import",
        help="import a checkpoint (state dict .pt/.pth/.th/.bin/.ckpt/.safetensors, ONNX graph, run zip) as a run",
        description="Validate a checkpoint and write it as a run folder. State dicts are matched to mlp/cnn/resnet20 "
        "by structure (or give --model / --model-def); ONNX graphs load any architecture. Data: --data FILE "
        "(.npz X, y [, X_test, y_test] or .csv), --dataset NAME, or the embedded dataset whose input fits.",
    )
    p.add_argument("file", help="the checkpoint file")
    p.add_argument("--model", default=None, help="architecture for a state dict: mlp, cnn or resnet20 "
                   "(default: read off the weights)")
    p.add_argument("--model-def", dest="model_def", default=None, metavar="FILE.py:CLASS",
                   help="your own model class (trusted local code: it is executed); the state dict loads into it")
    p.add_argument(
        "--model-arg", dest="model_args", action="append", default=[], type=parse_model_arg, metavar="KEY=VALUE",
        help="model setting, repeatable (JSON values: width=64, batchnorm=true, activation=tanh, widths=[32,16])",
    )
    p.add_argument("--activation", default=None,
                   help="MLP/CNN activation (not visible in weights; default relu, and the report says so)")
    p.add_argument("--data", default=None, metavar="FILE",
                   help="your own data: .npz with X, y (optional X_test, y_test) or .csv; stored with the run")
    p.add_argument("--label-column", default="label", help="label column of a --data .csv (default: label)")
    p.add_argument("--dataset", default=None, help="embedded dataset name (default: the run's own, else the one "
                   "whose input fits the model)")
    p.add_argument("--name", default=None, help="run name (default: from the file)")
    p.add_argument("--out", required=True, help="workspace folder to write the run into")
    p.add_argument("--max-mb", dest="max_bytes", type=_megabytes, default=None, help="size limit in MB (default 200)")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> dict:
    from ..runs import read_meta
    from ..uploads import MAX_BYTES, import_checkpoint

    src = Path(args.file)
    if not src.is_file():
        raise CLIError(f"no such file: {src}")
    if args.model and args.model_def:
        raise CLIError("give either --model or --model-def, not both")
    if args.model_args and not (args.model or args.model_def):
        raise CLIError("--model-arg needs --model or --model-def")
    if args.data is not None and args.dataset is not None:
        raise CLIError("give either --data or --dataset, not both")
    if args.data is not None and not Path(args.data).is_file():
        raise CLIError(f"no such data file: {args.data}")
    spec = None
    if args.model:
        kw = dict(args.model_args)
        if args.activation is not None:
            kw.setdefault("activation", args.activation)
        spec = {"name": args.model, "kwargs": kw}
    rep = import_checkpoint(
        src.name, src, workspace=args.out, model_spec=spec, dataset=args.dataset, name=args.name,
        max_bytes=args.max_bytes or MAX_BYTES, user_data=args.data,
        user_data_name=Path(args.data).name if args.data else None, label_column=args.label_column,
        activation=args.activation, model_def=args.model_def,
        model_args=dict(args.model_args) if args.model_def else None,
    )
    m = rep.metrics
    out = {
        "path": rep.path,
        "name": rep.name,
        "weights_hash": rep.weights_hash,
        "kind": rep.kind,
        "format": rep.format,
        "architecture": rep.architecture,
        "model": rep.model_spec,
        "n_params": rep.n_params,
        "renamed": rep.renamed,
        "dataset": rep.dataset["name"],
        "data": rep.data,
        "notes": list(rep.notes),
        **{k: m.get(k) for k in ("train_loss", "train_acc", "test_loss", "test_acc")},
    }
    meta = read_meta(rep.path)
    out["status"] = meta.get("status", "ok")
    out["check"] = (meta.get("health") or {}).get("message")
    if out["status"] != "ok" and out["check"]:
        print(f"warning: suspect import: {out['check']}", file=sys.stderr)
    if args.json:
        out["mapping"] = [r.to_dict() for r in rep.mapping]
    else:
        _print_mapping(rep)
    return out


def _print_mapping(rep) -> None:
    """The key mapping as a table on stderr (stdout keeps the key: value summary)."""

    if not rep.renamed:
        print(f"mapping: the file's {len(rep.mapping)} keys are the model's own", file=sys.stderr)
        return
    w = max(len(r.file_key) for r in rep.mapping)
    v = max(len(r.model_key) for r in rep.mapping)
    print(f"{'file key':<{w}}  {'model key':<{v}}  shape", file=sys.stderr)
    for r in rep.mapping:
        print(f"{r.file_key:<{w}}  {r.model_key:<{v}}  {tuple(r.shape)}", file=sys.stderr)
