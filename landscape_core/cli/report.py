"""``report``: one self-contained HTML report (no network requests) of one or more runs, plus CSV tables."""

from __future__ import annotations

import argparse
import time

from .common import CLIError, add_json_flag, positive_int, samples_arg, tqdm_progress


def _sections(text: str) -> tuple[str, ...]:
    from ..report import SECTIONS

    names = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [s for s in names if s not in SECTIONS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"unknown section {bad[0] if bad else text!r}; choose from {', '.join(SECTIONS)}")
    return names


def run(args: argparse.Namespace) -> dict:
    from ..report import SECTIONS, build_report, write_tables

    if not args.out.endswith((".html", ".htm")):
        raise CLIError(f"--out must be an .html file, got {args.out!r}")
    from ..runs import read_meta

    for r in args.runs:  # fail on a bad folder before any progress output
        read_meta(r)
    update, close = tqdm_progress(100, "report")
    state = {"done": 0}

    def progress(frac: float, msg: str) -> None:
        n = int(frac * 100)
        update(max(n - state["done"], 0), step=msg)
        state["done"] = max(n, state["done"])

    t0 = time.perf_counter()
    try:
        rep = build_report(args.runs, sections=args.sections or tuple(SECTIONS), compute_missing=not args.no_compute,
                           samples=args.samples, grid=args.grid, top_k=args.top_k, progress=progress)
    finally:
        close()
    from pathlib import Path

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(rep.html, encoding="utf-8")
    csvs = [str(p) for p in write_tables(rep.tables, args.csv_dir)] if args.csv_dir else []
    result = {"out": str(out), "sections": list(rep.sections), "seconds": time.perf_counter() - t0,
              "bytes": len(rep.html.encode()), "csv": csvs}
    if rep.notes:
        result["notes"] = rep.notes
    return result


def register(sub) -> None:
    p = sub.add_parser("report", help="write a self-contained HTML report of one or more runs")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders")
    p.add_argument("--out", required=True, help="HTML file to write")
    p.add_argument("--samples", type=samples_arg, default=512, help="training examples for the analyses ('all')")
    p.add_argument("--grid", type=positive_int, default=21, help="surface points per axis")
    p.add_argument("--top-k", type=positive_int, default=5, help="Hessian eigenvalues")
    p.add_argument("--sections", type=_sections, default=None,
                   help="comma-separated subset of settings,metrics,curves,surfaces,spectra,trajectories,connectivity")
    p.add_argument("--csv-dir", default=None, help="also write every table as CSV into this folder")
    p.add_argument("--no-compute", action="store_true", help="do not compute surfaces/spectra/paths")
    add_json_flag(p)
    p.set_defaults(func=run)
