"""The smoke job (`amibr-bench smoke`, `nox -s smoke`): the whole pipeline on CPU in minutes.

dataset -> splits -> tiny random-init models -> trainer -> results set -> claims -> report, on the
synthetic fixture (where the class signal is known, so learning is a pass/fail claim) and on a
subset of the real data where present (metrics printed with bootstrap intervals, never judged).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness import paths, report, stats
from harness.claims import build_context, evaluate_all, load_claims
from harness.config import RunConfig
from harness.export import export_results
from harness.results import load_results_set
from harness.runner import check_classes, run_config
from harness.store import Store
from harness.taskdata import load_task

# Smoke models are randomly initialised, so the protocol's Adam(5e-5) would barely move them in a
# few epochs: the smoke tier raises the rates (recorded in every configuration's settings). One
# definition for the smoke job and `amibr-bench run --tier smoke` (`smoke_settings`).
SMOKE_OVERRIDES = {
    "synthetic": {
        "linear_probe": (("lr", 1e-2), ("max_epochs", 30)),
        "lora": (("lr", 3e-4), ("head_lr", 1e-2), ("max_epochs", 10)),
        "end_to_end": (("lr", 1e-3), ("max_epochs", 4)),
    },
    "real": {
        "linear_probe": (("lr", 1e-2), ("max_epochs", 30)),
        "lora": (("lr", 3e-4), ("head_lr", 1e-2), ("max_epochs", 3)),
        "end_to_end": (("lr", 1e-3), ("max_epochs", 4)),
    },
}
SMOKE_REAL_SUBSET = (("test", 300), ("train_pool", 600))
# The smoke job's configurations and, on the real data subset, their folds (synthetic: all five).
SMOKE_JOB = (
    ("smoke-vit", "linear_probe", (1, 2, 3, 4, 5)),
    ("smoke-vit", "lora", (1,)),
    ("smoke-resnet", "end_to_end", (1,)),
)


def smoke_settings(method: str, data: str) -> dict[str, tuple]:
    """RunConfig keyword arguments of the smoke tier for a method on "real" or "synthetic" data:
    raised learning rates and few epochs (`overrides`); on the real data a class-stratified
    subset (`subset`: train pool 600, 300 per test set)."""
    return {
        "overrides": SMOKE_OVERRIDES[data][method],
        "subset": SMOKE_REAL_SUBSET if data == "real" else (),
    }


def smoke_config(
    key: str, method: str, data: str, preset: str = "paper", **folds: Any
) -> RunConfig:
    """The smoke tier's configuration of (key, method); `folds`: RunConfig's folds_source and
    folds_sha256 (TaskData.folds), so its hash covers the folds it trains on."""
    return RunConfig(key, method, preset, "smoke", data, **smoke_settings(method, data), **folds)


def smoke_configs(data: str, folds: dict | None = None) -> list[tuple[RunConfig, tuple[int, ...]]]:
    """The smoke job's configurations on "real" or "synthetic" data, with the folds each trains."""
    return [
        (smoke_config(k, m, data, **(folds or {})), f if data == "real" else (1, 2, 3, 4, 5))
        for k, m, f in SMOKE_JOB
    ]


def _load(kind: str, root: Path) -> tuple[Any, float]:
    """The task of one dataset root, checked before anything trains (runner.check_classes)."""
    t0 = time.perf_counter()
    task = load_task(root, kind, dict(SMOKE_REAL_SUBSET) if kind == "real" else None)
    for _cfg, folds in smoke_configs(kind):
        check_classes(task, folds)
    return task, time.perf_counter() - t0


def _smoke_pass(kind: str, loaded, store_dir: Path, console) -> tuple[Path | None, dict]:
    """Train the smoke configurations on one loaded task (`_load`) and export a results set."""
    task, load_s = loaded
    store = Store(store_dir)
    timing: dict[str, Any] = {"load_s": round(load_s, 1)}
    counters: dict[str, Any] = {"slide_overlaps": len(task.slide_overlaps)}
    configs = smoke_configs(kind, task.folds)
    for cfg, folds in configs:
        rep = run_config(cfg, task, store, folds, device="cpu", console=console)
        timing[f"{cfg.model}:{cfg.method}"] = {
            "seconds": round(rep.seconds, 1),
            "folds_trained": rep.folds_done,
            "folds_reused": rep.folds_skipped,
            "train_images_per_s": round(rep.train_images_per_s or 0.0, 1) or None,
        }
        console.print(
            f"  {kind}: {cfg.spec.name} {cfg.method}: trained folds {rep.folds_done}"
            f", reused {rep.folds_skipped} ({rep.seconds:.1f} s)"
        )
    notes = [
        "smoke tier: randomly initialised small timm models (smoke-vit = vit_tiny_patch16_224 "
        "depth 6 at 64 px; smoke-resnet = resnet10t at 64 px), raised learning rates, few "
        "epochs; it checks the pipeline, not the paper's numbers",
        *task.notes,
    ]
    if kind == "real":
        notes.append(
            "real data: class-stratified subsets (train pool 600, each test set 300); "
            "LoRA and end-to-end run fold 1 only, linear probe folds 1-5"
        )
    counters["timing"] = timing
    counters["slide_overlap_list"] = task.slide_overlaps
    out = export_results(
        store,
        [c for c, _ in configs],
        store_dir,
        name=f"smoke-{kind}",
        tier="smoke",
        preset="paper",
        data=kind,
        counters=counters,
        notes=notes,
    )
    return out, counters


def _print_real_table(results_dir: Path, console) -> None:
    """Real-data smoke metrics with bootstrap 95% intervals over images (informative only)."""
    from rich.table import Table

    rs = load_results_set(results_dir)
    table = Table(
        title="real data, smoke tier (subsets, 64 px, random init, few epochs): "
        "fold-1 metrics with bootstrap 95% CI over images"
    )
    for col in ("model", "method", "test set", "n", "balanced accuracy", "AUROC"):
        table.add_column(col)
    for model, method in rs.configurations:
        for ds in rs.datasets:
            by_fold = rs.predictions_for(model, method, ds)
            if 1 not in by_fold:
                continue
            _, atypical, prob = by_fold[1]
            cells = []
            for metric in ("balanced_accuracy", "auroc"):
                est, lo, hi = stats.bootstrap_prediction_ci(
                    atypical, prob[np.newaxis, :], metric, n_resamples=300
                )
                cells.append(f"{est:.3f} [{lo:.3f}, {hi:.3f}]")
            table.add_row(model, method, ds, str(len(atypical)), *cells)
    console.print(table)


def _claim_report(results_dir: Path, data_root: Path | None, out_dir: Path, console) -> int:
    """Judge every claim on the synthetic smoke results set; print it, write md/html/json.

    With real data, the real-data subset set (its sibling `real/`, just exported) gets its
    prediction-level analyses beside it, as real-subset.md/.html/.json: reported, not judged."""
    ctx = build_context(str(results_dir), data_root, None)
    results = evaluate_all(load_claims(), ctx)
    written = report.write_reports(results, ctx, out_dir)
    real, stem = results_dir.parent / "real", "real-subset"
    for old in out_dir.glob(f"{stem}*"):  # never show an earlier run's real-data report
        old.unlink()
    if data_root is not None and (real / "fold_metrics.csv").is_file():
        real_ctx = build_context(str(real), data_root, None)
        written += report.analyses_report(real_ctx, out_dir, stem)
    console.print(report.to_text(results, ctx), markup=False, highlight=False, soft_wrap=True)
    console.print("full report: " + ", ".join(str(p) for p in written), soft_wrap=True)
    return 1 if any(r.unexpected for r in results) else 0


def cli_smoke(args) -> int:
    """`amibr-bench smoke`: exit 0 when no claim gave an unexpected verdict."""
    from rich.console import Console

    console = Console()
    t0 = time.perf_counter()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    store_root = Path(args.store) if args.store else paths.output_dir("runs") / "smoke"
    synth_root = paths.SYNTHETIC_FIXTURE
    if not synth_root.is_dir():
        raise paths.MissingInputError(
            f"{synth_root} is missing: regenerate it with `amibr-bench data synth --out {synth_root}`"
        )
    # A --data-root that was given must exist; without one, real data is used where present.
    real_root = (
        None if args.synthetic else paths.data_root(args.data_root, required=bool(args.data_root))
    )
    # Both data sets are loaded and checked before anything trains.
    synth_task = _load("synthetic", synth_root)
    real_task = _load("real", real_root) if real_root is not None else None
    console.rule("smoke: synthetic fixture (5 folds, 3 strategies)")
    synth_out, _ = _smoke_pass("synthetic", synth_task, store_root / "synthetic", console)
    if real_root is not None:
        console.rule(f"smoke: real data subset ({real_root})")
        real_out, _ = _smoke_pass("real", real_task, store_root / "real", console)
        _print_real_table(real_out, console)
    else:
        why = "--synthetic" if args.synthetic else "no data root: --data-root or $AMIBR_DATA_ROOT"
        console.print(f"real data: skipped ({why})")
    console.print(f"smoke training and evaluation: {time.perf_counter() - t0:.0f} s")
    console.rule("claim report (synthetic smoke results set; dataset claims on the real data)")
    return _claim_report(synth_out, real_root, store_root / "report", console)
