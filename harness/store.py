"""Results store: one folder per configuration hash, one completion marker per fold.

Layout::

    <store>/configs/<hash>/config.json            the full configuration that produced the hash
    <store>/configs/<hash>/fold-<k>/result.json   completion marker: per-test-set metrics + info
    <store>/configs/<hash>/fold-<k>/predictions.csv
    <store>/configs/<hash>/fold-<k>/best.safetensors  the fold's best checkpoint (trainable part)

A fold folder is written under a temporary name and renamed into place, so a fold either is
complete or absent: an interrupted run resumes at the first fold without a marker. Changing
anything in a configuration (model registry version included) changes its hash, and the older
folders show up as stale for the same (model, method, preset, tier, data) label.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from harness import paths

FOLD_COLUMNS = ("model", "method", "dataset", "fold", "balanced_accuracy", "auroc", "pr_auc")
PRED_COLUMNS = ("model", "method", "dataset", "fold", "image", "label", "prob_atypical")


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


class Store:
    """Per-(configuration, fold) results on disk, resumable and keyed by configuration hash."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def config_dir(self, config_hash: str) -> Path:
        return self.root / "configs" / config_hash

    def fold_dir(self, config_hash: str, fold: int) -> Path:
        return self.config_dir(config_hash) / f"fold-{fold}"

    def register(self, config_hash: str, description: Mapping[str, Any]) -> None:
        """Record the configuration once (it must not change under the same hash)."""
        path = self.config_dir(config_hash) / "config.json"
        text = json.dumps(description, indent=2, sort_keys=True)
        if path.is_file():
            if json.loads(path.read_text()) != json.loads(text):
                raise RuntimeError(f"{path} holds a different configuration under the same hash")
            return
        paths.atomic_write(path, text)

    def is_done(self, config_hash: str, fold: int) -> bool:
        return (self.fold_dir(config_hash, fold) / "result.json").is_file()

    def done_folds(self, config_hash: str) -> list[int]:
        base = self.config_dir(config_hash)
        if not base.is_dir():
            return []
        return sorted(
            int(p.name.split("-")[1])
            for p in base.glob("fold-*")
            if p.name.split("-")[1].isdigit() and (p / "result.json").is_file()
        )

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
        """Write a fold's results into a temporary folder and rename it into place."""
        final = self.fold_dir(config_hash, fold)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        (tmp / "predictions.csv").write_text(csv_text(predictions, PRED_COLUMNS))
        if state is not None:
            from safetensors.torch import save_file

            save_file(
                {k: v.detach().cpu().contiguous() for k, v in state.items()},
                str(tmp / "best.safetensors"),
            )
        (tmp / "result.json").write_text(
            json.dumps({"fold": fold, "metrics": metrics, "info": dict(info or {})}, indent=2)
        )
        if final.exists():  # a previous partial write that never got its marker
            shutil.rmtree(final)
        os.replace(tmp, final)

    def load_fold(self, config_hash: str, fold: int) -> tuple[list[dict], list[dict], dict]:
        folder = self.fold_dir(config_hash, fold)
        result = json.loads((folder / "result.json").read_text())
        with open(folder / "predictions.csv", newline="") as fh:
            preds = list(csv.DictReader(fh))
        return result["metrics"], preds, result["info"]

    def configs(self) -> dict[str, dict[str, Any]]:
        """Every stored configuration: hash -> its description."""
        out = {}
        for path in sorted((self.root / "configs").glob("*/config.json")):
            out[path.parent.name] = json.loads(path.read_text())
        return out

    def stale(self, current: Mapping[str, str]) -> dict[str, list[str]]:
        """For each label (e.g. 'UNI|lora|paper|full|real') whose current hash is given, the stored
        hashes with the same label but another hash: results made with an older configuration."""
        out: dict[str, list[str]] = {}
        for h, desc in self.configs().items():
            label = desc.get("label")
            if label in current and current[label] != h:
                out.setdefault(label, []).append(h)
        return out


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
