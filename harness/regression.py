"""CI regression on model changes (`amibr-bench regression`, `nox -s regression`).

Reruns the smoke tier on the committed synthetic fixture (CPU results are bit-identical from run to
run) into a fresh store and cache, then compares the new results set with the committed baseline
(`expected_results/baselines/smoke-synthetic/`):

- every per-fold metric, exactly;
- the configurations whose hash changed, with the settings that changed (registry entry, recipe,
  preset, precision, fold assignment);
- each claim's verdict (the machinery of `claims --against`);
- the provenance fields that differ (harness commit, Python, torch, timm, peft, scikit-learn,
  device, precision): listed, never a failure on their own.

Any change of metric, hash or verdict exits 1 until the baseline is deliberately updated with
`--update-baseline --why TEXT`, which records the reason in the baseline's history.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness import paths, provenance
from harness.results import METRICS, ResultsSet, load_results_set

# CPU training is bit-identical from run to run only at one thread count: the order of a
# parallel reduction depends on it (2 threads instead of 1 flipped one image of the smoke
# ResNet's fold 1). The rerun and the baseline it is compared with use this many, on any machine.
THREADS = 1

BASELINE = paths.EXPECTED_RESULTS / "baselines" / "smoke-synthetic"
HISTORY = "HISTORY.md"
# Settings that describe one run's timing, not the configuration: never compared.
RUNTIME_SETTINGS = frozenset(
    {"counters", "best_epochs", "fold_seconds", "train_images_per_s", "provenance"}
)


@dataclass
class Comparison:
    """What changed from a baseline results set to a new one (lists of one-line statements)."""

    new: str
    baseline: str
    metrics: list[str] = field(default_factory=list)
    configs: list[str] = field(default_factory=list)
    claims: list[dict] = field(default_factory=list)
    provenance: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.metrics or self.configs or self.claims)

    def text(self) -> str:
        lines = [
            f"regression check: {self.new}",
            f"         against: {self.baseline}",
        ]
        for title, items in (
            ("configurations whose hash changed", self.configs),
            ("per-fold metrics that changed", self.metrics),
            (
                "claim verdicts that changed",
                [f"{c['id']}: {c['old']} -> {c['new']} ({c['change']})" for c in self.claims],
            ),
            ("provenance that differs (informative)", self.provenance),
        ):
            lines.append(f"{title}: {len(items) or 'none'}")
            lines += [f"  {item}" for item in items[:40]]
            if len(items) > 40:
                lines.append(f"  ... and {len(items) - 40} more")
        lines.append(
            "CHANGED: update the baseline deliberately with "
            "`nox -s regression -- --update-baseline --why TEXT`"
            if self.changed
            else "unchanged: every per-fold metric, configuration hash and verdict is identical"
        )
        return "\n".join(lines)


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, Mapping):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def settings_diff(old: Mapping, new: Mapping) -> list[str]:
    """Dotted keys of two configurations' settings that differ (run-time keys ignored)."""
    a = _flatten({k: v for k, v in old.items() if k not in RUNTIME_SETTINGS})
    b = _flatten({k: v for k, v in new.items() if k not in RUNTIME_SETTINGS})
    return sorted(k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>"))


def _configs(rs: ResultsSet) -> dict[str, dict]:
    configs = rs.manifest.get("configs") or {}
    return {k: v for k, v in configs.items() if isinstance(v, dict) and v.get("hash")}


def _row_changes(old_rows, new_rows) -> list[str]:
    """Every per-fold metric that differs between two lists of fold rows, exactly, and every row
    only one of them has."""
    rows_a = {(r.model, r.method, r.dataset, r.fold): r for r in old_rows}
    rows_b = {(r.model, r.method, r.dataset, r.fold): r for r in new_rows}
    out = []
    for k in sorted(set(rows_a) | set(rows_b), key=str):
        label = f"{k[0]}|{k[1]} {k[2]} fold {k[3]}"
        if k not in rows_a or k not in rows_b:
            out.append(f"{label}: {'new row' if k not in rows_a else 'row missing'}")
            continue
        for metric in METRICS:
            va, vb = getattr(rows_a[k], metric), getattr(rows_b[k], metric)
            if va != vb:
                out.append(f"{label} {metric}: {va!r} -> {vb!r}")
    return out


def compare_sets(new: ResultsSet, base: ResultsSet, *, claims: bool = True) -> Comparison:
    """Compare two results sets (see the module docstring); `claims=False` skips the verdicts."""
    out = Comparison(str(new.path or new.name), str(base.path or base.name))
    old_cfg, new_cfg = _configs(base), _configs(new)
    for key in sorted(set(old_cfg) | set(new_cfg)):
        a, b = old_cfg.get(key), new_cfg.get(key)
        if a is None or b is None:
            out.configs.append(f"{key}: {'added' if a is None else 'removed'}")
        elif a["hash"] != b["hash"]:
            keys = settings_diff(a.get("settings") or {}, b.get("settings") or {})
            what = ", ".join(keys[:8]) + (" ..." if len(keys) > 8 else "") if keys else "?"
            out.configs.append(f"{key}: hash {a['hash']} -> {b['hash']} (changed: {what})")
    out.metrics = _row_changes(base.rows, new.rows)
    # the fast runs a set carries (fast_fold_metrics.csv), variant by variant, just as exactly
    for variant in sorted(set(base.fast) | set(new.fast)):
        if variant not in base.fast or variant not in new.fast:
            out.metrics.append(
                f"fast run {variant}: {'added' if variant not in base.fast else 'removed'}"
            )
            continue
        out.metrics += [
            f"fast run {variant}: {line}"
            for line in _row_changes(base.fast[variant], new.fast[variant])
        ]
    if claims:
        from harness.claims import Context, evaluate_all, load_claims
        from harness.report import compare

        registry = load_claims()
        results = [evaluate_all(registry, Context(rs, None, None)) for rs in (new, base)]
        out.claims = [r for r in compare(*results) if r["change"] != "same"]
    out.provenance = provenance.differences(
        base.manifest.get("provenance"), new.manifest.get("provenance")
    )
    return out


def run_smoke(
    out: Path, configs: Sequence | None = None, *, root: Path | None = None, console=None
) -> Path:
    """Train the smoke configurations on the synthetic fixture into a fresh store (and a fresh
    embedding/image cache) beside `out`, and export them as the results set `out` (replaced).

    configs: (RunConfig, folds) pairs; default the smoke job's synthetic configurations."""
    import torch

    from harness.export import export_results
    from harness.runner import run_config
    from harness.smoke import smoke_configs
    from harness.store import Store
    from harness.taskdata import load_task

    root = root or paths.SYNTHETIC_FIXTURE
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    store_dir = Path(tempfile.mkdtemp(prefix=f".{out.name}-store-", dir=out.parent))
    old_cache = os.environ.get(paths.CACHE_ENV)
    os.environ[paths.CACHE_ENV] = str(store_dir / ".cache")
    old_threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        task = load_task(root, "synthetic")
        # Keyed to the fixture's fold table, as the smoke job's (the hash covers the folds).
        configs = [(replace(c, **task.folds), f) for c, f in configs or smoke_configs("synthetic")]
        store = Store(store_dir)
        for cfg, folds in configs:
            run_config(cfg, task, store, folds, device="cpu", console=console)
        if out.exists():
            shutil.rmtree(out)
        exported = export_results(
            store,
            [c for c, _ in configs],
            out,
            name="regression-smoke-synthetic",
            tier="smoke",
            preset="paper",
            data="synthetic",
            notes=[f"trained with {THREADS} CPU thread(s) (harness.regression.THREADS)"],
        )
    finally:
        torch.set_num_threads(old_threads)
        shutil.rmtree(store_dir, ignore_errors=True)
        if old_cache is None:
            os.environ.pop(paths.CACHE_ENV, None)
        else:
            os.environ[paths.CACHE_ENV] = old_cache
    if exported is None:
        raise paths.InputError(f"{store_dir}: the smoke run finished no fold")
    return Path(exported)


def update_baseline(new: Path, baseline: Path, why: str) -> Path:
    """Replace the baseline by the results set `new`, appending `why` to its history."""
    from harness.results import write_results_set

    if not why or not why.strip():
        raise paths.InputError("--update-baseline needs --why TEXT: say why the numbers changed")
    rs = load_results_set(new)
    manifest = {k: v for k, v in rs.manifest.items() if k not in ("files", "stale")}
    manifest["name"] = "baseline-smoke-synthetic"
    manifest["baseline_reason"] = why.strip()
    # the set's fast runs travel with it; none: an older baseline's fast_fold_metrics.csv goes
    fast = [{**asdict(r), "variant": v} for v, rows in rs.fast.items() for r in rows]
    write_results_set(
        baseline, rs.rows, predictions=rs.predictions, manifest=manifest, fast_rows=fast
    )
    history = baseline / HISTORY
    old = history.read_text(encoding="utf-8") if history.is_file() else "# Baseline history\n"
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    commit = provenance.git_commit() or "no git commit"
    paths.atomic_write(history, f"{old.rstrip()}\n- {stamp} ({commit}): {why.strip()}\n")
    return baseline


def cli_regression(args) -> int:
    """`amibr-bench regression`: 0 unchanged, 1 changed, 2 bad input (see the module docstring)."""
    from rich.console import Console

    console = Console(stderr=True)
    baseline = Path(args.baseline) if args.baseline else BASELINE
    work = Path(args.out) if args.out else Path.cwd() / "runs" / "regression"
    if args.update_baseline and not (args.why or "").strip():
        raise paths.InputError("--update-baseline needs --why TEXT: say why the numbers changed")
    latest = run_smoke(work / "latest", console=console)
    if args.update_baseline:
        update_baseline(latest, baseline, args.why)
        print(f"baseline {baseline} updated from {latest}: {args.why.strip()}")
        return 0
    if not (baseline / "fold_metrics.csv").is_file():
        raise paths.MissingInputError(
            f"{baseline}: no baseline results set; create it with --update-baseline --why TEXT"
        )
    comparison = compare_sets(load_results_set(latest), load_results_set(baseline))
    print(comparison.text())
    return 1 if comparison.changed else 0
