"""Statistics for judging claims: the paper's tests, bootstrap intervals and tolerance rules.

Tolerance rules (documented for readers in expected_results/README.md):

* fold_spread (a Table 3 mean): delta = max(floor, k * s_ref * sqrt(1/n_ref + 1/n_obs)), s_ref the
  reference folds' standard deviation (ddof=1). |observed - expected| <= delta passes, above
  expected + delta is passed-and-better, below expected - delta fails.
* std_interval (a Table 3 std): the observed fold std must lie in the chi-square interval of a
  sample std of n_obs folds whose true sigma is the paper's (ddof=1 equivalent), widened by the
  printed rounding; below the interval is passed-and-better (steadier folds), above fails.
* rank margin: two configurations are "in the wrong order" only when the gap exceeds
  k * sqrt(s_a^2/n_a + s_b^2/n_b) (ddof=1 fold spreads); smaller reversals are inconclusive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

ALPHA = 0.05  # assumption: the significance threshold of Table 4 (lost from the text)
PASSED, BETTER, FAILED, INCONCLUSIVE, NOT_RUN = (
    "passed",
    "passed-and-better",
    "failed",
    "inconclusive",
    "not run",
)
STATUSES = (PASSED, BETTER, FAILED, INCONCLUSIVE, NOT_RUN)


# Zero differences in the Wilcoxon signed-rank test (scipy.stats.wilcoxon's zero_method).
# "wilcox" (scipy's default, so most likely what the paper's Table 4 used) discards the tied
# pairs: the test asks, among the pairs that differ, which side is higher, and the verdicts say
# how many pairs tied. ("pratt" ranks the zeros and then drops their ranks; "zsplit" splits their
# ranks between the signs: both let tied pairs weigh on the p-value.) The zeros are dropped
# before calling scipy, because scipy picks its method (exact, permutation, normal
# approximation) from the length before dropping them: 1 pair that differs among 35 would get
# the normal approximation's p = 0.32 where the exact answer is 1.
WILCOXON_ZERO_METHOD = "wilcox"


@dataclass(frozen=True)
class TestResult:
    """Outcome of one two-sided hypothesis test of two samples x and y.

    effect: Wilcoxon: the matched-pairs rank-biserial correlation (R+ - R-) / (R+ + R-) of the
    signed ranks of y - x, in [-1, 1] (> 0: y higher); Mann-Whitney U: the common-language effect
    size P(X > Y) + P(X = Y) / 2, in [0, 1] (0.5: no difference). higher: "x", "y", or None when
    the ranks favour neither side (never the plain median of the differences, which is 0 when
    most pairs tie). shift: Hodges-Lehmann estimate of y - x (median of the Walsh averages of the
    differences; Mann-Whitney: median of all differences y_j - x_i). n_tied: Wilcoxon: pairs with
    zero difference (dropped by zero_method "wilcox"); Mann-Whitney: (x_i, y_j) pairs of equal
    value (they count 1/2 in the effect)."""

    test: str
    statistic: float
    pvalue: float
    n_x: int
    n_y: int
    effect: float
    pairing: str
    higher: str | None = None
    shift: float = 0.0
    n_tied: int = 0

    def significant(self, alpha: float = ALPHA) -> bool:
        return self.pvalue < alpha


def _side(y_score: float, x_score: float) -> str | None:
    """Which sample the rank sums favour: "y", "x" or None (equal)."""
    return "y" if y_score > x_score else "x" if x_score > y_score else None


def signed_rank_sums(d) -> tuple[float, float]:
    """(R+, R-): sums of the ranks of |d| over the positive and the negative differences, zero
    differences dropped first (WILCOXON_ZERO_METHOD "wilcox"); ties get average ranks."""
    d = np.asarray(d, float)
    d = d[d != 0]
    ranks = sps.rankdata(np.abs(d))
    return float(ranks[d > 0].sum()), float(ranks[d < 0].sum())


def wilcoxon_paired(x, y, *, pairing: str = "paired") -> TestResult:
    """Two-sided Wilcoxon signed-rank test of d = y - x (scipy.stats.wilcoxon, zero_method
    WILCOXON_ZERO_METHOD) on the n' pairs that differ: exact for n' <= 50 without ties among
    |d|, exhaustive permutations for n' <= 13 with ties, else the tie-corrected normal
    approximation (scipy's method="auto").

    x, y: 1-d float arrays of equal length n >= 1 (pairs). The direction comes from the signed
    ranks (R+ vs R-), never from the median difference. All pairs tied: p = 1, no side higher.
    Raises ValueError for unequal or empty samples. Source: Table 4 (PROTOCOL.md, Evaluation)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape or x.size == 0:
        raise ValueError(
            f"paired samples must be equal-length and non-empty ({x.size} vs {y.size})"
        )
    d = y - x
    n_tied = int(np.sum(d == 0))
    name = "Wilcoxon signed-rank"
    if n_tied == d.size:  # no non-zero difference to rank: no evidence of any difference
        return TestResult(name, 0.0, 1.0, x.size, y.size, 0.0, pairing, None, 0.0, n_tied)
    r_plus, r_minus = signed_rank_sums(d)
    res = sps.wilcoxon(d[d != 0], zero_method=WILCOXON_ZERO_METHOD, alternative="two-sided")
    walsh = (d[:, None] + d[None, :])[np.triu_indices(d.size)] / 2
    return TestResult(
        name,
        float(res.statistic),
        float(res.pvalue),
        x.size,
        y.size,
        (r_plus - r_minus) / (r_plus + r_minus),
        pairing,
        _side(r_plus, r_minus),
        float(np.median(walsh)),
        n_tied,
    )


def mann_whitney(x, y, *, pairing: str = "unpaired") -> TestResult:
    """Two-sided Mann-Whitney U test (scipy.stats.mannwhitneyu); U is x's statistic.

    x, y: 1-d float arrays, non-empty. effect = U / (n_x n_y) = P(X > Y) + P(X = Y) / 2 (the
    common-language effect size); the side whose U is larger is higher. All values equal: p = 1,
    no side higher. Raises ValueError for an empty sample. Source: Table 4 (PROTOCOL.md)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.size == 0 or y.size == 0:
        raise ValueError("Mann-Whitney U needs two non-empty samples")
    pairs = x.size * y.size
    diffs = y[None, :] - x[:, None]
    n_tied = int(np.sum(diffs == 0))
    if n_tied == pairs:  # every value equal: nothing to rank
        u, p = pairs / 2, 1.0
    else:
        res = sps.mannwhitneyu(x, y, alternative="two-sided")
        u, p = float(res.statistic), float(res.pvalue)
    return TestResult(
        "Mann-Whitney U",
        u,
        p,
        x.size,
        y.size,
        u / pairs,
        pairing,
        _side(pairs - u, u),
        float(np.median(diffs)),
        n_tied,
    )


# ------------------------------------------------------------------------------- bootstrap
def bootstrap_mean_ci(
    values, confidence: float = 0.95, n_resamples: int = 9999, seed: int = 0
) -> tuple[float, float]:
    """Bootstrap CI of a mean of fold values (percentile; a single or constant value -> point)."""
    v = np.asarray(values, float)
    if v.size == 0:
        raise ValueError("no values")
    if v.size == 1 or np.all(v == v[0]):
        return float(v[0]), float(v[0])
    res = sps.bootstrap(
        (v,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def sensitivity_specificity(
    is_atypical, prob_atypical, threshold: float = 0.5
) -> tuple[float, float]:
    """(sensitivity, specificity) of the atypical class at the paper's threshold.

    The authors' scripts call Normal when sigmoid(logit) > 0.5, i.e. atypical when
    prob_atypical >= threshold.
    """
    y = np.asarray(is_atypical, bool)
    pred = np.asarray(prob_atypical, float) >= threshold
    if y.all() or (~y).all():
        raise ValueError("sensitivity and specificity need both classes")
    return float(pred[y].mean()), float((~pred[~y]).mean())


def balanced_accuracy(is_atypical, prob_atypical, threshold: float = 0.5) -> float:
    sens, spec = sensitivity_specificity(is_atypical, prob_atypical, threshold)
    return (sens + spec) / 2


def auroc(is_atypical, prob_atypical) -> float:
    """Area under the ROC curve (Mann-Whitney form; identical for either positive class)."""
    y = np.asarray(is_atypical, bool)
    s = np.asarray(prob_atypical, float)
    ranks = sps.rankdata(s)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUROC needs both classes")
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def fold_metrics(is_atypical, prob_atypical) -> dict[str, float]:
    """One fold's test metrics, the columns of fold_metrics.csv: balanced accuracy at the 0.5
    threshold, AUROC, and PR-AUC (average precision) with Normal as the positive class, as the
    authors' scripts report it. The trainers and the claims both use this one definition."""
    from sklearn.metrics import average_precision_score

    y = np.asarray(is_atypical, bool)
    p = np.asarray(prob_atypical, float)
    if y.all() or not y.any():
        raise ValueError(f"fold metrics need both classes among the {y.size} images")
    return {
        "balanced_accuracy": balanced_accuracy(y, p),
        "auroc": auroc(y, p),
        # A sum of precision x recall steps: float noise can put a perfect fold at 1 + 2e-16,
        # which a results set refuses (metrics lie in [0, 1]).
        "pr_auc": min(1.0, float(average_precision_score(~y, 1.0 - p))),
    }


PER_SAMPLE_METRICS = {
    "balanced_accuracy": balanced_accuracy,
    "auroc": auroc,
    "sensitivity": lambda y, p: sensitivity_specificity(y, p)[0],
    "specificity": lambda y, p: sensitivity_specificity(y, p)[1],
}


def bootstrap_prediction_ci(
    is_atypical,
    probs_by_fold,
    metric: str,
    confidence: float = 0.95,
    n_resamples: int = 999,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(estimate, low, high) of a fold-averaged metric, resampling images (same draw in every fold).

    The resampling is stratified by class (each class's images drawn from that class, its count
    kept), so that no resample lacks a class: balanced accuracy and AUROC stay defined even on a
    test set with few atypical figures; a class of one image is that image in every resample.
    is_atypical: bool array (images,); probs_by_fold: float array (folds x images), every fold's
    model scoring the same images. Raises ValueError when a class is absent."""
    y = np.asarray(is_atypical, bool)
    p = np.atleast_2d(np.asarray(probs_by_fold, float))
    fn = PER_SAMPLE_METRICS[metric]
    if y.all() or (~y).all():
        raise ValueError(f"{metric} needs both classes among the images")
    by_class = (np.flatnonzero(y), np.flatnonzero(~y))
    drawn = tuple(idx for idx in by_class if idx.size > 1)
    fixed = [idx for idx in by_class if idx.size == 1]

    def stat(*resampled):
        idx = np.concatenate([*resampled, *fixed]).astype(int)
        return float(np.mean([fn(y[idx], row[idx]) for row in p]))

    estimate = stat(*drawn)
    if not drawn:  # one image of each class: nothing to resample
        return estimate, estimate, estimate
    res = sps.bootstrap(
        drawn,
        stat,
        vectorized=False,
        paired=False,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return estimate, float(res.confidence_interval.low), float(res.confidence_interval.high)


def paired_shift(
    new, old, *, confidence: float = 0.95, floor: float = 0.005
) -> tuple[float, float]:
    """(mean fold-wise difference new - old, its margin) for two runs on the same folds.

    margin = max(floor, t * s_d / sqrt(n)), the half-width of the paired t interval: a shift
    beyond it is more than the runs' fold-to-fold disagreement explains."""
    d = np.asarray(new, float) - np.asarray(old, float)
    if d.size < 2:
        raise ValueError("a paired shift needs at least two folds on each side")
    t = sps.t.ppf(0.5 + confidence / 2, d.size - 1)
    return float(d.mean()), max(floor, float(t * d.std(ddof=1) / math.sqrt(d.size)))


# ---------------------------------------------------------------------------- tolerances
def equivalence_margin(
    s_ref: float, n_ref: int, n_obs: int, *, floor: float = 0.005, k: float = 2.0
) -> float:
    """delta = max(floor, k * s_ref * sqrt(1/n_ref + 1/n_obs))."""
    return max(floor, k * s_ref * math.sqrt(1.0 / n_ref + 1.0 / n_obs))


@dataclass(frozen=True)
class Judgement:
    status: str
    low: float
    high: float
    note: str = ""


def judge_mean(observed: float, expected: float, delta: float) -> Judgement:
    """Equivalence test of a mean against the paper's value with margin delta."""
    lo, hi = expected - delta, expected + delta
    where = "within" if lo <= observed <= hi else "beyond"
    note = f"{observed - expected:+.4f} from the paper, {where} the tolerance ±{delta:.4f}"
    if observed > hi:
        return Judgement(BETTER, lo, hi, note)
    if observed < lo:
        return Judgement(FAILED, lo, hi, note)
    return Judgement(PASSED, lo, hi, note)


def std_interval(
    expected_pop_std: float,
    n_ref: int,
    n_obs: int,
    *,
    confidence: float = 0.95,
    floor: float = 1e-4,
) -> tuple[float, float]:
    """Interval for the population std (ddof=0) of n_obs folds if the true sigma is the paper's.

    The paper's std (ddof=0 over n_ref folds) becomes a ddof=1 sigma; a ddof=1 sample std of n_obs
    folds then satisfies (n_obs-1) s^2 / sigma^2 ~ chi2(n_obs-1). Bounds go back to ddof=0 and
    widen by `floor` (the 4-decimal printing).
    """
    if n_obs < 2:
        raise ValueError("a standard deviation needs at least 2 folds")
    sigma = expected_pop_std * math.sqrt(n_ref / (n_ref - 1))
    df = n_obs - 1
    a = 1 - confidence
    lo1 = sigma * math.sqrt(sps.chi2.ppf(a / 2, df) / df)
    hi1 = sigma * math.sqrt(sps.chi2.ppf(1 - a / 2, df) / df)
    to_pop = math.sqrt((n_obs - 1) / n_obs)
    return max(0.0, lo1 * to_pop - floor), hi1 * to_pop + floor


def judge_std(observed_pop_std: float, low: float, high: float) -> Judgement:
    if observed_pop_std > high:
        return Judgement(FAILED, low, high, f"above the tolerance interval [{low:.4f}, {high:.4f}]")
    if observed_pop_std < low:
        return Judgement(
            BETTER,
            low,
            high,
            f"steadier folds: below the tolerance interval [{low:.4f}, {high:.4f}]",
        )
    return Judgement(PASSED, low, high, f"inside the tolerance interval [{low:.4f}, {high:.4f}]")


def difference_margin(sd_a: float, n_a: int, sd_b: float, n_b: int, *, k: float = 2.0) -> float:
    """Noise margin for the gap between two fold means: k * sqrt(s_a^2/n_a + s_b^2/n_b)."""
    return k * math.sqrt(sd_a**2 / n_a + sd_b**2 / n_b)


def printed_tolerance(expected: float, step: float, rel: float = 0.0) -> float:
    """Half a unit of the printed last digit, or rel * |expected|, whichever is larger."""
    return max(step / 2.0, rel * abs(expected))


def within_tolerance(observed, expected, tolerance: Mapping | None) -> bool:
    """Judge a counted figure: exact, abs, rel, or printed (the paper's rounding)."""
    rule = (tolerance or {}).get("rule", "exact")
    if observed is None:
        return False
    if rule == "exact":
        if isinstance(expected, list) and isinstance(observed, list | tuple):
            return list(observed) == list(expected)
        return observed == expected
    if rule == "printed":
        decimals = int(tolerance.get("decimals", 0))
        return abs(float(observed) - float(expected)) <= 0.5 * 10.0**-decimals + 1e-9
    if rule == "abs":
        return abs(float(observed) - float(expected)) <= float(tolerance["value"])
    if rule == "rel":
        return abs(float(observed) - float(expected)) <= float(tolerance["value"]) * abs(
            float(expected)
        )
    raise ValueError(f"tolerance rule {rule!r} does not apply to counted figures")
