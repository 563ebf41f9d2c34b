"""Claims on a smoke run (`amibr-bench smoke`): each strategy learns where the synthetic signal
is known, and the counters the run recorded (backbone passes per image, shared slides)."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from harness import stats as st
from harness.claimkinds.base import (
    Absolute,
    Claim,
    Context,
    KindParams,
    Method,
    Metric,
    NotRun,
    Verdict,
    register,
)
from harness.claimkinds.cells import METHOD_WORDS, results_of
from harness.results import ResultsSet


def _smoke_set(ctx: Context) -> ResultsSet:
    rs = results_of(ctx)
    if rs.manifest.get("tier") != "smoke":
        raise NotRun(
            f"needs a smoke results set (`amibr-bench smoke`); '{rs.name}' is tier "
            f"{rs.manifest.get('tier', 'unknown')}"
        )
    return rs


class SmokeAboveChance(KindParams):
    """The worst fold-mean `metric` of `method` over the test sets whose names start with
    `datasets` is at least the expected value."""

    method: Method
    metric: Metric = "balanced_accuracy"
    datasets: str = Field("synthetic:", min_length=1)


@register(
    "smoke_above_chance", SmokeAboveChance, needs="run", tolerances=(Absolute,), expected=float
)
def smoke_above_chance(claim: Claim, p: SmokeAboveChance, ctx: Context) -> Verdict:
    """Each strategy learns where the signal is known: the worst synthetic test set's fold mean."""
    rs = _smoke_set(ctx)
    method, metric, prefix = p.method, p.metric, p.datasets
    per_set = {}
    for model, meth in rs.configurations:
        if meth != method:
            continue
        for ds in rs.datasets:
            values = rs.values(model, meth, ds, metric) if ds.startswith(prefix) else []
            if len(values):
                per_set[f"{model} on {ds}"] = float(np.mean(values))
    if not per_set:
        raise NotRun(f"the results set holds no {METHOD_WORDS[method]} rows on {prefix}* test sets")
    observed = round(min(per_set.values()), 4)
    detail = ", ".join(f"{k} {v:.3f}" for k, v in sorted(per_set.items()))
    floor = float(claim.expected) - claim.tol.value
    ok = observed >= floor
    return Verdict(
        st.PASSED if ok else st.FAILED,
        observed,
        f"fold-mean {metric}: {detail} (needs >= {floor:g})",
    )


# the counters a configuration records for forward_passes_per_image: backbone passes, images
RUN_COUNTERS = ("backbone_forward_images", "unique_images")


class RunCounter(KindParams):
    """A counter of the run manifest; `forward_passes_per_image` is computed per configuration of
    `method` from its recorded backbone passes and unique images."""

    counter: str = Field(min_length=1)
    method: Method = "linear_probe"


@register("run_counter", RunCounter, needs="run", expected=int | float)
def run_counter(claim: Claim, p: RunCounter, ctx: Context) -> Verdict:
    """A count the run recorded in its manifest (backbone forward passes, shared slides)."""
    rs = _smoke_set(ctx)
    counter = p.counter
    if counter == "forward_passes_per_image":
        ratios, parts = {}, []
        for key, entry in (rs.manifest.get("configs") or {}).items():
            counts = ((entry or {}).get("settings") or {}).get("counters") or {}
            if key.endswith("|" + p.method) and counts:
                lacking = [k for k in RUN_COUNTERS if k not in counts]
                if lacking:
                    raise NotRun(
                        f"the run manifest's counters of {key} lack {', '.join(lacking)} "
                        "(configs[...].settings.counters)"
                    )
                passes, unique = (counts[k] for k in RUN_COUNTERS)
                ratios[key] = passes / max(unique, 1)
                parts.append(
                    f"{key}: {passes} backbone passes for {unique} images and "
                    f"{counts.get('folds', '?')} folds ({ratios[key]:.2f} per image"
                    + (
                        f"; {counts['embedding_cache_hits']} embeddings reused from the cache)"
                        if counts.get("embedding_cache_hits")
                        else ")"
                    )
                )
        if not ratios:
            raise NotRun(
                f"no {METHOD_WORDS[p.method]} configuration recorded its forward-pass counter"
            )
        observed = max(ratios.values())
        text = "; ".join(parts)
        ok = observed <= float(claim.expected)
        return Verdict(st.PASSED if ok else st.FAILED, observed, text)
    counters = rs.manifest.get("counters") or {}
    if counter not in counters:
        raise NotRun(f"the run manifest records no counter {counter!r}")
    observed = counters[counter]
    ok = observed == claim.expected
    return Verdict(
        st.PASSED if ok else st.FAILED, observed, f"the run recorded {counter} = {observed}"
    )
