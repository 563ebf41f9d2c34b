"""Comparative claims: one strategy beats another for each model (LoRA over linear probing),
an end-to-end baseline beats both foundation-model strategies, performance drops out of domain,
and Table 4's significance tests."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness import stats as st
from harness.claimkinds.base import (
    Alpha,
    Claim,
    Context,
    Group,
    Inconclusive,
    KindParams,
    Method,
    Metric,
    ModelName,
    Order,
    TestSet,
    Verdict,
    register,
)
from harness.claimkinds.cells import (
    FOUNDATION_MODELS,
    METHOD_WORDS,
    METRIC_WORDS,
    config_label,
    f4,
    get_cells,
    group,
    models_with,
    results_of,
    split_config,
)


class Dominance(KindParams):
    """For each of `models` (default: Table 3's foundation models, plus a results set's own
    models that have both strategies), `better`'s mean beats `worse`'s on every one of
    `datasets` x `metrics`."""

    better: Method
    worse: Method
    datasets: list[TestSet] = Field(min_length=1)
    metrics: list[Metric] = Field(min_length=1)
    models: list[ModelName] | None = None


@register(
    "dominance", Dominance, needs="results", tolerances=(Order,), expected=str, comparative=True
)
def dominance(claim: Claim, p: Dominance, ctx: Context) -> Verdict:
    """For each model, one strategy's mean beats the other's on every listed test set and metric."""
    k, need = claim.tol.k, claim.tol.min_folds
    models = p.models or models_with(ctx, FOUNDATION_MODELS, p.better, p.worse)
    gaps, bad = [], []
    for dataset in p.datasets:
        for metric in p.metrics:
            better = get_cells(ctx, [f"{m}|{p.better}" for m in models], dataset, metric, need)
            worse = get_cells(ctx, [f"{m}|{p.worse}" for m in models], dataset, metric, need)
            for b, w in zip(better, worse, strict=True):
                gap = b.mean - w.mean
                gaps.append((gap, b, dataset, metric))
                if gap <= 0:
                    bad.append(
                        (gap, st.difference_margin(b.sd, b.n, w.sd, w.n, k=k), b, dataset, metric)
                    )
    gap, b, dataset, metric = min(gaps, key=lambda g: g[0])
    observed = f"smallest gain {gap:+.4f} ({b.model} on {dataset}, {METRIC_WORDS[metric]})"
    if not bad:
        return Verdict(
            st.PASSED,
            observed,
            f"all {len(gaps)} comparisons favour {METHOD_WORDS[p.better]}; {observed}",
        )
    text = "; ".join(
        f"{b.model} on {d} ({METRIC_WORDS[m]}): {g:+.4f}, margin {mg:.4f}" for g, mg, b, d, m in bad
    )
    if all(-g <= mg for g, mg, *_ in bad):
        raise Inconclusive(f"reversed within noise: {text}")
    return Verdict(st.FAILED, observed, f"not better: {text}")


class BaselineBeatsFoundation(KindParams):
    """In at least `min_count` of `datasets` x `metrics`, the best end-to-end baseline beats both
    the best linear probe and the best LoRA."""

    datasets: list[TestSet] = Field(min_length=1)
    metrics: list[Metric] = Field(min_length=1)
    min_count: int = Field(ge=0)


@register(
    "baseline_beats_foundation",
    BaselineBeatsFoundation,
    needs="results",
    expected=str,
    comparative=True,
)
def baseline_beats_foundation(claim: Claim, p: BaselineBeatsFoundation, ctx: Context) -> Verdict:
    """Count (test set, metric) pairs where the best baseline beats the best LP and best LoRA."""
    hits, misses = 0, []
    for dataset in p.datasets:
        for metric in p.metrics:
            best = {}
            for method in ("end_to_end", "linear_probe", "lora"):
                cells = get_cells(ctx, group(method, ctx), dataset, metric, claim.tol.min_folds)
                best[method] = max(cells, key=lambda c: c.mean)
            b = best["end_to_end"]
            rivals = [best["linear_probe"], best["lora"]]
            if all(b.mean > r.mean for r in rivals):
                hits += 1
            else:
                top = max(rivals, key=lambda c: c.mean)
                misses.append(
                    f"{dataset} {METRIC_WORDS[metric]}: {top.label} {f4(top.mean)} "
                    f">= {b.label} {f4(b.mean)}"
                )
    total = len(p.datasets) * len(p.metrics)
    need = p.min_count
    observed = f"{hits} of {total}"
    text = f"a baseline beats both strategies in {observed} (needs >= {need})"
    if misses:
        text += "; not in: " + "; ".join(misses)
    return Verdict(st.PASSED if hits >= need else st.FAILED, observed, text)


class PerformanceDrop(KindParams):
    """For each of `methods` and each `external` test set, some configuration scores lower than
    on `reference` on every one of `metrics`."""

    methods: list[Method] = Field(min_length=1)
    external: list[TestSet] = Field(min_length=1)
    metrics: list[Metric] = Field(min_length=1)
    reference: TestSet = "AMi-Br"


@register("performance_drop", PerformanceDrop, needs="results", expected=str, comparative=True)
def performance_drop(claim: Claim, p: PerformanceDrop, ctx: Context) -> Verdict:
    """Performance drops from AMi-Br to the external test sets, for each strategy."""
    ref, need = p.reference, claim.tol.min_folds
    found, lacking = [], []
    for method in p.methods:
        for ext in p.external:
            droppers = []
            for config in group(method, ctx):
                drops = all(
                    get_cells(ctx, [config], ext, m, need)[0].mean
                    < get_cells(ctx, [config], ref, m, need)[0].mean
                    for m in p.metrics
                )
                if drops:
                    droppers.append(split_config(config)[0])
            (found if droppers else lacking).append(
                f"{METHOD_WORDS[method]} on {ext}: {', '.join(droppers) or 'none'}"
            )
    observed = "; ".join(found + lacking)
    status = st.FAILED if lacking else st.PASSED
    return Verdict(
        status, observed, f"configurations lower on both metrics than on {ref}: {observed}"
    )


class PerformanceDropShare(KindParams):
    """At least `min_share` of the configurations of `among` score lower on `external` than on
    `reference` (mean `metric`)."""

    external: TestSet
    metric: Metric
    min_share: float = Field(ge=0, le=1)
    among: Group = "all"
    reference: TestSet = "AMi-Br"


@register(
    "performance_drop_share", PerformanceDropShare, needs="results", expected=str, comparative=True
)
def performance_drop_share(claim: Claim, p: PerformanceDropShare, ctx: Context) -> Verdict:
    """A share of the configurations scores lower out of domain than on AMi-Br."""
    ref, need = p.reference, claim.tol.min_folds
    configs = group(p.among, ctx)
    ext, metric = p.external, p.metric
    lower = [
        c
        for c in configs
        if get_cells(ctx, [c], ext, metric, need)[0].mean
        < get_cells(ctx, [c], ref, metric, need)[0].mean
    ]
    share = len(lower) / len(configs)
    observed = f"{len(lower)} of {len(configs)} ({share:.0%})"
    not_lower = [config_label(*split_config(c)) for c in configs if c not in lower]
    text = (
        f"{observed} configurations score lower on {ext} than on {ref} (needs >= {p.min_share:.0%})"
    )
    if not_lower:
        text += "; not lower: " + ", ".join(not_lower)
    return Verdict(st.PASSED if share >= p.min_share else st.FAILED, observed, text)


class Significance(KindParams):
    """Table 4: a two-sided test between strategies `x` and `y` on `dataset`: Wilcoxon
    signed-rank paired by model and fold (`n` pairs), or Mann-Whitney U on the pooled fold values
    (`n_x` vs `n_y`)."""

    test: Literal["wilcoxon", "mann_whitney"]
    dataset: TestSet
    metric: Metric
    x: Method
    y: Method
    n: int = Field(35, ge=1)
    n_x: int | None = Field(None, ge=1)
    n_y: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _sizes_of_its_test(self) -> Significance:
        foreign = ("n_x", "n_y") if self.test == "wilcoxon" else ("n",)
        given = [f for f in foreign if f in self.model_fields_set]
        if given:
            raise ValueError(
                f"{', '.join(given)} is not a sample size of test {self.test!r} "
                f"({'n' if self.test == 'wilcoxon' else 'n_x, n_y'} is)"
            )
        return self


class SignificanceExpected(BaseModel):
    """What the paper says of a test: significant or not (None: the p-value is lost from the
    text) and which strategy is higher."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    significant: bool | None = None
    higher: Method | None = None


@register(
    "significance",
    Significance,
    needs="results",
    tolerances=(Alpha,),
    expected=SignificanceExpected,
    comparative=True,
)
def significance(claim: Claim, p: Significance, ctx: Context) -> Verdict:
    """Table 4: Wilcoxon (paired by model and fold) or Mann-Whitney U between two strategies."""
    alpha = claim.tol.alpha
    expected = SignificanceExpected.model_validate(claim.expected or {})
    dataset, metric, x_m, y_m = p.dataset, p.metric, p.x, p.y
    rs = results_of(ctx)
    xs = get_cells(ctx, group(x_m, ctx), dataset, metric, claim.tol.min_folds)
    ys = get_cells(ctx, group(y_m, ctx), dataset, metric, claim.tol.min_folds)
    if p.test == "wilcoxon":
        pairs_x, pairs_y = [], []
        for cx in xs:
            cy = next((c for c in ys if c.model == cx.model), None)
            if cy is None:  # a model with one of the two strategies only: nothing to pair
                continue
            fx = rs.folds(cx.model, x_m, dataset)
            fy = rs.folds(cy.model, y_m, dataset)
            common = sorted(set(fx) & set(fy))
            pairs_x += [cx.values[fx.index(f)] for f in common]
            pairs_y += [cy.values[fy.index(f)] for f in common]
        n_need = p.n
        how = (
            f"{len(pairs_x)} pairs (each model's {METHOD_WORDS[x_m]} and {METHOD_WORDS[y_m]} "
            "on the same fold)"
        )
        if len(pairs_x) < n_need:
            raise Inconclusive(f"{how}; the paper's test uses {n_need}")
        res = st.wilcoxon_paired(pairs_x, pairs_y, pairing=how)
        effect = (
            f"signed ranks of {METHOD_WORDS[y_m]} - {METHOD_WORDS[x_m]}: rank-biserial "
            f"{res.effect:+.3f}, Hodges-Lehmann shift {res.shift:+.4f}; {res.n_tied} of "
            f"{res.n_x} pairs tied (zero difference, left out of the ranks: zero_method "
            f"'{st.WILCOXON_ZERO_METHOD}')"
        )
    else:
        vx = np.concatenate([c.values for c in xs])
        vy = np.concatenate([c.values for c in ys])
        need_x, need_y = p.n_x or vx.size, p.n_y or vy.size
        how = (
            f"{vx.size} {METHOD_WORDS[x_m]} fold values ({len(xs)} models) vs {vy.size} "
            f"{METHOD_WORDS[y_m]} fold values ({len(ys)} models), unpaired"
        )
        if vx.size < need_x or vy.size < need_y:
            raise Inconclusive(f"{how}; the paper's test uses {need_x} vs {need_y}")
        res = st.mann_whitney(vx, vy, pairing=how)
        effect = (
            f"P({METHOD_WORDS[x_m]} > {METHOD_WORDS[y_m]}) + P(tie)/2 = {res.effect:.3f} "
            f"(common-language effect size; {res.n_tied} of {res.n_x * res.n_y} cross pairs "
            f"tied); pooled means {f4(vx.mean())} vs {f4(vy.mean())}"
        )
    details = {
        "test": res.test,
        "statistic": res.statistic,
        "pvalue": res.pvalue,
        "n_x": res.n_x,
        "n_y": res.n_y,
        "pairing": how,
        "effect": res.effect,
        "shift": res.shift,
        "n_tied": res.n_tied,
    }
    higher = {"x": x_m, "y": y_m}.get(res.higher)
    side = f"{METHOD_WORDS[higher]} higher" if higher else "neither higher"
    observed = f"p = {res.pvalue:.2g}, {side}"
    text = f"{res.test} on {METRIC_WORDS[metric]}, {how}: p = {res.pvalue:.3g}; {effect}"
    if expected.higher and higher != expected.higher:
        shown = f"{METHOD_WORDS[higher]} is higher" if higher else "the ranks favour neither"
        return Verdict(
            st.FAILED,
            observed,
            f"{shown}, not {METHOD_WORDS[expected.higher]}; {text}",
            details,
        )
    found = "significant" if res.significant(alpha) else "not significant"
    if expected.significant is not None and expected.significant != res.significant(alpha):
        said = "significant" if expected.significant else "not significant"
        return Verdict(
            st.FAILED, observed, f"{found} at alpha {alpha}, the paper says {said}; {text}", details
        )
    if expected.significant is None:
        text += " (the paper's p-value is lost from the text; only the direction is judged)"
    else:
        text += f" ({found} at alpha {alpha}, an assumed threshold)"
    return Verdict(st.PASSED, observed, text, details)
