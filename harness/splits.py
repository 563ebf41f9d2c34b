"""The authors' cross-validation folds and the AMi-Br test split.

The folds must be the authors' own, or per-fold numbers cannot be compared with theirs. They drew
them with StratifiedGroupKFold (5 splits, shuffle, seed 42, over amibr_train_split.csv in file
order, grouped by slide) under a scikit-learn older than 1.8, which draws other folds for the
same call; so the folds are read from the committed fold file (`harness.foldfile`,
expected_results/splits/), checked against its recorded sha256 and against the data tree, never
redrawn. Synthetic trees carry their own fold file, written by `amibr-bench data synth`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import textwrap
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from harness import data, foldfile, paths

N_FOLDS = foldfile.N_FOLDS
RANDOM_STATE = foldfile.RANDOM_STATE
TEST = "test"
COLUMNS = foldfile.COLUMNS
AUTHORS = "authors"
SKLEARN_INSTALLED = "sklearn-installed"
FOLDS_SOURCES = (AUTHORS, SKLEARN_INSTALLED)
SYNTHETIC_FOLDS = "synthetic_folds.csv"  # the fold file of a synthetic tree, at its root


@dataclass(frozen=True)
class SplitRow:
    """One AMi-Br image and where the protocol puts it: validation fold 1..5, or the test set."""

    image: str
    label: str
    slide: str
    fold: int | str


@dataclass(frozen=True)
class FoldAssignment:
    """The fold (1..5) of every image of the training pool and where it came from.

    source: "authors" (the committed file; a synthetic tree's own file) or "sklearn-installed"
    (drawn now by the installed scikit-learn: an explicit choice); sha256: digest of the fold
    table (`harness.foldfile.table` text), the value a configuration's hash covers; origin: the
    file read, or the call drawn; how: how the table was made."""

    source: str
    sha256: str
    origin: str
    how: str
    folds: dict[str, int]

    def describe(self) -> str:
        """One line: source, file (relative to the checkout when inside it), digest, how."""
        origin = self.origin.removeprefix(f"{paths.REPO_ROOT}{os.sep}")
        return f"{self.source} ({origin}; sha256 {self.sha256}; {self.how})"


def _check_source(source: str) -> None:
    if source not in FOLDS_SOURCES:
        raise paths.InputError(
            f"--folds-source must be one of {', '.join(FOLDS_SOURCES)}, not {source!r}"
        )


def _read_json(path: Path) -> dict:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise paths.MissingInputError(
            f"{path} is missing: it records the authors' folds (restore it from git)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise data.DataError(path, f"unreadable ({exc})") from None
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
        raise data.DataError(path, "no sha256 of the fold table recorded")
    return record


def author_digest() -> str:
    """sha256 of the authors' fold table as recorded in amibr_author_folds.json (what a
    configuration's hash covers for the real data); raises InputError when the record is bad."""
    return _read_json(foldfile.AUTHOR_JSON)["sha256"]


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise paths.MissingInputError(f"{path} is missing: {what}") from None
    except OSError as exc:
        raise data.DataError(path, f"unreadable ({exc})") from None


def _decode(blob: bytes, path: Path) -> str:
    try:
        return blob.decode("utf-8")
    except UnicodeDecodeError:
        raise data.DataError(path, "not UTF-8 text") from None


def _authors_table(root: Path) -> tuple[str, str, str]:
    """(table text, origin, how) of the committed authors' file, its digest checked."""
    record = _read_json(foldfile.AUTHOR_JSON)
    blob = _read_bytes(foldfile.AUTHOR_CSV, "it holds the authors' folds (restore it from git)")
    actual = foldfile.sha256_bytes(blob)
    if actual != record["sha256"]:
        raise data.DataError(
            foldfile.AUTHOR_CSV,
            f"sha256 {actual} differs from the {record['sha256']} recorded in "
            f"{foldfile.AUTHOR_JSON.name}: the authors' folds were changed (restore the file "
            "from git; `nox -s folds` regenerates and checks it)",
        )
    how = f"drawn under scikit-learn {record.get('scikit_learn', '?')} on {record.get('date', '?')}"
    return _decode(blob, foldfile.AUTHOR_CSV), str(foldfile.AUTHOR_CSV), how


def _comments(text: str) -> tuple[dict[str, str], str]:
    """The `# key: value` lines at the top of a synthetic fold file, and the table after them."""
    meta, lines = {}, text.splitlines(keepends=True)
    i = 0
    while i < len(lines) and lines[i].startswith("#"):
        key, _, value = lines[i][1:].strip().partition(": ")
        meta[key] = value.strip()
        i += 1
    return meta, "".join(lines[i:])


def _synthetic_table(root: Path) -> tuple[str, str, str]:
    """(table text, origin, how) of a synthetic tree's own fold file, its digests checked."""
    path = root / SYNTHETIC_FOLDS
    blob = _read_bytes(
        path, f"regenerate the synthetic tree with `amibr-bench data synth --out {root}`"
    )
    meta, body = _comments(_decode(blob, path))
    recorded = meta.get("table sha256")
    if recorded != foldfile.sha256_bytes(body.encode("utf-8")):
        raise data.DataError(
            path,
            f"the fold table does not match its recorded sha256 ({recorded}): the folds were "
            f"changed (regenerate the tree with `amibr-bench data synth --out {root}`)",
        )
    train_csv = root / data.TRAIN_CSV
    if meta.get("input sha256") != foldfile.sha256_file(train_csv):
        raise data.DataError(
            path,
            f"was drawn from another {data.TRAIN_CSV} than {train_csv} (sha256 differs): "
            f"regenerate the tree with `amibr-bench data synth --out {root}`",
        )
    return body, str(path), f"drawn under scikit-learn {meta.get('scikit-learn', '?')}"


def synthetic_fold_text(root: str | os.PathLike) -> str:
    """The fold file of a synthetic tree: how it was made (`#` lines), then the fold table drawn
    by the installed scikit-learn over the tree's amibr_train_split.csv (harness.synth)."""
    root = Path(root)
    train = data.train_split_rows(root)
    body = foldfile.table(train, foldfile.draw([t[1] for t in train], [t[2] for t in train]))
    v = foldfile.versions()
    head = [
        "folds of this synthetic tree (not the authors' images): drawn once when "
        "`amibr-bench data synth` wrote it",
        f"call: {foldfile.CALL}",
        f"input: {data.TRAIN_CSV}",
        f"input sha256: {foldfile.sha256_file(root / data.TRAIN_CSV)}",
        f"scikit-learn: {v['scikit_learn']}",
        f"numpy: {v['numpy']}",
        f"table sha256: {foldfile.sha256_bytes(body.encode('utf-8'))}",
    ]
    return "".join(f"# {line}\n" for line in head) + body


def write_synthetic_folds(root: str | os.PathLike) -> Path:
    """Write `SYNTHETIC_FOLDS` into a synthetic tree (atomically)."""
    return paths.atomic_write(Path(root) / SYNTHETIC_FOLDS, synthetic_fold_text(root))


def fold_assignment(root: str | os.PathLike, source: str = AUTHORS) -> FoldAssignment:
    """The folds of the training pool of the tree at `root`.

    source "authors": the committed authors' file for the public data, or the tree's own
    `synthetic_folds.csv` for a synthetic tree (or any tree that carries one); "sklearn-installed": the authors' call drawn now
    by the installed scikit-learn (differs from the authors' folds from scikit-learn 1.8 on).
    Raises InputError (one line naming the file) when a fold file is missing, changed since it
    was recorded (sha256), or lists other images, labels or slides than amibr_train_split.csv.
    Source: PROTOCOL.md row "cross-validation"; paper §4 (5-fold, slide-level stratification)."""
    _check_source(source)
    root = Path(root)
    train = data.train_split_rows(root)
    if source == SKLEARN_INSTALLED:
        text = foldfile.table(train, foldfile.draw([t[1] for t in train], [t[2] for t in train]))
        version = foldfile.versions()["scikit_learn"]
        origin = f"StratifiedGroupKFold drawn now over {root / data.TRAIN_CSV}"
        how = f"installed scikit-learn {version}, not the authors' folds"
    elif data.is_synthetic(root) or (root / SYNTHETIC_FOLDS).is_file():
        # a tree that carries its own fold file (every synthetic tree; the public data never do)
        text, origin, how = _synthetic_table(root)
    else:
        text, origin, how = _authors_table(root)
    try:
        table = foldfile.parse_table(text, origin)
    except ValueError as exc:
        raise paths.InputError(str(exc)) from None
    train_csv = root / data.TRAIN_CSV
    listed = {name: (label, slide) for name, label, slide in train}
    only_file = sorted(set(table) - set(listed))
    only_train = sorted(set(listed) - set(table))
    if only_file or only_train:
        raise paths.InputError(
            f"{origin} and {train_csv} list different images: {len(only_file)} only in the fold "
            f"file{' (e.g. ' + only_file[0] + ')' if only_file else ''}, {len(only_train)} only "
            f"in {data.TRAIN_CSV}{' (e.g. ' + only_train[0] + ')' if only_train else ''}"
        )
    changed = sorted(
        name for name, (label, slide, _f) in table.items() if listed[name] != (label, slide)
    )
    if changed:
        name = changed[0]
        raise paths.InputError(
            f"{origin} and {train_csv} disagree on the label or slide of {len(changed)} images "
            f"(e.g. {name}: {table[name][:2]} in the fold file, {listed[name]} in the train split)"
        )
    digest = foldfile.sha256_bytes(text.encode("utf-8"))
    return FoldAssignment(source, digest, origin, how, {n: f for n, (_l, _s, f) in table.items()})


def author_folds(
    root: str | os.PathLike, source: str = AUTHORS, assignment: FoldAssignment | None = None
) -> list[SplitRow]:
    """Every AMi-Br image (AMI-BR.csv order) with its fold, or "test" when not in the train CSV.

    The folds come from `fold_assignment(root, source)` (the committed authors' file unless
    told otherwise), or from `assignment` when the caller loaded it already."""
    assignment = assignment or fold_assignment(root, source)
    records = data.load_records(root, "AMi-Br")
    return [
        SplitRow(
            r.name, r.label, r.slide or "", assignment.folds[r.name] if r.split == "train" else TEST
        )
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


def summary(rows: Sequence[SplitRow], slides: bool = True) -> str:
    """Per part: images, atypical figures, slides (what a reader checks against the protocol);
    with `slides`, also the names of each part's slides."""
    lines, names = [], []
    for part in [*range(1, N_FOLDS + 1), TEST]:
        sel = [r for r in rows if r.fold == part]
        name = f"fold {part}" if part != TEST else "test"
        n_aty = sum(r.label == data.LABELS[0] for r in sel)
        part_slides = sorted({r.slide for r in sel})
        lines.append(
            f"{name:>7}: {len(sel):5d} images, {n_aty:4d} atypical, {len(part_slides):3d} slides"
        )
        names.append(
            textwrap.fill(
                ", ".join(part_slides),
                width=100,
                initial_indent=f"{name:>7}: ",
                subsequent_indent=" " * 9,
                break_on_hyphens=False,
            )
        )
    return "\n".join(lines + (["slides:", *names] if slides else []))


def cli_splits(args) -> int:
    """`amibr-bench splits [--out FILE.csv] [--folds-source authors|sklearn-installed]`: each
    fold's size, atypical figures and slides, the fold source and its digest; with --out, one row
    per AMi-Br image (image,label,slide,fold). Exit 1 when two parts share a slide."""
    root = paths.data_root(getattr(args, "data_root", None))
    source = getattr(args, "folds_source", None) or AUTHORS
    assignment = fold_assignment(root, source)
    rows = author_folds(root, assignment=assignment)
    print(f"folds: {assignment.describe()}")
    if source != AUTHORS:
        print(
            f"warning: --folds-source {source}: these are not the authors' folds "
            f"({foldfile.AUTHOR_JSON.name} says why)"
        )
    print(summary(rows))
    overlaps = slide_overlaps(rows)
    if overlaps:
        for line in overlaps:
            print(f"amibr-bench: {line}", file=sys.stderr)
        return 1
    if getattr(args, "out", None):
        out = write_splits(rows, args.out)
        print(f"wrote {out} ({len(rows)} images)")
    return 0
