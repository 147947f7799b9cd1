"""The dispatcher: one-line errors, JSON output, command discovery."""

import json
import subprocess
import sys

from landscape_core.cli import build_parser, main
from landscape_core.cli.bench import parse_lines


def test_commands_are_discovered():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert "bench" in sub.choices


def test_unknown_command_is_one_line_error():
    proc = subprocess.run([sys.executable, "-m", "landscape_core", "frobnicate"], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr


def test_bench_unknown_name_is_clean_error(capsys):
    assert main(["bench", "--only", "nope", "--json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown benchmark" in err[0]


def test_parse_bench_lines():
    text = "warmup\nsam_step/sgd_step: ours=0.002s reference=0.001s ratio=1.85 target<=2.1 PASS\n"
    (row,) = parse_lines(text)
    assert row["ratio"] == 1.85 and row["verdict"] == "PASS" and row["workload"] == "sam_step/sgd_step"
    assert json.dumps(row)
    (missed,) = parse_lines("asam_step/sgd_step: ours=2.2e-3s reference=1e-3s ratio=2.218 target<=2.1 [MISS]")
    assert missed["verdict"] == "MISS" and missed["ratio"] == 2.218
    (info,) = parse_lines("hvp mode: ours=1s reference=2s ratio=0.5")
    assert info["verdict"] is None
