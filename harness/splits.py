"""The authors' cross-validation folds and the AMi-Br test split.

The folds must be the authors' own (sklearn StratifiedGroupKFold, 5 splits, shuffle, seed 42 over
amibr_train_split.csv in file order), or per-fold numbers cannot be compared with theirs.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from harness import data, paths

N_FOLDS = 5
RANDOM_STATE = 42
TEST = "test"
COLUMNS = ("image", "label", "slide", "fold")


@dataclass(frozen=True)
class SplitRow:
    """One AMi-Br image and where the protocol puts it: validation fold 1..5, or the test set."""

    image: str
    label: str
    slide: str
    fold: int | str


def fold_numbers(labels: Sequence[str], slides: Sequence[str]) -> list[int]:
    """Fold (1..5) of each training row: the k-th validation split of the authors' call."""
    splitter = StratifiedGroupKFold(n_splits=N_FOLDS, shuffle=True, random_state=RANDOM_STATE)
    folds = [0] * len(labels)
    for k, (_train, val) in enumerate(splitter.split(np.zeros(len(labels)), labels, slides), 1):
        for i in val:
            folds[i] = k
    return folds


def author_folds(root: str | os.PathLike) -> list[SplitRow]:
    """Every AMi-Br image (AMI-BR.csv order) with its fold, or "test" when not in the train CSV."""
    records = data.load_records(root, "AMi-Br")
    train = data.train_split_rows(root)
    folds = fold_numbers([label for _n, label, _s in train], [slide for _n, _l, slide in train])
    fold_of = {name: k for (name, _l, _s), k in zip(train, folds, strict=True)}
    return [
        SplitRow(r.name, r.label, r.slide or "", fold_of[r.name] if r.split == "train" else TEST)
        for r in records
    ]


def fold_sets(rows: Iterable[SplitRow], fold: int) -> tuple[list[SplitRow], ...]:
    """(train, validation, test) rows of one fold: train is the other four folds."""
    rows = list(rows)
    if fold not in range(1, N_FOLDS + 1):
        raise ValueError(f"fold must be 1..{N_FOLDS}, not {fold!r}")
    val = [r for r in rows if r.fold == fold]
    test = [r for r in rows if r.fold == TEST]
    train = [r for r in rows if r.fold != fold and r.fold != TEST]
    return train, val, test


def slide_overlaps(rows: Iterable[SplitRow], between: str = "all") -> list[str]:
    """Every slide found in more than one part; empty when the parts are slide-disjoint.

    between: "all" (folds 1..5 and test), "folds" (the five folds only) or "test" (the test split
    against the whole training pool).
    """
    if between not in ("all", "folds", "test"):
        raise ValueError(f"between must be all, folds or test, not {between!r}")
    rows = list(rows)
    if between == "folds":
        rows = [r for r in rows if r.fold != TEST]
    elif between == "test":
        rows = [r if r.fold == TEST else replace(r, fold="train pool") for r in rows]
    parts: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        parts[r.slide][r.fold] += 1
    out = []
    for slide, counts in sorted(parts.items()):
        if len(counts) > 1:
            where = ", ".join(
                f"{'fold ' + str(k) if isinstance(k, int) else k} ({n})"
                for k, n in sorted(counts.items(), key=lambda kv: str(kv[0]))
            )
            out.append(f"slide {slide} is in {where}")
    return out


def write_splits(rows: Iterable[SplitRow], out: str | os.PathLike) -> Path:
    """Write `image,label,slide,fold` atomically: a reader never sees a half-written file."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in rows:
        writer.writerow((r.image, r.label, r.slide, str(r.fold)))
    return paths.atomic_write(out, buffer.getvalue())


def read_splits(path: str | os.PathLike) -> list[SplitRow]:
    """Read a file written by `write_splits` (raises DataError naming it when malformed)."""
    path = Path(path)
    rows = []
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise data.DataError(path, f"expected columns {','.join(COLUMNS)}")
        for row in reader:
            fold = row["fold"]
            if fold != TEST and fold not in {str(k) for k in range(1, N_FOLDS + 1)}:
                raise data.DataError(path, f"line {reader.line_num}: fold {fold!r} is not 1-5/test")
            rows.append(
                SplitRow(
                    row["image"], row["label"], row["slide"], TEST if fold == TEST else int(fold)
                )
            )
    return rows


def summary(rows: Sequence[SplitRow]) -> str:
    """Per part: images, atypical figures, slides (what a reader checks against the protocol)."""
    lines = []
    for part in [*range(1, N_FOLDS + 1), TEST]:
        sel = [r for r in rows if r.fold == part]
        name = f"fold {part}" if part != TEST else "test"
        n_aty = sum(r.label == data.LABELS[0] for r in sel)
        n_slides = len({r.slide for r in sel})
        lines.append(f"{name:>7}: {len(sel):5d} images, {n_aty:4d} atypical, {n_slides:3d} slides")
    return "\n".join(lines)


def cli_splits(args) -> int:
    """`amibr-bench splits --out FILE.csv`: the folds and test split, one row per AMi-Br image."""
    root = paths.data_root(getattr(args, "data_root", None))
    try:
        rows = author_folds(root)
    except data.DataError as exc:
        print(f"amibr-bench: {exc}", file=sys.stderr)
        return 1
    overlaps = slide_overlaps(rows)
    if overlaps:
        for line in overlaps:
            print(f"amibr-bench: {line}", file=sys.stderr)
        return 1
    out = write_splits(rows, args.out)
    print(f"wrote {out} ({len(rows)} images)")
    print(summary(rows))
    return 0
