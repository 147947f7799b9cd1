"""``bench``: run the benchmarks in bench/ and print their ratio lines (same-run references)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from .common import CLIError, add_json_flag

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"
_LINE = re.compile(r"^(?P<name>[^:]+): .*ratio=(?P<ratio>[-+0-9.eE]+|nan|inf)")
_VERDICT = re.compile(r"\b(PASS|MISS)\]?\s*$")


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in BENCH_DIR.glob("bench_*.py"))


def parse_lines(text: str) -> list[dict]:
    """Pick the ``<workload>: ours=... reference=... ratio=... [PASS|MISS]`` lines out of a bench's output."""
    out = []
    for line in text.splitlines():
        m = _LINE.match(line.strip())
        if m:
            v = _VERDICT.search(line)
            out.append({"line": line.strip(), "workload": m["name"], "ratio": float(m["ratio"]),
                        "verdict": v.group(1) if v else None})
    return out


def run(args) -> dict:
    names = available()
    if args.only:
        wanted = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            raise CLIError(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(names)}")
        names = wanted
    results, t0 = [], time.perf_counter()
    for name in names:
        cmd = [sys.executable, str(BENCH_DIR / f"bench_{name}.py")] + (["--quick"] if args.quick else [])
        print(f"== bench {name}", file=sys.stderr)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if not args.json:
            sys.stdout.write(proc.stdout)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-2000:])
        results.append({"bench": name, "returncode": proc.returncode, "lines": parse_lines(proc.stdout)})
    summary = {"benchmarks": results, "seconds": time.perf_counter() - t0}
    summary["missed"] = [ln["line"] for r in results for ln in r["lines"] if ln["verdict"] == "MISS"]
    summary["failed"] = [r["bench"] for r in results if r["returncode"] != 0]
    return summary if args.json else {"missed": len(summary["missed"]), "failed": summary["failed"]}


def register(sub) -> None:
    p = sub.add_parser("bench", help="run the benchmarks (ratios against references measured in the same run)")
    p.add_argument("--only", default="", help="comma-separated subset, e.g. sam,surface,curvature,app")
    p.add_argument("--quick", action="store_true", help="smaller workloads")
    add_json_flag(p)
    p.set_defaults(func=run)
