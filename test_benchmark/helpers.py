"""Small helpers several test modules share (imported as `from helpers import ...`: pytest puts
this folder on sys.path, as it has no __init__.py)."""

from __future__ import annotations

import csv

from harness.results import PAPER_SET


def paper_rows() -> list[dict]:
    """The authors' per-fold rows (expected_results/paper/fold_metrics.csv) as text dicts, to be
    edited and written back with results.write_results_set."""
    with open(PAPER_SET / "fold_metrics.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def claims(capsys, *argv: str) -> tuple[int, str, str]:
    """`amibr-bench claims ARGV` through harness.cli.main: (exit code, stdout, stderr)."""
    from harness import cli

    code = cli.main(["claims", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err
