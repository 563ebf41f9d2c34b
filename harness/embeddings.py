"""Frozen-backbone embeddings for linear probing: one forward pass per image, cached on disk."""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock

from harness import models, paths
from harness.trainer import NonFiniteError, check_finite
from harness.transforms import Transform

# --- embeddings (linear probe) -----------------------------------------------------------------

FORWARD_COUNTER = {"images": 0}  # images pushed through a frozen backbone, process-wide


def image_hashes(images: torch.Tensor) -> list[str]:
    """Content hash of each decoded image (the embedding cache's per-image key)."""
    arr = images.contiguous().numpy()
    return [hashlib.sha1(a.tobytes()).hexdigest() for a in arr]


FP16_HINT = "fp16 overflow under autocast; try --preset paper (fp32 embeddings)"
FP32_HINT = "the backbone's weights (a damaged or mismatched weights file) or its inputs"


def _read_table(path: Path) -> dict[str, np.ndarray]:
    """The finite rows of a cache file; {} when it is absent or damaged (the cache is derived
    data: a truncated or garbage file, or rows an older version cached non-finite, are misses)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            hashes, emb = npz["hashes"], npz["emb"]
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        return {}
    if (
        hashes.ndim != 1
        or emb.ndim != 2
        or len(hashes) != len(emb)
        or not np.issubdtype(emb.dtype, np.floating)
    ):
        return {}
    finite = np.isfinite(emb).all(axis=1)
    return {h: e for h, e, ok in zip(hashes.tolist(), emb, finite, strict=True) if ok}


class EmbeddingCache:
    """Embeddings computed once per (model, image), on disk, shared by every fold and run.

    A file per key (weights hash, transform, recipe, size, precision); rows keyed by image hash.
    Reading, computing and writing one key happen under a file lock, so two runs sharing the
    cache compute each embedding once; non-finite embeddings are never written."""

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
        """Embeddings (N, D) float32 of `images` in order, computing only the missing rows with
        `compute`; raises NonFiniteError (nothing written) when a computed row is not finite."""
        path = self.root / f"{key}.npz"
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(self.root / f".{key}.lock", is_singleton=True):
            table = _read_table(path)
            missing: dict[str, int] = {}
            for i, h in enumerate(hashes):
                if h not in table and h not in missing:
                    missing[h] = i
            if missing:
                new = compute(images[list(missing.values())]).float().cpu()
                check_finite(new, "embeddings", f"{len(missing)} images computed")
                table.update(zip(missing, new.numpy(), strict=True))
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
    """One backbone forward pass per image, frozen model in eval mode: (N, D) float32 on the CPU.

    `autocast` True: fp16 autocast on CUDA (the authors' scripts, reference-code preset); "bf16":
    bf16 autocast on any device. Raises NonFiniteError naming the model and the likely cause when
    an embedding is NaN or infinite."""
    model = backbone.model.to(device).eval()
    out = []
    bf16 = autocast == "bf16"
    use_amp = bf16 or (autocast is True and device.type == "cuda")
    dtype = torch.bfloat16 if bf16 else torch.float16
    for i in range(0, len(images), batch):
        x = transform(images[i : i + batch], device)
        with torch.autocast(device.type, dtype=dtype, enabled=use_amp):
            emb = models.embed(model, backbone.spec, x).float()
        try:
            check_finite(emb, "embeddings", f"images {i}-{i + len(x) - 1}")
        except NonFiniteError as exc:
            exc.locate(model=backbone.spec.name, hint=FP16_HINT if use_amp else FP32_HINT)
            raise
        out.append(emb.cpu())
        FORWARD_COUNTER["images"] += len(x)
        if progress is not None:
            progress(len(x))
    return torch.cat(out)
