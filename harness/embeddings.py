"""Frozen-backbone embeddings for linear probing: one forward pass per image, cached on disk."""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from harness import models, paths
from harness.transforms import Transform

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

    def key(
        self, backbone: models.Backbone, transform: str, size: int, autocast: bool | str
    ) -> str:
        """`autocast`: True (fp16 on CUDA), "bf16" (bf16 on any device) or False."""
        fields = {
            "spec": backbone.spec.digest(),
            "weights": backbone.weights_hash,
            "transform": transform,
            "recipe": backbone.spec.embedding,
            "size": size,
            "fp16_autocast": autocast is True,
        }
        if autocast == "bf16":
            fields["autocast"] = "bf16"
        blob = json.dumps(fields, sort_keys=True)
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
    autocast: bool | str,
    batch: int = 64,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """One backbone forward pass per image, frozen model in eval mode; `autocast` True: fp16
    autocast on CUDA (the authors' scripts), "bf16": bf16 autocast on any device."""
    model = backbone.model.to(device).eval()
    out = []
    bf16 = autocast == "bf16"
    use_amp = bf16 or (autocast is True and device.type == "cuda")
    dtype = torch.bfloat16 if bf16 else torch.float16
    for i in range(0, len(images), batch):
        x = transform(images[i : i + batch], device)
        with torch.autocast(device.type, dtype=dtype, enabled=use_amp):
            out.append(models.embed(model, backbone.spec, x).float().cpu())
        FORWARD_COUNTER["images"] += len(x)
        if progress is not None:
            progress(len(x))
    return torch.cat(out)
