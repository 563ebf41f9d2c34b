"""Models: building, weights, embedding recipes, LoRA, parameter counts, the `models` listing.

The specs themselves (the data: one `ModelSpec` per model) live in harness.registry and are
re-exported here; a user's own models come from a models file (harness.userfile).
Facts: docs/MODELS.md (checked against timm 1.0.31 and peft 0.21.2 on the meta device).
Every model is built with ``num_classes=0`` and gets its one-logit head afterwards: timm loads
non-strictly when ``num_classes`` differs from a checkpoint's config, which silently drops weights.

Weights layout (one documented layout, the Hugging Face repo layout)::

    <weights_dir>/<org>/<name>/model.safetensors    (or pytorch_model.bin; config.json optional)

e.g. ``$AMIBR_WEIGHTS/MahmoodLab/UNI/pytorch_model.bin`` -- exactly what
``huggingface-cli download MahmoodLab/UNI --local-dir $AMIBR_WEIGHTS/MahmoodLab/UNI`` writes.
Without a weights folder (or when the model is not in it) the offline Hugging Face cache is
searched: the snapshot ``refs/main`` names, or the only snapshot when ``refs/main`` is missing
(nothing is ever downloaded). A user model's weights are the one file its models file names.
Loading is strict: keys, shapes and kinds of dtype.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.paths import InputError, MissingInputError, atomic_write
from harness.paths import weights_dir as resolve_weights_dir
from harness.registry import (  # noqa: F401 - the registry, re-exported for its users
    BASELINES,
    FOUNDATION,
    HOPTIMUS,
    IMAGENET,
    LORA_CONFIG,
    LORA_TARGETS,
    METHODS,
    REGISTRY_VERSION,
    SPECS,
    ModelSpec,
    get_spec,
    registered,
)

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class WeightsMissing(MissingInputError):
    """A model's pretrained weights are in none of the places searched (the message lists them)."""


class StrictLoadError(InputError):
    """A checkpoint does not match the architecture key for key and shape for shape."""


# --- building ------------------------------------------------------------------------------------


def build_backbone(key: str) -> nn.Module:
    """The architecture with ``num_classes=0`` and random weights (on the current default device)."""
    import timm

    spec = get_spec(key)
    return timm.create_model(spec.arch, pretrained=False, num_classes=0, **spec.model_kwargs())


def attach_head(model: nn.Module, classes: int = 1) -> nn.Module:
    """Attach a fresh classifier after construction (keeps timm's pooling; Linear(features, n))."""
    model.reset_classifier(classes)
    return model


def parameter_count(key: str, head: str | None = None) -> int:
    """Parameters of the architecture built on the meta device (no memory, no weights)."""
    heads = {None: 0, "1-logit": 1, "imagenet-1000": 1000}
    if head not in heads:
        raise ValueError(f"head must be one of {list(heads)}, not {head!r}")
    with torch.device("meta"):
        model = build_backbone(key)
        if heads[head]:
            attach_head(model, heads[head])
    return sum(p.numel() for p in model.parameters())


def embed(model: nn.Module, spec: ModelSpec, x: torch.Tensor) -> torch.Tensor:
    """The linear-probe embedding of a batch (float N x embed_dim), following the model's recipe
    (MODELS.md): pooled (timm's own pooling), cls (the class token), mean_patch (the mean of the
    patch tokens) or cls+mean_patch (both concatenated); register tokens are never averaged."""
    feats = model.forward_features(x)
    if spec.embedding == "pooled":
        return model.forward_head(feats, pre_logits=True)
    cls = feats[:, 0]
    if spec.embedding == "cls":
        return cls
    patches = feats[:, model.num_prefix_tokens :]  # prefix tokens: CLS and registers
    if spec.embedding == "mean_patch":
        return patches.mean(dim=1)
    if spec.embedding == "cls+mean_patch":
        return torch.cat([cls, patches.mean(dim=1)], dim=-1)
    raise ValueError(f"unknown embedding recipe {spec.embedding!r}")


def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One logit per image. A per-token head (global_pool='') is read at the CLS token, as the
    authors' Virchow LoRA scripts do."""
    out = model(x)
    if out.ndim == 3:
        out = out[:, 0]
    return out.reshape(out.shape[0])


def lora_config(spec: ModelSpec | None = None) -> dict[str, Any]:
    """The paper's LoRA configuration, with a user model's own target modules where it names them."""
    config = dict(LORA_CONFIG)
    if spec is not None and spec.lora_targets is not None:
        config["target_modules"] = list(spec.lora_targets)
    return config


def wrap_lora(model: nn.Module, spec: ModelSpec | None = None) -> nn.Module:
    """peft LoRA in the paper's configuration (the pattern also catches patch_embed.proj); a
    user model may name other target modules (`lora_config`)."""
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(**lora_config(spec)))


def lora_wrapped_modules(model: nn.Module) -> list[str]:
    """Names of the modules that received LoRA adapters (peft prefixes stripped)."""
    from peft.tuners.lora import LoraLayer

    names = [n for n, m in model.named_modules() if isinstance(m, LoraLayer)]
    return [n.removeprefix("base_model.model.") for n in names]


def lora_trainable_count(key: str) -> int:
    """Trainable parameters after the LoRA wrap, head included (meta device)."""
    with torch.device("meta"):
        model = wrap_lora(attach_head(build_backbone(key)), get_spec(key))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --- weights -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightsLocation:
    path: Path  # the weights file
    source: str  # "weights-dir" | "hf-cache" | "models-file"
    config: Path | None


def _hf_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _weights_in(folder: Path, source: str) -> WeightsLocation | None:
    """The weights file of one repository folder (and its config.json), or None when it has none.

    Raises StrictLoadError when a weights file or config.json is there but is not a file."""
    for name in (*WEIGHT_FILES, "config.json"):
        entry = folder / name
        if os.path.lexists(entry) and not entry.is_file():
            kind = "a folder" if entry.is_dir() else "not a file (a broken link?)"
            raise StrictLoadError(f"{entry}: is {kind}, expected a file")
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            cfg = folder / "config.json"
            return WeightsLocation(folder / name, source, cfg if cfg.is_file() else None)
    return None


def _hf_snapshot(cache: Path, repo: str) -> Path | None:
    """The snapshot folder of `repo` in an offline Hugging Face cache (what refs/main names, or
    the only snapshot when refs/main is missing), or None when the cache does not hold the repo.

    Raises WeightsMissing when refs/main is missing and there are several snapshots (listed), or
    when refs/main names a snapshot that is not there."""
    from huggingface_hub.file_download import repo_folder_name

    repo_dir = cache / repo_folder_name(repo_id=repo, repo_type="model")
    snapshots = repo_dir / "snapshots"
    if not snapshots.is_dir():
        return None
    revs = sorted(p.name for p in snapshots.iterdir() if p.is_dir())
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        rev = ref.read_text(encoding="utf-8", errors="replace").strip()
        if rev not in revs:
            raise WeightsMissing(
                f"{ref} names snapshot {rev!r}, which {snapshots} does not hold "
                f"(it holds {', '.join(revs) or 'none'})"
            )
        return snapshots / rev
    if len(revs) == 1:
        return snapshots / revs[0]
    if not revs:
        return None
    raise WeightsMissing(
        f"{ref} is missing and {snapshots} holds {len(revs)} snapshots ({', '.join(revs)}): "
        "write the revision to use into refs/main"
    )


def find_weights(key: str, weights_dir: str | os.PathLike | None = None) -> WeightsLocation:
    """Locate the weights file: `<weights_dir>/<org>/<name>/`, then the offline Hugging Face
    cache (the snapshot refs/main names, or its only snapshot). Raises WeightsMissing naming
    every folder searched, StrictLoadError for a weights file that is a folder."""
    spec = get_spec(key)
    if spec.weights_file is not None:  # a user model: the one file its models file names
        path = Path(spec.weights_file)
        if path.is_file():
            return WeightsLocation(path, "models-file", None)
        raise WeightsMissing(
            f"weights of {spec.name} ({key}) not found: {path} does not exist "
            f"(named by {spec.source_file})"
        )
    if spec.weights_repo is None:
        raise ValueError(f"{key} has no pretrained weights ({spec.init_note})")
    searched = []
    root = resolve_weights_dir(weights_dir)
    if root is not None:
        folder = root.joinpath(*spec.weights_repo.split("/"))
        searched.append(str(folder))
        found = _weights_in(folder, "weights-dir")
        if found:
            return found
    cache = _hf_cache_dir()
    searched.append(f"{cache} (offline Hugging Face cache, repo {spec.weights_repo})")
    snapshot = _hf_snapshot(cache, spec.weights_repo)
    found = _weights_in(snapshot, "hf-cache") if snapshot else None
    if found:
        return found
    where = "\n  ".join(searched)
    hint = "" if root is not None else " (no --weights-dir / $AMIBR_WEIGHTS given)"
    raise WeightsMissing(
        f"weights of {spec.name} ({key}) not found{hint}; expected "
        f"{' or '.join(WEIGHT_FILES)} of {spec.weights_repo} in:\n  {where}\n"
        f"download it where the weights are allowed with `huggingface-cli download "
        f"{spec.weights_repo} --local-dir <weights_dir>/{spec.weights_repo}`"
    )


def weights_present(key: str, weights_dir: str | os.PathLike | None = None) -> bool | None:
    """True/False; None for a model that uses no pretrained weights."""
    if get_spec(key).random_init:
        return None
    try:
        find_weights(key, weights_dir)
    except WeightsMissing:
        return False
    return True


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """safetensors, or a torch pickle read with weights_only=True (never executes code)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input problem
        raise StrictLoadError(
            f"{path}: cannot read the weights ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(state, dict):
        raise StrictLoadError(f"{path}: expected a state dict, found {type(state).__name__}")
    odd = [repr(k) for k in state if not isinstance(k, str)]
    if odd:
        raise StrictLoadError(f"{path}: state dict keys must be names, found {', '.join(odd[:5])}")
    return state


def _dtype_kind(dtype: torch.dtype) -> str:
    if dtype.is_floating_point:
        return "floating point"
    if dtype.is_complex:
        return "complex"
    return "boolean" if dtype == torch.bool else "integer"


def load_strict(model: nn.Module, state: dict[str, torch.Tensor], *, what: str) -> None:
    """load_state_dict(strict=True) with a message that lists the offending keys.

    Beyond keys and shapes, each tensor must be of the model's kind of dtype (float weights may
    be stored in another float precision, but never as integers: load_state_dict would cast
    them silently). Raises StrictLoadError naming `what` (the file)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    common = sorted(set(state) & set(expected))
    not_tensors = [
        f"{k}: {type(state[k]).__name__}" for k in common if not torch.is_tensor(state[k])
    ]
    common = [k for k in common if torch.is_tensor(state[k])]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in common
        if tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    dtypes = [
        f"{k}: checkpoint {state[k].dtype} vs model {expected[k].dtype}"
        for k in common
        if _dtype_kind(state[k].dtype) != _dtype_kind(expected[k].dtype)
    ]
    problems = (
        ("missing keys", missing),
        ("unexpected keys", extra),
        ("not tensors", not_tensors),
        ("shape mismatches", shapes),
        ("dtype mismatches", dtypes),
    )
    if any(items for _label, items in problems):
        parts = []
        for label, items in problems:
            if items:
                more = f" (+{len(items) - 8} more)" if len(items) > 8 else ""
                parts.append(f"{label}: {', '.join(items[:8])}{more}")
        raise StrictLoadError(f"{what} does not match the architecture: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


def _check_config(spec: ModelSpec, config: Path | None) -> None:
    """A repo's timm config.json must be a JSON object naming the architecture the registry
    builds (when it names one). Raises StrictLoadError naming the file."""
    if config is None:
        return
    try:
        content = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StrictLoadError(f"{config}: not a readable JSON file ({exc})") from exc
    if not isinstance(content, dict):
        raise StrictLoadError(f"{config}: expected a JSON object, found {type(content).__name__}")
    arch = content.get("architecture")
    if arch is not None and arch != spec.arch:
        raise StrictLoadError(
            f"{config} names architecture {arch!r}, the registry builds {spec.arch!r} for {spec.key}"
        )


_HASHES: dict[tuple[str, int, int], str] = {}


def file_hash(path: Path) -> str:
    """sha256 of a weights file, memoised per (path, size, mtime) in this process and on disk."""
    from harness.paths import cache_dir

    st = path.stat()
    memo_key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if memo_key in _HASHES:
        return _HASHES[memo_key]
    memo = cache_dir() / "weights_hashes.json"
    table = json.loads(memo.read_text()) if memo.is_file() else {}
    text_key = "|".join(map(str, memo_key))
    if text_key not in table:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 24), b""):
                digest.update(chunk)
        table[text_key] = digest.hexdigest()
        atomic_write(memo, json.dumps(table, indent=1))
    _HASHES[memo_key] = table[text_key]
    return table[text_key]


@dataclass(frozen=True)
class Backbone:
    model: nn.Module
    spec: ModelSpec
    weights_hash: str  # sha256 of the weights file, or "random-init:<seed>"
    weights_path: str | None


def load_backbone(
    key: str, weights_dir: str | os.PathLike | None = None, *, seed: int = 0
) -> Backbone:
    """The backbone (num_classes=0) with its pretrained weights loaded strictly, or its documented
    random initialisation (seeded) for models that have none."""
    spec = get_spec(key)
    if spec.random_init:
        torch.manual_seed(seed)
        return Backbone(build_backbone(key), spec, f"random-init:{seed}", None)
    loc = find_weights(key, weights_dir)
    _check_config(spec, loc.config)
    state = read_state_dict(loc.path)
    for name in spec.drop_keys:  # the ImageNet classifier is replaced by the one-logit head
        if name.startswith("*"):
            for k in [k for k in state if k.endswith(name[1:])]:
                state.pop(k)
        else:
            state.pop(name, None)
    model = build_backbone(key)
    load_strict(model, state, what=f"{loc.path} ({spec.name})")
    return Backbone(model, spec, file_hash(loc.path), str(loc.path))


# --- CLI -----------------------------------------------------------------------------------------


def model_table(weights_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    rows = []
    for key, spec in SPECS.items():
        present = weights_present(key, weights_dir)
        rows.append(
            {
                "key": key,
                "name": spec.name,
                "family": spec.family,
                "in_paper": list(spec.paper_methods),
                "arch": spec.arch,
                "methods": list(spec.methods),
                "parameters": parameter_count(key),
                "parameters_1_logit": parameter_count(key, "1-logit"),
                "embedding": spec.embedding,
                "embedding_dim": spec.embed_dim,
                "lora_trainable": lora_trainable_count(key) if "lora" in spec.methods else None,
                "weights_repo": spec.weights_repo,
                "weights_file": spec.weights_file,
                "weights": "not needed"
                if present is None
                else ("present" if present else "missing"),
                "note": spec.init_note,
            }
        )
    return rows


def cli_models(args) -> int:
    """`amibr-bench models`: every model, its parameter count and whether its weights are here."""
    rows = model_table(getattr(args, "weights_dir", None))
    if getattr(args, "json", False):
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"models (registry v{REGISTRY_VERSION}; weights: "
        f"{resolve_weights_dir(getattr(args, 'weights_dir', None)) or 'HF cache only'})"
    )
    for col in ("key", "result name", "params", "+1-logit", "embedding", "LoRA train.", "weights"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            r["key"],
            r["name"] + (" (user)" if r["family"] == "user" else ""),
            f"{r['parameters']:,}",
            f"{r['parameters_1_logit']:,}",
            f"{r['embedding_dim']} {r['embedding']}",
            "" if r["lora_trainable"] is None else f"{r['lora_trainable']:,}",
            r["weights"],
        )
    Console().print(table)
    return 0
