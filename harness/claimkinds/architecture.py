"""Claims on the models' architectures, read from the models harness.models builds on the meta
device (no weights, no memory): parameter counts (Table 2, §4.1), "of similar size" (§3.1),
properties such as the patch or window size (§3.2, §4.1), and what LoRA trains (§4.3).
Computed facts are memoised on disk per torch/timm/peft version (harness.archfacts)."""

from __future__ import annotations

import importlib
import json
from typing import Literal

from pydantic import Field

from harness import registry
from harness import stats as st
from harness.claimkinds.base import (
    Claim,
    Context,
    KindParams,
    ModelKey,
    Printed,
    Verdict,
    register,
    same_value,
)

Head = Literal["1-logit", "imagenet-1000"] | None


def _fact(ctx: Context, fact: str, key: str, compute):
    """An architecture fact: from the on-disk memo (harness.archfacts) when the context has one
    (contexts made by build_context), else computed once per Context. The memo is keyed by the
    registry entry's digest and the LoRA settings, per torch/timm/peft version."""
    cache = ctx.cache.setdefault("facts", {})
    if (fact, key) not in cache:
        memo = ctx.cache.get("archfacts")
        if memo is None:
            cache[(fact, key)] = compute()
        else:
            salt = json.dumps(registry.LORA_CONFIG, sort_keys=True) if "lora" in fact else ""
            digest = registry.get_spec(key).digest() + salt
            cache[(fact, key)] = memo.get(fact, key, digest, compute)
    return cache[(fact, key)]


def _count(ctx: Context, key: str, head) -> int:
    """Parameters of a registry model built on the meta device. Imported late (it needs torch and
    timm); a registry that cannot build a model is an error, never a claim "not run"."""

    def compute() -> int:
        models = importlib.import_module("harness.models")
        return int(models.parameter_count(key, head=head))

    return _fact(ctx, f"parameters:{head}", key, compute)


def _meta_model(ctx: Context, key: str, lora: bool = False):
    """A registry model built on the meta device (LoRA-wrapped with its one-logit head when
    `lora`), once per Context."""
    cache = ctx.cache.setdefault("meta_models", {})
    if (key, lora) not in cache:
        torch = importlib.import_module("torch")
        models = importlib.import_module("harness.models")
        with torch.device("meta"):
            model = models.build_backbone(key)
            if lora:
                model = models.wrap_lora(models.attach_head(model))
        cache[(key, lora)] = model
    return cache[(key, lora)]


def _attribute(obj, path: str):
    """'patch_embed.patch_size', 'layers.0.blocks.0.window_size', or 'class' (the class name)."""
    if path == "class":
        return type(obj).__name__
    for part in path.split("."):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return list(obj) if isinstance(obj, tuple) else obj


class ArchitectureProperty(KindParams):
    """`attribute` ('class' for the class name, or a dotted path such as
    'patch_embed.patch_size') of each of `models` (registry keys)."""

    attribute: str = Field(min_length=1)
    models: list[ModelKey] = Field(min_length=1)


@register("architecture_property", ArchitectureProperty, needs="architecture")
def architecture_property(claim: Claim, p: ArchitectureProperty, ctx: Context) -> Verdict:
    """A property the paper states of an architecture (its family, patch size, window size),
    read from the model harness.models builds on the meta device."""
    seen = {
        key: _fact(
            ctx,
            f"attribute:{p.attribute}",
            key,
            lambda k=key: _attribute(_meta_model(ctx, k), p.attribute),
        )
        for key in p.models
    }
    wrong = [f"{k}: {v}" for k, v in seen.items() if not same_value(v, claim.expected)]
    text = f"{p.attribute} of " + ", ".join(f"{k} {v}" for k, v in seen.items())
    if wrong:
        return Verdict(st.FAILED, "; ".join(wrong), f"{text} (differs: {', '.join(wrong)})")
    return Verdict(st.PASSED, str(claim.expected), text)


class Models(KindParams):
    """Registry keys of the models the claim is about."""

    models: list[ModelKey] = Field(min_length=1)


@register("lora_trainable", Models, needs="architecture", expected=bool)
def lora_trainable(claim: Claim, p: Models, ctx: Context) -> Verdict:
    """After the LoRA wrap only the adapters and the new head train; the backbone is frozen."""
    stray, counts = {}, {}
    for key in p.models:

        def compute(key=key) -> dict:
            model = _meta_model(ctx, key, lora=True)
            names = [n for n, q in model.named_parameters() if q.requires_grad]
            extra = [
                n
                for n in names
                if not any(t in n for t in ("lora_A.", "lora_B.", "head.modules_to_save."))
            ]
            if not any("head.modules_to_save." in n for n in names):
                extra.append("(the head does not train)")
            count = sum(q.numel() for q in model.parameters() if q.requires_grad)
            return {"count": int(count), "stray": extra}

        fact = _fact(ctx, "lora-trainable", key, compute)
        counts[key], stray[key] = fact["count"], list(fact["stray"])
    wrong = {k: v for k, v in stray.items() if v}
    text = "trainable: " + ", ".join(f"{k} {_millions(n)}" for k, n in counts.items())
    if wrong:
        detail = "; ".join(f"{k}: {', '.join(v[:3])}" for k, v in wrong.items())
        return Verdict(st.FAILED, False, f"{text}; besides adapters and head: {detail}")
    return Verdict(st.PASSED, True, f"{text}, all in LoRA matrices and the new head")


def _millions(n: float) -> str:
    return f"{n / 1e9:.4g}B" if n >= 1e9 else f"{n / 1e6:.2f}M"


class ParameterCount(KindParams):
    """The parameters of registry model `model_key`, with `head` (none: the backbone alone)."""

    model_key: ModelKey
    head: Head = None


@register(
    "parameter_count", ParameterCount, needs="architecture", tolerances=(Printed,), expected=int
)
def parameter_count(claim: Claim, p: ParameterCount, ctx: Context) -> Verdict:
    """A printed parameter count vs the architecture built by harness.models."""
    tol = claim.tol
    n = _count(ctx, p.model_key, p.head)
    expected = float(claim.expected)
    allowed = tol.half_width(expected)
    diff = n - expected
    head = p.head or "no head"
    text = (
        f"{n:,} parameters ({_millions(n)}, {head}); the paper prints {_millions(expected)}; "
        f"off by {diff / 1e6:+.2f}M ({diff / expected:+.2%}); tolerance ±{_millions(allowed)}"
    )
    return Verdict(st.PASSED if abs(diff) <= allowed else st.FAILED, n, text)


class ParameterSimilarity(KindParams):
    """The largest over the smallest parameter count of `models` is at most `max_ratio`."""

    models: list[ParameterCount] = Field(min_length=2)
    max_ratio: float = Field(gt=1)


@register("parameter_similarity", ParameterSimilarity, needs="architecture", expected=str)
def parameter_similarity(claim: Claim, p: ParameterSimilarity, ctx: Context) -> Verdict:
    """Architectures 'of similar size': largest / smallest parameter count <= max_ratio."""
    counts = {m.model_key: _count(ctx, m.model_key, m.head) for m in p.models}
    big, small = max(counts, key=counts.get), min(counts, key=counts.get)
    ratio = counts[big] / counts[small]
    listing = ", ".join(f"{k} {_millions(v)}" for k, v in counts.items())
    text = f"{listing}; {big} is {ratio:.1f}x {small} (similar means <= {p.max_ratio}x)"
    return Verdict(st.PASSED if ratio <= p.max_ratio else st.FAILED, round(ratio, 2), text)
