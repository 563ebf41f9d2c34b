"""A user's own models, from a YAML models file (`--models FILE` or $AMIBR_MODELS).

Each entry becomes one `harness.registry.ModelSpec` of family "user" and then runs through the
same trainers, store, results sets and report as the paper's models::

    models:
      - key: my-fm                                # registry key: lower case, digits, . _ -
        name: MyFM                                # the result name in results sets and reports
        architecture: vit_small_patch16_224       # a timm architecture
        model_args: {num_classes: 0}              # passed to timm.create_model
        weights: weights/my-fm/model.safetensors  # relative to this file; loaded strictly
        mean: [0.485, 0.456, 0.406]
        std: [0.229, 0.224, 0.225]
        embedding: cls                            # cls | cls+mean-patch | mean-patch | pooled
        methods: [linear_probe, lora]             # end_to_end | linear_probe | lora

Optional: `img_size` (default: model_args.img_size, else the architecture's own input size),
`lora_targets` (default the paper's qkv, proj, fc1, fc2), `lora_augment` (the LoRA training
pipeline of PROTOCOL.md: uni (default), virchow or hoptimus1), `eval_resize` (resize or
resize256-crop224), `drop_keys` (checkpoint tensors not loaded, e.g. an old classifier).

The file is checked with pydantic, then each model is built on the meta device (no memory, no
weights): a misspelt field, an unknown timm architecture, arguments timm refuses, an embedding
recipe the architecture cannot give, LoRA targets it lacks or a key of the harness's own models
are each refused with ONE `ModelsFileError` line naming the file, the entry and the field.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness import registry
from harness.paths import MODELS_ENV, InputError, MissingInputError, one_line

# timm.create_model arguments a models file may not set: weights come from `weights`, loaded
# strictly, and every model gets the harness's one-logit head (num_classes=0 at build time).
FORBIDDEN_ARGS = ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path")


class ModelsFileError(InputError):
    """A models file is unreadable or one of its entries is invalid; the message names the file,
    the entry (key or position) and the field."""


class UserModel(BaseModel):
    """One entry of a models file (field meanings: the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=64)
    name: str = Field(min_length=1, max_length=80, pattern=r"^[^|\n\r\t]+$")
    architecture: str = Field(min_length=1)
    model_args: dict[str, Any] = Field(default_factory=dict)
    weights: str = Field(min_length=1)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    embedding: Literal[registry.EMBEDDINGS]  # type: ignore[valid-type]
    methods: list[Literal[registry.METHODS]] = Field(min_length=1)  # type: ignore[valid-type]
    img_size: int | None = Field(default=None, ge=16, le=4096)
    lora_targets: list[str] | None = Field(default=None, min_length=1)
    lora_augment: Literal[registry.LORA_AUGMENTS] = "uni"  # type: ignore[valid-type]
    eval_resize: Literal["resize", "resize256-crop224"] = "resize"
    drop_keys: list[str] = Field(default_factory=list)

    @field_validator("embedding", mode="before")
    @classmethod
    def _recipe_spelling(cls, value: Any) -> Any:
        return value.strip().replace("-", "_") if isinstance(value, str) else value

    @field_validator("name")
    @classmethod
    def _no_padding(cls, value: str) -> str:
        if value != value.strip():
            raise ValueError("must not start or end with a space")
        return value

    @field_validator("std")
    @classmethod
    def _positive(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(value) <= 0:
            raise ValueError("every value must be > 0")
        return value

    @field_validator("methods")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("lists a method twice")
        return value


class ModelsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[UserModel] = Field(min_length=1)


# --- error messages ------------------------------------------------------------------------------


def _entry_label(raw: Any, index: int) -> str:
    entry = raw.get("models")[index] if isinstance(raw, dict) else None
    key = entry.get("key") if isinstance(entry, dict) else None
    return f"model {key!r} (entry {index + 1})" if isinstance(key, str) else f"entry {index + 1}"


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _describe(error: dict, raw: Any) -> str:
    loc = list(error["loc"])
    where, fields = "", UserModel.model_fields
    if len(loc) >= 2 and loc[0] == "models" and isinstance(loc[1], int):
        where, loc = _entry_label(raw, loc[1]) + ": ", loc[2:]
    else:
        fields = ModelsFile.model_fields
    field = ".".join(str(p) for p in loc)
    if error["type"] == "extra_forbidden":
        return f"{where}unknown field {field!r}{_did_you_mean(str(loc[-1]), fields)}"
    if error["type"] == "missing":
        return f"{where}field {field!r} is required"
    if not loc:
        return f"{where}{error['msg']}"
    return f"{where}field {field!r}: {error['msg']} (got {error.get('input')!r})"


# --- loading -------------------------------------------------------------------------------------


def read_models_file(path: str | os.PathLike) -> ModelsFile:
    """Parse and validate a models file (no timm yet); raises ModelsFileError."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise MissingInputError(f"models file {file} does not exist")
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ModelsFileError(f"{file}: not a readable YAML file ({one_line(exc)})") from exc
    if not isinstance(raw, dict):
        raise ModelsFileError(f"{file}: must hold a mapping with a 'models' list (see --help)")
    try:
        return ModelsFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_describe(e, raw) for e in exc.errors())
        raise ModelsFileError(f"{file}: {problems}") from None


def load_models_file(path: str | os.PathLike) -> list[registry.ModelSpec]:
    """The models of a models file as registry specs, each built once on the meta device to
    check it; raises ModelsFileError (MissingInputError when the file is absent)."""
    file = Path(path).expanduser().resolve()
    parsed = read_models_file(file)
    specs, seen = [], {}
    for index, entry in enumerate(parsed.models):
        where = f"{file}: model {entry.key!r} (entry {index + 1})"
        for what, value in (("key", entry.key), ("name", entry.name.lower())):
            if (what, value) in seen:
                raise ModelsFileError(
                    f"{where}: field {what!r}: {value!r} is already used by entry {seen[(what, value)]}"
                )
            seen[(what, value)] = index + 1
        spec = _to_spec(entry, file)
        clash = registry._built_in_clash(spec)
        if clash:
            field = "key" if clash.startswith("key") else "name"
            raise ModelsFileError(f"{where}: field {field!r}: {clash}")
        specs.append(_checked(spec, entry, where))
    return specs


def _frozen(value: Any) -> Any:
    """YAML lists as tuples (timm takes tuples for depths, window sizes etc.)."""
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return {k: _frozen(v) for k, v in value.items()}
    return value


def _to_spec(entry: UserModel, file: Path) -> registry.ModelSpec:
    lora = "lora" in entry.methods
    weights = Path(entry.weights).expanduser()
    return registry.ModelSpec(
        entry.key,
        entry.name,
        registry.USER,
        entry.architecture,
        tuple((k, _frozen(v)) for k, v in entry.model_args.items() if k != "num_classes"),
        entry.mean,
        entry.std,
        entry.embedding,
        0,  # filled in by _checked from the model itself
        None,
        None,
        eval_resize=entry.eval_resize,
        img_size=entry.img_size or entry.model_args.get("img_size") or 0,
        lora_augment=entry.lora_augment if lora else None,
        drop_keys=tuple(entry.drop_keys),
        methods=tuple(m for m in registry.METHODS if m in entry.methods),
        lora_targets=tuple(entry.lora_targets) if lora and entry.lora_targets else None,
        weights_file=str(weights if weights.is_absolute() else (file.parent / weights).resolve()),
        source_file=str(file),
    )


def _checked(spec: registry.ModelSpec, entry: UserModel, where: str) -> registry.ModelSpec:
    """Build the model on the meta device and check what the entry claims about it; returns the
    spec with its input size and embedding width filled in."""
    from dataclasses import replace

    import timm
    import torch

    from harness import models

    base = spec.arch.partition(".")[0]
    if base not in timm.list_models():
        raise ModelsFileError(
            f"{where}: field 'architecture': {spec.arch!r} is not a timm architecture"
            f"{_did_you_mean(base, timm.list_models())}"
        )
    args = entry.model_args
    bad = [a for a in FORBIDDEN_ARGS if a in args]
    if bad:
        raise ModelsFileError(
            f"{where}: field 'model_args': {', '.join(bad)} may not be set (the weights come "
            "from 'weights' and load strictly; nothing is downloaded)"
        )
    if args.get("num_classes", 0) != 0:
        raise ModelsFileError(
            f"{where}: field 'model_args': num_classes must be 0 or absent (every model gets "
            "the protocol's one-logit head)"
        )
    fixed = args.get("img_size")
    if entry.img_size and fixed is not None and fixed != entry.img_size:
        raise ModelsFileError(
            f"{where}: field 'img_size': {entry.img_size} differs from model_args.img_size {fixed}"
        )
    try:
        with torch.device("meta"):
            model = timm.create_model(
                spec.arch, pretrained=False, num_classes=0, **spec.model_kwargs()
            )
    except Exception as exc:  # noqa: BLE001 - timm refusing the user's arguments is bad input
        raise ModelsFileError(
            f"{where}: field 'model_args': timm cannot build {spec.arch} with {args} "
            f"({type(exc).__name__}: {one_line(exc)})"
        ) from exc
    size = spec.img_size or int((model.pretrained_cfg or {}).get("input_size", (3, 224, 224))[-1])
    spec = replace(spec, img_size=size)
    tokens = spec.embedding != "pooled"
    if tokens and getattr(model, "num_prefix_tokens", None) is None:
        raise ModelsFileError(
            f"{where}: field 'embedding': {spec.arch} gives no token sequence, so "
            f"{spec.embedding!r} is impossible; use 'pooled'"
        )
    if "cls" in spec.embedding and getattr(model, "cls_token", None) is None:
        raise ModelsFileError(
            f"{where}: field 'embedding': {spec.arch} (with these model_args) has no class "
            f"token; use 'mean-patch' or 'pooled'"
        )
    try:
        with torch.device("meta"):
            width = models.embed(model, spec, torch.empty(1, 3, size, size)).shape[-1]
    except Exception as exc:  # noqa: BLE001 - e.g. an input size the architecture refuses
        raise ModelsFileError(
            f"{where}: field 'img_size': {spec.arch} cannot embed a {size}x{size} image "
            f"({type(exc).__name__}: {one_line(exc)})"
        ) from exc
    if "lora" in spec.methods:
        targets = spec.lora_targets or registry.LORA_TARGETS
        names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
        if not any(n == t or n.endswith(f".{t}") for n in names for t in targets):
            field = "lora_targets" if spec.lora_targets else "methods"
            raise ModelsFileError(
                f"{where}: field {field!r}: LoRA targets {', '.join(targets)} name no linear "
                f"layer of {spec.arch} (set lora_targets to its layer names)"
            )
    return replace(spec, embed_dim=int(width))


def models_file(flag: str | os.PathLike | None = None) -> Path | None:
    """The models file in use: --models FILE, else $AMIBR_MODELS, else none."""
    value = flag or os.environ.get(MODELS_ENV)
    return Path(value).expanduser() if value else None


def use_models_file(flag: str | os.PathLike | None = None) -> list[registry.ModelSpec]:
    """Load the models file (--models or $AMIBR_MODELS) into the registry; returns its models
    ([] without a file). Replaces the user models registered before."""
    path = models_file(flag)
    return registry.use_user_models(load_models_file(path) if path else [])
