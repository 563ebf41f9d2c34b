"""What a run is: presets (docs/PROTOCOL.md#optimisation), the run configuration whose hash keys
the results store, and the parsing of configuration names and fold lists."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from typing import Any

from harness import models, paths, registry
from harness.transforms import describe_transforms

STRATEGY_ALIASES = {
    "e2e": "end_to_end",
    "end-to-end": "end_to_end",
    "lp": "linear_probe",
    "linear-probe": "linear_probe",
}

# --- presets and configurations --------------------------------------------------------------


@dataclass(frozen=True)
class Hyper:
    """Optimisation settings of one run (docs/PROTOCOL.md#optimisation)."""

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


PRESETS = ("paper", "reference-code", "fast")
PRESET_NOTES = {
    "paper": "paper text (§4); learning rate and weight decay are blank in the text, so the "
    "scripts' Adam(5e-5, 1e-5) is used for every model; early stopping 15 everywhere",
    "reference-code": "the authors' scripts (commit 3acf4da): Prov-GigaPath linear probe "
    "Adam(1e-3, 1e-4), early stopping 10 for LoRA, embeddings under fp16 autocast on CUDA",
    "fast": "the paper preset's settings, trained faster and less faithfully: bf16 autocast, "
    "TF32 matmuls, fused Adam (CUDA) and channels_last for CNNs",
}

# --- precision (a recorded choice, part of the configuration hash) ------------------------------

PRECISIONS = ("fp32", "tf32", "bf16")
PRECISION_NOTES = {
    "fp32": "float32 matmuls at full precision, PyTorch's defaults otherwise (cuDNN may use TF32 "
    "for convolutions, as it did for the authors' scripts)",
    "tf32": "float32 weights; matmuls and convolutions in TF32 on CUDA (Ampere or newer)",
    "bf16": "bf16 autocast for every forward pass (training, prediction, embeddings), TF32 for "
    "what stays float32; weights, gradients and optimiser state in float32",
}
# The authors' scripts trained in fp32 (the reference-code preset's fp16 embeddings are
# Hyper.lp_autocast_fp16, kept apart); the fast preset trades faithfulness for speed.
PRESET_PRECISION = {"paper": "fp32", "reference-code": "fp32", "fast": "bf16"}
CNN_ARCHS = ("efficientnet", "resnet", "test_efficientnet", "convnext")  # channels_last pays off


@dataclass(frozen=True)
class Speed:
    """How a run computes (PRECISION_NOTES): numerics that can move results, so they are hashed."""

    precision: str  # fp32 | tf32 | bf16
    fused_adam: bool = False  # torch.optim.Adam(fused=True), on CUDA only (plain Adam elsewhere)
    channels_last: bool = False  # model in channels_last memory format (CNNs)

    @property
    def autocast_dtype(self) -> Any:
        import torch

        return torch.bfloat16 if self.precision == "bf16" else None

    @property
    def tf32(self) -> bool:
        return self.precision in ("tf32", "bf16")

    def describe(self) -> dict[str, Any]:
        return asdict(self)


def hyperparameters(key: str, method: str, preset: str) -> Hyper:
    """The protocol's settings for one (model, method) under a preset."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {PRESETS}, not {preset!r}")
    hp = Hyper()  # "fast" keeps the paper preset's settings (it changes numerics, see Speed)
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
    folds_source: str = "authors"  # harness.splits.FOLDS_SOURCES
    folds_sha256: str | None = None  # fold table digest; None: the authors' file (real data)
    precision: str | None = None  # fp32 | tf32 | bf16; None: the preset's (PRESET_PRECISION)

    def __post_init__(self) -> None:
        if self.precision is None:
            object.__setattr__(self, "precision", PRESET_PRECISION.get(self.preset, "fp32"))
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {self.precision!r}")
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

    def speed(self) -> Speed:
        fast = self.preset == "fast"
        cnn = self.spec.arch.startswith(CNN_ARCHS)
        return Speed(str(self.precision), fused_adam=fast, channels_last=fast and cnn)

    @property
    def label(self) -> str:
        label = f"{self.spec.name}|{self.method}|{self.preset}|{self.tier}|{self.data}"
        if self.precision != PRESET_PRECISION.get(self.preset):  # a departure from the preset
            label += f"|{self.precision}"
        return label

    @property
    def folds(self) -> dict[str, str | None]:
        """The fold assignment the hash covers: source and sha256 of the fold table (the
        committed authors' file's for real data unless given; harness.splits)."""
        digest = self.folds_sha256
        if digest is None and self.folds_source == "authors" and self.data == "real":
            from harness import splits

            digest = splits.author_digest()
        return {"source": self.folds_source, "sha256": digest}

    def describe(self) -> dict[str, Any]:
        extra: dict[str, Any] = (
            {"lora": models.lora_config(self.spec)} if self.method == "lora" else {}
        )
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
            "folds": self.folds,
            "precision": self.speed().describe(),
            "transforms": describe_transforms(self.spec, self.method, self.size, self.preset),
            "label_encoding": "Atypical=0, Normal=1; BCEWithLogits on one logit",
            "registry_version": models.REGISTRY_VERSION,
        }

    @property
    def hash(self) -> str:
        text = json.dumps(self.describe(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_name(key: str, method: str) -> str:
    return f"{key}:{method}"


def parse_config(name: str) -> tuple[str, str]:
    """'uni:lora', 'UNI|lora', 'vit-l16:e2e' -> (registry key, method).

    Raises InputError (naming the configuration) for a malformed name, an unknown model or
    method, or a method the model does not run (Table 3: baselines end to end only, foundation
    models linear probe and LoRA)."""
    model, sep, method = name.replace("|", ":").partition(":")
    if not sep:
        raise paths.InputError(
            f"configuration {name!r} must read MODEL:METHOD (see `amibr-bench plan`)"
        )
    method = STRATEGY_ALIASES.get(method.strip().lower(), method.strip().lower())
    key = model.strip().lower()
    key = key if key in models.SPECS else registry.resolve_key(key) or key
    try:
        spec = models.get_spec(key)
        if method not in models.METHODS:
            raise paths.InputError(f"method {method!r} is not one of {', '.join(models.METHODS)}")
        if method not in spec.methods:
            raise paths.InputError(
                f"{spec.name} ({key}) runs {' and '.join(spec.methods)}, not {method}"
            )
    except paths.InputError as exc:
        raise paths.InputError(f"configuration {name!r}: {exc}") from None
    return key, method


FOLDS = range(1, 6)


def parse_folds(text: str) -> list[int]:
    """'1-5' or '1,3' -> [1, ...]; folds are 1..5. Raises InputError naming --folds otherwise
    (each bound is checked before a range is built, so '1-10000000000' costs nothing)."""
    out: set[int] = set()
    for part in str(text).split(","):
        a, dash, b = part.strip().partition("-")
        try:
            lo, hi = int(a), int(b if dash else a)
        except ValueError:
            lo, hi = 0, -1
        if lo not in FOLDS or hi not in FOLDS or hi < lo:
            raise paths.InputError(f"--folds must name folds in 1..5 like 1-5 or 1,3, not {text!r}")
        out.update(range(lo, hi + 1))
    return sorted(out)
