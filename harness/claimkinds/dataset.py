"""Claims on the public datasets, judged by harness.data on the real tree (never on a synthetic
one): Table 1's figures (§2) and the slide-disjointness of the folds (§4); and the kind for
statements nothing public here can check."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from harness import data, paths, splits
from harness import stats as st
from harness.claimkinds.base import (
    Claim,
    Context,
    Exact,
    KindParams,
    NotRun,
    Printed,
    TestSet,
    Verdict,
    register,
)


def data_absence(ctx: Context) -> str | None:
    """Why a claim on the data tree cannot be judged here (None: it can): no tree, or a synthetic
    one, whose figures are made up and so must never pass or fail a statement of the paper."""
    if ctx.data_root is None:
        return f"needs the public datasets at {ctx.data_hint} (--data-root or ${paths.DATA_ENV})"
    if data.is_synthetic(ctx.data_root):
        return (
            f"{ctx.data_root} is a synthetic tree (its {data.SYNTHETIC_MARKER} file says so): "
            "its figures are made up, so the paper's dataset statements are judged on the "
            "public datasets only"
        )
    return None


def _figure_field(value: str) -> str:
    top = value.partition(".")[0]
    if top not in data.FIGURE_FIELDS:
        raise ValueError(
            f"{value!r} is not a figure of harness.data.figures (one of: "
            f"{', '.join(data.FIGURE_FIELDS)}; nested: 'source_counts.MIDOG21')"
        )
    return value


class DatasetFigure(KindParams):
    """One Table 1 figure of `dataset` (`field`, dotted for nested ones)."""

    dataset: TestSet
    field: Annotated[str, AfterValidator(_figure_field)]


def _judge(claim: Claim, ctx: Context, observed) -> Verdict:
    if isinstance(claim.tol, Printed):  # the printed last digit, as every kind reads it
        half = claim.tol.half_width(claim.expected)
        ok = observed is not None and abs(float(observed) - float(claim.expected)) <= half + 1e-9
    else:
        ok = st.within_tolerance(observed, claim.expected, claim.tolerance)
    shown = f"{observed:.4g}" if isinstance(observed, float) else repr(observed)
    return Verdict(st.PASSED if ok else st.FAILED, observed, f"observed {shown} in {ctx.data_root}")


def _public_tree(ctx: Context) -> None:
    absent = data_absence(ctx)
    if absent:
        raise NotRun(absent)


@register(
    "dataset_figure",
    DatasetFigure,
    needs="data",
    tolerances=(Exact, Printed),
    expected=int | float | list[str],
)
def dataset_figure(claim: Claim, p: DatasetFigure, ctx: Context) -> Verdict:
    """A Table 1 figure, computed by harness.data from the public datasets."""
    _public_tree(ctx)
    return _judge(claim, ctx, data.figure(ctx.data_root, p.dataset, p.field))


class SlideDisjoint(KindParams):
    """No slide in two parts: `between` all parts, the five folds, or the test split and the
    training pool."""

    dataset: Literal["AMi-Br"] = "AMi-Br"
    between: Literal["all", "folds", "test"] = "all"


@register("slide_disjoint", SlideDisjoint, needs="data", expected=bool)
def slide_disjoint(claim: Claim, p: SlideDisjoint, ctx: Context) -> Verdict:
    """The authors' folds and AMi-Br's test split share no slide."""
    _public_tree(ctx)
    rows = splits.author_folds(ctx.data_root)
    return _judge(claim, ctx, not splits.slide_overlaps(rows, between=p.between))


class External(KindParams):
    """Why nothing public here can check the statement."""

    why: str = Field(min_length=1)


@register("external", External, needs="external")
def external(claim: Claim, p: External, ctx: Context) -> Verdict:
    """A statement nothing public here can check; it stays in the ledger as 'not run'."""
    raise NotRun(f"cannot be checked from the public data, code or results: {p.why}")
