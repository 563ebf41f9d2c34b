"""What a launch costs before it runs (`amibr-bench launch --dry-run`): GPU-hours, peak GPU memory
and disk per (configuration, fold) job, from a recorded throughput file where there is one
(`amibr-bench throughput --json`, see harness.throughput), else estimated from the registry.

Estimates (always marked "estimate"):
- compute: forward FLOPs per image counted with torch.utils.flop_counter.FlopCounterMode on the
  meta device (no memory, no weights) x images x epochs at an assumed sustained rate
  (ASSUMED_TFLOPS, stated in the output). Training an image costs 3 forward passes end to end
  (forward + backward through activations and weights) and 2 with LoRA (the frozen backbone's
  weights get no gradients); validation and test images cost one. A linear probe embeds each
  image once for all five folds (the first fold's job; the others train a head on cached
  embeddings, seconds).
- memory: float32 weights (+ gradients and Adam's two moments for trained tensors) plus the
  batch's activations (the sum of every leaf module's output, 4 bytes, 2 under bf16).
- disk: each fold's best checkpoint (trained tensors, float32) and predictions; while a fold
  trains, its resumable checkpoint (trained tensors, their Adam moments and the best state);
  the decoded-image cache and the linear probes' embedding caches.
Sizes follow PROTOCOL.md: a 2,894-image training pool (four fifths trained, one fifth validated
per epoch) and 826 + 746 + 2,107 test images; 100 epochs, the protocol's maximum (early stopping
ends most folds sooner, so the hours are an upper bound).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import models, paths
from harness.config import RunConfig, config_name

POOL_IMAGES = 2894  # PROTOCOL.md: the AMi-Br training pool
TEST_IMAGES = {"AMi-Br": 826, "AtNorM-Br": 746, "AtNorM-MD": 2107}  # PROTOCOL.md
TESTS = sum(TEST_IMAGES.values())
EPOCHS = 100  # PROTOCOL.md: the maximum; early stopping decides
IMAGE_PX = 128  # decoded patches in the image cache (uint8, 3 channels)
PREDICTION_ROW_BYTES = 90  # one predictions.csv row, about
# Sustained (not peak) dense throughput assumed for one A100/H100-class GPU; --assume-tflops.
ASSUMED_TFLOPS = {"fp32": 15.0, "tf32": 60.0, "bf16": 120.0}
TRAIN_PASSES = {"end_to_end": 3.0, "lora": 2.0}
CUDA_CONTEXT_GIB = 0.5
LP_BATCH = 64  # compute_embeddings' batch


@dataclass(frozen=True)
class JobCost:
    gpu_hours: float
    peak_gib: float
    source: str  # "recorded (<file>)" | "estimate"
    final_bytes: int  # best checkpoint + predictions, kept
    checkpoint_bytes: int  # resumable checkpoint while the fold trains, removed at its end


# --- facts of a model (meta device, cached) ------------------------------------------------------


def _facts_key(spec: models.ModelSpec) -> str:
    import timm
    import torch

    blob = json.dumps(
        [spec.arch, spec.describe()["kwargs"], spec.img_size, timm.__version__, torch.__version__],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _count(key: str) -> dict[str, int]:
    """Forward FLOPs, activation elements (sum and largest leaf output) per image, parameters,
    LoRA's trainable parameters: one model built on the meta device."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    spec = models.get_spec(key)
    acts = {"sum": 0, "max": 0}

    def hook(_module, _inputs, out) -> None:
        if isinstance(out, torch.Tensor):
            acts["sum"] += out.numel()
            acts["max"] = max(acts["max"], out.numel())

    with torch.device("meta"):
        model = models.attach_head(models.build_backbone(key))
        params = sum(p.numel() for p in model.parameters())
        leaves = [m for m in model.modules() if not list(m.children())]
        handles = [m.register_forward_hook(hook) for m in leaves]
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            models.logits(model, torch.empty(1, 3, spec.img_size, spec.img_size))
        for h in handles:
            h.remove()
        lora = None
        if "lora" in spec.methods:
            wrapped = models.wrap_lora(model)
            lora = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    return {
        "forward_flops": int(counter.get_total_flops()),
        "activations": acts["sum"],
        "largest_activation": acts["max"],
        "params": params,
        "lora_trainable": lora,
    }


def model_facts(keys: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per registry key: forward_flops, activations, largest_activation (per image), params
    (with a one-logit head), lora_trainable; cached in <cache>/model_facts.json by architecture."""
    memo = paths.cache_dir() / "model_facts.json"
    try:
        table = json.loads(memo.read_text()) if memo.is_file() else {}
    except (OSError, ValueError):
        table = {}
    out, changed = {}, False
    for key in dict.fromkeys(keys):
        fk = _facts_key(models.get_spec(key))
        if fk not in table:
            table[fk], changed = _count(key), True
        out[key] = table[fk]
    if changed:
        try:
            paths.atomic_write(memo, json.dumps(table, indent=1))
        except OSError:
            pass  # a read-only cache only costs the next dry run its counting time
    return out


def trainable_params(cfg: RunConfig, facts: dict[str, int]) -> int:
    if cfg.method == "end_to_end":
        return facts["params"]
    if cfg.method == "lora":
        return int(facts["lora_trainable"] or 0)
    return cfg.spec.embed_dim + 1  # the linear probe's head


# --- recorded throughput ----------------------------------------------------------------------------


def load_throughput(path: Path) -> dict[str, dict[str, Any]]:
    """Rows of `amibr-bench throughput --json` by configuration name ({} when there is no file);
    InputError naming the file when it is not such a file."""
    if not path.is_file():
        return {}
    try:
        rows = json.loads(path.read_text())
        return {r["config"]: r for r in rows if "infer_images_per_s" in r}
    except (ValueError, TypeError, KeyError) as exc:
        raise paths.InputError(
            f"{path}: not a throughput file written by `amibr-bench throughput --json` ({exc})"
        ) from exc


def _recorded_hours(row: dict[str, Any], cfg: RunConfig, first_fold: bool) -> float:
    from harness.throughput import config_hours

    hours = config_hours(row, POOL_IMAGES, TESTS, EPOCHS)
    if cfg.method == "linear_probe":
        return hours if first_fold else 0.0
    return hours / 5


def _estimated_hours(cfg: RunConfig, facts: dict[str, int], first_fold: bool, tflops: float):
    fwd = facts["forward_flops"]
    if cfg.method == "linear_probe":
        flops = (POOL_IMAGES + TESTS) * fwd if first_fold else 0.0
    else:
        per_epoch = POOL_IMAGES * 4 / 5 * TRAIN_PASSES[cfg.method] * fwd + POOL_IMAGES / 5 * fwd
        flops = EPOCHS * per_epoch + TESTS * fwd
    return flops / (tflops * 1e12) / 3600


def _estimated_peak_gib(cfg: RunConfig, facts: dict[str, int]) -> float:
    act_bytes = 2 if cfg.precision == "bf16" else 4
    params, trained = facts["params"], trainable_params(cfg, facts)
    if cfg.method == "linear_probe":  # inference: weights and a few live activations
        live = LP_BATCH * facts["largest_activation"] * 3 * act_bytes
        total = params * 4 + live
    else:
        batch = cfg.hyper().batch_size
        total = params * 4 + trained * 12 + batch * facts["activations"] * act_bytes
    return total / 2**30 + CUDA_CONTEXT_GIB


def job_cost(
    cfg: RunConfig,
    fold_index: int,
    facts: dict[str, int],
    recorded: dict[str, dict[str, Any]],
    tflops: float,
    recorded_from: str = "",
) -> JobCost:
    """One (configuration, fold) job; `fold_index` 0 is the configuration's first job (the one
    that embeds every image for a linear probe)."""
    first = fold_index == 0
    trained = trainable_params(cfg, facts)
    final = trained * 4 + TESTS * PREDICTION_ROW_BYTES
    ckpt = trained * 4 * 4  # trained tensors, Adam's two moments, the best state
    row = recorded.get(config_name(cfg.model, cfg.method))
    if row is not None and (row.get("precision") or "fp32") == cfg.precision:
        peak = row.get("peak_gpu_gib")
        return JobCost(
            _recorded_hours(row, cfg, first),
            float(peak) if peak is not None else _estimated_peak_gib(cfg, facts),
            f"recorded ({recorded_from})" if peak is not None else "recorded rate, memory estimate",
            final,
            ckpt,
        )
    return JobCost(
        _estimated_hours(cfg, facts, first, tflops),
        _estimated_peak_gib(cfg, facts),
        "estimate",
        final,
        ckpt,
    )


def cache_bytes(configs: Sequence[RunConfig]) -> dict[str, int]:
    """Decoded-image cache (shared) and the linear probes' embedding caches, in bytes."""
    images = POOL_IMAGES + TESTS
    out = {"image cache": images * IMAGE_PX * IMAGE_PX * 3}
    for cfg in configs:
        if cfg.method == "linear_probe":
            out[f"embeddings {cfg.spec.name}"] = images * (cfg.spec.embed_dim * 4 + 40)
    return out


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
