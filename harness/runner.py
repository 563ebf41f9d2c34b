"""Running one configuration: trains each requested fold (harness.trainer), predicts the test sets,
stores each fold (harness.store) and exports the results set (harness.export); the `run` command
and the full tier's `ensure_trained` / `train_plan`.

results store prob_atypical = 1 - sigmoid(logit) (the logit is P(Normal), as in the authors' scripts)."""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from filelock import Timeout
from torch import nn

from harness import __version__, data, models, paths, stats
from harness.config import RunConfig, config_name, parse_config, parse_folds
from harness.embeddings import FORWARD_COUNTER, EmbeddingCache, compute_embeddings, image_hashes
from harness.export import current_configs, export_results
from harness.plan import PAPER_PLAN, missing_for, not_run_reason
from harness.progress import fit_progress, progress_bar
from harness.store import Store
from harness.taskdata import TaskData, load_task
from harness.trainer import NonFiniteError, divergence_hint, fit, precision_scope, predict
from harness.transforms import Transform, describe_transforms

# --- running one configuration ------------------------------------------------------------------


class SimulatedInterruption(RuntimeError):
    """Raised by run_config's test hooks (a job killed mid-fold)."""


@dataclass
class RunReport:
    config: RunConfig
    folds_done: list[int]
    folds_skipped: list[int]
    counters: dict[str, int]
    seconds: float
    train_images_per_s: float | None = None


DEVICE_TYPES = ("cpu", "cuda")  # where the harness trains (its timing and autocast know these)


def resolve_device(flag: str | None) -> torch.device:
    """--device: "auto" (CUDA if present, else the CPU), "cpu", "cuda" or "cuda:N".

    Raises InputError for anything else (a misspelling, another accelerator type, a CUDA index
    this machine lacks) and MissingInputError for CUDA on a machine without it."""
    if flag in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    usage = f"--device {flag}: expected auto, cpu, cuda or cuda:N"
    try:
        device = torch.device(flag)
    except (RuntimeError, TypeError, ValueError):
        raise paths.InputError(usage) from None
    if device.type not in DEVICE_TYPES or (device.type == "cpu" and device.index not in (None, 0)):
        raise paths.InputError(f"{usage} ({device.type} is not supported)")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise paths.MissingInputError(f"--device {flag}: no CUDA device is available here")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise paths.InputError(
                f"--device {flag}: this machine has {count} CUDA device(s), "
                f"cuda:0 to cuda:{count - 1}"
            )
    return device


def _forward_images(transform_train: Transform, transform_eval: Transform, device):
    def forward(model, batch, train):
        return models.logits(model, (transform_train if train else transform_eval)(batch, device))

    return forward


def _forward_embeddings(device):
    def forward(model, batch, train):
        return model(batch.to(device)).reshape(len(batch))

    return forward


class MissingClassError(paths.InputError):
    """A test set, or a fold's training or validation split, holds images of one class only."""


def class_gaps(task: TaskData, folds: Sequence[int]) -> list[str]:
    """Every test set and every split of `folds` lacking a class (data.LABELS[y], 1 = Normal):
    the sampler, balanced accuracy and AUROC all need both classes (PROTOCOL.md 'Metrics')."""

    def lacking(labels: np.ndarray) -> list[str]:
        return [data.LABELS[y] for y in (0, 1) if not (np.asarray(labels) == y).any()]

    gaps = [
        f"test set {name} ({len(ts.labels)} images) holds no {label} image"
        for name, ts in task.tests.items()
        for label in lacking(ts.labels)
    ]
    for fold in folds:
        for part, mask in (
            ("training", task.pool_folds != fold),
            ("validation", task.pool_folds == fold),
        ):
            gaps += [
                f"fold {fold}: the {part} split ({int(mask.sum())} images) holds no {label} image"
                for label in lacking(task.pool_labels[mask])
            ]
    return gaps


def check_classes(task: TaskData, folds: Sequence[int]) -> None:
    """Raise MissingClassError, naming the test set or fold, before anything is trained."""
    gaps = class_gaps(task, folds)
    if gaps:
        more = f" (and {len(gaps) - 1} more)" if len(gaps) > 1 else ""
        raise MissingClassError(
            f"{gaps[0]}{more}: every test set and every fold's training and validation split "
            "needs both classes (run `amibr-bench data verify`)"
        )


def run_config(
    cfg: RunConfig,
    task: TaskData,
    store: Store,
    folds: Sequence[int] = (1, 2, 3, 4, 5),
    *,
    device: torch.device | str = "cpu",
    weights_dir: str | os.PathLike | None = None,
    embedding_cache: EmbeddingCache | None = None,
    console=None,
    fail_after_fold: int | None = None,
    fail_after_epoch: int | None = None,
    checkpoint_interval_s: float = 0.0,
) -> RunReport:
    """Train and evaluate `cfg` on `folds`, skipping folds the store already holds. Each fold
    checkpoints its training into the store (`<fold dir>/checkpoint.pt`, at most every
    `checkpoint_interval_s` seconds, at the end of an epoch) and resumes from it.

    Each fold is checked, trained and saved under the store's fold lock (`Store.fold_lock`), so
    two processes sharing a store (two `run`s, the jobs of an array) train it once: a fold locked
    by another process is left for last, then found done. Raises MissingClassError before
    training when a test set or a fold's split lacks a class, and NonFiniteError (naming the
    model and fold; nothing of it stored) on NaN/infinite embeddings, logits or loss.
    `fail_after_fold` raises after that fold is stored, `fail_after_epoch` after that epoch of
    each fold is checkpointed (tests of resumption)."""
    device = torch.device(device)
    keyed = cfg.folds["sha256"]
    if keyed is not None and task.folds_sha256 and keyed != task.folds_sha256:
        raise ValueError(f"{cfg.label}: keyed to folds {keyed}, the task has {task.folds_sha256}")
    speed = cfg.speed()
    t0 = time.perf_counter()
    todo = [f for f in folds if not store.is_done(cfg.hash, f)]
    report = RunReport(cfg, [], [f for f in folds if f not in todo], {}, 0.0)
    if not todo:
        store.register(cfg.hash, cfg.describe())  # rewrites a damaged config.json
        return report
    check_classes(task, folds)
    hp, spec = cfg.hyper(), cfg.spec
    backbone = models.load_backbone(cfg.model, weights_dir, seed=cfg.seed)
    store.register(cfg.hash, cfg.describe())  # only once the inputs loaded: no empty records
    t_eval = Transform(spec, cfg.method, cfg.size, train=False, preset=cfg.preset)
    t_train = Transform(spec, cfg.method, cfg.size, train=True, preset=cfg.preset)
    test_inputs = {name: ts.images for name, ts in task.tests.items()}
    pool_inputs = task.pool_images
    counters: dict[str, int] = {}
    if cfg.method == "linear_probe":
        cache = embedding_cache or EmbeddingCache(paths.cache_dir() / "embeddings")
        amp = "bf16" if speed.precision == "bf16" else hp.lp_autocast_fp16
        key = cache.key(
            backbone,
            describe_transforms(spec, cfg.method, cfg.size, cfg.preset)["eval"],
            cfg.size,
            amp,
        )
        everything = torch.cat([pool_inputs, *test_inputs.values()])
        before = FORWARD_COUNTER["images"]

        def extract(imgs: torch.Tensor) -> torch.Tensor:
            with progress_bar(console, f"{spec.name} embeddings", len(imgs), unit="images") as tick:
                done = [0]

                def step(n: int) -> None:
                    done[0] += n
                    if tick is not None:
                        tick(done[0], {})

                with precision_scope(speed):
                    return compute_embeddings(
                        backbone, imgs, t_eval, device, autocast=amp, progress=step
                    )

        try:
            emb, cache_stats = cache.get(key, image_hashes(everything), everything, extract)
        except NonFiniteError as exc:
            where = f"folds {', '.join(map(str, todo))} (embeddings, before training)"
            exc.locate(model=f"{spec.name} {cfg.method}", fold=where)
            raise
        counters = {
            "backbone_forward_images": FORWARD_COUNTER["images"] - before,
            "embedding_cache_hits": cache_stats["cache_hits"],
            "unique_images": cache_stats["unique_images"],
            "folds": len(todo),
        }
        sizes = [len(pool_inputs), *(len(v) for v in test_inputs.values())]
        parts = torch.split(emb, sizes)
        pool_inputs = parts[0]
        test_inputs = dict(zip(test_inputs, parts[1:], strict=True))
        forward = _forward_embeddings(device)
        backbone.model.to("cpu")
    else:
        forward = _forward_images(t_train, t_eval, device)
    clock = {"train_seconds": 0.0, "train_images": 0}

    def train_fold(fold: int) -> None:
        seed = cfg.seed * 1000 + fold
        torch.manual_seed(seed)
        if cfg.method == "linear_probe":
            model = nn.Linear(pool_inputs.shape[1], 1)
        else:
            model = models.attach_head(copy.deepcopy(backbone.model))
            if cfg.method == "lora":
                model = models.wrap_lora(model, spec)
        model.to(device)
        train = task.pool_folds != fold
        val = task.pool_folds == fold
        t_fold = time.perf_counter()
        name = config_name(cfg.model, cfg.method)
        with fit_progress(console, name, fold, 5, hp.max_epochs) as shown:

            def epoch_end(epoch: int, row: dict, shown=shown) -> None:
                if shown is not None:
                    shown(epoch, row)
                if epoch == fail_after_epoch:
                    raise SimulatedInterruption(f"simulated interruption after epoch {epoch}")

            result = fit(
                model,
                forward,
                pool_inputs[torch.from_numpy(train)],
                task.pool_labels[train],
                pool_inputs[torch.from_numpy(val)],
                task.pool_labels[val],
                hp,
                seed=seed,
                device=device,
                progress=epoch_end,
                on_batch=None if shown is None else shown.batch,
                speed=speed,
                checkpoint=store.fold_dir(cfg.hash, fold) / "checkpoint.pt",
                checkpoint_interval_s=checkpoint_interval_s,
            )
        train_s = time.perf_counter() - t_fold
        clock["train_seconds"] += train_s
        clock["train_images"] += int(train.sum()) * result.epochs_run
        missing, unexpected = model.load_state_dict(result.best_state, strict=False)
        if unexpected or any(n in result.best_state for n in missing):
            raise RuntimeError(f"best checkpoint does not fit the model: {unexpected}")
        metric_rows, pred_rows = [], []
        for name, ts in task.tests.items():
            prob = predict(model, forward, test_inputs[name], speed=speed, device=device)
            prob_atypical = 1.0 - prob.astype(np.float64)
            m = stats.fold_metrics(ts.labels == 0, prob_atypical)
            metric_rows.append(
                {"model": spec.name, "method": cfg.method, "dataset": name, "fold": fold, **m}
            )
            pred_rows += [
                {
                    "model": spec.name,
                    "method": cfg.method,
                    "dataset": name,
                    "fold": fold,
                    "image": img,
                    "label": "Normal" if y else "Atypical",
                    "prob_atypical": float(p),
                }
                for img, y, p in zip(ts.names, ts.labels, prob_atypical, strict=True)
            ]
        fold_s = time.perf_counter() - t_fold
        info = {
            "seconds": round(fold_s, 2),
            "train_images_per_s": round(int(train.sum()) * result.epochs_run / train_s, 1),
            "best_epoch": result.best_epoch,
            "best_val_bacc": result.best_val_bacc,
            "epochs_run": result.epochs_run,
            "resumed_from_epoch": result.resumed_from_epoch,
            "precision": speed.precision,
            "history": result.history,
            "train_n": int(train.sum()),
            "val_n": int(val.sum()),
            "device": str(device),
            "weights_hash": backbone.weights_hash,
            "counters": counters,
            "harness_version": __version__,
        }
        store.save_fold(cfg.hash, fold, metric_rows, pred_rows, state=result.best_state, info=info)

    # First the folds no other process holds, then (waiting for their locks) the others, which
    # are usually found done by then: two identical runs share the work instead of repeating it.
    busy = []
    for wait in (False, True):
        for fold in busy if wait else todo:
            lock = store.fold_lock(cfg.hash, fold)
            try:
                lock.acquire(blocking=wait)
            except Timeout:
                busy.append(fold)
                continue
            try:
                if store.is_done(cfg.hash, fold):
                    report.folds_skipped.append(fold)
                    continue
                try:
                    train_fold(fold)
                except NonFiniteError as exc:
                    exc.locate(
                        model=f"{spec.name} {cfg.method}", fold=fold, hint=divergence_hint(hp)
                    )
                    raise
            finally:
                lock.release()
            report.folds_done.append(fold)
            if fail_after_fold is not None and fold == fail_after_fold:
                raise KeyboardInterrupt(f"simulated interruption after fold {fold}")
    report.counters = counters
    report.seconds = time.perf_counter() - t0
    report.train_images_per_s = (
        clock["train_images"] / clock["train_seconds"] if clock["train_seconds"] else None
    )
    return report


# --- CLI: run ----------------------------------------------------------------------------------------


def train_plan(
    store_dir: Path,
    *,
    data_root=None,
    weights_dir=None,
    preset: str = "paper",
    device: str = "auto",
    task: TaskData | None = None,
    console=None,
) -> dict[str, str]:
    """Train every configuration of Table 3 this machine can run (each (configuration, fold) once,
    across sessions: the store keeps finished folds); returns config -> why it was not run.

    device "auto" needs CUDA; naming a device ("cpu") is the explicit choice to train there."""
    skipped = {}
    weights_dir = paths.weights_dir(weights_dir)
    chosen = device not in (None, "auto")
    for key, method in PAPER_PLAN:
        lacks = missing_for(key, weights_dir, cuda=True if chosen else None)
        if lacks:
            skipped[config_name(key, method)] = not_run_reason(lacks)
            continue
        if console is not None:
            console.print(f"full tier: {config_name(key, method)}")
        try:
            ensure_trained(
                key,
                method,
                store_dir=store_dir,
                data_root=data_root,
                weights_dir=weights_dir,
                preset=preset,
                device=device,
                task=task,
            )
        except paths.RunFailed as exc:  # e.g. non-finite numbers: the other configurations go on
            skipped[config_name(key, method)] = f"failed: {exc}"
    return skipped


def _print_fold_metrics(store: Store, cfg: RunConfig, folds: Sequence[int]) -> None:
    """The fold metrics of `cfg` in the store, one row per (test set, fold), on standard output."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{cfg.spec.name} {cfg.method} ({cfg.tier} tier, hash {cfg.hash})")
    for col in ("dataset", "fold", "balanced accuracy", "AUROC"):
        table.add_column(col, justify="left" if col == "dataset" else "right")
    rows = [m for f in folds if store.is_done(cfg.hash, f) for m in store.load_fold(cfg.hash, f)[0]]
    for m in sorted(rows, key=lambda m: (m["dataset"], m["fold"])):
        cells = [m["balanced_accuracy"], m["auroc"]]
        table.add_row(
            m["dataset"], str(m["fold"]), *("-" if v is None else f"{v:.4f}" for v in cells)
        )
    Console().print(table)


def cli_run(args) -> int:
    """`amibr-bench run --config NAME`: train and evaluate one configuration, then export the store
    as a results set (the store folder itself: fold_metrics.csv, predictions.csv, manifest.json)
    and print the fold metrics. `--tier smoke` trains with the smoke job's settings
    (harness.smoke.smoke_settings); the folds are the authors' unless `--folds-source` says
    otherwise, and the configuration's hash covers them."""
    from rich.console import Console

    from harness.smoke import smoke_settings  # harness.smoke imports this module

    console = Console(stderr=True)
    key, method = parse_config(args.config)
    folds = parse_folds(args.folds)
    device = resolve_device(getattr(args, "device", "auto"))
    if args.tier == "full" and device.type != "cuda":
        if getattr(args, "device", "auto") in (None, "auto"):
            raise paths.MissingInputError(
                "the full tier needs a GPU and no CUDA device is available here "
                "(pass --device cpu to train on the CPU anyway, or --tier smoke)"
            )
    weights_dir = getattr(args, "weights_dir", None)
    root = paths.data_root(getattr(args, "data_root", None))
    kind = "synthetic" if data.is_synthetic(root) else "real"
    extra = smoke_settings(method, kind) if args.tier == "smoke" else {}
    precision = getattr(args, "precision", None)
    cfg = RunConfig(key, method, args.preset, args.tier, kind, precision=precision, **extra)
    if not cfg.spec.random_init:
        models.find_weights(key, weights_dir)  # fail before any data work
    store_dir = (
        Path(args.store) if getattr(args, "store", None) else paths.output_dir("runs") / args.tier
    )
    store = Store(store_dir)
    folds_source = getattr(args, "folds_source", None) or "authors"
    task = load_task(root, kind, dict(cfg.subset), seed=cfg.seed, folds_source=folds_source)
    cfg = replace(cfg, **task.folds)  # the hash covers the folds it trains on
    console.print(f"[bold]{cfg.label}[/] hash {cfg.hash} -> {store_dir} (device {device})")
    # the fold file read (a synthetic tree's own, or the authors'), its digest and how it was made
    folds_note = next((n for n in task.notes if n.startswith("folds: ")), None)
    console.print(folds_note or f"folds: {task.folds_source} (sha256 {task.folds_sha256})",
                  markup=False)  # fmt: skip
    report = run_config(
        cfg, task, store, folds, device=device, weights_dir=weights_dir, console=console
    )
    console.print(
        f"folds trained {report.folds_done}, reused {report.folds_skipped}, "
        f"{report.seconds:.0f} s; counters {report.counters}"
    )
    export_store(
        store, [cfg], tier=args.tier, preset=args.preset, data=kind, weights_dir=weights_dir,
        slide_overlaps=len(task.slide_overlaps), notes=task.notes,
    )  # fmt: skip
    console.print(f"results set written to {store_dir}")
    _print_fold_metrics(store, cfg, folds)
    return 0


def export_store(
    store: Store,
    configs: Sequence[RunConfig],
    *,
    tier: str,
    preset: str,
    data: str,
    weights_dir,
    slide_overlaps: int,
    notes: Sequence[str],
) -> Path | None:
    """The results set `run` and `launch` write into the store's folder: `configs` (those
    outside the plan too, e.g. a smoke model) and every other current configuration of this tier,
    preset and data the store holds. Where two runs map to one row (e.g. `--precision fp32` and
    `--precision bf16`), the faithful one is the row and the fast one travels beside it
    (`export_results`, harness.precision); among equals, the run just made."""
    current, left_out = current_configs(store, tier=tier, preset=preset, data=data)
    exported = [*configs, *(c for c in current if c.hash not in {e.hash for e in configs})]
    return export_results(
        store,
        exported,
        store.root,
        name=f"{tier}-{preset}",
        tier=tier,
        preset=preset,
        data=data,
        weights_dir=weights_dir,
        counters={"slide_overlaps": slide_overlaps},
        notes=[*notes, *left_out],
    )


# --- full tier (GPU) -------------------------------------------------------------------------------


def ensure_trained(
    key: str,
    method: str,
    *,
    store_dir: Path,
    data_root=None,
    weights_dir=None,
    preset: str = "paper",
    folds: Sequence[int] = (1, 2, 3, 4, 5),
    device: str = "auto",
    task: TaskData | None = None,
) -> Path:
    """Train (key, method) at full scale unless the store already holds its folds, then export
    the store as a results set. Each (configuration, fold) trains once, across sessions too.

    device "auto" needs CUDA; naming a device ("cpu") is the explicit choice to train there."""
    # The folds are the authors' (real data), or those of the task handed in (the rehearsal).
    cfg = RunConfig(key, method, preset, "full", "real", **(task.folds if task else {}))
    store = Store(store_dir)
    if set(folds) - set(store.done_folds(cfg.hash)):
        dev = resolve_device(device)
        if dev.type != "cuda" and device in (None, "auto"):
            raise paths.MissingInputError(
                "the full tier needs a CUDA device and none is available here "
                "(name the device, e.g. device='cpu', to train on the CPU anyway)"
            )
        if task is None:
            root = paths.data_root(data_root)
            if data.is_synthetic(root):
                raise paths.InputError(
                    f"{root} is the synthetic fixture; the full tier trains on the real datasets"
                )
            task = load_task(root, "real")
        run_config(cfg, task, store, folds, device=dev, weights_dir=weights_dir)
    current, left_out = current_configs(store, tier="full", preset=preset, data="real")
    export_results(
        store,
        [cfg, *(c for c in current if c.hash != cfg.hash)],  # the run asked for first
        store_dir,
        name=f"full-{preset}",
        tier="full",
        preset=preset,
        data="real",
        weights_dir=weights_dir,
        notes=left_out,
    )
    return Path(store_dir)
