"""The plan of Table 3: which configurations the full protocol runs, what each needs on this machine
and, given a store, how far a run got (`amibr-bench plan`)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from harness import models, paths, registry
from harness.config import RunConfig, config_name, hyperparameters
from harness.store import Store

# --- the plan (Table 3) ---------------------------------------------------------------------------

# Derived from the registry (harness.registry): each spec carries its Table 3 row and methods.
PAPER_PLAN: tuple[tuple[str, str], ...] = registry.paper_plan()  # Table 3, in the paper's order
EXTRA_PLAN: tuple[tuple[str, str], ...] = registry.extra_plan()  # H0-mini: named, never run
FOUNDATION_KEYS = tuple(k for k, m in PAPER_PLAN if m == "linear_probe")


def configurations() -> tuple[tuple[str, str], ...]:
    """Every configuration the harness plans: Table 3, the extras, then the registered user
    models (`--models FILE`) in the order of their models file."""
    return PAPER_PLAN + EXTRA_PLAN + registry.user_plan()


def missing_for(key: str, weights_dir=None, *, cuda: bool | None = None) -> list[str]:
    """What this machine lacks to run a paper configuration at full scale (empty: runnable)."""
    spec = models.get_spec(key)
    cuda = torch.cuda.is_available() if cuda is None else cuda
    lacks = [] if cuda else ["a GPU"]
    if models.weights_present(key, weights_dir) is False:
        lacks.append(f"the weights of {spec.name} ({spec.weights_source})")
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
                         for k, m in configurations()}) if store else {}  # fmt: skip
    for key, method in configurations():
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
                "in_paper": spec.in_paper(method),
                "user": spec.user,
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
    """`amibr-bench plan`: the 17 configurations of Table 3 (+ H0-mini, + the user's models of
    `--models FILE`) and what each needs."""
    preset = getattr(args, "preset", "paper") or "paper"
    folder = Path(getattr(args, "store", None) or paths.output_dir("runs") / "full")
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
        tag = "" if r["in_paper"] else " (user)" if r["user"] else " (extra)"
        name = f"{r['model']} / {r['method']}{tag}"
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
