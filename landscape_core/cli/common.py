"""Shared pieces of the command line: one-line errors, JSON output, common flags, progress bars."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from typing import Any

import numpy as np


class CLIError(Exception):
    """Bad input on the command line: printed as one line, exit code 2."""


def user_error_types() -> tuple[type[BaseException], ...]:
    from ..data import DataError
    from ..runs import RunError

    return (CLIError, ValueError, DataError, RunError, FileNotFoundError, NotADirectoryError, PermissionError)


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports bad flags as a single ``error: ...`` line (exit 2), no usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"error: {self.prog}: {message}\n")
        sys.exit(2)


def resolve_run(name: str):
    """A ``RUN`` argument: a run folder path, else ``checkpoints/RUN``, else ``<workspace>/RUN``."""
    from pathlib import Path

    from ..runs import checkpoints_dir, workspace_dir

    for p in (Path(name), checkpoints_dir() / name, workspace_dir() / name):
        if p.is_dir() and (p / "run.json").is_file():
            return p
    raise CLIError(f"no run named {name!r} (looked for a folder, checkpoints/{name} and the workspace)")


def add_json_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def add_device_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="cpu, cuda, or auto (cuda when available)")


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CLIError(f"device {name!r} requested but CUDA is not available")
    if name != "cpu" and not name.startswith("cuda"):
        raise CLIError(f"unknown device {name!r}; use cpu, cuda or auto")
    return name


def samples_arg(text: str) -> int | None:
    """``all`` -> None, else a positive int (argparse type)."""
    if text == "all":
        return None
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"samples must be >= 1 or 'all', got {n}")
    return n


def positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


def positive_float(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (x > 0 and math.isfinite(x)):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text}")
    return x


def _jsonable(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return _jsonable(o.tolist())
    if isinstance(o, (np.floating, float)):
        x = float(o)
        return x if math.isfinite(x) else None
    if isinstance(o, np.integer):
        return int(o)
    if hasattr(o, "tolist"):  # torch tensors
        return _jsonable(o.tolist())
    if hasattr(o, "__fspath__"):
        return str(o)
    return o


def emit(result: dict, *, as_json: bool) -> None:
    """Print a command's result: one JSON object with ``--json``, else readable ``key: value`` lines."""
    if as_json:
        sys.stdout.write(json.dumps(_jsonable(result)) + "\n")
        return
    for k, v in _jsonable(result).items():
        if isinstance(v, float):
            v = f"{v:.6g}"
        elif isinstance(v, (list, dict)):
            v = json.dumps(v)
            v = v if len(v) < 200 else v[:197] + "..."
        print(f"{k}: {v}")


def tqdm_progress(total: int | None, desc: str) -> tuple[Callable[..., None], Callable[[], None]]:
    """A ``(update, close)`` pair drawing a tqdm bar on stderr; ``update(n=1, **postfix)``."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)

    def update(n: int = 1, **postfix: Any) -> None:
        if postfix:
            bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in postfix.items()}, refresh=False)
        bar.update(n)

    return update, bar.close
