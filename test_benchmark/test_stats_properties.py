"""Property tests of every statistic the claims use, at the edges: ties, zero differences,
identical samples, constant shifts (Wilcoxon, Mann-Whitney U, paired_shift, bootstrap intervals,
fold metrics). Values come on coarse grids so that ties and zeros are common."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from harness import stats as st

FLIP = {"x": "y", "y": "x", None: None}


def grid(steps: int) -> hs.SearchStrategy[float]:
    """Values k / steps in [0, 1]: a coarse grid (many ties) or a fine one (4 decimals)."""
    return hs.integers(0, steps).map(lambda k: k / steps)


VALUES = hs.one_of(grid(4), grid(20), grid(10_000))
SHIFTS = hs.integers(1, 100).map(lambda k: k / 1000)  # 0.001 .. 0.1


@hs.composite
def pairs(draw, min_size: int = 1):
    """Paired values (x, y): some pairs differ (y = x + a step on a coarse or fine grid, so
    |y - x| often ties) and the rest tie (y = x, zero differences). scipy permutes exhaustively
    when 8-13 pairs differ with ties (about 1 s at 13), so those counts are left out here."""
    n_diff = draw(hs.one_of(hs.integers(0, 7), hs.integers(14, 30)))
    n_tied = max(draw(hs.integers(0, 12)), min_size - n_diff)
    x = np.array(draw(hs.lists(VALUES, min_size=n_diff + n_tied, max_size=n_diff + n_tied)))
    steps = draw(hs.sampled_from([4, 20, 10_000]))
    step = hs.tuples(hs.integers(1, steps), hs.sampled_from([-1, 1])).map(
        lambda t: t[0] * t[1] / steps
    )
    y = x.copy()
    y[:n_diff] += np.array(draw(hs.lists(step, min_size=n_diff, max_size=n_diff)), float)
    order = np.array(draw(hs.permutations(range(x.size))), int)
    return x[order], y[order]


def samples(min_size: int = 1, max_size: int = 30):
    return hs.lists(VALUES, min_size=min_size, max_size=max_size).map(np.array)


# ---------------------------------------------------------------------------- Wilcoxon
@settings(max_examples=100, deadline=None)
@given(xy=pairs())
def test_wilcoxon_swap_flips_the_side_and_keeps_p(xy):
    x, y = xy
    a, b = st.wilcoxon_paired(x, y), st.wilcoxon_paired(y, x)
    assert 0.0 < a.pvalue <= 1.0 and a.pvalue == b.pvalue and a.statistic == b.statistic
    assert b.higher == FLIP[a.higher] and b.effect == -a.effect and b.shift == -a.shift
    assert a.n_tied == b.n_tied == int(np.sum(x == y))
    r_plus, r_minus = st.signed_rank_sums(y - x)
    assert a.higher == ("y" if r_plus > r_minus else "x" if r_minus > r_plus else None)
    if a.higher is None:
        assert a.effect == 0.0


@settings(max_examples=60, deadline=None)
@given(x=samples(max_size=40))
def test_wilcoxon_identical_samples_have_no_winner(x):
    r = st.wilcoxon_paired(x, x.copy())
    assert (r.pvalue, r.higher, r.effect, r.n_tied) == (1.0, None, 0.0, x.size)


RAISED = hs.one_of(hs.integers(1, 7), hs.integers(14, 30))  # see pairs(): 8-13 are slow


@settings(max_examples=60, deadline=None)
@given(n=RAISED, c=SHIFTS, data=hs.data())
def test_wilcoxon_a_shift_in_some_pairs_wins_however_many_tie(n, c, data):
    """y = x + c in n pairs, y = x in up to 25 more: y wins, whatever the median difference
    (0 once most pairs tie)."""
    raised = np.array(data.draw(hs.lists(VALUES, min_size=n, max_size=n)))
    tied = np.array(data.draw(hs.lists(VALUES, max_size=25)))
    x, y = np.concatenate([raised, tied]), np.concatenate([raised + c, tied])
    r = st.wilcoxon_paired(x, y)
    assert (r.higher, r.effect, r.n_tied) == ("y", 1.0, tied.size)
    assert st.wilcoxon_paired(y, x).higher == "x"


# ------------------------------------------------------------------------- Mann-Whitney U
@settings(max_examples=150, deadline=None)
@given(x=samples(), y=samples())
def test_mann_whitney_swap_flips_the_side_and_keeps_p(x, y):
    a, b = st.mann_whitney(x, y), st.mann_whitney(y, x)
    assert 0.0 < a.pvalue <= 1.0 and a.pvalue == pytest.approx(b.pvalue, rel=1e-12)
    assert b.higher == FLIP[a.higher] and b.effect == pytest.approx(1.0 - a.effect)
    assert a.n_tied == b.n_tied and b.shift == -a.shift
    # the common-language effect size, counted pair by pair
    gt, eq = (x[:, None] > y[None, :]).mean(), (x[:, None] == y[None, :]).mean()
    assert a.effect == pytest.approx(gt + eq / 2)
    assert a.higher == ("x" if a.effect > 0.5 else "y" if a.effect < 0.5 else None)


@settings(max_examples=60, deadline=None)
@given(x=samples(), data=hs.data())
def test_mann_whitney_identical_samples_have_no_winner(x, data):
    y = data.draw(hs.permutations(list(x))) if x.size > 1 else list(x)
    r = st.mann_whitney(x, np.array(y))
    assert (r.pvalue, r.higher, r.effect) == (1.0, None, 0.5)


@settings(max_examples=60, deadline=None)
@given(x=samples(), c=SHIFTS)
def test_mann_whitney_a_shifted_sample_wins(x, c):
    assert st.mann_whitney(x + c, x).higher == "x"
    assert st.mann_whitney(x, x + c).higher == "y"


# ----------------------------------------------------------------------------- paired_shift
@settings(max_examples=80, deadline=None)
@given(xy=pairs(min_size=2))
def test_paired_shift_swap_negates_the_shift_and_keeps_the_margin(xy):
    x, y = xy
    (s1, m1), (s2, m2) = st.paired_shift(y, x), st.paired_shift(x, y)
    assert s2 == pytest.approx(-s1, abs=1e-15) and m1 == pytest.approx(m2) and m1 >= 0.005


@settings(max_examples=60, deadline=None)
@given(x=samples(min_size=2, max_size=10), c=hs.integers(6, 100).map(lambda k: k / 1000))
def test_paired_shift_identical_and_shifted_runs(x, c):
    assert st.paired_shift(x, x.copy()) == (0.0, 0.005)
    shift, margin = st.paired_shift(x + c, x)
    assert shift == pytest.approx(c) and margin == 0.005 and shift > margin  # the new run wins


# ------------------------------------------------------------------------ bootstrap intervals
@settings(max_examples=40, deadline=None)
@given(v=samples(min_size=1, max_size=8), c=SHIFTS)
def test_bootstrap_mean_ci_bounds_shift_and_mirror(v, c):
    lo, hi = st.bootstrap_mean_ci(v, n_resamples=199)
    assert v.min() - 1e-12 <= lo <= hi <= v.max() + 1e-12  # means of resamples, float noise
    if np.all(v == v[0]):
        assert lo == hi == v[0]
    assert st.bootstrap_mean_ci(v + c, n_resamples=199) == pytest.approx((lo + c, hi + c))
    assert st.bootstrap_mean_ci(-v, n_resamples=199) == pytest.approx((-hi, -lo))


@hs.composite
def scored_images(draw, max_images: int = 24, max_folds: int = 3):
    """Labels with both classes and per-fold scores on a coarse grid (ties, and 0.5 itself)."""
    n = draw(hs.integers(2, max_images))
    y = np.array(draw(hs.lists(hs.booleans(), min_size=n, max_size=n)))
    y[0], y[1] = True, False
    folds = draw(hs.integers(1, max_folds))
    rows = hs.lists(hs.lists(grid(20), min_size=n, max_size=n), min_size=folds, max_size=folds)
    probs = np.array(draw(rows))
    return y, probs


@settings(max_examples=30, deadline=None)
@given(case=scored_images(), metric=hs.sampled_from(sorted(st.PER_SAMPLE_METRICS)))
def test_bootstrap_prediction_ci_stays_in_the_unit_interval(case, metric):
    y, probs = case
    est, lo, hi = st.bootstrap_prediction_ci(y, probs, metric, n_resamples=99)
    assert 0.0 <= lo <= hi <= 1.0 and 0.0 <= est <= 1.0


@settings(max_examples=30, deadline=None)
@given(case=scored_images())
def test_bootstrap_prediction_ci_mirrors_flipped_scores_and_ties(case):
    y, probs = case
    est, lo, hi = st.bootstrap_prediction_ci(y, probs, "auroc", n_resamples=99)
    flipped = st.bootstrap_prediction_ci(y, 1.0 - probs, "auroc", n_resamples=99)
    assert flipped == pytest.approx((1 - est, 1 - hi, 1 - lo))
    tied = np.full_like(probs, probs[0, 0])  # every image scored alike: no skill, no spread
    for metric in ("auroc", "balanced_accuracy"):
        assert st.bootstrap_prediction_ci(y, tied, metric, n_resamples=99) == (0.5, 0.5, 0.5)
    separated = np.where(y, 0.9, 0.1)[np.newaxis, :]
    assert st.bootstrap_prediction_ci(y, separated, "auroc", n_resamples=99) == (1.0, 1.0, 1.0)


# ---------------------------------------------------------------------------- fold metrics
@settings(max_examples=100, deadline=None)
@given(case=scored_images(max_images=40, max_folds=1), data=hs.data())
def test_fold_metrics_at_ties_and_flips(case, data):
    y, (p,) = case
    m = st.fold_metrics(y, p)
    assert all(0.0 <= v <= 1.0 for v in m.values())
    # the same numbers as scikit-learn (atypical = positive; atypical when p >= 0.5)
    assert m["auroc"] == pytest.approx(roc_auc_score(y, p))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, p >= 0.5))
    order = np.array(data.draw(hs.permutations(range(y.size))))
    assert st.fold_metrics(y[order], p[order]) == pytest.approx(m)
    assert st.fold_metrics(y, 1.0 - p)["auroc"] == pytest.approx(1.0 - m["auroc"])
    assert st.fold_metrics(~y, p)["auroc"] == pytest.approx(1.0 - m["auroc"])
    constant = st.fold_metrics(y, np.full(y.size, p[0]))
    assert constant == pytest.approx(
        {"balanced_accuracy": 0.5, "auroc": 0.5, "pr_auc": float((~y).mean())}
    )
