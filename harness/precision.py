"""Faithful vs fast precision (README "Precision"; issue 9): which stored runs are faithful and
which fast, which of them are the same configuration, how their numbers differ, and whether the
speed-up changes a verdict.

A run is *faithful* when it computes as the authors' scripts did: fp32 under the paper or
reference-code preset. Every other run (`--precision tf32|bf16`, or the fast preset) is *fast*.
Two runs are the same configuration at two precisions when their descriptions
(`RunConfig.describe`) agree in everything but the preset, the precision and the label: same
model, method, tier, data, hyperparameters, folds, subset, image size and transforms.

A results set (harness.export) holds the faithful run of a configuration as its rows; the fast
runs of the same configuration travel with it in `results.FAST_FILE` (one `variant`,
'<preset>/<precision>', per run), described in manifest.json `fast_configs`. The report
(harness.report.sections.precision_check) shows `set_comparison` and judges the claims a second
time on `variant_set`, the fast rows in place of the faithful ones: judging claims is the report's
step, not this module's (which the export, one step earlier, uses).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.results import FoldRow, ResultsSet, config_key

if TYPE_CHECKING:  # judging claims (harness.report) reads results sets only: no torch here
    from harness.config import RunConfig
    from harness.store import Store

FAITHFUL_PRESETS = ("paper", "reference-code")
FAITHFUL_PRECISION = "fp32"  # the authors' scripts trained in fp32 (config.PRESET_PRECISION)
COMPARED = ("balanced_accuracy", "auroc")  # the metrics the comparison reports
_NOT_PAIRED = ("label", "preset", "precision")  # description fields two precisions may differ in


def is_faithful(cfg: RunConfig) -> bool:
    """fp32 under the paper or reference-code preset (computes as the authors' scripts)."""
    return cfg.preset in FAITHFUL_PRESETS and cfg.precision == FAITHFUL_PRECISION


def variant(cfg: RunConfig) -> str:
    """'<preset>/<precision>', e.g. 'paper/fp32', 'paper/bf16', 'fast/bf16'."""
    return f"{cfg.preset}/{cfg.precision}"


def same_run_key(cfg: RunConfig) -> str:
    """What two runs of one configuration at two precisions share (everything the hash covers
    but the preset, the precision and the label), as text."""
    desc = {k: v for k, v in cfg.describe().items() if k not in _NOT_PAIRED}
    return json.dumps(desc, sort_keys=True, default=str)


def choose_rows(
    configs: Sequence[RunConfig], others: Sequence[RunConfig] = ()
) -> tuple[list[RunConfig], dict[str, list[RunConfig]], list[str]]:
    """Which run of each results-set row ('<model>|<method>') is exported.

    `configs`: the runs of one (tier, preset, data), first preferred among equals (the export
    puts the runs just made first); `others`: further stored runs (other presets) that may be
    fast runs of a chosen one. Returns (rows: one run per row, faithful before fast; fast: row
    key -> the fast runs of the same configuration as its faithful row run, which travel in
    FAST_FILE; notes: one line per run left out, saying why). Never two runs for one row."""
    groups: dict[str, list[RunConfig]] = {}
    for cfg in configs:
        groups.setdefault(config_key(cfg.spec.name, cfg.method), []).append(cfg)
    rows, fast, notes = [], {}, []
    for key, group in groups.items():
        chosen = sorted(group, key=lambda c: not is_faithful(c))[0]  # stable: first among equals
        rows.append(chosen)
        same = same_run_key(chosen)
        for cfg in {c.hash: c for c in [*group, *others]}.values():
            if cfg.hash == chosen.hash:
                continue
            paired = is_faithful(chosen) and not is_faithful(cfg) and same_run_key(cfg) == same
            if paired and config_key(cfg.spec.name, cfg.method) == key:
                fast.setdefault(key, []).append(cfg)
            elif cfg in group:
                why = (
                    "a fast run of a configuration with no faithful run here"
                    if not is_faithful(cfg) and same_run_key(cfg) == same
                    else "another run for the same row (its settings differ)"
                )
                notes.append(
                    f"the store also holds {cfg.label} (hash {cfg.hash}): {why}; the set's "
                    f"{key} rows are {chosen.label} (hash {chosen.hash})"
                )
    return rows, fast, notes


# --- the comparison ------------------------------------------------------------------------------


def _mean(values) -> float | None:
    values = [float(v) for v in values if v is not None]
    return float(np.mean(values)) if values else None


def compare_runs(
    config: str,
    labels: tuple[str, str],
    rows: tuple[Sequence[FoldRow], Sequence[FoldRow]],
    seconds: tuple[Mapping[int, float | None], Mapping[int, float | None]],
) -> list[dict[str, Any]]:
    """One configuration's faithful and fast runs compared, one dict per test set: means over the
    folds both finished of balanced accuracy and AUROC (`<metric>_faithful`, `<metric>_fast`,
    `<metric>_delta` = fast - faithful), mean seconds per fold of each (None when unrecorded) and
    the speed-up (faithful seconds / fast seconds, None without both). `labels`: the variants
    ('paper/fp32', 'paper/bf16'); `rows`, `seconds` (fold -> seconds): faithful, then fast."""
    folds = sorted({r.fold for r in rows[0]} & {r.fold for r in rows[1]})
    out = []
    for dataset in sorted({r.dataset for r in rows[0]}):
        row: dict[str, Any] = {"config": config, "faithful": labels[0], "fast": labels[1],
                               "dataset": dataset, "folds": folds}  # fmt: skip
        for metric in COMPARED:
            means = [
                _mean(getattr(r, metric) for r in side if r.dataset == dataset and r.fold in folds)
                for side in rows
            ]
            row[f"{metric}_faithful"], row[f"{metric}_fast"] = means
            row[f"{metric}_delta"] = None if None in means else means[1] - means[0]
        secs = [_mean(side.get(f) for f in folds) for side in seconds]
        row["seconds_per_fold_faithful"], row["seconds_per_fold_fast"] = secs
        row["speedup"] = secs[0] / secs[1] if None not in secs and secs[1] > 0 else None
        if folds:
            out.append(row)
    return out


def _store_run(store: Store, cfg: RunConfig, folds: Sequence[int]):
    rows, seconds = [], {}
    for fold in folds:
        metrics, _, info = store.load_fold(cfg.hash, fold)
        rows += [FoldRow(cfg.spec.name, cfg.method, m["dataset"], int(m["fold"]),
                         float(m["balanced_accuracy"]), float(m["auroc"])) for m in metrics]  # fmt: skip
        seconds[fold] = info.get("seconds")
    return rows, seconds


def store_comparison(store: Store) -> list[dict[str, Any]]:
    """Every pair of a faithful and a fast run of the same configuration the store holds
    (current configurations with a finished fold, any tier, preset or data): `compare_runs`
    rows. What `amibr-bench launch` writes to precision_comparison.md in the store."""
    from harness.export import all_current

    runs = all_current(store)
    out = []
    for faithful in (c for c in runs if is_faithful(c)):
        same = same_run_key(faithful)
        for fast in (c for c in runs if not is_faithful(c) and same_run_key(c) == same):
            folds = sorted(set(store.done_folds(faithful.hash)) & set(store.done_folds(fast.hash)))
            a, b = _store_run(store, faithful, folds), _store_run(store, fast, folds)
            out += compare_runs(
                f"{faithful.spec.name}|{faithful.method}",
                (variant(faithful), variant(fast)),
                (a[0], b[0]),
                (a[1], b[1]),
            )
    return out


def _fold_seconds(entry: Mapping) -> dict[int, float | None]:
    folds = entry.get("folds") or []
    secs = (entry.get("settings") or {}).get("fold_seconds") or []
    return dict(zip(folds, secs, strict=False))


def set_comparison(rs: ResultsSet) -> list[dict[str, Any]]:
    """The `compare_runs` rows of a results set's faithful rows and the fast runs it carries
    (results.FAST_FILE; seconds from manifest.json); [] for a set without fast runs."""
    out = []
    fast_entries = rs.manifest.get("fast_configs") or {}
    for name, rows in sorted(rs.fast.items()):
        for model, method in dict.fromkeys((r.model, r.method) for r in rows):
            key = config_key(model, method)
            entry = rs.config_entry(model, method)
            settings = entry.get("settings") or {}
            faithful = f"{settings.get('preset', '?')}/{(settings.get('precision') or {}).get('precision', '?')}"
            fast_entry = next(
                (e for e in fast_entries.get(key, ()) if e.get("variant") == name), {}
            )
            mine = [r for r in rows if (r.model, r.method) == (model, method)]
            theirs = [r for r in rs.rows if (r.model, r.method) == (model, method)]
            out += compare_runs(
                key,
                (faithful, name),
                (theirs, mine),
                (_fold_seconds(entry), _fold_seconds(fast_entry)),
            )
    return out


def variant_set(rs: ResultsSet, name: str) -> ResultsSet:
    """The results set with the fast run `name`'s rows in place of the faithful ones, fold by
    fold (a fold the fast run lacks keeps its faithful row): in memory, without predictions
    (they belong to the faithful runs)."""
    swap = {(r.model, r.method, r.dataset, r.fold): r for r in rs.fast[name]}
    rows = tuple(swap.get((r.model, r.method, r.dataset, r.fold), r) for r in rs.rows)
    return replace(rs, name=f"{rs.name} ({name})", rows=rows, predictions=None, fast={})


def comparison_md(rows: list[dict[str, Any]]) -> str:
    """A markdown section for `compare_runs` rows ('' when there are none): the store's
    precision_comparison.md."""
    if not rows:
        return ""
    out = [
        "## Faithful vs fast precision",
        "",
        "Means over the folds both runs finished; Δ = fast − faithful; speed-up = seconds per "
        "fold faithful / fast.",
        "",
        "| configuration | faithful | fast | test set | folds | bal. acc. | Δ | AUROC | Δ "
        "| s/fold faithful | s/fold fast | speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    out += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    return "\n".join(out) + "\n"


def cells(r: Mapping[str, Any]) -> list[str]:
    """One `compare_runs` row as table cells: configuration ('UNI (LoRA)', `claims.config_label`),
    faithful, fast, test set, folds, balanced accuracy 'a → b', Δ, AUROC 'a → b', Δ, s/fold
    faithful, s/fold fast, speed-up."""
    from harness.claims import config_label

    def num(x, fmt):
        return "–" if x is None else format(x, fmt)

    model, _, method = r["config"].rpartition("|")
    name = config_label(model, method)
    out = [name, r["faithful"], r["fast"], r["dataset"], str(len(r["folds"]))]
    for metric in COMPARED:
        out += [
            f"{num(r[f'{metric}_faithful'], '.4f')} → {num(r[f'{metric}_fast'], '.4f')}",
            num(r[f"{metric}_delta"], "+.4f"),
        ]
    out += [num(r["seconds_per_fold_faithful"], ".1f"), num(r["seconds_per_fold_fast"], ".1f")]
    return out + ["–" if r["speedup"] is None else f"{r['speedup']:.2f}×"]
