"""One training loop for end-to-end fine-tuning, linear probing and LoRA (PROTOCOL.md).

Label encoding follows the authors' scripts: Atypical -> 0, Normal -> 1, one logit trained with
BCEWithLogits, so sigmoid(logit) is P(Normal); results store prob_atypical = 1 - sigmoid and the
decision threshold is 0.5. Metrics come from `stats.fold_metrics` (Normal the positive class).
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from harness import __version__, data, models, paths, stats
from harness.store import Store

STRATEGY_ALIASES = {
    "e2e": "end_to_end",
    "end-to-end": "end_to_end",
    "lp": "linear_probe",
    "linear-probe": "linear_probe",
}
LABEL_NORMAL = "Normal"
TEST_SETS = ("AMi-Br", "AtNorM-Br", "AtNorM-MD")


# --- presets and configurations --------------------------------------------------------------


@dataclass(frozen=True)
class Hyper:
    """Optimisation settings of one run (PROTOCOL.md, 'Optimisation')."""

    lr: float = 5e-5
    weight_decay: float = 1e-5
    max_epochs: int = 100
    batch_size: int = 8
    early_stopping: int = 15
    plateau_factor: float = 0.5
    plateau_patience: int = 3
    min_lr: float = 1e-7
    lp_autocast_fp16: bool = False  # embeddings under fp16 autocast (CUDA only), as the scripts
    head_lr: float | None = None  # smoke tier only: the head's own rate (None: lr, the protocol)


PRESETS = ("paper", "reference-code")
PRESET_NOTES = {
    "paper": "paper text (§4); learning rate and weight decay are blank in the text, so the "
    "scripts' Adam(5e-5, 1e-5) is used for every model; early stopping 15 everywhere",
    "reference-code": "the authors' scripts (commit 3acf4da): Prov-GigaPath linear probe "
    "Adam(1e-3, 1e-4), early stopping 10 for LoRA, embeddings under fp16 autocast on CUDA",
}


def hyperparameters(key: str, method: str, preset: str) -> Hyper:
    """The protocol's settings for one (model, method) under a preset."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {PRESETS}, not {preset!r}")
    hp = Hyper()
    if preset == "reference-code":
        hp = replace(hp, lp_autocast_fp16=True)
        if method == "lora":
            hp = replace(hp, early_stopping=10)
        if key == "prov-gigapath" and method == "linear_probe":
            hp = replace(hp, lr=1e-3, weight_decay=1e-4)
    return hp


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's numbers; its hash keys the results store."""

    model: str
    method: str
    preset: str = "paper"
    tier: str = "full"
    data: str = "real"  # real | synthetic
    seed: int = 0
    img_size: int | None = None  # None: the model's own (224 for every paper model)
    overrides: tuple[tuple[str, Any], ...] = ()  # Hyper fields changed (smoke tier)
    subset: tuple[tuple[str, int], ...] = ()  # images kept per split (smoke tier on real data)

    def __post_init__(self) -> None:
        spec = models.get_spec(self.model)
        if self.method not in spec.methods:
            raise ValueError(f"{self.model} runs {', '.join(spec.methods)}, not {self.method}")
        fixed = dict(spec.kwargs).get("img_size")
        if self.img_size is not None and fixed is not None and self.img_size != fixed:
            raise ValueError(f"{self.model} is built for {fixed} px, not {self.img_size}")

    @property
    def spec(self) -> models.ModelSpec:
        return models.get_spec(self.model)

    @property
    def size(self) -> int:
        return self.img_size or self.spec.img_size

    def hyper(self) -> Hyper:
        return replace(
            hyperparameters(self.model, self.method, self.preset), **dict(self.overrides)
        )

    @property
    def label(self) -> str:
        return f"{self.spec.name}|{self.method}|{self.preset}|{self.tier}|{self.data}"

    def describe(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"lora": dict(models.LORA_CONFIG)} if self.method == "lora" else {}
        return {
            **extra,
            "protocol_hyper": asdict(hyperparameters(self.model, self.method, self.preset)),
            "threshold": 0.5,
            "optimizer": "Adam",
            "scheduler": "ReduceLROnPlateau(mode=max) on validation balanced accuracy",
            "sampler": "WeightedRandomSampler(1/class frequency, num_samples=len(train), "
            "replacement=True)",
            "loss": "BCEWithLogitsLoss on one logit",
            "label": self.label,
            "model": self.spec.describe(),
            "method": self.method,
            "preset": self.preset,
            "tier": self.tier,
            "data": self.data,
            "seed": self.seed,
            "img_size": self.size,
            "hyper": asdict(self.hyper()),
            "overrides": dict(self.overrides),  # departures from the preset (smoke tier)
            "subset": dict(self.subset),
            "transforms": describe_transforms(self.spec, self.method, self.size),
            "label_encoding": "Atypical=0, Normal=1; BCEWithLogits on one logit",
            "registry_version": models.REGISTRY_VERSION,
        }

    @property
    def hash(self) -> str:
        text = json.dumps(self.describe(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- transforms ----------------------------------------------------------------------------------


def describe_transforms(spec: models.ModelSpec, method: str, size: int) -> dict[str, str]:
    """Human-readable pipelines (PROTOCOL.md 'Per-family details'); part of hashes and cache keys."""
    norm = f"Normalize(mean={spec.mean}, std={spec.std})"
    if spec.eval_resize == "resize256-crop224":
        big = round(size * 256 / 224)
        evaluation = f"Resize({big}, bicubic), CenterCrop({size}), {norm}"
    else:
        evaluation = f"Resize({size}, bilinear), {norm}"
    train = train_steps(spec, method, size)
    return {"eval": evaluation, "train": ", ".join(train) + f", {norm}" if train else "none"}


def train_steps(spec: models.ModelSpec, method: str, size: int) -> list[str]:
    if method == "linear_probe":
        return []
    if method == "end_to_end":
        return [
            f"Resize({size})",
            "RandomHorizontalFlip",
            "RandomRotation(10)",
            "ColorJitter(0.2,0.2,0.2,0.1)",
            f"RandomResizedCrop({size}, scale=(0.8,1))",
        ]
    recipe = spec.lora_augment
    if recipe == "virchow":
        return [
            f"RandomResizedCrop({size}, scale=(0.8,1))",
            "RandomHorizontalFlip",
            "ColorJitter(0.2,0.2,0.2,0.1)",
        ]
    if recipe == "uni":
        return [
            f"RandomResizedCrop({size})",
            "RandomHorizontalFlip",
            "RandomRotation(15)",
            "ColorJitter(0.2,0.2)",
        ]
    if recipe == "hoptimus1":
        return [
            f"Resize({size})",
            "RandomHorizontalFlip",
            "RandomRotation(15)",
            "ColorJitter(0.2,0.2)",
        ]
    raise ValueError(f"{spec.key} has no LoRA pipeline")


def _train_pipeline(spec: models.ModelSpec, method: str, size: int):
    from torchvision.transforms import v2

    steps = {
        "RandomHorizontalFlip": v2.RandomHorizontalFlip(),
        "RandomRotation(10)": v2.RandomRotation(10),
        "RandomRotation(15)": v2.RandomRotation(15),
        "ColorJitter(0.2,0.2,0.2,0.1)": v2.ColorJitter(0.2, 0.2, 0.2, 0.1),
        "ColorJitter(0.2,0.2)": v2.ColorJitter(0.2, 0.2),
        f"Resize({size})": v2.Resize((size, size), antialias=True),
        f"RandomResizedCrop({size})": v2.RandomResizedCrop(size, antialias=True),
        f"RandomResizedCrop({size}, scale=(0.8,1))": v2.RandomResizedCrop(
            size, scale=(0.8, 1.0), antialias=True
        ),
    }
    return v2.Compose([steps[s] for s in train_steps(spec, method, size)])


class Transform:
    """uint8 N×H×W×3 batch -> normalised float N×3×S×S on the target device.

    Augmentation draws its own parameters per image (torchvision applies one draw to a whole
    batch tensor), from torch's global generator, which the loop seeds."""

    def __init__(self, spec: models.ModelSpec, method: str, size: int, train: bool) -> None:
        self.spec, self.size = spec, size
        self.mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
        self.std = torch.tensor(spec.std).view(1, 3, 1, 1)
        use = train and bool(train_steps(spec, method, size))
        self.augment = _train_pipeline(spec, method, size) if use else None

    def __call__(self, batch: torch.Tensor, device: torch.device) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as F

        x = batch.to(device).permute(0, 3, 1, 2).float().div_(255.0)
        if self.augment is not None:
            x = torch.stack([self.augment(img) for img in x])
        elif self.spec.eval_resize == "resize256-crop224":
            big = round(self.size * 256 / 224)
            x = F.resize(x, [big, big], interpolation=F.InterpolationMode.BICUBIC, antialias=True)
            x = F.center_crop(x, [self.size, self.size])
        elif x.shape[-1] != self.size:
            x = F.resize(x, [self.size, self.size], antialias=True)
        if x.shape[-1] != self.size:  # augment pipelines that end without a resize
            x = F.resize(x, [self.size, self.size], antialias=True)
        return (x - self.mean.to(device)) / self.std.to(device)


# --- metrics -------------------------------------------------------------------------------------


# --- the loop -----------------------------------------------------------------------------------


@dataclass
class FitResult:
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_val_bacc: float
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)


def _trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What a checkpoint must hold: trained parameters and the persistent buffers (BatchNorm
    statistics); non-persistent ones (Swin's relative_position_index) are rebuilt by the model."""
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    return {
        n: t.detach().clone()
        for n, t in model.state_dict(keep_vars=True).items()
        if n not in frozen
    }


def _is_head(name: str) -> bool:
    return name.startswith(("head.", "base_model.model.head.", "weight", "bias"))


def class_weights(labels: np.ndarray) -> torch.Tensor:
    """Per-sample weight 1 / frequency of its class (the protocol's sampler)."""
    labels = np.asarray(labels).astype(int)
    counts = np.bincount(labels, minlength=2).astype(float)
    if (counts == 0).any():
        raise ValueError(f"the training split lacks a class (counts {counts.tolist()})")
    return torch.as_tensor(1.0 / counts[labels], dtype=torch.double)


def fit(
    model: nn.Module,
    forward: Callable[[nn.Module, torch.Tensor, bool], torch.Tensor],
    train_inputs: torch.Tensor,
    train_labels: np.ndarray,
    val_inputs: torch.Tensor,
    val_labels: np.ndarray,
    hp: Hyper,
    *,
    seed: int,
    device: torch.device,
    progress: Callable[[int, dict], None] | None = None,
    stop_after_steps: int | None = None,
) -> FitResult:
    """Train with the protocol: weighted sampler, Adam, plateau scheduler, early stopping and
    best checkpoint on validation balanced accuracy (strict improvement).

    `forward(model, inputs, train)` maps a batch of raw inputs to logits (transform inside)."""
    for what, labels in (("training", train_labels), ("validation", val_labels)):
        if len(np.unique(labels)) < 2:
            raise ValueError(f"the {what} split lacks a class ({len(labels)} images)")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    sampler = torch.utils.data.WeightedRandomSampler(
        class_weights(train_labels),
        num_samples=len(train_labels),
        replacement=True,
        generator=generator,
    )
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if hp.head_lr is None:
        groups = [{"params": [p for _, p in named]}]
    else:  # random-init smoke backbones: big adapter steps would swamp the random weights
        groups = [
            {"params": [p for n, p in named if not _is_head(n)]},
            {"params": [p for n, p in named if _is_head(n)], "lr": hp.head_lr},
        ]
    groups = [g for g in groups if g["params"]]
    optimiser = torch.optim.Adam(groups, lr=hp.lr, weight_decay=hp.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimiser,
        mode="max",
        factor=hp.plateau_factor,
        patience=hp.plateau_patience,
        min_lr=hp.min_lr,
    )
    loss_fn = nn.BCEWithLogitsLoss()
    y_train = torch.as_tensor(np.asarray(train_labels), dtype=torch.float32)
    best = FitResult(_trainable_state(model), 0, -math.inf, 0)
    waited, steps = 0, 0
    for epoch in range(1, hp.max_epochs + 1):
        model.train()
        order = torch.tensor(list(sampler))
        total, seen = 0.0, 0
        for start in range(0, len(order), hp.batch_size):
            idx = order[start : start + hp.batch_size]
            out = forward(model, train_inputs[idx], True)
            loss = loss_fn(out, y_train[idx].to(device))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
            steps += 1
            if stop_after_steps is not None and steps >= stop_after_steps:
                best.history.append({"epoch": epoch, "loss": total / seen})
                best.best_state = _trainable_state(model)
                best.epochs_run = epoch
                return best
        prob = predict(model, forward, val_inputs)
        val_bacc = stats.balanced_accuracy(np.asarray(val_labels) == 0, 1.0 - prob)
        scheduler.step(val_bacc)
        best.history.append(
            {
                "epoch": epoch,
                "loss": total / max(seen, 1),
                "val_bacc": val_bacc,
                "lr": optimiser.param_groups[0]["lr"],
            }
        )
        best.epochs_run = epoch
        if val_bacc > best.best_val_bacc:
            best.best_val_bacc, best.best_epoch = val_bacc, epoch
            best.best_state = _trainable_state(model)
            waited = 0
        else:
            waited += 1
        if progress is not None:
            progress(epoch, best.history[-1])
        if waited >= hp.early_stopping:
            break
    return best


@torch.no_grad()
def predict(model: nn.Module, forward, inputs: torch.Tensor, batch: int = 64) -> np.ndarray:
    """sigmoid(logit) = P(Normal) for every input, in order, model in eval mode."""
    model.eval()
    out = [
        torch.sigmoid(forward(model, inputs[i : i + batch], False).float()).cpu()
        for i in range(0, len(inputs), batch)
    ]
    return torch.cat(out).numpy() if out else np.zeros(0)


# --- embeddings (linear probe) -----------------------------------------------------------------

FORWARD_COUNTER = {"images": 0}  # images pushed through a frozen backbone, process-wide


def image_hashes(images: torch.Tensor) -> list[str]:
    """Content hash of each decoded image (the embedding cache's per-image key)."""
    arr = images.contiguous().numpy()
    return [hashlib.sha1(a.tobytes()).hexdigest() for a in arr]


class EmbeddingCache:
    """Embeddings computed once per (model, image), on disk, shared by every fold and run.

    A file per key (weights hash, transform, recipe, size, precision); rows keyed by image hash."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def key(self, backbone: models.Backbone, transform: str, size: int, autocast: bool) -> str:
        blob = json.dumps(
            {
                "spec": backbone.spec.digest(),
                "weights": backbone.weights_hash,
                "transform": transform,
                "recipe": backbone.spec.embedding,
                "size": size,
                "fp16_autocast": autocast,
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def get(
        self,
        key: str,
        hashes: Sequence[str],
        images: torch.Tensor,
        compute: Callable[[torch.Tensor], torch.Tensor],
    ) -> tuple[torch.Tensor, dict]:
        path = self.root / f"{key}.npz"
        table: dict[str, np.ndarray] = {}
        if path.is_file():
            with np.load(path) as npz:
                table = dict(zip(npz["hashes"].tolist(), npz["emb"], strict=True))
        missing: dict[str, int] = {}
        for i, h in enumerate(hashes):
            if h not in table and h not in missing:
                missing[h] = i
        if missing:
            new = compute(images[list(missing.values())]).float().cpu().numpy()
            table.update(zip(missing, new, strict=True))
            buffer = io.BytesIO()
            np.savez(buffer, hashes=np.array(list(table)), emb=np.stack(list(table.values())))
            paths.atomic_write(path, buffer.getvalue())
        emb = torch.from_numpy(np.stack([table[h] for h in hashes]))
        return emb, {
            "computed": len(missing),
            "cache_hits": len(set(hashes)) - len(missing),
            "unique_images": len(set(hashes)),
        }


@torch.no_grad()
def compute_embeddings(
    backbone: models.Backbone,
    images: torch.Tensor,
    transform: Transform,
    device: torch.device,
    *,
    autocast: bool,
    batch: int = 64,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """One backbone forward pass per image, frozen model in eval mode."""
    model = backbone.model.to(device).eval()
    out = []
    use_amp = autocast and device.type == "cuda"
    for i in range(0, len(images), batch):
        x = transform(images[i : i + batch], device)
        with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
            out.append(models.embed(model, backbone.spec, x).float().cpu())
        FORWARD_COUNTER["images"] += len(x)
        if progress is not None:
            progress(len(x))
    return torch.cat(out)


# --- data ---------------------------------------------------------------------------------------


@dataclass
class TestSet:
    images: torch.Tensor
    labels: np.ndarray  # 1 = Normal
    names: list[str]


@dataclass
class TaskData:
    """The training pool with its folds and the three test sets, decoded once."""

    kind: str  # real | synthetic
    pool_images: torch.Tensor
    pool_labels: np.ndarray
    pool_folds: np.ndarray
    pool_names: list[str]
    tests: dict[str, TestSet]
    slide_overlaps: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _load_images(paths_: Sequence[Path]) -> torch.Tensor:
    from harness.imagecache import ImageCache

    arr = ImageCache(paths.cache_dir() / "images").load_many(list(paths_))
    return torch.from_numpy(np.ascontiguousarray(arr))


def _subsample(n_keep: int | None, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of a class-stratified random subset (all when n_keep is None or large)."""
    idx = np.arange(len(labels))
    if n_keep is None or n_keep >= len(labels):
        return idx
    keep = []
    for cls in np.unique(labels):
        members = idx[labels == cls]
        k = max(2, round(n_keep * len(members) / len(labels)))
        keep.extend(rng.choice(members, size=min(k, len(members)), replace=False))
    return np.sort(np.array(keep))


def load_task(
    root: Path, kind: str, subset: Mapping[str, int] | None = None, seed: int = 0
) -> TaskData:
    """Records and folds from the data layer, images from the decoded-image cache."""
    from harness import splits

    subset = dict(subset or {})
    rng = np.random.default_rng(seed)
    records = {d: data.load_records(root, d) for d in TEST_SETS}
    by_name = {r.name: r for r in records["AMi-Br"]}
    rows = splits.author_folds(root)
    overlaps = list(splits.slide_overlaps(rows))
    pool = [r for r in rows if r.fold != "test"]
    test_rows = [r for r in rows if r.fold == "test"]
    missing = [r.image for r in rows if Path(str(r.image)).name not in by_name]
    if missing:
        raise RuntimeError(f"{len(missing)} split rows name no AMi-Br image, e.g. {missing[:3]}")
    labels = np.array([int(r.label == LABEL_NORMAL) for r in pool])
    keep = _subsample(subset.get("train_pool"), labels, rng)
    pool = [pool[i] for i in keep]
    prefix = "synthetic:" if kind == "synthetic" else ""
    test_records = {
        "AMi-Br": [by_name[Path(str(r.image)).name] for r in test_rows],
        "AtNorM-Br": records["AtNorM-Br"],
        "AtNorM-MD": records["AtNorM-MD"],
    }
    paths_ = [by_name[Path(str(r.image)).name].path for r in pool]
    tests = {}
    sizes = [len(paths_)]
    chosen = {}
    for name, recs in test_records.items():
        y = np.array([int(r.label == LABEL_NORMAL) for r in recs])
        idx = _subsample(subset.get("test"), y, rng)
        chosen[name] = [recs[i] for i in idx]
        paths_ += [r.path for r in chosen[name]]
        sizes.append(len(idx))
    images = _load_images(paths_)
    parts = torch.split(images, sizes)
    for (name, recs), part in zip(chosen.items(), parts[1:], strict=True):
        tests[prefix + name] = TestSet(
            part, np.array([int(r.label == LABEL_NORMAL) for r in recs]), [r.name for r in recs]
        )
    notes = []
    if subset:
        notes.append(f"subset (class-stratified, seed {seed}): {subset}")
    return TaskData(
        kind,
        parts[0],
        np.array([int(r.label == LABEL_NORMAL) for r in pool]),
        np.array([int(r.fold) for r in pool]),
        [Path(str(r.image)).name for r in pool],
        tests,
        overlaps,
        notes,
    )


# --- running one configuration ------------------------------------------------------------------


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
) -> RunReport:
    """Train and evaluate `cfg` on `folds`, skipping folds the store already holds.

    `fail_after_fold` raises after that fold is stored (tests of resumption)."""
    device = torch.device(device)
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
        key = cache.key(
            backbone,
            describe_transforms(spec, cfg.method, cfg.size)["eval"],
            cfg.size,
            hp.lp_autocast_fp16,
        )
        everything = torch.cat([pool_inputs, *test_inputs.values()])
        before = FORWARD_COUNTER["images"]

        def extract(imgs: torch.Tensor) -> torch.Tensor:
            with _progress(console, f"{spec.name} embeddings", len(imgs), unit="images") as tick:
                done = [0]

                def step(n: int) -> None:
                    done[0] += n
                    if tick is not None:
                        tick(done[0], {})

                return compute_embeddings(
                    backbone, imgs, t_eval, device, autocast=hp.lp_autocast_fp16, progress=step
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
        with _progress(console, f"{cfg.spec.name} {cfg.method} fold {fold}", hp.max_epochs) as tick:
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
                progress=tick,
            )
        train_s = time.perf_counter() - t_fold
        train_seconds += train_s
        train_images += int(train.sum()) * result.epochs_run
        missing, unexpected = model.load_state_dict(result.best_state, strict=False)
        if unexpected or any(n in result.best_state for n in missing):
            raise RuntimeError(f"best checkpoint does not fit the model: {unexpected}")
        metric_rows, pred_rows = [], []
        for name, ts in task.tests.items():
            prob_atypical = 1.0 - predict(model, forward, test_inputs[name]).astype(np.float64)
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


class _progress:
    """A rich progress bar over epochs (silent when console is None)."""

    def __init__(self, console, title: str, total: int, unit: str = "epochs") -> None:
        self.console, self.title, self.total, self.unit = console, title, total, unit

    def __enter__(self):
        if self.console is None:
            return None
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.bar.start()
        self.task = self.bar.add_task(self.title, total=self.total, info="")

        def tick(epoch: int, h: dict) -> None:
            info = (
                f"loss {h['loss']:.3f} val bacc {h.get('val_bacc', 0):.3f}"
                if h
                else f"{epoch}/{self.total} {self.unit}"
            )
            self.bar.update(self.task, completed=epoch, info=info)

        return tick

    def __exit__(self, *exc) -> None:
        if self.console is not None:
            self.bar.stop()


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


def config_name(key: str, method: str) -> str:
    return f"{key}:{method}"


def parse_config(name: str) -> tuple[str, str]:
    """'uni:lora', 'UNI|lora', 'vit-l16:e2e' -> (registry key, method)."""
    model, sep, method = name.replace("|", ":").partition(":")
    if not sep:
        raise paths.InputError(
            f"configuration {name!r} must read MODEL:METHOD (see `amibr-bench plan`)"
        )
    method = STRATEGY_ALIASES.get(method.strip().lower(), method.strip().lower())
    by_name = {s.name.lower(): k for k, s in models.SPECS.items()}
    key = model.strip().lower()
    key = key if key in models.SPECS else by_name.get(key, key)
    models.get_spec(key)
    if method not in models.METHODS:
        raise paths.InputError(f"method {method!r} is not one of {', '.join(models.METHODS)}")
    return key, method


def parse_folds(text: str) -> list[int]:
    """'1-5' or '1,3' -> [1, ...]; folds are 1..5."""
    out: list[int] = []
    try:
        for part in str(text).split(","):
            a, _, b = part.strip().partition("-")
            out += list(range(int(a), int(b or a) + 1))
    except ValueError:
        out = []
    if not out or any(f not in range(1, 6) for f in out):
        raise paths.InputError(f"--folds must name folds in 1..5 like 1-5 or 1,3, not {text!r}")
    return sorted(set(out))


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
            {"folds_done": store.done_folds(cfg.hash), "stale_hashes": stale.get(cfg.label, [])}
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
    store = Store(folder) if (folder / "configs").is_dir() else None
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
    """Collect the stored folds of `configs` into one results set (harness.results format)."""
    from harness.results import config_key, write_results_set

    rows, preds, entries = [], [], {}
    for cfg in configs:
        folds = store.done_folds(cfg.hash)
        infos = []
        for fold in folds:
            m, p, info = store.load_fold(cfg.hash, fold)
            rows += m
            preds += p
            infos.append(info)
        ck = config_key(cfg.spec.name, cfg.method)
        entries[ck] = {
            "hash": cfg.hash,
            "status": "done" if folds else "not run",
            "reason": "" if folds else "no fold finished",
            "folds": folds,
            "settings": {
                **cfg.describe(),
                "counters": infos[0]["counters"] if infos else {},
                "best_epochs": [i["best_epoch"] for i in infos],
                "fold_seconds": [i.get("seconds") for i in infos],
                "train_images_per_s": [i.get("train_images_per_s") for i in infos],
            },
        }
    if not rows:
        return None
    manifest = {
        "name": name,
        "tier": tier,
        "preset": preset,
        "data": data,
        "protocol": f"{tier} tier, preset {preset} ({PRESET_NOTES[preset]}), {data} data",
        "configs": _paper_entries(weights_dir, entries) | entries,
        "counters": dict(counters or {}),
        "notes": list(notes),
        "stale": store.stale({c.label: c.hash for c in configs}),
    }
    for row in preds:
        row["prob_atypical"] = float(row["prob_atypical"])
    return write_results_set(out, rows, predictions=preds, manifest=manifest)


# --- CLI: run ----------------------------------------------------------------------------------------

SMOKE_TIER_FOR_PAPER_MODELS = {
    "overrides": (("max_epochs", 3),),
    "subset": (("test", 200), ("train_pool", 400)),
}


def _plan_configs(store: Store, *, preset: str, tier: str, data: str) -> list[RunConfig]:
    """Current-hash configurations of the plan that have at least one finished fold."""
    out = []
    for key, method in PAPER_PLAN + EXTRA_PLAN:
        extra = SMOKE_TIER_FOR_PAPER_MODELS if tier == "smoke" else {}
        cfg = RunConfig(key, method, preset, tier, data, **extra)
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
    cfg = RunConfig(key, method, args.preset, args.tier, kind, **extra)
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
    exported = _plan_configs(store, preset=args.preset, tier=args.tier, data=kind)
    if cfg.hash not in {c.hash for c in exported}:
        exported.append(cfg)  # a configuration outside the plan (e.g. a smoke model)
    export_results(
        store,
        exported,
        store_dir,
        name=f"{args.tier}-{args.preset}",
        tier=args.tier,
        preset=args.preset,
        data=kind,
        weights_dir=weights_dir,
        counters={"slide_overlaps": len(task.slide_overlaps)},
        notes=task.notes,
    )
    console.print(f"results set written to {store_dir}")
    return 0


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
