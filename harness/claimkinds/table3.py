"""Claims on Table 3's rows: one cell (mean or std), the maximum over a group, a ranking, the
range of one strategy's means, and the sensitivity/specificity the paper prints (§5)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, TypeAdapter, model_validator

from harness import stats as st
from harness.claimkinds.base import (
    Absolute,
    Claim,
    Config,
    Context,
    FoldSpread,
    Group,
    Inconclusive,
    KindParams,
    Method,
    Metric,
    ModelName,
    NotRun,
    Order,
    Printed,
    StdInterval,
    TestSet,
    Verdict,
    register,
)
from harness.claimkinds.cells import (
    METRIC_WORDS,
    Cell,
    canonical_cfg,
    config_label,
    f4,
    get_cell,
    get_cells,
    group,
    results_of,
    split_config,
)


class TableCell(KindParams):
    """One printed Table 3 number: `stat` (mean or population std over the folds) of `metric`
    for `model` trained with `method`, tested on `dataset`."""

    model: ModelName
    method: Method
    dataset: TestSet
    metric: Metric
    stat: Literal["mean", "std"] = "mean"

    def check_tolerance(self, tol) -> str | None:
        want = "fold_spread" if self.stat == "mean" else "std_interval"
        if tol.rule != want:
            return f"tolerance.rule: a {self.stat} is judged with rule {want!r}, not {tol.rule!r}"
        return None


@register(
    "table_cell", TableCell, needs="results", tolerances=(FoldSpread, StdInterval), expected=float
)
def table_cell(claim: Claim, p: TableCell, ctx: Context) -> Verdict:
    """A Table 3 mean (fold_spread rule) or std (std_interval rule) of one configuration."""
    tol = claim.tol
    cell = get_cell(ctx, f"{p.model}|{p.method}", p.dataset, p.metric)
    need = tol.min_folds
    vals = ", ".join(f4(v) for v in cell.values)
    details = {"folds": cell.values.tolist(), "n": cell.n, "mean": cell.mean, "std": cell.std}
    if cell.n < need:
        raise Inconclusive(
            f"only {cell.n} of the {need} folds the claim needs: mean {f4(cell.mean)} "
            f"(folds {vals})"
        )
    if p.stat == "mean":
        delta = st.equivalence_margin(tol.s_ref, tol.n_ref, cell.n, floor=tol.floor, k=tol.k)
        j = st.judge_mean(cell.mean, float(claim.expected), delta)
        details.update(delta=delta, low=j.low, high=j.high)
        observed = round(cell.mean, 5)
        text = f"mean {f4(cell.mean)} over {cell.n} folds ({vals}); {j.note}"
        if cell.n >= 2:
            lo, hi = st.bootstrap_mean_ci(cell.values, n_resamples=2000)
            details["ci95_folds"] = (lo, hi)
            text += f"; 95% bootstrap interval over folds {f4(lo)}-{f4(hi)}"
        per_image = _prediction_ci(ctx, cell)
        if per_image:
            details["ci95_images"] = per_image
            text += f"; 95% bootstrap interval over images {f4(per_image[0])}-{f4(per_image[1])}"
        paper_set = ctx.results is not None and ctx.results.manifest.get("tier") == "paper"
        if paper_set and round(cell.mean, 4) != float(claim.expected) and j.status == st.PASSED:
            text += (
                f"; the fold values average {cell.mean:.5f} where the paper prints "
                f"{claim.expected} (the folds are themselves rounded to 4 decimals)"
            )
        return Verdict(j.status, observed, text, details)
    lo, hi = st.std_interval(
        float(claim.expected),
        tol.n_ref,
        cell.n,
        confidence=tol.confidence,
        floor=tol.floor,
    )
    j = st.judge_std(cell.std, lo, hi)
    details.update(low=lo, high=hi)
    return Verdict(
        j.status,
        round(cell.std, 5),
        f"fold std {f4(cell.std)} over {cell.n} folds ({vals}); {j.note}",
        details,
    )


def _prediction_ci(ctx: Context, cell: Cell) -> tuple[float, float] | None:
    """Bootstrap CI of the fold-averaged metric over test images, when predictions exist."""
    rs = ctx.results
    if not rs or not rs.predictions or cell.metric not in st.PER_SAMPLE_METRICS:
        return None
    folds = rs.predictions_for(cell.model, cell.method, cell.dataset)
    if not folds or len({tuple(names) for names, _, _ in folds.values()}) != 1:
        return None  # the folds must score the same images for a paired resampling
    _, y, _ = next(iter(folds.values()))
    if y.all() or not y.any():
        return None  # one class only: no interval for a two-class metric
    probs = np.vstack([prob for _, _, prob in folds.values()])
    _, lo, hi = st.bootstrap_prediction_ci(y, probs, cell.metric, n_resamples=299)
    return lo, hi


def _order_violations(cells: list[Cell], order: list[str]) -> list[tuple[Cell, Cell]]:
    """(expected higher, expected lower) pairs whose order the observed means reverse."""
    by = {f"{c.model}|{c.method}": c for c in cells}
    ordered = [by[canonical_cfg(o)] for o in order]
    rest = [c for key, c in by.items() if key not in set(order)]
    pairs = list(zip(ordered, ordered[1:], strict=False)) + [(ordered[-1], c) for c in rest]
    return [(a, b) for a, b in pairs if not a.mean > b.mean]


def _judge_order(cells: list[Cell], order: list[str], k: float, sign: int) -> tuple[str, str]:
    """Status and explanation of an ordering claim with noise margins."""
    if sign < 0:  # ranking from the bottom: negate the means
        cells = [Cell(c.model, c.method, c.dataset, c.metric, -c.values) for c in cells]
    bad = _order_violations(cells, order)
    if not bad:
        return st.PASSED, ""
    notes, hard = [], False
    for a, b in bad:
        gap = b.mean - a.mean
        margin = st.difference_margin(a.sd, a.n, b.sd, b.n, k=k)
        hard |= gap > margin
        notes.append(
            f"{b.label} ({f4(abs(b.mean))}) is {'above' if sign > 0 else 'below'} "
            f"{a.label} ({f4(abs(a.mean))}) by {gap:.4f} "
            f"({'beyond' if gap > margin else 'within'} the noise margin {margin:.4f})"
        )
    return (st.FAILED if hard else st.INCONCLUSIVE), "; ".join(notes)


def _outside(configs: list[str], among) -> list[str]:
    """The configurations ('<model>|<method>', canonical) that the group `among` cannot hold:
    'all' holds every one; a method its configurations; a list its configurations and those of
    its methods."""
    if among == "all":
        return []
    items = (among,) if isinstance(among, str) else among
    return [c for c in configs if c not in items and c.partition("|")[2] not in items]


def _refuse_outside(configs: list[str], among, field: str) -> None:
    outside = _outside(configs, among)
    if outside:
        raise ValueError(f"{field} names {', '.join(outside)}, which `among` ({among!r}) excludes")


def _ranking_text(cells: list[Cell], sign: int, top: int) -> str:
    ranked = sorted(cells, key=lambda c: -sign * c.mean)[:top]
    return ", ".join(f"{i}. {c.label} {f4(c.mean)}" for i, c in enumerate(ranked, 1))


class Ranking(KindParams):
    """The configurations of `order` hold the first (or, `from: bottom`, the last) places of
    `among` by mean `metric` on `dataset`, in that order."""

    dataset: TestSet
    metric: Metric
    order: list[Config]
    among: Group = "all"
    from_: Literal["top", "bottom"] = Field("top", alias="from")

    @model_validator(mode="after")
    def _order_in_among(self) -> Ranking:
        _refuse_outside(list(self.order), self.among, "order")
        return self

    def check_expected(self, expected) -> str | None:
        """`expected` repeats `order` (the report shows it): they must name the same ranking."""
        try:
            same = TypeAdapter(list[Config]).validate_python(expected) == list(self.order)
        except ValueError:
            same = False
        if not same:
            return f"expected: must repeat params.order {list(self.order)} (got {expected!r})"
        return None


@register("ranking", Ranking, needs="results", tolerances=(Order,), expected=list, comparative=True)
def ranking(claim: Claim, p: Ranking, ctx: Context) -> Verdict:
    """Named configurations hold the first (or last) places, in the stated order."""
    order = [canonical_cfg(o) for o in p.order]
    cells = get_cells(ctx, group(p.among, ctx), p.dataset, p.metric, claim.tol.min_folds)
    sign = -1 if p.from_ == "bottom" else 1
    status, why = _judge_order(cells, order, claim.tol.k, sign)
    where = "lowest" if sign < 0 else "highest"
    observed = _ranking_text(cells, sign, len(order) + 1)
    text = f"{where} {METRIC_WORDS[p.metric]} on {p.dataset}: {observed}"
    if status == st.INCONCLUSIVE:
        raise Inconclusive(f"{why}; {text}")
    return Verdict(status, observed, f"{why}; {text}" if why else text)


class Maximum(KindParams):
    """The best mean `metric` on `dataset` among `among` is the expected value, reached by
    `config`."""

    dataset: TestSet
    metric: Metric
    config: Config
    among: Group = "all"

    @model_validator(mode="after")
    def _config_in_among(self) -> Maximum:
        _refuse_outside([self.config], self.among, "config")
        return self


@register(
    "maximum", Maximum, needs="results", tolerances=(FoldSpread,), expected=float, comparative=True
)
def maximum(claim: Claim, p: Maximum, ctx: Context) -> Verdict:
    """The best mean over a group equals the stated value and is attained by the stated config."""
    tol = claim.tol
    cells = get_cells(ctx, group(p.among, ctx), p.dataset, p.metric, tol.min_folds)
    want = canonical_cfg(p.config)
    status, why = _judge_order(cells, [want], tol.k, 1)
    best = max(cells, key=lambda c: c.mean)
    observed = f"{f4(best.mean)} by {best.label}"
    if status == st.INCONCLUSIVE:
        raise Inconclusive(f"{why}; best is {observed}")
    if status == st.FAILED:
        return Verdict(
            st.FAILED,
            observed,
            f"the best is {observed}, not {config_label(*split_config(want))}: {why}",
        )
    delta = st.equivalence_margin(tol.s_ref, tol.n_ref, best.n, floor=tol.floor, k=tol.k)
    j = st.judge_mean(best.mean, float(claim.expected), delta)
    return Verdict(j.status, observed, f"best is {observed}; {j.note}", {"delta": delta})


class ValueRange(KindParams):
    """Every configuration of `method` has its mean `metric` on `dataset` in the expected
    [low, high], at the printed precision."""

    method: Method
    dataset: TestSet
    metric: Metric


@register(
    "value_range",
    ValueRange,
    needs="results",
    tolerances=(Printed,),
    expected=tuple[float, float],
    comparative=True,
)
def value_range(claim: Claim, p: ValueRange, ctx: Context) -> Verdict:
    """Every configuration of a strategy lies in the printed range [lo, hi] (printed precision)."""
    cells = get_cells(ctx, group(p.method, ctx), p.dataset, p.metric, claim.tol.min_folds)
    lo, hi = (float(x) for x in claim.expected)
    half_lo, half_hi = claim.tol.half_width(lo), claim.tol.half_width(hi)
    low_c, high_c = min(cells, key=lambda c: c.mean), max(cells, key=lambda c: c.mean)
    observed = f"{f4(low_c.mean)} ({low_c.model}) to {f4(high_c.mean)} ({high_c.model})"
    outside = [c for c in cells if not (lo - half_lo <= c.mean < hi + half_hi)]
    if outside:
        names = ", ".join(f"{c.label} {f4(c.mean)}" for c in outside)
        return Verdict(
            st.FAILED,
            observed,
            f"outside {lo:g}-{hi:g} even after rounding to the printed precision: {names}",
        )
    return Verdict(
        st.PASSED, observed, f"all {len(cells)} within {lo:g}-{hi:g} at printed precision"
    )


class SensSpec(KindParams):
    """Sensitivity or specificity of the atypical class (threshold 0.5) of `model` with `method`
    on `dataset`, averaged over the folds."""

    model: ModelName
    method: Method
    dataset: TestSet
    quantity: Literal["sensitivity", "specificity"]


@register("sens_spec", SensSpec, needs="predictions", tolerances=(Absolute,), expected=float)
def sens_spec(claim: Claim, p: SensSpec, ctx: Context) -> Verdict:
    """Sensitivity or specificity of the atypical class at threshold 0.5, from predictions."""
    rs = results_of(ctx)
    model, method = split_config(f"{p.model}|{p.method}")
    if not rs.predictions:
        raise NotRun(
            "needs per-image predictions (predictions.csv); "
            f"results set '{rs.name}' holds per-fold metrics only"
        )
    folds = rs.predictions_for(model, method, p.dataset)
    if not folds:
        raise NotRun(
            f"predictions.csv has no rows for {config_label(model, method)} on {p.dataset}"
        )
    if len(folds) < claim.tol.min_folds:
        raise Inconclusive(f"predictions for {len(folds)} of {claim.tol.min_folds} folds")
    idx = 0 if p.quantity == "sensitivity" else 1
    per_fold = [st.sensitivity_specificity(y, prob)[idx] for _, y, prob in folds.values()]
    value = float(np.mean(per_fold))
    details = {"folds": per_fold}
    images = {tuple(names) for names, _, _ in folds.values()}
    _, y, _ = next(iter(folds.values()))
    if len(images) == 1 and y.any() and not y.all():
        probs = np.vstack([prob for _, _, prob in folds.values()])
        details["ci95_images"] = st.bootstrap_prediction_ci(y, probs, p.quantity, n_resamples=499)[
            1:
        ]
    tol = claim.tol.value
    diff = value - float(claim.expected)
    status = st.PASSED if abs(diff) <= tol else (st.BETTER if diff > 0 else st.FAILED)
    return Verdict(
        status,
        round(value, 4),
        f"{p.quantity} {f4(value)} (mean of {len(per_fold)} "
        f"folds), {diff:+.4f} from the paper (tolerance ±{tol:g})",
        details,
    )
