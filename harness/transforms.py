"""Input pipelines per model and strategy (docs/PROTOCOL.md#input-pipelines): their text
descriptions (hashed) and the tensors they produce."""

from __future__ import annotations

import torch

from harness import models

# --- transforms ----------------------------------------------------------------------------------


# The authors' Virchow/Virchow2 LoRA scripts normalise with mean = std = 0.5 per channel, where
# the paper (§4) says every foundation model uses its own pre-training statistics (deviation
# `virchow-lora-normalisation`): preset reference-code follows the scripts, preset paper the text.
HALF = (0.5, 0.5, 0.5)


def normalisation(
    spec: models.ModelSpec, method: str, preset: str = "paper"
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per RGB channel, for images scaled to [0, 1] (docs/PROTOCOL.md#input-pipelines).

    The model's own statistics, except Virchow/Virchow2 LoRA under preset reference-code (0.5)."""
    if preset == "reference-code" and method == "lora" and spec.lora_augment == "virchow":
        return HALF, HALF
    return tuple(spec.mean), tuple(spec.std)


def describe_transforms(
    spec: models.ModelSpec, method: str, size: int, preset: str = "paper"
) -> dict[str, str]:
    """Human-readable pipelines (docs/PROTOCOL.md#input-pipelines); part of hashes and cache keys."""
    mean, std = normalisation(spec, method, preset)
    norm = f"Normalize(mean={spec.mean if mean == tuple(spec.mean) else mean}, std="
    norm += f"{spec.std if std == tuple(spec.std) else std})"
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

    def __init__(
        self, spec: models.ModelSpec, method: str, size: int, train: bool, preset: str = "paper"
    ) -> None:
        self.spec, self.size = spec, size
        mean, std = normalisation(spec, method, preset)
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)
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
