"""Running one configuration: trains each requested fold (harness.trainer), predicts the test sets,
stores each fold (harness.store) and exports the results set (harness.export); the `run` command
and the full tier's `ensure_trained` / `train_plan`.

results store prob_atypical = 1 - sigmoid(logit) (the logit is P(Normal), as in the authors' scripts)."""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from harness import __version__, data, models, paths, stats
from harness.config import RunConfig, config_name, parse_config, parse_folds
from harness.embeddings import FORWARD_COUNTER, EmbeddingCache, compute_embeddings, image_hashes
from harness.export import export_results
from harness.plan import EXTRA_PLAN, PAPER_PLAN, missing_for, not_run_reason
from harness.progress import fit_progress, progress_bar
from harness.store import Store
from harness.taskdata import TaskData, load_task
from harness.trainer import fit, precision_scope, predict
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


def resolve_device(flag: str | None) -> torch.device:
    if flag in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(flag)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise paths.MissingInputError(f"--device {flag}: no CUDA device is available here")
    return device


def _forward_images(transform_train: Transform, transform_eval: Transform, device):
    def forward(model, batch, train):
        return models.logits(model, (transform_train if train else transform_eval)(batch, device))

    return forward


def _forward_embeddings(device):
    def forward(model, batch, train):
        return model(batch.to(device)).reshape(len(batch))

    return forward


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

    `fail_after_fold` raises after that fold is stored, `fail_after_epoch` after that epoch of
    each fold is checkpointed (tests of resumption)."""
    device = torch.device(device)
    speed = cfg.speed()
    t0 = time.perf_counter()
    todo = [f for f in folds if not store.is_done(cfg.hash, f)]
    report = RunReport(cfg, [], [f for f in folds if f not in todo], {}, 0.0)
    if not todo:
        return report
    hp, spec = cfg.hyper(), cfg.spec
    backbone = models.load_backbone(cfg.model, weights_dir, seed=cfg.seed)
    store.register(cfg.hash, cfg.describe())  # only once the inputs loaded: no empty records
    t_eval = Transform(spec, cfg.method, cfg.size, train=False)
    t_train = Transform(spec, cfg.method, cfg.size, train=True)
    test_inputs = {name: ts.images for name, ts in task.tests.items()}
    pool_inputs = task.pool_images
    counters: dict[str, int] = {}
    if cfg.method == "linear_probe":
        cache = embedding_cache or EmbeddingCache(paths.cache_dir() / "embeddings")
        amp = "bf16" if speed.precision == "bf16" else hp.lp_autocast_fp16
        key = cache.key(
            backbone, describe_transforms(spec, cfg.method, cfg.size)["eval"], cfg.size, amp
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

        emb, cache_stats = cache.get(key, image_hashes(everything), everything, extract)
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
    train_seconds, train_images = 0.0, 0
    for fold in todo:
        seed = cfg.seed * 1000 + fold
        torch.manual_seed(seed)
        if cfg.method == "linear_probe":
            model = nn.Linear(pool_inputs.shape[1], 1)
        else:
            model = models.attach_head(copy.deepcopy(backbone.model))
            if cfg.method == "lora":
                model = models.wrap_lora(model)
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
        train_seconds += train_s
        train_images += int(train.sum()) * result.epochs_run
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
        report.folds_done.append(fold)
        del model
        if fail_after_fold is not None and fold == fail_after_fold:
            raise KeyboardInterrupt(f"simulated interruption after fold {fold}")
    report.counters = counters
    report.seconds = time.perf_counter() - t0
    report.train_images_per_s = train_images / train_seconds if train_seconds else None
    return report


# --- CLI: run ----------------------------------------------------------------------------------------

SMOKE_TIER_FOR_PAPER_MODELS = {
    "overrides": (("max_epochs", 3),),
    "subset": (("test", 200), ("train_pool", 400)),
}


def _plan_configs(
    store: Store, *, preset: str, tier: str, data: str, precision: str | None = None
) -> list[RunConfig]:
    """Current-hash configurations of the plan that have at least one finished fold."""
    out = []
    for key, method in PAPER_PLAN + EXTRA_PLAN:
        extra = SMOKE_TIER_FOR_PAPER_MODELS if tier == "smoke" else {}
        cfg = RunConfig(key, method, preset, tier, data, precision=precision, **extra)
        if store.done_folds(cfg.hash):
            out.append(cfg)
    return out


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
    return skipped


def cli_run(args) -> int:
    """`amibr-bench run --config NAME`: train and evaluate one configuration, then export the store
    as a results set (the store folder itself: fold_metrics.csv, predictions.csv, manifest.json)."""
    from rich.console import Console

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
    extra = SMOKE_TIER_FOR_PAPER_MODELS if args.tier == "smoke" else {}
    root = paths.data_root(getattr(args, "data_root", None))
    kind = "synthetic" if data.is_synthetic(root) else "real"
    precision = getattr(args, "precision", None)
    cfg = RunConfig(key, method, args.preset, args.tier, kind, precision=precision, **extra)
    if not cfg.spec.random_init:
        models.find_weights(key, weights_dir)  # fail before any data work
    store_dir = (
        Path(args.store) if getattr(args, "store", None) else paths.REPO_ROOT / "runs" / args.tier
    )
    store = Store(store_dir)
    console.print(f"[bold]{cfg.label}[/] hash {cfg.hash} -> {store_dir} (device {device})")
    task = load_task(root, kind, dict(cfg.subset), seed=cfg.seed)
    report = run_config(
        cfg, task, store, folds, device=device, weights_dir=weights_dir, console=console
    )
    console.print(
        f"folds trained {report.folds_done}, reused {report.folds_skipped}, "
        f"{report.seconds:.0f} s; counters {report.counters}"
    )
    export_store(
        store, [cfg], tier=args.tier, preset=args.preset, data=kind, precision=precision,
        weights_dir=weights_dir, slide_overlaps=len(task.slide_overlaps), notes=task.notes,
    )  # fmt: skip
    console.print(f"results set written to {store_dir}")
    return 0


def export_store(
    store: Store,
    configs: Sequence[RunConfig],
    *,
    tier: str,
    preset: str,
    data: str,
    precision: str | None,
    weights_dir,
    slide_overlaps: int,
    notes: Sequence[str],
) -> Path | None:
    """The results set `run` and `launch` write into the store's folder: the plan's
    configurations of this tier, preset and precision that finished a fold, and `configs`
    (those outside the plan too, e.g. a smoke model)."""
    exported = _plan_configs(store, preset=preset, tier=tier, data=data, precision=precision)
    exported += [c for c in configs if c.hash not in {e.hash for e in exported}]
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
        notes=list(notes),
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
    cfg = RunConfig(key, method, preset, "full", "real")
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
    export_results(
        store,
        _plan_configs(store, preset=preset, tier="full", data="real"),
        store_dir,
        name=f"full-{preset}",
        tier="full",
        preset=preset,
        data="real",
        weights_dir=weights_dir,
    )
    return Path(store_dir)
