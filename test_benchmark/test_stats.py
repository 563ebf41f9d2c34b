"""Statistics against values computed by hand (exact small-sample p-values, chi-square bounds)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from harness import stats as st


def test_wilcoxon_exact_all_positive():
    # 5 positive differences: the exact two-sided p is 2 / 2^5 = 0.0625 (never below 0.05).
    r = st.wilcoxon_paired([0, 0, 0, 0, 0], [0.1, 0.2, 0.3, 0.4, 0.5])
    assert r.pvalue == pytest.approx(0.0625)
    assert r.shift == pytest.approx(0.3) and r.n_x == 5 and not r.significant()
    assert (r.effect, r.higher, r.n_tied) == (1.0, "y", 0)  # all signed ranks positive


def test_wilcoxon_35_pairs_all_one_way_is_tiny():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.55, 0.65, 35)
    r = st.wilcoxon_paired(x, x + rng.uniform(0.05, 0.2, 35))
    assert r.pvalue == pytest.approx(2 / 2**35)  # exact: only the all-positive sign pattern
    assert r.significant()


def test_mann_whitney_exact_separated():
    # x entirely above y, 3 vs 3: two-sided exact p = 2 / C(6,3) = 0.1, P(X > Y) = 1.
    r = st.mann_whitney([4, 5, 6], [1, 2, 3])
    assert r.pvalue == pytest.approx(0.1)
    assert r.effect == 1.0 and r.statistic == 9 and r.higher == "x"


def test_wilcoxon_many_tied_pairs_go_to_the_higher_side():
    """20 pairs, 12 tied, B higher in the other 8: the median difference is 0, yet the signed
    ranks (and the claim) give the win to B, not to the first argument A."""
    a = np.full(20, 0.70)
    b = np.concatenate([np.full(12, 0.70), 0.70 + np.linspace(0.01, 0.08, 8)])
    assert np.median(b - a) == 0.0
    r = st.wilcoxon_paired(a, b)
    assert (r.higher, r.n_tied, r.effect) == ("y", 12, 1.0) and r.shift > 0
    assert r.pvalue == pytest.approx(2 / 2**8)  # exact: the 8 pairs that differ, all one way
    assert st.wilcoxon_paired(b, a).higher == "x"


def test_wilcoxon_p_comes_from_the_pairs_that_differ():
    """One pair differs among 35: no evidence (p = 1), not the normal approximation's 0.32."""
    r = st.wilcoxon_paired(np.zeros(35), np.r_[np.zeros(34), 0.01])
    assert (r.pvalue, r.higher, r.n_tied) == (1.0, "y", 34)
    r = st.wilcoxon_paired(np.zeros(35), np.r_[np.zeros(30), 0.01 * np.arange(1, 6)])
    assert r.pvalue == pytest.approx(2 / 2**5) and not r.significant()  # exact on 5 pairs


def test_wilcoxon_statistic_is_the_smaller_signed_rank_sum():
    d = np.array([0.0, 0.3, -0.1, 0.2, -0.2, 0.5, 0.0])
    r_plus, r_minus = st.signed_rank_sums(d)
    # |d| ranks: 0.1 -> 1, 0.2 and 0.2 -> 2.5 each, 0.3 -> 4, 0.5 -> 5; the zeros are left out
    assert (r_plus, r_minus) == (11.5, 3.5)
    r = st.wilcoxon_paired(np.zeros(7), d)
    assert r.statistic == min(r_plus, r_minus) and r.effect == pytest.approx(8 / 15)


def test_mann_whitney_no_winner_when_ranks_balance():
    r = st.mann_whitney([1, 2, 3], [3, 2, 1])
    assert (r.effect, r.higher, r.pvalue) == (0.5, None, 1.0)
    r = st.mann_whitney([0.5] * 15, [0.5] * 35)
    assert (r.effect, r.higher, r.pvalue, r.n_tied) == (0.5, None, 1.0, 15 * 35)


def test_paired_lengths_checked():
    with pytest.raises(ValueError):
        st.wilcoxon_paired([1, 2], [1])


def test_equivalence_margin_known_value():
    assert st.equivalence_margin(0.01, 5, 5) == pytest.approx(2 * 0.01 * math.sqrt(0.4))
    assert st.equivalence_margin(0.001, 5, 5) == 0.005  # the floor


def test_judge_mean_three_ways():
    assert st.judge_mean(0.80, 0.80, 0.01).status == st.PASSED
    assert st.judge_mean(0.82, 0.80, 0.01).status == st.BETTER
    assert st.judge_mean(0.78, 0.80, 0.01).status == st.FAILED


def test_std_interval_matches_chi_square():
    lo, hi = st.std_interval(0.02, 5, 5, floor=0.0)
    sigma = 0.02 * math.sqrt(5 / 4)
    assert lo == pytest.approx(sigma * math.sqrt(sps.chi2.ppf(0.025, 4) / 4) * math.sqrt(4 / 5))
    assert hi == pytest.approx(sigma * math.sqrt(sps.chi2.ppf(0.975, 4) / 4) * math.sqrt(4 / 5))
    assert lo < 0.02 < hi
    assert st.judge_std(0.02, lo, hi).status == st.PASSED
    assert st.judge_std(hi * 1.01, lo, hi).status == st.FAILED
    assert st.judge_std(lo * 0.5, lo, hi).status == st.BETTER


def test_bootstrap_mean_ci():
    v = [0.80, 0.81, 0.82, 0.79, 0.83]
    lo, hi = st.bootstrap_mean_ci(v)
    assert lo < np.mean(v) < hi and hi - lo < 0.04
    assert st.bootstrap_mean_ci([0.5, 0.5]) == (0.5, 0.5)


def test_sensitivity_specificity_and_auroc():
    y = np.array([True, True, False, False, False])
    p = np.array([0.9, 0.4, 0.6, 0.2, 0.1])
    sens, spec = st.sensitivity_specificity(y, p)
    assert (sens, spec) == (0.5, pytest.approx(2 / 3))
    assert st.balanced_accuracy(y, p) == pytest.approx((0.5 + 2 / 3) / 2)
    assert st.auroc(y, p) == pytest.approx(5 / 6)  # 5 of 6 atypical-normal pairs ordered
    assert st.sensitivity_specificity([True, False], [0.5, 0.49]) == (1.0, 1.0)  # >= 0.5 atypical


def test_bootstrap_prediction_ci_covers_estimate():
    rng = np.random.default_rng(1)
    y = rng.random(200) < 0.3
    probs = np.vstack([np.clip(y * 0.4 + rng.random(200) * 0.6, 0, 1) for _ in range(3)])
    est, lo, hi = st.bootstrap_prediction_ci(y, probs, "auroc", n_resamples=199)
    assert lo <= est <= hi and 0.5 < est <= 1


def test_bootstrap_prediction_ci_is_stratified_by_class():
    """Two atypical images among 60: an unstratified resample often lacks them (NaN interval)."""
    y = np.zeros(60, bool)
    y[:2] = True
    probs = np.linspace(0.9, 0.1, 60)[np.newaxis, :]
    est, lo, hi = st.bootstrap_prediction_ci(y, probs, "balanced_accuracy", n_resamples=199)
    assert np.isfinite([lo, hi]).all() and lo <= est <= hi
    with pytest.raises(ValueError, match="both classes"):
        st.bootstrap_prediction_ci(np.ones(5, bool), probs[:, :5], "auroc")


def test_printed_tolerance():
    assert st.printed_tolerance(307e6, 1e6, 0.005) == pytest.approx(1.535e6)
    assert st.printed_tolerance(86.6e6, 1e5, 0.0) == pytest.approx(5e4)


def test_paired_shift():
    old = np.array([0.80, 0.82, 0.78, 0.81, 0.79])
    assert st.paired_shift(old - 0.01, old) == pytest.approx((-0.01, 0.005))  # floor: no noise
    noisy = old + np.array([0.02, -0.02, 0.03, -0.03, 0.0])
    shift, margin = st.paired_shift(noisy, old)
    assert shift == pytest.approx(0.0) and margin > 0.02
    with pytest.raises(ValueError, match="two folds"):
        st.paired_shift([0.5], [0.4])


def test_wilcoxon_of_identical_samples_is_p_one(recwarn):
    """Two strategies scoring alike in every fold (e.g. both at chance) show no difference."""
    r = st.wilcoxon_paired([0.5] * 35, [0.5] * 35)
    assert r.pvalue == 1.0 and not r.significant() and r.effect == 0.0 and r.higher is None
    assert r.n_tied == 35
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
