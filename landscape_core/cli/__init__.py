"""The command line: ``python -m landscape_core <command> ...``.

Each command lives in its own module in this package and exposes ``register(subparsers)``, which
adds its parser and sets ``func`` (``args -> dict | None``). Commands are discovered automatically.
A command returning a dict with ``--json`` set prints it as one JSON object on stdout; progress goes
to stderr; bad input ends with a one-line ``error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

from .common import CLIError, OneLineParser, emit, user_error_types


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog="python -m landscape_core",
        description="Landscape Explorer: loss-landscape geometry and optimization dynamics from the command line.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name == "common":
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(mod, "register"):
            mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
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
