"""Fold files: the folds of the AMi-Br training pool written down once, so that no installed
scikit-learn can change them.

The authors drew their five folds in mid-2025 with `StratifiedGroupKFold(n_splits=5,
shuffle=True, random_state=42)` over the rows of `amibr_train_split.csv` in file order (y =
final_label, groups = slide). scikit-learn 1.8 changed what `shuffle=True` draws (scikit-learn
issue #32478, PR #32540), so the same call now gives other folds. The authors' assignment is
therefore data of this project: `expected_results/splits/amibr_author_folds.csv` (drawn under
scikit-learn 1.7.2) with `amibr_author_folds.json` (how it was made, the CSV's sha256).
Synthetic trees carry their own fold file (`synthetic_folds.csv`, written by `amibr-bench data
synth`).

A fold table is CSV text `image,label,slide,fold` (fold 1..5 = the k-th validation split), one
row per training image in the order of `amibr_train_split.csv`, "\\n" line ends, UTF-8.

This module imports nothing but numpy, scikit-learn and `harness.paths`, so it runs in a bare
environment with an older scikit-learn: `python -m harness.foldfile --check` regenerates the
authors' table and compares it byte for byte with the committed one (`nox -s folds`); `--write`
rewrites the committed CSV and JSON (only ever under scikit-learn 1.7.x).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import hashlib
import io
import json
import os
import platform
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from harness import paths

N_FOLDS = 5
RANDOM_STATE = 42
COLUMNS = ("image", "label", "slide", "fold")
TRAIN_CSV = "amibr_train_split.csv"  # = harness.data.TRAIN_CSV (not imported: no PIL here)
CALL = (
    f"StratifiedGroupKFold(n_splits={N_FOLDS}, shuffle=True, random_state={RANDOM_STATE})"
    ".split(np.zeros(n), y=final_label, groups=slide) over the rows of amibr_train_split.csv in "
    "file order; fold k = the k-th validation split"
)
AUTHOR_DIR = paths.EXPECTED_RESULTS / "splits"
AUTHOR_CSV = AUTHOR_DIR / "amibr_author_folds.csv"
AUTHOR_JSON = AUTHOR_DIR / "amibr_author_folds.json"
AUTHOR_SKLEARN = "1.7"  # the scikit-learn series that reproduces the authors' draw
WHY = (
    "scikit-learn 1.8 changed what StratifiedGroupKFold(shuffle=True) draws (scikit-learn issue "
    "#32478, PR #32540: the shuffle permuted y_counts_per_group without remapping groups_inv); "
    "the authors drew their folds in mid-2025 with an earlier release, so the same call under "
    "scikit-learn >= 1.8 gives other folds (2,334 of the 2,894 training images move)"
)


def sha256_bytes(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    return sha256_bytes(Path(path).read_bytes())


def read_train_split(path: str | os.PathLike) -> list[tuple[str, str, str]]:
    """(image, final_label, slide) of each row of amibr_train_split.csv, in file order.

    The standalone reader of `--check`/`--write`; the harness reads the file through
    `harness.data.train_split_rows`, which also checks it against the image tree."""
    with Path(path).open(newline="", encoding="utf-8") as fh:
        return [
            (r["dataset_uid"].strip(), r["final_label"].strip(), r["slide"].strip())
            for r in csv.DictReader(fh)
        ]


def draw(labels: Sequence[str], slides: Sequence[str]) -> list[int]:
    """Fold (1..5) of each row under the installed scikit-learn: the authors' call."""
    import numpy as np
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=N_FOLDS, shuffle=True, random_state=RANDOM_STATE)
    folds = [0] * len(labels)
    for k, (_train, val) in enumerate(splitter.split(np.zeros(len(labels)), labels, slides), 1):
        for i in val:
            folds[int(i)] = k
    return folds


def table(rows: Sequence[tuple[str, str, str]], folds: Sequence[int]) -> str:
    """The fold table's text: header, then `image,label,slide,fold` per row in the given order."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for (image, label, slide), fold in zip(rows, folds, strict=True):
        writer.writerow((image, label, slide, fold))
    return buffer.getvalue()


def parse_table(text: str, where: str | os.PathLike) -> dict[str, tuple[str, str, int]]:
    """image -> (label, slide, fold) of a fold table; ValueError naming `where` when malformed."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if tuple(header or ()) != COLUMNS:
        raise ValueError(f"{where}: expected the columns {','.join(COLUMNS)}, found {header}")
    out: dict[str, tuple[str, str, int]] = {}
    for line, row in enumerate(reader, 2):
        if len(row) != len(COLUMNS) or row[3] not in {str(k) for k in range(1, N_FOLDS + 1)}:
            raise ValueError(f"{where}: line {line} is not image,label,slide,fold 1-{N_FOLDS}")
        if row[0] in out:
            raise ValueError(f"{where}: line {line}: image {row[0]} is listed twice")
        out[row[0]] = (row[1], row[2], int(row[3]))
    return out


def versions() -> dict[str, str]:
    import numpy
    import sklearn

    return {
        "scikit_learn": sklearn.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def author_record(train_csv: Path, text: str) -> dict:
    """The JSON written beside the authors' table: how it was made and its digest."""
    return {
        "file": AUTHOR_CSV.name,
        "sha256": sha256_bytes(text.encode("utf-8")),
        "rows": text.count("\n") - 1,
        "columns": list(COLUMNS),
        "call": CALL,
        "input": {"file": TRAIN_CSV, "sha256": sha256_file(train_csv)},
        **versions(),
        "date": datetime.date.today().isoformat(),
        "why": WHY,
        "check": "nox -s folds (python -m harness.foldfile --check under scikit-learn 1.7.2)",
    }


def _differing_rows(a: str, b: str) -> int:
    """Rows (after the header) that differ between two tables, counting missing ones."""
    la, lb = a.splitlines()[1:], b.splitlines()[1:]
    return sum(x != y for x, y in zip(la, lb, strict=False)) + abs(len(la) - len(lb))


def check(train_csv: Path, committed: Path = AUTHOR_CSV) -> int:
    """Regenerate the authors' table to a temporary file and compare it byte for byte with
    `committed`; prints one line; 0 = identical, 1 = differs (with the count of rows)."""
    rows = read_train_split(train_csv)
    text = table(rows, draw([r[1] for r in rows], [r[2] for r in rows]))
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / committed.name
        fresh.write_text(text, encoding="utf-8", newline="")
        new, old = fresh.read_bytes(), committed.read_bytes()
    v = versions()
    if new == old:
        print(
            f"{committed}: identical to the folds regenerated from {train_csv} under "
            f"scikit-learn {v['scikit_learn']} ({len(rows)} rows, sha256 {sha256_bytes(new)})"
        )
        return 0
    n = _differing_rows(new.decode("utf-8"), old.decode("utf-8"))
    print(
        f"{committed}: {n} of {len(rows)} rows differ from the folds regenerated from {train_csv} "
        f"under scikit-learn {v['scikit_learn']} (the authors' folds need {AUTHOR_SKLEARN}.x)"
    )
    return 1


def write(train_csv: Path, out_csv: Path = AUTHOR_CSV, out_json: Path = AUTHOR_JSON) -> str:
    """Draw the authors' table under the installed scikit-learn (refused unless 1.7.x) and write
    the CSV and its JSON record atomically; returns the CSV's sha256."""
    version = versions()["scikit_learn"]
    if not version.startswith(AUTHOR_SKLEARN + "."):
        raise paths.InputError(
            f"scikit-learn {version} is installed; the authors' folds need {AUTHOR_SKLEARN}.x "
            f"({WHY})"
        )
    rows = read_train_split(train_csv)
    text = table(rows, draw([r[1] for r in rows], [r[2] for r in rows]))
    record = author_record(train_csv, text)
    paths.atomic_write(out_csv, text)
    paths.atomic_write(out_json, json.dumps(record, indent=2) + "\n")
    return record["sha256"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.foldfile",
        description="Regenerate the authors' fold file and compare it with the committed one.",
    )
    parser.add_argument("--data-root", help="dataset folder (default $AMIBR_DATA_ROOT)")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="compare byte for byte (exit 1)")
    mode.add_argument("--write", action="store_true", help="rewrite the committed CSV and JSON")
    parser.add_argument("--committed", default=str(AUTHOR_CSV), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        root = paths.data_root(args.data_root)
        train_csv = root / TRAIN_CSV
        if not train_csv.is_file():
            raise paths.MissingInputError(f"{train_csv} does not exist")
        if args.check:
            return check(train_csv, Path(args.committed))
        digest = write(train_csv)
        print(f"wrote {AUTHOR_CSV} (sha256 {digest}) and {AUTHOR_JSON}")
        return 0
    except paths.InputError as exc:
        print(f"harness.foldfile: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
