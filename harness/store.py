"""Results store: one folder per configuration hash, one completion marker per fold.

Layout::

    <store>/configs/<hash>/config.json            the full configuration that produced the hash
    <store>/configs/<hash>/fold-<k>/result.json   completion marker: per-test-set metrics + info,
                                                  and the size (and digest) of the fold's files
    <store>/configs/<hash>/fold-<k>/predictions.csv
    <store>/configs/<hash>/fold-<k>/best.safetensors  the fold's best checkpoint (trainable part)
    <store>/configs/<hash>/.fold-<k>.lock         held while the fold is checked, trained, saved
    <store>/.export.lock                          held while the store's results set is rewritten

A fold folder is written under a temporary name and renamed into place, so a fold either is
complete or absent: an interrupted run resumes at the first fold without a marker. A fold whose
marker is unreadable or whose files are missing, truncated or changed is not done (it is trained
again), and a damaged config.json is rewritten by the next run of its configuration: the store
holds derived data, so damage costs time, never a wrong number or a crash. Changing anything in
a configuration (model registry version included) changes its hash, and the older folders show up
as stale for the same (model, method, preset, tier, data) label.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from harness import paths
from harness.results import PRED_COLUMNS

RESULT, PREDICTIONS, STATE, CONFIG = (
    "result.json",
    "predictions.csv",
    "best.safetensors",
    "config.json",
)


class StoreError(paths.InputError):
    """A store file that cannot be used where it cannot simply be redone; names the file."""


def csv_text(rows: Iterable[Mapping[str, Any]], columns: tuple[str, ...]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _cell(row.get(c)) for c in columns})
    return buf.getvalue()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if value != value else repr(value)  # NaN -> empty; full precision otherwise
    return value


def _read_json(path: Path) -> tuple[Any, str | None]:
    """(value, None), or (None, why) when the file is missing, unreadable or not JSON."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, "missing"
    except (OSError, ValueError) as exc:  # ValueError: undecodable bytes
        return None, f"unreadable ({exc})"
    try:
        return json.loads(text), None
    except ValueError as exc:
        return None, f"not valid JSON ({exc})"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _safetensors_problem(path: Path, size: int) -> str | None:
    """Whether the header of a safetensors file is sound and accounts for its whole size."""
    try:
        with path.open("rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            if n <= 0 or 8 + n > size:
                return "not a safetensors file (bad header length)"
            header = json.loads(fh.read(n))
        ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        return f"not a safetensors file ({type(exc).__name__})"
    return None if 8 + n + max(ends, default=0) == size else "truncated safetensors file"


class Store:
    """Per-(configuration, fold) results on disk, resumable and keyed by configuration hash."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def config_dir(self, config_hash: str) -> Path:
        return self.root / "configs" / config_hash

    def fold_dir(self, config_hash: str, fold: int) -> Path:
        return self.config_dir(config_hash) / f"fold-{fold}"

    # --- locks ----------------------------------------------------------------------------------

    def fold_lock(self, config_hash: str, fold: int) -> FileLock:
        """A context manager held while one fold is checked, trained and saved (filelock: an OS
        lock on `configs/<hash>/.fold-<k>.lock`, released when its holder exits, even by a crash).
        Re-entrant in one process; another process (a second `run`, a job of an array) waits.
        Check `is_done` again once it is held: the fold may have been finished meanwhile."""
        lock = self.config_dir(config_hash) / f".fold-{fold}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(lock, is_singleton=True)

    def export_lock(self) -> FileLock:
        """Held while the store-level results set (fold_metrics.csv, predictions.csv,
        manifest.json) is collected and rewritten, so two exports never interleave their files."""
        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(self.root / ".export.lock", is_singleton=True)

    # --- configurations -------------------------------------------------------------------------

    def register(self, config_hash: str, description: Mapping[str, Any]) -> None:
        """Record the configuration once. A damaged config.json is rewritten (the description is
        derived from the hash's inputs); a sound one that differs raises StoreError."""
        path = self.config_dir(config_hash) / CONFIG
        text = json.dumps(description, indent=2, sort_keys=True)
        stored, _problem = _read_json(path)
        if isinstance(stored, dict):
            if stored != json.loads(text):
                raise StoreError(
                    f"{path}: holds a different configuration under the same hash (edited by "
                    "hand?); move that configuration folder away and run again"
                )
            return
        paths.atomic_write(path, text)

    def _config_files(self) -> dict[str, tuple[dict | None, str | None]]:
        out = {}
        base = self.root / "configs"
        try:
            folders = sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
        except OSError:
            return {}
        for folder in folders:
            value, problem = _read_json(folder / CONFIG)
            if problem == "missing" and not any(folder.glob("fold-*")):
                continue  # only lock files: a run that stopped before registering
            if problem is None and not isinstance(value, dict):
                value, problem = None, f"holds a JSON {type(value).__name__}, not an object"
            out[folder.name] = (value, problem)
        return out

    def configs(self) -> dict[str, dict[str, Any]]:
        """Every stored configuration whose config.json is sound: hash -> its description."""
        return {h: v for h, (v, _p) in self._config_files().items() if v is not None}

    def damaged_configs(self) -> dict[str, str]:
        """config.json files that cannot be read: path -> problem (rewritten by the next run)."""
        return {
            str(self.config_dir(h) / CONFIG): p
            for h, (_v, p) in self._config_files().items()
            if p is not None
        }

    def stale(self, current: Mapping[str, str]) -> dict[str, list[str]]:
        """For each label (e.g. 'UNI|lora|paper|full|real') whose current hash is given, the stored
        hashes with the same label but another hash: results made with an older configuration."""
        out: dict[str, list[str]] = {}
        for h, desc in self.configs().items():
            label = desc.get("label")
            if isinstance(label, str) and label in current and current[label] != h:
                out.setdefault(label, []).append(h)
        return out

    # --- folds ----------------------------------------------------------------------------------

    def fold_problem(self, config_hash: str, fold: int) -> str | None:
        """Why a fold is not done ("absent", or what is damaged); None when it is complete."""
        try:
            return self._fold_problem(self.fold_dir(config_hash, fold), fold)
        except OSError as exc:
            return f"unreadable ({exc})"

    @staticmethod
    def _fold_problem(folder: Path, fold: int) -> str | None:
        if not folder.is_dir():
            return f"{folder.name} is not a folder" if folder.exists() else "absent"
        result, problem = _read_json(folder / RESULT)
        if problem is not None:
            return f"{RESULT} {problem}"
        if not (
            isinstance(result, dict)
            and result.get("fold") == fold
            and isinstance(result.get("metrics"), list)
            and all(isinstance(m, dict) for m in result["metrics"])
            and isinstance(result.get("info"), dict)
        ):
            return f"{RESULT} does not hold this fold's metrics and info"
        files = result.get("files", {PREDICTIONS: {}})  # older stores record no files
        if not isinstance(files, dict) or PREDICTIONS not in files:
            return f"{RESULT} lists no {PREDICTIONS}"
        for name, meta in files.items():
            path = folder / str(name)
            if not path.is_file():
                return f"{name} is missing"
            size = path.stat().st_size
            if not isinstance(meta, dict):
                return f"{RESULT} has no size for {name}"
            if "bytes" in meta and size != meta["bytes"]:
                return f"{name} has {size} bytes, not the {meta['bytes']} written"
            if "sha256" in meta and _digest(path) != meta["sha256"]:
                return f"{name} changed after it was written (sha256 differs)"
            if name == STATE and (why := _safetensors_problem(path, size)):
                return f"{name}: {why}"
        return None

    def is_done(self, config_hash: str, fold: int) -> bool:
        return self.fold_problem(config_hash, fold) is None

    def _fold_folders(self, config_hash: str) -> list[int]:
        base = self.config_dir(config_hash)
        try:
            names = [p.name for p in base.iterdir()] if base.is_dir() else []
        except OSError:
            return []
        return sorted(int(n[5:]) for n in names if n.startswith("fold-") and n[5:].isdigit())

    def done_folds(self, config_hash: str) -> list[int]:
        return [f for f in self._fold_folders(config_hash) if self.is_done(config_hash, f)]

    def damaged_folds(self, config_hash: str) -> dict[int, str]:
        """Fold folders present but not done: fold -> problem (they are trained again)."""
        problems = {f: self.fold_problem(config_hash, f) for f in self._fold_folders(config_hash)}
        return {f: p for f, p in problems.items() if p is not None}

    def save_fold(
        self,
        config_hash: str,
        fold: int,
        metrics: list[dict[str, Any]],
        predictions: list[dict[str, Any]],
        *,
        state: Mapping[str, torch.Tensor] | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        """Write a fold's results into a temporary folder and rename it into place, under the
        fold's lock; result.json records each file's size (and the predictions' sha256)."""
        final = self.fold_dir(config_hash, fold)
        with self.fold_lock(config_hash, fold):
            for old in final.parent.glob(f".{final.name}.*.tmp"):  # left by a crashed writer
                shutil.rmtree(old, ignore_errors=True)
            tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
            tmp.mkdir(parents=True)
            (tmp / PREDICTIONS).write_text(csv_text(predictions, PRED_COLUMNS))
            if state is not None:
                from safetensors.torch import save_file

                save_file(
                    {k: v.detach().cpu().contiguous() for k, v in state.items()},
                    str(tmp / STATE),
                )
            files: dict[str, dict[str, Any]] = {
                name: {"bytes": (tmp / name).stat().st_size}
                for name in (PREDICTIONS, STATE)
                if (tmp / name).is_file()
            }
            files[PREDICTIONS]["sha256"] = _digest(tmp / PREDICTIONS)
            record = {"fold": fold, "metrics": metrics, "info": dict(info or {}), "files": files}
            (tmp / RESULT).write_text(json.dumps(record, indent=2))
            if final.is_dir():  # a damaged fold, or a partial write that never got its marker
                shutil.rmtree(final)
            elif final.exists():
                final.unlink()
            os.replace(tmp, final)

    def load_fold(self, config_hash: str, fold: int) -> tuple[list[dict], list[dict], dict]:
        """(metric rows, prediction rows, info) of a done fold; StoreError names a damaged one."""
        folder = self.fold_dir(config_hash, fold)
        problem = self.fold_problem(config_hash, fold)
        if problem is not None:
            raise StoreError(f"{folder}: fold not usable ({problem}); run it again")
        result, _ = _read_json(folder / RESULT)
        with open(folder / PREDICTIONS, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            preds = list(reader)
        if tuple(reader.fieldnames or ()) != PRED_COLUMNS:
            raise StoreError(f"{folder / PREDICTIONS}: expected columns {','.join(PRED_COLUMNS)}")
        return result["metrics"], preds, result["info"]


def write_results_set(
    out: str | os.PathLike,
    fold_rows: list[dict[str, Any]],
    predictions: list[dict[str, Any]] | None,
    manifest: dict[str, Any],
) -> Path:
    """Export in the results-set format (docs/ARCHITECTURE.md) through harness.results."""
    from harness import results

    out = Path(out)
    results.write_results_set(out, fold_rows, predictions=predictions, manifest=manifest)
    return out
