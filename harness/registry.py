"""The model registry: every model -- the paper's, the smoke tier's and a user's own -- is one
`ModelSpec`, a frozen record of data (architecture, kwargs, normalisation, embedding recipe,
weights, methods, its place in the paper's Table 3). Everything else that lists models derives
from `SPECS`: the plan of Table 3 (`paper_plan`, `extra_plan`, `user_plan`), the names results
sets and claims use (`canonical_name`, `table3_names`), the `models` listing.

Adding one of the paper's models is one `_add(ModelSpec(...))` below; a user's own model is an
entry of a models file (harness.userfile, `--models FILE`). This module imports neither torch
nor timm, so results and claims stay light.

Facts come from /work/shared/reference/MODELS.md (checked against timm 1.0.31 and peft 0.21.2).
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from harness.paths import InputError

# Bump whenever an architecture, kwarg, normalisation, recipe or loading rule changes: it is part
# of every run's configuration hash, so results made with an older registry show up as stale.
REGISTRY_VERSION = "1"

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
HOPTIMUS = ((0.707223, 0.578729, 0.703617), (0.211883, 0.230117, 0.177517))

METHODS = ("end_to_end", "linear_probe", "lora")  # Table 3's order of the strategies
FAMILIES = ("baseline", "foundation", "smoke", "user")
USER = "user"
EMBEDDINGS = ("cls", "cls+mean_patch", "mean_patch", "pooled")
LORA_AUGMENTS = ("virchow", "uni", "hoptimus1")
LORA_TARGETS = ("qkv", "proj", "fc1", "fc2")
LORA_CONFIG = {
    "r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.3,
    "target_modules": list(LORA_TARGETS),
    "bias": "none",
    "modules_to_save": ["head"],
}

# Fields that place a model in the paper or on this machine but do not change its numbers: left
# out of `describe()`, so the digests (and configuration hashes) of the paper's models are the
# ones registry v1 gave them. A user model's weights enter as the file's sha256 instead of a path.
_NOT_HASHED = ("table3_order", "paper_methods", "aliases", "weights_file", "source_file")


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild one model exactly; `describe()` feeds the configuration hash."""

    key: str
    name: str  # the result name (reference_fold_metrics.csv, results sets, claims)
    family: str  # baseline | foundation | smoke | user
    arch: str  # timm architecture
    kwargs: tuple[tuple[str, Any], ...]  # timm.create_model kwargs (num_classes=0 always added)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    embedding: str  # cls | cls+mean_patch | mean_patch | pooled (register tokens never averaged)
    embed_dim: int
    backbone_params: int | None  # MODELS.md, backbone without any head
    weights_repo: str | None  # Hugging Face repo; None with no weights_file: random init
    eval_resize: str = "resize"  # resize | resize256-crop224
    img_size: int = 224
    lora_augment: str | None = None  # virchow | uni | hoptimus1 (PROTOCOL.md, LoRA pipelines)
    drop_keys: tuple[str, ...] = ()  # checkpoint tensors not loaded ("*.x": any key ending .x)
    methods: tuple[str, ...] = ()
    init_note: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)
    # --- registry v1 + (not hashed, see _NOT_HASHED; lora_targets hashed only when set)
    table3_order: int | None = None  # the model's row among Table 3's models (None: not in it)
    paper_methods: tuple[str, ...] = ()  # the methods Table 3 reports for it
    aliases: tuple[str, ...] = ()  # other spellings results sets use ('vit' for ViT-L/16)
    lora_targets: tuple[str, ...] | None = None  # None: the paper's (LORA_TARGETS)
    weights_file: str | None = None  # a user model's weights file (absolute path)
    source_file: str | None = None  # the models file a user model was read from

    def model_kwargs(self) -> dict[str, Any]:
        """The timm kwargs with the layer names resolved to classes."""
        from timm.layers import SwiGLUPacked
        from torch import nn

        layers = {"SwiGLUPacked": SwiGLUPacked, "SiLU": nn.SiLU}
        return {k: layers.get(v, v) if isinstance(v, str) else v for k, v in self.kwargs}

    @property
    def random_init(self) -> bool:
        return self.weights_repo is None and self.weights_file is None

    @property
    def weights_source(self) -> str | None:
        """Where the weights come from, in words: the repo or the file (None: random init)."""
        return self.weights_repo or self.weights_file

    @property
    def user(self) -> bool:
        return self.family == USER

    def in_paper(self, method: str) -> bool:
        return method in self.paper_methods

    def describe(self) -> dict[str, Any]:
        """A JSON-able description (manifests, hashing). A user model's weights enter as the
        sha256 of the file ("missing" while it is absent), never as its path."""
        out = asdict(self)
        for name in _NOT_HASHED:
            out.pop(name)
        if self.lora_targets is None:
            out.pop("lora_targets")
        out["kwargs"] = dict(self.kwargs)
        out["registry_version"] = REGISTRY_VERSION
        if self.weights_file is not None:
            out["weights_sha256"] = _weights_sha256(self.weights_file)
        return out

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.describe(), sort_keys=True).encode()).hexdigest()


def _weights_sha256(path: str) -> str:
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        return "missing"
    from harness.models import file_hash  # memoised per (path, size, mtime)

    return file_hash(file)


class _Specs(dict):
    """The registry's dict; every change bumps `generation`, which keys the name index."""

    generation = 0

    def _bump(self) -> None:
        type(self).generation += 1

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        self._bump()

    def __delitem__(self, key) -> None:
        super().__delitem__(key)
        self._bump()

    def pop(self, *args):
        out = super().pop(*args)
        self._bump()
        return out


SPECS: dict[str, ModelSpec] = _Specs()

_SWIGLU = (("mlp_layer", "SwiGLUPacked"), ("act_layer", "SiLU"))
_FM = ("linear_probe", "lora")
_E2E = ("end_to_end",)
_VIRCHOW = (
    ("img_size", 224),
    ("mlp_ratio", 5.3375),
    ("init_values", 1e-5),
    ("global_pool", ""),
    *_SWIGLU,
    ("dynamic_img_size", True),
)
_HOPT = (("img_size", 224), ("init_values", 1e-5), ("dynamic_img_size", False))


def _add(spec: ModelSpec) -> None:
    SPECS[spec.key] = spec


_add(
    ModelSpec(
        "vit-l16",
        "Vision Transformer",
        "baseline",
        "vit_large_patch16_224",
        (),
        *IMAGENET,
        "cls",
        1024,
        None,
        "timm/vit_large_patch16_224.augreg_in21k_ft_in1k",
        drop_keys=("head.weight", "head.bias"),
        methods=_E2E,
        table3_order=1,
        paper_methods=_E2E,
        aliases=("vit",),
        notes=("paper §4.1 says 86.6M parameters: that is ViT-B/16; the script builds ViT-L/16",),
    )
)
_add(
    ModelSpec(
        "swin-b",
        "Swin Transformer",
        "baseline",
        "swin_base_patch4_window7_224",
        (),
        *IMAGENET,
        "pooled",
        1024,
        None,
        "timm/swin_base_patch4_window7_224.ms_in22k_ft_in1k",
        drop_keys=("head.fc.weight", "head.fc.bias", "*.relative_position_index", "*.attn_mask"),
        methods=_E2E,
        table3_order=2,
        paper_methods=_E2E,
        aliases=("swin",),
        notes=(
            "relative_position_index / attn_mask are non-persistent buffers the model rebuilds",
        ),
    )
)
_add(
    ModelSpec(
        "efficientnetv2-m",
        "EfficientNetV2",
        "baseline",
        "efficientnetv2_m",
        (),
        *IMAGENET,
        "pooled",
        1280,
        None,
        None,
        methods=_E2E,
        table3_order=0,
        paper_methods=_E2E,
        aliases=("efficientnetv2",),
        init_note="random initialisation: the authors' script uses pretrained=False and timm has no "
        "ImageNet weights for efficientnetv2_m (the paper says ImageNet-pretrained)",
    )
)
_add(
    ModelSpec(
        "uni",
        "UNI",
        "foundation",
        "vit_large_patch16_224",
        (("img_size", 224), ("patch_size", 16), ("init_values", 1e-5), ("dynamic_img_size", True)),
        *IMAGENET,
        "cls",
        1024,
        303_350_784,
        "MahmoodLab/UNI",
        lora_augment="uni",
        methods=_FM,
        table3_order=3,
        paper_methods=_FM,
    )
)
_add(
    ModelSpec(
        "uni2-h",
        "UNI2-h",
        "foundation",
        "vit_giant_patch14_224",
        (
            ("img_size", 224),
            ("patch_size", 14),
            ("depth", 24),
            ("num_heads", 24),
            ("embed_dim", 1536),
            ("mlp_ratio", 5.33334),
            ("init_values", 1e-5),
            ("no_embed_class", True),
            ("reg_tokens", 8),
            *_SWIGLU,
            ("dynamic_img_size", True),
        ),
        *IMAGENET,
        "cls",
        1536,
        681_394_176,
        "MahmoodLab/UNI2-h",
        lora_augment="uni",
        methods=_FM,
        table3_order=4,
        paper_methods=_FM,
        notes=("PROTOCOL.md lists no UNI2-h LoRA pipeline; the UNI one is used",),
    )
)
_add(
    ModelSpec(
        "virchow",
        "Virchow",
        "foundation",
        "vit_huge_patch14_224",
        _VIRCHOW,
        *IMAGENET,
        "cls+mean_patch",
        2560,
        631_229_184,
        "paige-ai/Virchow",
        lora_augment="virchow",
        methods=_FM,
        table3_order=5,
        paper_methods=_FM,
    )
)
_add(
    ModelSpec(
        "virchow2",
        "Virchow2",
        "foundation",
        "vit_huge_patch14_224",
        (*_VIRCHOW, ("reg_tokens", 4)),
        *IMAGENET,
        "cls+mean_patch",
        2560,
        631_239_424,
        "paige-ai/Virchow2",
        lora_augment="virchow",
        methods=_FM,
        table3_order=6,
        paper_methods=_FM,
    )
)
_add(
    ModelSpec(
        "prov-gigapath",
        "Prov-Gigapath",
        "foundation",
        "vit_giant_patch14_dinov2",
        (
            ("img_size", 224),
            ("patch_size", 16),
            ("embed_dim", 1536),
            ("depth", 40),
            ("num_heads", 24),
            ("mlp_ratio", 5.33334),
            ("init_values", 1e-5),
        ),
        *IMAGENET,
        "cls",
        1536,
        1_134_953_984,
        "prov-gigapath/prov-gigapath",
        eval_resize="resize256-crop224",
        lora_augment="uni",
        methods=_FM,
        table3_order=7,
        paper_methods=_FM,
    )
)
_add(
    ModelSpec(
        "h-optimus-0",
        "H-Optimus-0",
        "foundation",
        "vit_giant_patch14_reg4_dinov2",
        _HOPT,
        *HOPTIMUS,
        "cls",
        1536,
        1_134_774_272,
        "bioptimus/H-optimus-0",
        lora_augment="uni",
        methods=_FM,
        table3_order=8,
        paper_methods=_FM,
    )
)
_add(
    replace(
        SPECS["h-optimus-0"],
        key="h-optimus-1",
        name="H-Optimus-1",
        weights_repo="bioptimus/H-optimus-1",
        lora_augment="hoptimus1",
        table3_order=9,
    )
)
_add(
    ModelSpec(
        "h0-mini",
        "H0-mini",
        "foundation",
        "vit_base_patch14_reg4_dinov2",
        (
            ("img_size", 224),
            ("mlp_ratio", 5.33334),
            ("reg_tokens", 4),
            ("init_values", 1e-5),
            ("global_pool", ""),
            *_SWIGLU,
        ),
        *HOPTIMUS,
        "cls+mean_patch",
        1536,
        85_739_520,
        "bioptimus/H0-mini",
        lora_augment="uni",
        methods=_FM,
        notes=(
            "named in §3.2 but absent from Tables 2-3 and the authors' code; LoRA pipeline assumed",
        ),
    )
)
# Smoke-tier models: small, randomly initialised, reduced resolution (CPU in minutes).
_add(
    ModelSpec(
        "smoke-vit",
        "smoke ViT-Ti/16",
        "smoke",
        "vit_tiny_patch16_224",
        (("img_size", 64), ("depth", 6)),
        *IMAGENET,
        "cls",
        192,
        None,
        None,
        img_size=64,
        lora_augment="virchow",
        methods=_FM,
        init_note="random initialisation (smoke tier)",
    )
)
_add(
    ModelSpec(
        "smoke-resnet",
        "smoke ResNet10-T",
        "smoke",
        "resnet10t",
        (),
        *IMAGENET,
        "pooled",
        512,
        None,
        None,
        img_size=64,
        methods=_E2E,
        init_note="random initialisation (smoke tier)",
    )
)

BASELINES = tuple(k for k, s in SPECS.items() if s.family == "baseline")
FOUNDATION = tuple(k for k, s in SPECS.items() if s.family == "foundation")
BUILT_IN = frozenset(SPECS)  # the harness's own models (a user model may not reuse these keys)


# --- lookups -------------------------------------------------------------------------------------


def get_spec(key: str) -> ModelSpec:
    try:
        return SPECS[key]
    except KeyError:
        close = difflib.get_close_matches(str(key), list(SPECS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InputError(f"unknown model {key!r}{hint}; known: {', '.join(SPECS)}") from None


@contextlib.contextmanager
def registered(spec: ModelSpec) -> Iterator[ModelSpec]:
    """Temporarily add a spec (tests: tiny architectures through the real loading code)."""
    if spec.key in SPECS:
        raise ValueError(f"model {spec.key!r} is already registered")
    SPECS[spec.key] = spec
    try:
        yield spec
    finally:
        SPECS.pop(spec.key, None)


def use_user_models(specs: Iterable[ModelSpec]) -> list[ModelSpec]:
    """Register user models (harness.userfile), replacing any registered before; returns them.

    Raises InputError when a key or name is taken by one of the harness's own models."""
    specs = list(specs)
    for spec in specs:
        if not spec.user:
            raise ValueError(f"{spec.key} is not a user model (family {spec.family!r})")
        clash = _built_in_clash(spec)
        if clash:
            raise InputError(f"{spec.source_file or 'models file'}: model {spec.key!r}: {clash}")
    for key in [k for k, s in SPECS.items() if s.user]:
        del SPECS[key]
    for spec in specs:
        SPECS[spec.key] = spec
    return specs


def _built_in_clash(spec: ModelSpec) -> str:
    names = {}
    for key in BUILT_IN:
        own = SPECS.get(key)
        if own is not None:
            for text in (own.key, own.name, *own.aliases):
                names[text.lower()] = own
    for what, text in (("key", spec.key), ("name", spec.name)):
        own = names.get(text.lower())
        if own is not None:
            return (
                f"{what} {text!r} is taken by the harness's model {own.key!r} ({own.name}); "
                "choose another"
            )
    return ""


@contextlib.contextmanager
def user_models(specs: Iterable[ModelSpec]) -> Iterator[list[ModelSpec]]:
    """use_user_models for the duration of a block (tests), restoring the previous ones."""
    before = [s for s in SPECS.values() if s.user]
    try:
        yield use_user_models(specs)
    finally:
        use_user_models(before)


_INDEX: tuple[int, dict[str, str]] = (-1, {})


def name_index() -> dict[str, str]:
    """Every accepted spelling of every registered model, lower-cased -> its result name
    (key, result name and aliases; case does not matter)."""
    global _INDEX
    if _INDEX[0] != _Specs.generation:
        index: dict[str, str] = {}
        for spec in SPECS.values():
            for text in (spec.key, spec.name, *spec.aliases):
                index.setdefault(text.strip().lower(), spec.name)
        _INDEX = (_Specs.generation, index)
    return _INDEX[1]


def canonical_name(text: str) -> str:
    """The result name of a registered model from any spelling ('virchow2' -> 'Virchow2'); the
    stripped text itself when no registered model answers to it."""
    return name_index().get(text.strip().lower(), text.strip())


def resolve_key(text: str) -> str | None:
    """The registry key of a model given its key, result name or alias (any case), or None."""
    name = name_index().get(text.strip().lower())
    return next((k for k, s in SPECS.items() if s.name == name), None) if name else None


# --- the plan: derived from the specs ------------------------------------------------------------


def _table3_specs() -> list[ModelSpec]:
    rows = [s for s in SPECS.values() if s.table3_order is not None and not s.user]
    return sorted(rows, key=lambda s: s.table3_order)


def paper_plan() -> tuple[tuple[str, str], ...]:
    """Table 3's configurations (key, method) in the paper's order: strategies in METHODS order
    (end to end, linear probe, LoRA), models by their `table3_order` within each."""
    return tuple((s.key, m) for m in METHODS for s in _table3_specs() if m in s.paper_methods)


def extra_plan() -> tuple[tuple[str, str], ...]:
    """Configurations of the harness's paper-scale models that Table 3 lacks (H0-mini)."""
    return tuple(
        (s.key, m)
        for s in SPECS.values()
        if s.family in ("baseline", "foundation")
        for m in s.methods
        if m not in s.paper_methods
    )


def user_plan() -> tuple[tuple[str, str], ...]:
    """The configurations of the registered user models, in the order of their models file."""
    return tuple((s.key, m) for s in SPECS.values() if s.user for m in s.methods)


def table3_names(method: str | None = None, family: str | None = None) -> tuple[str, ...]:
    """Result names of Table 3's models in row order (optionally: with a row for `method`, of
    `family`), e.g. table3_names('end_to_end') -> ('EfficientNetV2', 'Vision Transformer', ...)."""
    return tuple(
        s.name
        for s in _table3_specs()
        if (method is None or method in s.paper_methods) and (family in (None, s.family))
    )
