"""Dataset registry for AMi-Br, AtNorM-Br and AtNorM-MD: records, `verify`, Table 1 figures.

The folder tree and the authors' CSV files must agree exactly; every disagreement is reported as
one `Problem` naming the file, because a silently skipped image would change every figure
downstream (Table 1, the folds, the test sets).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import sys
import zlib
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from harness import paths
from harness.paths import InputError

DATASETS = ("AMi-Br", "AtNorM-Br", "AtNorM-MD")
LABELS = ("Atypical", "Normal")
IMAGE_SIZE = (128, 128)  # width, height
IMAGE_SHAPE = (IMAGE_SIZE[1], IMAGE_SIZE[0], 3)

AMIBR_CSV = "AMI-BR.csv"
TRAIN_CSV = "amibr_train_split.csv"
VOTES_CSV = "AtNorM-MD_expert_votes.csv"

AMIBR_VOTE_COLUMNS = ("expert1_atypical", "expert2_atypical", "expert3_atypical")
AMIBR_COLUMNS = ("slide", "dataset", "uid", *AMIBR_VOTE_COLUMNS, "majority_atypical")
TRAIN_COLUMNS = ("slide", "dataset", "uid", "final_label", "dataset_uid")
MD_VOTE_COLUMNS = tuple(f"Expert_{i}" for i in range(1, 6))
VOTES_COLUMNS = ("Filename", *MD_VOTE_COLUMNS, "Majority")

# What the CSVs cannot tell: how each set was annotated and where it comes from (paper, Table 1).
ANNOTATION = {"AMi-Br": "3-expert vote", "AtNorM-Br": "Single expert", "AtNorM-MD": "5-expert vote"}
FIXED_SOURCE = {"AtNorM-Br": "TCGA", "AtNorM-MD": "MIDOG++"}

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


SYNTHETIC_MARKER = "SYNTHETIC"  # a file at the root of trees written by harness.synth
# Results sets name a synthetic tree's test sets "synthetic:<name>", so that its made-up numbers
# never stand in for the public test sets' (claims, merges and reports tell them apart).
SYNTHETIC_PREFIX = "synthetic:"


def test_set_name(dataset: str, synthetic: bool) -> str:
    """The name results sets give a test set: 'AMi-Br', or 'synthetic:AMi-Br' on a synthetic tree."""
    return f"{SYNTHETIC_PREFIX}{dataset}" if synthetic else dataset


def is_synthetic_test_set(name: str) -> bool:
    """'synthetic:<name>' (a test set of a synthetic tree; test_set_name)."""
    return name.startswith(SYNTHETIC_PREFIX) and len(name) > len(SYNTHETIC_PREFIX)


def is_synthetic(root: str | os.PathLike) -> bool:
    """Results on a synthetic tree must never be mistaken for results on the public data."""
    return (Path(root) / SYNTHETIC_MARKER).is_file()


class DataError(InputError):
    """Bad input data; the message always starts with the offending file."""

    def __init__(self, path: str | os.PathLike, message: str):
        self.path = Path(path)
        self.problem = message
        super().__init__(f"{self.path}: {message}")


@dataclass(frozen=True)
class Problem:
    """One defect of the dataset tree, printed as one line `path: message`."""

    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class Record:
    """One mitotic figure: where its image is and everything the authors' files say about it."""

    path: Path
    name: str
    label: str
    dataset: str
    slide: str | None = None
    votes: tuple[bool, ...] | None = None  # True = the expert voted atypical
    source: str | None = None
    split: str | None = None  # AMi-Br only: "train" (amibr_train_split.csv) or "test"


# ---------------------------------------------------------------------------------------------
# PNG decoding (shared with harness.imagecache)


_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel
_ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)
_MAX_RAW = 1 << 26  # larger images are refused for their size; do not inflate them here


def _raw_size(ihdr: bytes) -> int | None:
    """Bytes of filtered scanlines the IHDR chunk announces (PNG spec 7.2, 8.2), None if bad."""
    if len(ihdr) != 13 or ihdr[9] not in _CHANNELS or ihdr[12] not in (0, 1):
        return None
    width, height = int.from_bytes(ihdr[0:4], "big"), int.from_bytes(ihdr[4:8], "big")
    bits = ihdr[8] * _CHANNELS[ihdr[9]]
    total = 0
    for x0, y0, dx, dy in _ADAM7 if ihdr[12] else ((0, 0, 1, 1),):
        w, h = max(0, -(-(width - x0) // dx)), max(0, -(-(height - y0) // dy))
        if w and h:
            total += h * (1 + (w * bits + 7) // 8)  # one filter-type byte per scanline
    return total


def _image_data_error(ihdr: bytes, idat: list[memoryview]) -> str | None:
    """Is the zlib stream of the IDAT chunks complete and of the size IHDR announces? PIL pads a
    short stream with black pixels when ImageFile.LOAD_TRUNCATED_IMAGES is set anywhere in the
    process, so completeness is checked here, independently of that process-wide flag."""
    expected = _raw_size(ihdr)
    if expected is None:
        return "corrupt PNG (malformed IHDR chunk)"
    if expected > _MAX_RAW:
        return None
    if not idat:
        return "truncated PNG (no image data: no IDAT chunk)"
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(b"".join(idat), expected + 1)
    except zlib.error as exc:
        return f"corrupt PNG (the image data does not decompress: {exc})"
    if len(raw) > expected:
        return f"corrupt PNG (more image data than the {expected} bytes IHDR announces)"
    if len(raw) < expected:
        return f"truncated PNG (the image data ends after {len(raw)} of {expected} bytes)"
    if not inflater.eof:
        return "truncated PNG (the compressed image data stops before its end)"
    return None


def _png_structure_error(data: bytes | memoryview) -> str | None:
    """Walk the chunks and check every CRC, then that the image data is complete: PIL alone
    decodes some corrupt or truncated files without error."""
    view = memoryview(data)
    ihdr, idat = b"", []
    size = len(view)
    if size == 0:
        return "empty file"
    if bytes(view[:8]) != _PNG_SIGNATURE:
        return "not a PNG file (bad signature)"
    pos, first = 8, True
    while True:
        if pos + 12 > size:
            return "truncated PNG (the file ends before the IEND chunk)"
        length = int.from_bytes(view[pos : pos + 4], "big")
        kind = bytes(view[pos + 4 : pos + 8])
        name = kind.decode("ascii", "replace")
        end = pos + 12 + length
        if end > size:
            return f"truncated PNG (chunk {name!r} runs past the end of the file)"
        crc = int.from_bytes(view[end - 4 : end], "big")
        if zlib.crc32(view[pos + 4 : end - 4]) != crc:
            return f"corrupt PNG (CRC mismatch in chunk {name!r} at byte {pos})"
        if first and kind != b"IHDR":
            return "corrupt PNG (the first chunk is not IHDR)"
        if first:
            ihdr = bytes(view[pos + 8 : end - 4])
        elif kind == b"IDAT":
            idat.append(view[pos + 8 : end - 4])
        first = False
        if kind == b"IEND":
            if end != size:
                return f"corrupt PNG ({size - end} stray bytes after the IEND chunk)"
            return _image_data_error(ihdr, idat)
        pos = end


def decode_png(data: bytes, path: str | os.PathLike) -> np.ndarray:
    """Decode one image file's bytes to a 128x128x3 uint8 array, or raise DataError naming it."""
    error = _png_structure_error(data)
    if error:
        raise DataError(path, error)
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format != "PNG":
                raise DataError(path, f"not a PNG file ({im.format})")
            wrong = []
            if im.mode != "RGB":
                wrong.append(f"mode {im.mode}, expected RGB")
            if im.size != IMAGE_SIZE:
                wrong.append(f"size {im.size[0]}x{im.size[1]}, expected 128x128")
            if wrong:
                raise DataError(path, "wrong image: " + "; ".join(wrong))
            im.load()
            array = np.asarray(im, dtype=np.uint8)
    except DataError:
        raise
    except Exception as exc:  # PIL raises many types on bad data; none may escape as a crash
        raise DataError(path, f"corrupt PNG ({type(exc).__name__}: {exc})") from exc
    if array.shape != IMAGE_SHAPE:
        raise DataError(path, f"decoded to shape {array.shape}, expected {IMAGE_SHAPE}")
    return array


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read and decode one image file (no cache); raises DataError naming the file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(path, f"unreadable file ({exc.strerror or exc})") from exc
    return decode_png(data, path)


def _link_problem(path: Path, root: Path | None) -> str | None:
    """A symbolic link that points nowhere, or out of the data root (whose content the tree then
    no longer fixes), is a defect of the tree."""
    if not path.is_symlink():
        return None
    target = Path(os.path.realpath(path))
    if not target.exists():
        return f"dangling symlink (to {os.readlink(path)})"
    if root is not None and not target.is_relative_to(Path(os.path.realpath(root))):
        return f"symlink leaving the data root (to {target})"
    return None


def check_image(path: str | os.PathLike, root: str | os.PathLike | None = None) -> Problem | None:
    """The image's problem, if any, for `verify`: a dangling symlink, one leaving the data root
    `root` (when given), else what decoding says."""
    path = Path(path)
    link = _link_problem(path, Path(root) if root is not None else None)
    if link:
        return Problem(path, link)
    try:
        read_image(path)
    except DataError as exc:
        return Problem(exc.path, exc.problem)
    return None


# ---------------------------------------------------------------------------------------------
# Reading the tree


@dataclass
class _Scan:
    """What one dataset's files say, before any image is decoded."""

    records: list[Record] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)  # every PNG present in a class folder


def _read_csv(path: Path, required: Iterable[str]) -> tuple[list[tuple[int, dict]] | None, list]:
    """Rows with their line numbers, or None with the reason when the file cannot be used."""
    if not path.is_file():
        return None, [Problem(path, "missing file")]
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames
            rows = []
            for row in reader:
                rows.append((reader.line_num, row))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return None, [Problem(path, f"unreadable CSV ({exc})")]
    if not header:
        return None, [Problem(path, "empty CSV (no header line)")]
    missing = [c for c in required if c not in header]
    if missing:
        return None, [Problem(path, f"missing column(s) {', '.join(missing)}")]
    problems, good = [], []
    for line, row in rows:
        if None in row or any(v is None for v in row.values()):
            problems.append(Problem(path, f"line {line}: wrong number of fields"))
        else:
            good.append((line, row))
    return good, problems


def _parse_bool(text: str) -> bool | None:
    value = text.strip().lower()
    return True if value == "true" else False if value == "false" else None


def _scan_folders(ds_dir: Path) -> tuple[dict[str, list[str]], set[str], list[Problem]]:
    """Which class folder(s) hold each file name; which class folders are missing."""
    present: dict[str, list[str]] = {}
    problems: list[Problem] = []
    if not ds_dir.is_dir():
        return present, set(LABELS), [Problem(ds_dir, "missing folder")]
    missing = set()
    for label in LABELS:
        folder = ds_dir / label
        if not folder.is_dir():
            missing.add(label)
            problems.append(Problem(folder, "missing folder"))
            continue
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            problems.append(Problem(folder, f"unreadable folder ({exc.strerror or exc})"))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue  # .DS_Store and friends are not data
            if not entry.name.endswith(".png") or not (entry.is_file() or entry.is_symlink()):
                problems.append(Problem(folder / entry.name, "unexpected entry (not a .png file)"))
                continue
            present.setdefault(entry.name, []).append(label)
    for name, labels in present.items():
        if len(labels) > 1:
            problems.append(
                Problem(ds_dir / labels[1] / name, f"duplicated name: also in {ds_dir / labels[0]}")
            )
    return present, missing, problems


def _natural(name: str) -> tuple:
    stem = name.rsplit(".", 1)[0]
    return (0, int(stem), name) if stem.isdigit() else (1, 0, name)


@dataclass
class _Listed:
    line: int
    name: str
    label: str | None  # None: the CSV's label was unreadable (reported separately)
    vote_label: str | None = None  # the label the experts' votes give, when the CSV has votes


def _match(
    ds_dir: Path,
    csv_path: Path,
    listed: list[_Listed],
    present: dict[str, list[str]],
    missing_folders: set[str],
) -> tuple[list[Problem], set[str]]:
    """Compare a CSV's list with the folders: missing, extra, wrongly labelled, listed twice.

    Returns the problems and the names whose label is already in doubt, so that other checks of
    the same image do not report one defect twice.
    """
    problems: list[Problem] = []
    doubtful: set[str] = set()
    seen: dict[str, int] = {}
    for item in listed:
        if item.name in seen:
            problems.append(
                Problem(
                    csv_path,
                    f"line {item.line}: {item.name} listed twice (first on line {seen[item.name]})",
                )
            )
            doubtful.add(item.name)
            continue
        seen[item.name] = item.line
        where = present.get(item.name, [])
        if len(where) > 1:
            doubtful.add(item.name)  # the folder scan reports the duplicate
            continue
        if not where:
            # An unreadable label is reported already; a missing class folder is one problem.
            if item.label is not None and item.label not in missing_folders:
                problems.append(
                    Problem(
                        ds_dir / item.label / item.name,
                        f"missing image (listed on line {item.line} of {csv_path.name})",
                    )
                )
            continue
        if item.label is None:
            doubtful.add(item.name)
            continue
        if where[0] != item.label:
            votes = f"; the expert votes say {item.vote_label}" if item.vote_label else ""
            problems.append(
                Problem(
                    ds_dir / where[0] / item.name,
                    f"label disagrees: the image is in {where[0]}/ but line {item.line} of "
                    f"{csv_path.name} says {item.label}{votes}",
                )
            )
            doubtful.add(item.name)
        elif item.vote_label and item.vote_label != item.label:
            problems.append(
                Problem(
                    csv_path,
                    f"line {item.line}: {item.name} is labelled {item.label} but the majority "
                    f"of the expert votes is {item.vote_label}",
                )
            )
            doubtful.add(item.name)
    for name, labels in present.items():
        if name not in seen:
            for label in labels:
                problems.append(
                    Problem(ds_dir / label / name, f"extra image: not listed in {csv_path.name}")
                )
    return problems, doubtful


def _vote_label(votes: tuple[bool, ...]) -> str:
    return LABELS[0] if sum(votes) * 2 > len(votes) else LABELS[1]


def _scan_amibr(root: Path) -> _Scan:
    ds_dir = root / "AMi-Br"
    scan = _Scan()
    present, missing_folders, problems = _scan_folders(ds_dir)
    scan.problems += problems
    scan.images = [ds_dir / lab / n for n, labs in present.items() for lab in labs]
    csv_path, train_path = root / AMIBR_CSV, root / TRAIN_CSV
    rows, problems = _read_csv(csv_path, AMIBR_COLUMNS)
    scan.problems += problems
    train_rows, train_problems = _read_csv(train_path, TRAIN_COLUMNS)
    scan.problems += train_problems
    if rows is None:
        return scan

    listed, info = [], {}
    for line, row in rows:
        name = f"{row['dataset'].strip()}_{row['uid'].strip()}.png"
        votes = tuple(_parse_bool(row[c]) for c in AMIBR_VOTE_COLUMNS)
        majority = _parse_bool(row["majority_atypical"])
        bad = [c for c, v in zip(AMIBR_COLUMNS[3:], (*votes, majority), strict=True) if v is None]
        empty = [c for c in ("slide", "dataset", "uid") if not row[c].strip()]
        if bad or empty:
            what = [f"{', '.join(bad)} not True/False"] if bad else []
            what += [f"empty {', '.join(empty)}"] if empty else []
            scan.problems.append(Problem(csv_path, f"line {line}: {'; '.join(what)}"))
            listed.append(_Listed(line, name, None))
            continue
        label = LABELS[0] if majority else LABELS[1]
        listed.append(_Listed(line, name, label, _vote_label(votes)))
        info.setdefault(name, (line, label, row["slide"].strip(), votes, row["dataset"].strip()))
    problems, doubtful = _match(ds_dir, csv_path, listed, present, missing_folders)
    scan.problems += problems
    listed_names = {item.name for item in listed}

    train: set[str] = set()
    if train_rows is not None:
        seen: dict[str, int] = {}
        for line, row in train_rows:
            name = row["dataset_uid"].strip()
            expected = f"{row['dataset'].strip()}_{row['uid'].strip()}.png"
            where = f"line {line}: {name}"
            if name in seen:
                scan.problems.append(
                    Problem(train_path, f"{where} listed twice (first on line {seen[name]})")
                )
                continue
            seen[name] = line
            train.add(name)
            if name != expected:
                scan.problems.append(
                    Problem(train_path, f"{where} does not match dataset and uid ({expected})")
                )
            elif name not in listed_names:
                scan.problems.append(Problem(train_path, f"{where} is not in {AMIBR_CSV}"))
            elif name in doubtful or name not in info:
                continue  # that row of AMI-BR.csv is reported already
            elif row["final_label"].strip() != info[name][1]:
                scan.problems.append(
                    Problem(
                        train_path,
                        f"{where} has final_label {row['final_label']!r} but line {info[name][0]} "
                        f"of {AMIBR_CSV} and the folder say {info[name][1]}",
                    )
                )
            elif row["slide"].strip() != info[name][2]:
                scan.problems.append(
                    Problem(
                        train_path,
                        f"{where} is on slide {row['slide']!r} but line {info[name][0]} of "
                        f"{AMIBR_CSV} says {info[name][2]!r}",
                    )
                )

    for name, (_line, label, slide, votes, source) in info.items():
        split = "train" if name in train else "test"
        scan.records.append(
            Record(ds_dir / label / name, name, label, "AMi-Br", slide, votes, source, split)
        )
    return scan


def _scan_atnorm_br(root: Path) -> _Scan:
    ds_dir = root / "AtNorM-Br"
    present, _missing, problems = _scan_folders(ds_dir)
    scan = _Scan(problems=problems)
    scan.images = [ds_dir / lab / n for n, labs in present.items() for lab in labs]
    order = sorted(
        ((LABELS.index(labs[0]), _natural(n), n, labs[0]) for n, labs in present.items()),
    )
    for _i, _key, name, label in order:
        scan.records.append(
            Record(
                ds_dir / label / name, name, label, "AtNorM-Br", source=FIXED_SOURCE["AtNorM-Br"]
            )
        )
    return scan


def _scan_atnorm_md(root: Path) -> _Scan:
    ds_dir = root / "AtNorM-MD"
    present, missing_folders, problems = _scan_folders(ds_dir)
    scan = _Scan(problems=problems)
    scan.images = [ds_dir / lab / n for n, labs in present.items() for lab in labs]
    csv_path = root / VOTES_CSV
    rows, problems = _read_csv(csv_path, VOTES_COLUMNS)
    scan.problems += problems
    if rows is None:
        return scan
    listed, info = [], {}
    for line, row in rows:
        name = row["Filename"].strip()
        bad = [c for c in (*MD_VOTE_COLUMNS, "Majority") if row[c].strip() not in LABELS]
        if bad or not name:
            what = f"{', '.join(bad)} not Atypical/Normal" if bad else "empty Filename"
            scan.problems.append(Problem(csv_path, f"line {line}: {what}"))
            listed.append(_Listed(line, name, None))
            continue
        votes = tuple(row[c].strip() == LABELS[0] for c in MD_VOTE_COLUMNS)
        label = row["Majority"].strip()
        listed.append(_Listed(line, name, label, _vote_label(votes)))
        info.setdefault(name, (label, votes))
    problems, _doubtful = _match(ds_dir, csv_path, listed, present, missing_folders)
    scan.problems += problems
    for name, (label, votes) in info.items():
        scan.records.append(
            Record(
                ds_dir / label / name,
                name,
                label,
                "AtNorM-MD",
                votes=votes,
                source=FIXED_SOURCE["AtNorM-MD"],
            )
        )
    return scan


_SCANNERS = {"AMi-Br": _scan_amibr, "AtNorM-Br": _scan_atnorm_br, "AtNorM-MD": _scan_atnorm_md}


def _scan(root: str | os.PathLike, dataset: str) -> _Scan:
    if dataset not in _SCANNERS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    root = Path(root)
    if not root.is_dir():
        return _Scan(problems=[Problem(root, "missing folder (the data root)")])
    return _SCANNERS[dataset](root)


def _raise_first(problems: list[Problem]) -> None:
    if problems:
        first = problems[0]
        more = len(problems) - 1
        tail = f" (and {more} more problem(s): run `amibr-bench data verify`)" if more else ""
        raise DataError(first.path, first.message + tail)


def load_records(root: str | os.PathLike, dataset: str) -> list[Record]:
    """Every figure of one dataset, in the authors' CSV order (AtNorM-Br: class, then number).

    Reads only the CSVs and the folder listings; `verify` also decodes the images.
    """
    scan = _scan(root, dataset)
    _raise_first(scan.problems)
    return scan.records


def train_split_rows(root: str | os.PathLike) -> list[tuple[str, str, str]]:
    """(image, final_label, slide) of amibr_train_split.csv in file order (the folds need it)."""
    load_records(root, "AMi-Br")  # the file must agree with the tree before folds are drawn
    rows, problems = _read_csv(Path(root) / TRAIN_CSV, TRAIN_COLUMNS)
    _raise_first(problems)
    return [
        (r["dataset_uid"].strip(), r["final_label"].strip(), r["slide"].strip()) for _l, r in rows
    ]


_NEEDS_BOTH = "balanced accuracy and AUROC need both classes"


def _lacking(records: Iterable[Record]) -> list[str]:
    present = {r.label for r in records}
    return [label for label in LABELS if label not in present]


def _class_problems(root: Path, dataset: str, records: list[Record]) -> list[Problem]:
    """A dataset, AMi-Br's test split or training pool, or one of the authors' folds holding a
    single class (e.g. AtNorM-Br, which has no CSV, with an empty Atypical/ folder): each test set
    is scored, and each fold trained and validated, on both classes. One problem per missing
    class, at the most general place it is missing."""
    ds_dir = root / dataset
    gone = _lacking(records)
    problems = [
        Problem(ds_dir / label, f"{dataset} holds no {label} figure: {_NEEDS_BOTH}")
        for label in gone
    ]
    if dataset != "AMi-Br":
        return problems
    train_csv = root / TRAIN_CSV
    pool = [r for r in records if r.split == "train"]
    test = [r for r in records if r.split == "test"]
    for part, rows in (
        (f"the AMi-Br test split (figures of {AMIBR_CSV} not in {TRAIN_CSV})", test),
        ("the AMi-Br training pool", pool),
    ):
        for label in _lacking(rows):
            if label not in gone:
                problems.append(
                    Problem(train_csv, f"{part} holds no {label} figure: {_NEEDS_BOTH}")
                )
    if _lacking(pool):
        return problems
    from harness import splits  # splits reads this module's records

    try:
        rows = splits.author_folds(root)
    except ValueError as exc:  # e.g. fewer slides than folds; DataError is a ValueError too
        return [*problems, Problem(train_csv, f"the authors' folds cannot be drawn ({exc})")]
    for fold in range(1, splits.N_FOLDS + 1):
        train, val, _test = splits.fold_sets(rows, fold)
        for part, sel in (("training", train), ("validation", val)):
            problems += [
                Problem(
                    train_csv,
                    f"fold {fold}: the {part} split ({len(sel)} figures) holds no {label} "
                    f"figure: {_NEEDS_BOTH}",
                )
                for label in LABELS
                if label not in {r.label for r in sel}
            ]
    return problems


def verify(root: str | os.PathLike, *, workers: int | None = None) -> list[Problem]:
    """Every defect of the tree, one Problem each; an empty list means the tree is sound.

    A dataset whose files agree is also checked for classes: each dataset, AMi-Br's test split
    and training pool, and each of the authors' folds must hold both labels."""
    problems: list[Problem] = []
    images: list[Path] = []
    for dataset in DATASETS:
        scan = _scan(root, dataset)
        problems += scan.problems
        images += scan.images
        if not Path(root).is_dir():
            return problems
        if not scan.problems:
            problems += _class_problems(Path(root), dataset, scan.records)
    workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        check = functools.partial(check_image, root=root)
        image_problems = [p for p in pool.map(check, images, chunksize=64) if p]
    return problems + sorted(image_problems, key=lambda p: str(p.path))


# ---------------------------------------------------------------------------------------------
# Table 1


def _pct(part: int, whole: int) -> float | None:
    return 100.0 * part / whole if whole else None


# The names of the figures `figures` returns (Table 1 and the AMi-Br split); claims name them.
FIGURE_FIELDS = (
    "total", "atypical", "normal", "amf_rate_pct", "annotation", "experts", "agreement_n",
    "agreement_pct", "sources", "source_counts", "slides", "test_n", "test_share_pct",
    "test_atypical", "test_slides", "train_n", "train_atypical", "train_slides",
)  # fmt: skip


def figures(records: list[Record], dataset: str) -> dict:
    """Table 1's figures of one dataset, computed from its records."""
    total = len(records)
    atypical = sum(r.label == LABELS[0] for r in records)
    voted = [r.votes for r in records if r.votes is not None]
    experts = len(voted[0]) if voted else 1
    agreement = sum(len(set(v)) == 1 for v in voted) if voted else None
    counts: dict[str, int] = {}
    for r in records:
        if r.source:
            counts[r.source] = counts.get(r.source, 0) + 1
    out = {
        "total": total,
        "atypical": atypical,
        "normal": total - atypical,
        "amf_rate_pct": _pct(atypical, total),
        "annotation": ANNOTATION[dataset],
        "experts": experts,
        "agreement_n": agreement,
        "agreement_pct": _pct(agreement, total) if agreement is not None else None,
        "sources": sorted(counts, key=lambda s: (-counts[s], s)),
    }
    if dataset == "AMi-Br":
        test = [r for r in records if r.split == "test"]
        train = [r for r in records if r.split == "train"]
        out["source_counts"] = {s: counts[s] for s in out["sources"]}
        out["slides"] = len({r.slide for r in records})
        out["test_n"] = len(test)
        out["test_share_pct"] = _pct(len(test), total)
        out["test_atypical"] = sum(r.label == LABELS[0] for r in test)
        out["test_slides"] = len({r.slide for r in test})
        out["train_n"] = len(train)
        out["train_atypical"] = sum(r.label == LABELS[0] for r in train)
        out["train_slides"] = len({r.slide for r in train})
    return out


def table1(root: str | os.PathLike) -> dict[str, dict]:
    """Table 1 of the paper as the data give it, per dataset (raises DataError on a bad tree)."""
    return {ds: figures(load_records(root, ds), ds) for ds in DATASETS}


# ---------------------------------------------------------------------------------------------
# Dataset claims (called by harness.claims and test_data_claims)

_TABLE1_CACHE: dict[tuple, dict] = {}


def _signature(root: Path) -> tuple:
    """Cheap fingerprint so repeated claims reuse one table1 unless the files changed."""
    parts = [str(root)]
    for rel in (
        AMIBR_CSV,
        TRAIN_CSV,
        VOTES_CSV,
        *(f"{d}/{lab}" for d in DATASETS for lab in LABELS),
    ):
        try:
            st = (root / rel).stat()
            parts.append((rel, st.st_mtime_ns, st.st_size))
        except OSError:
            parts.append((rel, None))
    return tuple(parts)


def _cached_table1(root: Path) -> dict:
    key = _signature(root)
    if key not in _TABLE1_CACHE:
        _TABLE1_CACHE[key] = table1(root)
    return _TABLE1_CACHE[key]


def _lookup(figs: Mapping, dotted: str):
    value = figs
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise KeyError(f"no figure {dotted!r} (known: {', '.join(figs)})")
        value = value[part]
    return value


def figure(root: str | os.PathLike, dataset: str, field: str) -> object:
    """One Table 1 figure, e.g. figure(root, "AMi-Br", "source_counts.MIDOG21") (cached per tree)."""
    return _lookup(_cached_table1(Path(root))[dataset], field)


# ---------------------------------------------------------------------------------------------
# CLI

_ROWS = (
    ("Total MFs", "total", "{:,}"),
    ("Atypical", "atypical", "{:,}"),
    ("Normal", "normal", "{:,}"),
    ("AMF rate (%)", "amf_rate_pct", "{:.1f}%"),
    ("Annotation type", "annotation", "{}"),
    ("Expert agreement", "agreement_pct", "{:.1f}%"),
    ("  (figures)", "agreement_n", "{:,}"),
    ("Source dataset(s)", "sources", None),
)


def format_table1(figs: Mapping[str, Mapping]) -> str:
    """Table 1 laid out like the paper's, plus the AMi-Br source and test-split counts."""
    lines = [["Property", *figs]]
    for title, key, fmt in _ROWS:
        cells = [title]
        for ds in figs:
            value = figs[ds].get(key)
            if value is None:
                cells.append("-")
            elif fmt is None:
                cells.append(", ".join(value))
            else:
                cells.append(fmt.format(value))
        lines.append(cells)
    widths = [max(len(row[i]) for row in lines) for i in range(len(lines[0]))]
    text = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in lines
    ]
    amibr = figs.get("AMi-Br")
    if amibr:
        comp = ", ".join(f"{s} {n:,}" for s, n in amibr["source_counts"].items())
        text.append(f"AMi-Br sources: {comp}; {amibr['slides']} slides")
        text.append(
            f"AMi-Br test split: {amibr['test_n']:,} figures ({amibr['test_share_pct']:.1f}%), "
            f"{amibr['test_atypical']} atypical, {amibr['test_slides']} slides; training pool "
            f"{amibr['train_n']:,} ({amibr['train_atypical']} atypical, "
            f"{amibr['train_slides']} slides)"
        )
    return "\n".join(text)


def cli_verify(args) -> int:
    """`amibr-bench data verify`: Table 1 when sound, else one line per problem; exit 0 / 1."""
    root = paths.data_root(getattr(args, "data_root", None))
    problems = verify(root)
    as_json = getattr(args, "json", False)
    if problems:
        if as_json:
            payload = {
                "root": str(root),
                "ok": False,
                "problems": [{"path": str(p.path), "message": p.message} for p in problems],
            }
            print(json.dumps(payload, indent=2))
        else:
            for p in problems:
                print(p)
        print(f"amibr-bench: {len(problems)} problem(s) in {root}", file=sys.stderr)
        return 1
    figs = table1(root)
    if as_json:
        print(json.dumps({"root": str(root), "ok": True, "datasets": figs}, indent=2))
    else:
        n = sum(f["total"] for f in figs.values())
        print(f"{root}: sound ({n:,} images verified)")
        print(format_table1(figs))
    return 0
