"""The command line: ``python -m landscape_core <command> ...``.

Each command lives in its own module in this package and exposes ``register(subparsers)``, which
adds its parser and sets ``func`` (``args -> dict | None``). Commands are discovered automatically.
A command returning a dict with ``--json`` set prints it as one JSON object on stdout; progress goes
to stderr; bad input ends with a one-line ``error: ...`` on stderr and exit code 2.

Start-up: when the command line names a command, only that command's module is imported (another
command's ``register`` may import heavy engine modules, e.g. SciPy's stats for ``flatness``); ``--help``
without a command imports them all. Before running a command, :func:`landscape_core.threads.apply_policy`
sets the thread counts (torch on every usable core, NumPy/SciPy BLAS on one; ``$LANDSCAPE_TORCH_THREADS``
overrides torch's).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

from ..threads import apply_policy
from .common import CLIError, OneLineParser, emit, user_error_types


def _command_modules(argv: list[str] | None) -> list[str]:
    """Command modules to import: the one ``argv`` names (module ``import_`` is command ``import``), else all."""
    names = sorted(info.name for info in pkgutil.iter_modules(__path__)
                   if not info.name.startswith("_") and info.name != "common")
    if argv:
        first = next((a for a in argv if not a.startswith("-")), None)
        match = [n for n in names if n.rstrip("_") == first]
        if match:
            return match
    return names


def build_parser(argv: list[str] | None = None) -> OneLineParser:
    """The argument parser; with ``argv``, only the command it names is registered (cheaper start-up)."""
    parser = OneLineParser(
        prog="python -m landscape_core",
        description="Landscape Explorer: loss-landscape geometry and optimization dynamics from the command line.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    for name in _command_modules(argv):
        mod = importlib.import_module(f"{__name__}.{name}")
        if hasattr(mod, "register"):
            mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        apply_policy("cli")
        result = args.func(args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except user_error_types() as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2
    if result is not None:
        emit(result, as_json=getattr(args, "json", False))
    return 0


__all__ = ["main", "build_parser", "CLIError"]
