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


def all_current(store: Store) -> list[RunConfig]:
    """Every stored configuration that is current (its description rebuilds to its own hash) and
    has a finished fold, of any tier, preset or data, in the store's order."""
    out = []
    for h, desc in store.configs().items():
        cfg = config_from_description(desc)
        if cfg is not None and cfg.hash == h and store.done_folds(h):
            out.append(cfg)  # else stale (an older configuration) or nothing finished
    return out


def current_configs(
    store: Store, *, tier: str, preset: str, data: str
) -> tuple[list[RunConfig], list[str]]:
    """Every configuration of (tier, preset, data) in the store that has a finished fold and is
    current (`all_current`), sorted by name; and one note per stored configuration left out
    (another tier/preset/data, or an unreadable config.json). Two of them may map to one
    results-set row (e.g. two precisions): `export_results` chooses (harness.precision)."""
    out, notes = [], []
    for cfg in all_current(store):
        if (cfg.tier, cfg.preset, cfg.data) != (tier, preset, data):
            notes.append(
                f"the store also holds {cfg.label} (hash {cfg.hash}), not in this results set"
            )
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
    fold file damaged since `done_folds` looked at it.

    One run per results-set row ('<model>|<method>'): where several of `configs` map to one row,
    the faithful run is the row (fp32, paper or reference-code preset), else the first given;
    the fast runs of the same configuration (any preset of this tier and data in the store) go to
    results.FAST_FILE and manifest.json `fast_configs`; any other is named in the notes
    (`precision.choose_rows`)."""
    from harness import precision

    others = [c for c in all_current(store) if (c.tier, c.data) == (tier, data)]
    rows, fast, left_out = precision.choose_rows(configs, others)
    with store.export_lock():
        return _export(
            store, rows, fast, out, name, tier, preset, data, weights_dir, counters,
            [*notes, *left_out],
        )  # fmt: skip


def _collect(store: Store, cfg: RunConfig):
    """(fold rows, prediction rows, manifest entry) of one stored run."""
    folds = store.done_folds(cfg.hash)
    rows, preds, infos = [], [], []
    for fold in folds:
        m, p, info = store.load_fold(cfg.hash, fold)
        rows += m
        preds += p
        infos.append(info)
    entry = {
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
    return rows, preds, entry, [str(i.get("device") or "") for i in infos]


def _export(store, configs, fast, out, name, tier, preset, data, weights_dir, counters, notes):
    from harness import precision
    from harness.results import config_key, write_results_set

    rows, preds, entries, devices = [], [], {}, []
    for cfg in configs:
        m, p, entries[config_key(cfg.spec.name, cfg.method)], d = _collect(store, cfg)
        rows, preds, devices = rows + m, preds + p, devices + d
    fast_rows, fast_entries = [], {}
    for key, runs in fast.items():
        for cfg in runs:
            m, _, entry, d = _collect(store, cfg)
            fast_rows += [{**row, "variant": precision.variant(cfg)} for row in m]
            fast_entries.setdefault(key, []).append({**entry, "variant": precision.variant(cfg)})
    if not rows:
        return None
    exported = [*configs, *(c for runs in fast.values() for c in runs)]
    manifest = {
        "name": name,
        "tier": tier,
        "preset": preset,
        "data": data,
        "protocol": f"{tier} tier, preset {preset} ({PRESET_NOTES[preset]}), {data} data",
        "configs": _paper_entries(weights_dir, entries) | entries,
        "fast_configs": fast_entries,
        "counters": dict(counters or {}),
        "notes": list(notes),
        "stale": store.stale({c.label: c.hash for c in exported}),
        # Versions, commit, device and precision behind these numbers (harness.provenance).
        "provenance": provenance.collect(
            ", ".join(sorted(set(d for d in devices if d))) or None,
            ", ".join(sorted({str(c.speed().precision) for c in configs})),
        ),
    }
    for row in preds:
        row["prob_atypical"] = float(row["prob_atypical"])
    return write_results_set(out, rows, predictions=preds, manifest=manifest, fast_rows=fast_rows)
