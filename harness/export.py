"""A store's finished folds collected into one results set (harness.results format)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness import models
from harness.config import PRESET_NOTES, RunConfig
from harness.plan import EXTRA_PLAN, PAPER_PLAN, missing_for, not_run_reason
from harness.store import Store

# --- results export --------------------------------------------------------------------------------


def _paper_entries(weights_dir, done: Mapping[str, dict]) -> dict[str, dict]:
    """Manifest entries for every paper configuration: its status, or why it was not run."""
    from harness.results import config_key

    out = {}
    for key, method in PAPER_PLAN + EXTRA_PLAN:
        spec = models.get_spec(key)
        ck = config_key(spec.name, method)
        if ck in done:
            out[ck] = done[ck]
            continue
        lacks = missing_for(key, weights_dir)
        reason = not_run_reason(lacks) or "not requested in this run"
        out[ck] = {"hash": None, "status": "not run", "reason": reason, "settings": {}}
    return out


def export_results(
    store: Store,
    configs: Sequence[RunConfig],
    out: Path,
    *,
    name: str,
    tier: str,
    preset: str,
    data: str,
    weights_dir=None,
    counters: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
) -> Path | None:
    """Collect the stored folds of `configs` into one results set (harness.results format)."""
    from harness.results import config_key, write_results_set

    rows, preds, entries = [], [], {}
    for cfg in configs:
        folds = store.done_folds(cfg.hash)
        infos = []
        for fold in folds:
            m, p, info = store.load_fold(cfg.hash, fold)
            rows += m
            preds += p
            infos.append(info)
        ck = config_key(cfg.spec.name, cfg.method)
        entries[ck] = {
            "hash": cfg.hash,
            "status": "done" if folds else "not run",
            "reason": "" if folds else "no fold finished",
            "folds": folds,
            "settings": {
                **cfg.describe(),
                "counters": infos[0]["counters"] if infos else {},
                "best_epochs": [i["best_epoch"] for i in infos],
                "fold_seconds": [i.get("seconds") for i in infos],
                "train_images_per_s": [i.get("train_images_per_s") for i in infos],
            },
        }
    if not rows:
        return None
    manifest = {
        "name": name,
        "tier": tier,
        "preset": preset,
        "data": data,
        "protocol": f"{tier} tier, preset {preset} ({PRESET_NOTES[preset]}), {data} data",
        "configs": _paper_entries(weights_dir, entries) | entries,
        "counters": dict(counters or {}),
        "notes": list(notes),
        "stale": store.stale({c.label: c.hash for c in configs}),
    }
    for row in preds:
        row["prob_atypical"] = float(row["prob_atypical"])
    return write_results_set(out, rows, predictions=preds, manifest=manifest)
