"""``python -m landscape_core import FILE``: turn an uploaded checkpoint into a run folder (safely).

Examples::

    python -m landscape_core import exported-run.zip --out workspace/
    python -m landscape_core import weights.pt --model mlp --model-arg width=64 --model-arg depth=3 \\
        --model-arg activation=tanh --dataset digits --name my-mlp --out workspace/ --json

The checks are those of :mod:`landscape_core.uploads` (size, magic numbers, zip entries, weights-only
loading, shapes against the architecture, NaN/Inf). Any refusal is one ``error: ...`` line, exit 2.
"""

from __future__ import annotations

import argparse
import json
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
        help="import a checkpoint (.zip run export, .safetensors, .pt/.pth state dict) as a run folder",
        description="Validate a checkpoint and write it as a run folder. Bare state dicts need --model "
        "(and --model-arg KEY=VALUE for its settings); input shape and classes come from --dataset.",
    )
    p.add_argument("file", help="the checkpoint file")
    p.add_argument("--model", default=None, help="architecture for a bare state dict: mlp, cnn or resnet20")
    p.add_argument(
        "--model-arg", dest="model_args", action="append", default=[], type=parse_model_arg, metavar="KEY=VALUE",
        help="model setting, repeatable (JSON values: width=64, batchnorm=true, activation=tanh, widths=[32,16])",
    )
    p.add_argument("--dataset", default=None, help="dataset name (default: the run's own, else digits)")
    p.add_argument("--name", default=None, help="run name (default: from the file)")
    p.add_argument("--out", required=True, help="workspace folder to write the run into")
    p.add_argument("--max-mb", dest="max_bytes", type=_megabytes, default=None, help="size limit in MB (default 200)")
    add_json_flag(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> dict:
    from ..runs import read_meta
    from ..uploads import MAX_BYTES, import_upload

    src = Path(args.file)
    if not src.is_file():
        raise CLIError(f"no such file: {src}")
    if args.model_args and not args.model:
        raise CLIError("--model-arg needs --model")
    spec = None
    if args.model:
        spec = {"name": args.model, "kwargs": dict(args.model_args)}
    path = import_upload(
        src.name, src, workspace=args.out, model_spec=spec, dataset=args.dataset, name=args.name,
        max_bytes=args.max_bytes or MAX_BYTES,
    )
    meta = read_meta(path)
    final = meta.get("final", {})
    return {
        "path": str(path),
        "name": meta["name"],
        "weights_hash": meta["weights_hash"],
        "kind": meta["upload"]["kind"],
        "model": meta["model"],
        "dataset": meta["dataset"]["name"],
        **{k: final.get(k) for k in ("train_loss", "train_acc", "test_loss", "test_acc")},
    }
