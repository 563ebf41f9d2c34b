"""How fast a configuration trains and predicts on this machine, before committing to the full plan.

`amibr-bench throughput` builds each model at full size (random weights, or the user's), pushes
random 128 px images through the configuration's own transforms, training step (`trainer.fit`) and
prediction, and prints images per second, peak accelerator memory and what that means for one
fold and for the whole configuration. Numbers only: nothing here passes or fails.
"""

from __future__ import annotations

import gc
import json
import resource
import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from harness import config, embeddings, models, paths, plan, runner, trainer, transforms

IMAGE_PX = 128  # the datasets' patch size; the transforms resize to the model's input


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


# A rate needs a timed span the clock can resolve and, for training (the difference of two runs),
# one that stands out of the run-to-run noise of the runs' fixed costs.
MIN_SECONDS = 1000 * time.get_clock_info("perf_counter").resolution
MIN_SHARE = 0.05


def _rate(images: int, seconds: float, of_total: float | None = None) -> tuple[float | None, str]:
    """(images per second, "") or (None, why it could not be measured).

    `of_total`: for a difference of two runs, the longer run's seconds; the difference must be
    at least MIN_SHARE of it, else the figure would be the noise of the two runs' fixed costs."""
    if of_total is not None and seconds < max(MIN_SECONDS, MIN_SHARE * of_total):
        return None, (
            f"the longer run took {seconds * 1e3:+.3g} ms more than the shorter one, of "
            f"{of_total:.3g} s: the timed steps are lost in the noise of fixed costs; raise --steps"
        )
    if seconds < MIN_SECONDS:
        return None, f"the timed span, {seconds * 1e3:.3g} ms, is below the clock's resolution"
    return round(images / seconds, 2), ""


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def _backbone(key: str, weights: str, weights_dir, device: torch.device) -> models.Backbone:
    """The full-size backbone: the user's weights, or a seeded random initialisation built
    directly on the device (a 1.1B-parameter model initialises in seconds on a GPU)."""
    spec = models.get_spec(key)
    if weights == "local" and not spec.random_init:
        return models.load_backbone(key, weights_dir)
    torch.manual_seed(0)
    with torch.device(device):
        model = models.build_backbone(key)
    return models.Backbone(model, spec, "random", None)


def measure(
    key: str,
    method: str,
    *,
    device: torch.device | str = "cpu",
    batch: int = 8,
    steps: int = 5,
    warmup: int = 1,
    weights: str = "random",
    weights_dir=None,
    precision: str = "fp32",
) -> dict[str, Any]:
    """Training and inference images per second of one configuration (paper preset, full tier)
    at `precision` (fp32 | tf32 | bf16, config.Speed).

    Training time is the difference of two `trainer.fit` runs of `warmup` and `warmup + steps`
    steps (after one untimed run), so the loop's fixed costs cancel; the linear probe's cost is
    the frozen backbone's one pass per image (its head trains on cached embeddings in negligible
    time).

    A rate that could not be measured (a difference of two runs that is not clearly positive,
    a span the clock cannot resolve) is None, and `not_measured` maps its field to the reason."""
    if batch < 1 or steps < 1 or warmup < 0:
        raise ValueError(f"batch and steps must be positive, not batch={batch}, steps={steps}")
    device = torch.device(device)
    cfg = config.RunConfig(key, method, precision=precision)
    spec, hp, speed = cfg.spec, replace(cfg.hyper(), batch_size=batch), cfg.speed()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(0)
    n = batch * (warmup + steps)
    images = torch.randint(0, 256, (n, IMAGE_PX, IMAGE_PX, 3), dtype=torch.uint8)
    labels = np.arange(n) % 2
    t0 = time.perf_counter()
    backbone = _backbone(key, weights, weights_dir, device)
    out: dict[str, Any] = {
        "config": config.config_name(key, method),
        "model": spec.name,
        "method": method,
        "device": _device_name(device),
        "img_size": cfg.size,
        "batch": batch,
        "precision": precision,
        "weights": backbone.weights_hash if backbone.weights_path else "random",
        "build_s": round(time.perf_counter() - t0, 1),
        "train_images_per_s": None,
        "not_measured": {},
    }
    t_eval = transforms.Transform(spec, method, cfg.size, train=False)
    if method == "linear_probe":
        amp = "bf16" if precision == "bf16" else hp.lp_autocast_fp16

        def infer(x: torch.Tensor) -> torch.Tensor:
            with trainer.precision_scope(speed):
                return embeddings.compute_embeddings(
                    backbone, x, t_eval, device, autocast=amp, batch=batch
                )

        out["trainable_params"] = int(infer(images[:1]).shape[1]) + 1  # the linear head
    else:
        model = models.attach_head(backbone.model)
        if method == "lora":
            model = models.wrap_lora(model)
        model.to(device)
        t_train = transforms.Transform(spec, method, cfg.size, train=True)
        forward = runner._forward_images(t_train, t_eval, device)

        def fit(k: int) -> None:
            trainer.fit(
                model, forward, images, labels, images[:batch], labels[:batch], hp,
                seed=0, device=device, stop_after_steps=k, speed=speed,
            )  # fmt: skip

        # untimed first run: its one-off costs (allocator, autotuning) would shrink the difference
        fit(max(warmup, 1))
        short = _timed(lambda: fit(warmup), device)
        long = _timed(lambda: fit(warmup + steps), device)
        rate, why = _rate(steps * batch, long - short, of_total=long)
        out["train_images_per_s"] = rate
        if why:
            out["not_measured"]["train_images_per_s"] = why
        out["trainable_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)

        def infer(x: torch.Tensor) -> np.ndarray:
            return trainer.predict(model, forward, x, batch=batch, speed=speed, device=device)

    _timed(lambda: infer(images[:batch]), device)  # warm-up (cuDNN autotuning, allocator)
    rate, why = _rate(len(images), _timed(lambda: infer(images), device))
    out["infer_images_per_s"] = rate
    if why:
        out["not_measured"]["infer_images_per_s"] = why
    if device.type == "cuda":
        out["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    out["process_peak_rss_gib"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2
    )
    return out


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def config_hours(row: dict[str, Any], pool: int, tests: int, epochs: int) -> float | None:
    """Hours for the five folds of a configuration: each fold trains `epochs` epochs on four
    fifths of the pool, validates on the fifth and predicts every test image; a linear probe
    instead embeds every image once for all folds (its head's training is negligible).
    None when a rate it needs was not measured."""
    if row.get("not_measured"):
        return None
    infer = row["infer_images_per_s"]
    if row["train_images_per_s"] is None:
        return (pool + tests) / infer / 3600
    per_epoch = pool * 4 / 5 / row["train_images_per_s"] + pool / 5 / infer
    return 5 * (epochs * per_epoch + tests / infer) / 3600


def _data_sizes(data_root) -> tuple[int, int] | None:
    """(training pool, test images over the three sets) of the real data, if it is here."""
    from harness import data, splits

    root = paths.data_root(data_root, required=False)
    if root is None or data.is_synthetic(root):
        return None
    rows = splits.author_folds(root)
    pool = sum(r.fold != "test" for r in rows)
    tests = sum(r.fold == "test" for r in rows)
    tests += sum(len(data.load_records(root, d)) for d in ("AtNorM-Br", "AtNorM-MD"))
    return pool, tests


def _figure(row: dict[str, Any], field: str, absent: str = "-") -> str:
    """A measured rate, or "not measured (why)"; never a figure the clock could not give."""
    if field in row["not_measured"]:
        return f"not measured ({row['not_measured'][field]})"
    return absent if row[field] is None else f"{row[field]:.1f}"


def cli_throughput(args) -> int:
    from rich.console import Console
    from rich.table import Table

    device = runner.resolve_device(args.device)
    configs = (
        list(plan.PAPER_PLAN)
        if args.all or not args.config
        else [config.parse_config(c) for c in args.config]
    )
    sizes = _data_sizes(getattr(args, "data_root", None))
    console = Console(stderr=True)
    rows = []
    for key, method in configs:
        console.print(f"measuring {config.config_name(key, method)} on {device} ...")
        row = measure(
            key,
            method,
            device=device,
            batch=args.batch,
            steps=args.steps,
            weights=args.weights,
            weights_dir=getattr(args, "weights_dir", None),
        )
        _release(device)
        hours = {e: config_hours(row, *sizes, epochs=e) for e in (20, 100)} if sizes else {}
        if hours and None not in hours.values():
            row["hours_5_folds_at_epochs"] = {e: round(h, 2) for e, h in hours.items()}
        rows.append(row)
    if args.json:
        paths.atomic_write(args.json, json.dumps(rows, indent=2) + "\n")
    table = Table(
        title=f"throughput on {rows[0]['device'] if rows else device}, batch {args.batch}, "
        f"{args.weights} weights, 128 px images resized by each model's transforms"
    )
    for col in (
        "config",
        "px",
        "train img/s",
        "predict img/s",
        "peak GPU GiB",
        "5 folds, hours",
    ):
        table.add_column(col)
    for r in rows:
        est = r.get("hours_5_folds_at_epochs")
        table.add_row(
            r["config"],
            str(r["img_size"]),
            _figure(r, "train_images_per_s", "embeds once"),
            _figure(r, "infer_images_per_s"),
            str(r.get("peak_gpu_gib", "-")),
            f"{est[20]:.1f} to {est[100]:.1f}"
            if est
            else ("not measured" if r["not_measured"] and sizes else "no data"),
        )
    Console().print(table)
    if sizes:
        console.print(
            f"5 folds, hours: {sizes[0]} pool images (four fifths trained, one validated an epoch) "
            f"and {sizes[1]} test images, for 20 to 100 epochs (early stopping decides); "
            "a linear probe embeds every image once"
        )
    return 0
