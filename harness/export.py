"""A store's finished folds collected into one results set (harness.results format): every
current configuration of one (tier, preset, data) the store holds, under the store's export lock."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness import models, provenance
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


def config_from_description(description: Mapping[str, Any]) -> RunConfig | None:
    """The RunConfig a stored config.json describes, or None when it cannot be rebuilt (another
    registry or harness version, a hand-edited file). Callers compare its hash with the stored one:
    equal means the stored folds are current."""
    try:
        model = description["model"]["key"]
        spec = models.get_spec(model)
        size = description["img_size"]
        return RunConfig(
            model,
            description["method"],
            description["preset"],
            description["tier"],
            description["data"],
            seed=description["seed"],
            img_size=None if size == spec.img_size else size,
            overrides=tuple(sorted(description["overrides"].items())),
            subset=tuple(sorted(description["subset"].items())),
            folds_source=description["folds"]["source"],
            folds_sha256=description["folds"]["sha256"],
            precision=description["precision"]["precision"],
        )
    except (KeyError, TypeError, AttributeError, ValueError):  # InputError is a ValueError
        return None


def current_configs(
    store: Store, *, tier: str, preset: str, data: str
) -> tuple[list[RunConfig], list[str]]:
    """Every configuration of (tier, preset, data) in the store that has a finished fold and is
    current (its description rebuilds to its own hash), sorted by name; and one note per stored
    configuration left out (another tier/preset/data, or an unreadable config.json)."""
    out, notes = [], []
    for h, desc in store.configs().items():
        cfg = config_from_description(desc)
        if cfg is None or cfg.hash != h or not store.done_folds(h):
            continue  # stale (an older configuration) or nothing finished: never exported
        if (cfg.tier, cfg.preset, cfg.data) != (tier, preset, data):
            notes.append(f"the store also holds {cfg.label} (hash {h}), not in this results set")
            continue
        out.append(cfg)
    for path, problem in store.damaged_configs().items():
        notes.append(f"{path} is {problem}: its folds are not exported until it is run again")
    return sorted(out, key=lambda c: (c.spec.name, c.method, c.hash)), notes


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
    """Collect the stored folds of `configs` into one results set (harness.results format), under
    the store's export lock; returns None when no fold is finished. Raises StoreError naming a
    fold file damaged since `done_folds` looked at it."""
    with store.export_lock():
        return _export(store, configs, out, name, tier, preset, data, weights_dir, counters, notes)


def _export(store, configs, out, name, tier, preset, data, weights_dir, counters, notes):
    from harness.results import config_key, write_results_set

    rows, preds, entries, devices = [], [], {}, []
    for cfg in configs:
        folds = store.done_folds(cfg.hash)
        infos = []
        for fold in folds:
            m, p, info = store.load_fold(cfg.hash, fold)
            rows += m
            preds += p
            infos.append(info)
            devices.append(str(info.get("device") or ""))
        ck = config_key(cfg.spec.name, cfg.method)
        entries[ck] = {
            "hash": cfg.hash,
            "status": "done" if folds else "not run",
            "reason": "" if folds else "no fold finished",
            "folds": folds,
            "settings": {
                **cfg.describe(),
                "counters": infos[0].get("counters", {}) if infos else {},
                "best_epochs": [i.get("best_epoch") for i in infos],
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
        # Versions, commit, device and precision behind these numbers (harness.provenance).
        "provenance": provenance.collect(
            ", ".join(sorted(set(d for d in devices if d))) or None,
            ", ".join(sorted({str(c.speed().precision) for c in configs})),
        ),
    }
    for row in preds:
        row["prob_atypical"] = float(row["prob_atypical"])
    return write_results_set(out, rows, predictions=preds, manifest=manifest)
