"""The plan of Table 3: which configurations the full protocol runs, what each needs on this machine
and, given a store, how far a run got (`amibr-bench plan`)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from harness import models, paths
from harness.config import RunConfig, config_name, hyperparameters
from harness.store import Store

# --- the plan (Table 3) ---------------------------------------------------------------------------

# Table 3's rows, in the paper's order.
FOUNDATION_KEYS = (
    "uni", "uni2-h", "virchow", "virchow2", "prov-gigapath", "h-optimus-0", "h-optimus-1",
)  # fmt: skip
PAPER_PLAN: tuple[tuple[str, str], ...] = (
    ("efficientnetv2-m", "end_to_end"),
    ("vit-l16", "end_to_end"),
    ("swin-b", "end_to_end"),
    *((k, "linear_probe") for k in FOUNDATION_KEYS),
    *((k, "lora") for k in FOUNDATION_KEYS),
)
EXTRA_PLAN: tuple[tuple[str, str], ...] = (("h0-mini", "linear_probe"), ("h0-mini", "lora"))


def missing_for(key: str, weights_dir=None, *, cuda: bool | None = None) -> list[str]:
    """What this machine lacks to run a paper configuration at full scale (empty: runnable)."""
    spec = models.get_spec(key)
    cuda = torch.cuda.is_available() if cuda is None else cuda
    lacks = [] if cuda else ["a GPU"]
    if models.weights_present(key, weights_dir) is False:
        lacks.append(f"the weights of {spec.name} ({spec.weights_repo})")
    return lacks


def not_run_reason(lacks: list[str]) -> str:
    return "needs " + " and ".join(lacks) if lacks else ""


def plan_rows(
    weights_dir=None, preset: str = "paper", store: Store | None = None
) -> list[dict[str, Any]]:
    """The plan, with what each configuration needs here and, given the full tier's store, how
    far it got: its finished folds and results left by an older version of the configuration."""
    rows = []
    stale = store.stale({RunConfig(k, m, preset).label: RunConfig(k, m, preset).hash
                         for k, m in PAPER_PLAN + EXTRA_PLAN}) if store else {}  # fmt: skip
    for key, method in PAPER_PLAN + EXTRA_PLAN:
        spec = models.get_spec(key)
        lacks = missing_for(key, weights_dir)
        cfg = RunConfig(key, method, preset)
        progress = (
            {
                "folds_done": store.done_folds(cfg.hash),
                "stale_hashes": stale.get(cfg.label, []),
                # fold folders that are damaged (unreadable marker, missing or truncated file):
                # `run` trains them again
                "damaged_folds": {str(f): p for f, p in store.damaged_folds(cfg.hash).items()},
            }
            if store
            else {}
        )
        rows.append(
            {
                "config": config_name(key, method),
                "model": spec.name,
                "method": method,
                "in_paper": (key, method) in PAPER_PLAN,
                "weights": {None: "not needed", True: "present", False: "missing"}[
                    models.weights_present(key, weights_dir)
                ],
                "cuda": torch.cuda.is_available(),
                "runnable": not lacks,
                "reason": not_run_reason(lacks),
                "hyper": asdict(hyperparameters(key, method, preset)),
                "hash": cfg.hash,
                **progress,
            }
        )
    return rows


def cli_plan(args) -> int:
    """`amibr-bench plan`: the 17 configurations of Table 3 (+ H0-mini) and what each needs."""
    preset = getattr(args, "preset", "paper") or "paper"
    folder = Path(getattr(args, "store", None) or paths.REPO_ROOT / "runs" / "full")
    try:
        store = Store(folder) if (folder / "configs").is_dir() else None
    except OSError as exc:
        raise paths.InputError(f"--store {folder}: unreadable ({exc.strerror or exc})") from exc
    rows = plan_rows(getattr(args, "weights_dir", None), preset, store)
    if getattr(args, "json", False):
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"full protocol, preset {preset} (amibr-bench run --config NAME); CUDA "
        + ("present" if torch.cuda.is_available() else "absent")
        + (f"; folds finished in {folder}" if store else "")
    )
    columns = ["config", "result name", "weights", "runnable here"]
    for col in columns + (["folds done"] if store else []):
        table.add_column(col, overflow="fold")
    for r in rows:
        name = f"{r['model']} / {r['method']}" + ("" if r["in_paper"] else " (extra)")
        cells = [r["config"], name, r["weights"], "yes" if r["runnable"] else r["reason"]]
        if store:
            done = f"{len(r['folds_done'])}/5"
            if r["damaged_folds"]:
                done += f", {len(r['damaged_folds'])} damaged (trained again by run)"
            if r["stale_hashes"]:
                done += f", {len(r['stale_hashes'])} stale"
                table.caption = (
                    "stale: results of an older version of the configuration (another hash, "
                    "e.g. before a registry or recipe change); never exported or judged"
                )
            cells.append(done)
        table.add_row(*cells)
    Console().print(table)
    return 0
