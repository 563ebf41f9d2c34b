"""Prediction-level analyses (harness.analysis) against hand-computed answers and sklearn.

The hand-built example: 6 images (3 atypical), 2 folds. Every expected number below was worked
out on paper from these probabilities (see the comments), not by running the code.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, recall_score, roc_auc_score

from harness import analysis, stats
from harness.paths import InputError
from harness.results import FoldRow, Prediction, ResultsError, ResultsSet, load_results_set

IMAGES = ("i1.png", "i2.png", "i3.png", "i4.png", "i5.png", "i6.png")
ATYPICAL = np.array([True, True, True, False, False, False])
FOLD1 = np.array([0.92, 0.64, 0.33, 0.44, 0.23, 0.05])  # called atypical: i1, i2
FOLD2 = np.array([0.72, 0.46, 0.78, 0.12, 0.64, 0.17])  # called atypical: i1, i3, i5


def results_set(probs_by_fold, *, images=IMAGES, atypical=ATYPICAL, dataset="AMi-Br",
                model="UNI", method="lora", per_fold_images=None) -> ResultsSet:  # fmt: skip
    """An in-memory results set of one configuration on one test set."""
    rows, preds = [], []
    for fold, probs in enumerate(probs_by_fold, start=1):
        names = per_fold_images[fold - 1] if per_fold_images else images
        rows.append(FoldRow(model, method, dataset, fold, 0.5, 0.5))
        preds += [
            Prediction(model, method, dataset, fold, name, "Atypical" if y else "Normal", float(p))
            for name, y, p in zip(names, atypical, probs, strict=True)
        ]
    return ResultsSet("hand", None, tuple(rows), tuple(preds))


@pytest.fixture()
def hand():
    return results_set([FOLD1, FOLD2])


def test_ensemble_beside_fold_mean_hand_example(hand):
    (row,) = analysis.ensemble_metrics(hand)
    ba, auc = row["balanced_accuracy"], row["auroc"]
    # fold 1: sens 2/3, spec 1 -> 5/6; fold 2: sens 2/3, spec 2/3 -> 2/3
    assert ba["per_fold"] == pytest.approx([5 / 6, 2 / 3])
    assert ba["fold_mean"] == pytest.approx(0.75)
    assert ba["fold_std"] == pytest.approx(np.std([5 / 6, 2 / 3], ddof=1), abs=1e-6)
    # ensemble [.82, .55, .555, .28, .435, .11] calls exactly i1-i3 atypical
    assert ba["ensemble"] == pytest.approx(1.0)
    # each fold: 8 of 9 (atypical, normal) pairs ranked right (0.33 < 0.44; 0.46 < 0.64)
    assert auc["per_fold"] == pytest.approx([8 / 9, 8 / 9])
    assert auc["ensemble"] == pytest.approx(1.0)
    assert row["n_images"] == 6 and row["folds"] == [1, 2]


def test_sensitivity_specificity_hand_example(hand):
    (row,) = analysis.sensitivity_specificity(hand)
    assert row["sensitivity"]["per_fold"] == pytest.approx([2 / 3, 2 / 3])
    assert row["specificity"]["per_fold"] == pytest.approx([1.0, 2 / 3])
    assert row["sensitivity"]["fold_mean"] == pytest.approx(2 / 3)
    assert row["specificity"]["fold_mean"] == pytest.approx(5 / 6)


def test_expected_calibration_error_hand_example(hand):
    (row,) = analysis.calibration(hand)
    # fold 1: six bins of one image: (.08 + .36 + .67 + .44 + .23 + .05) / 6
    # fold 2: bins {.72,.78} (atypical), {.46}, {.12,.17}, {.64}: (2*.25 + .54 + 2*.145 + .64) / 6
    assert row["ece_per_fold"] == pytest.approx([1.83 / 6, 1.97 / 6])
    assert row["ece_fold_mean"] == pytest.approx(3.8 / 12)
    # ensemble: {.82}, {.55, .555}, {.28}, {.435}, {.11}: (.18 + 2*.4475 + .28 + .435 + .11) / 6
    assert row["ece_ensemble"] == pytest.approx(1.9 / 6)
    bins = row["ensemble_bins"]
    assert [b["n"] for b in bins] == [1, 1, 1, 2, 1]
    assert bins[3] == pytest.approx(
        {"low": 0.5, "high": 0.6, "n": 2, "mean_prob": 0.5525, "frac_atypical": 1.0}
    )
    assert "10 equal-width bins" in row["binning"] and "(0.9, 1]" in row["binning"]


def test_calibration_bins_match_sklearn_and_a_perfect_model_has_zero_ece():
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(3)
    p = rng.uniform(size=500)
    y = rng.uniform(size=500) < p
    out = analysis.expected_calibration_error(y, p, n_bins=10)
    frac, mean = calibration_curve(y, p, n_bins=10)
    assert [b["frac_atypical"] for b in out["bins"]] == pytest.approx(list(frac))
    assert [b["mean_prob"] for b in out["bins"]] == pytest.approx(list(mean))
    assert sum(b["n"] for b in out["bins"]) == 500
    # independent: bins [lo, lo + 0.1) (no random value sits on an edge), weighted gaps
    expected = 0.0
    for lo in np.arange(10) / 10:
        m = (p >= lo) & (p < lo + 0.1)
        if m.any():
            expected += m.sum() / 500 * abs(p[m].mean() - y[m].mean())
    assert out["ece"] == pytest.approx(expected)
    labels = np.array([False, False, True, True])
    assert analysis.expected_calibration_error(labels, labels.astype(float))["ece"] == 0.0


def test_metrics_agree_with_sklearn_on_random_predictions():
    rng = np.random.default_rng(0)
    y = rng.uniform(size=(5, 200)) < 0.3
    y[:] = y[0]
    probs = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    rs = results_set(list(probs), images=[f"{i}.png" for i in range(200)], atypical=y[0])
    (ens,) = analysis.ensemble_metrics(rs)
    (ss,) = analysis.sensitivity_specificity(rs)
    called = probs >= 0.5
    assert ens["balanced_accuracy"]["per_fold"] == pytest.approx(
        [balanced_accuracy_score(y[0], c) for c in called], abs=1e-6
    )
    assert ens["auroc"]["per_fold"] == pytest.approx(
        [roc_auc_score(y[0], p) for p in probs], abs=1e-6
    )
    assert ens["auroc"]["ensemble"] == pytest.approx(roc_auc_score(y[0], probs.mean(0)), abs=1e-6)
    assert ss["sensitivity"]["per_fold"] == pytest.approx(
        [recall_score(y[0], c) for c in called], abs=1e-6
    )
    assert ss["specificity"]["per_fold"] == pytest.approx(
        [recall_score(~y[0], ~c) for c in called], abs=1e-6
    )


def test_no_validation_predictions_means_not_available(hand):
    assert analysis.threshold_comparison(hand) == {
        "available": False,
        "reason": "not available: the results set holds no validation predictions",
    }


def test_threshold_chosen_on_validation_hand_example(hand):
    # validation: atypical .3, .35; normal .1, .2 -> 0.3 separates them (BA 1); 0.35 gives 0.75
    assert analysis.select_threshold([1, 1, 0, 0], [0.3, 0.35, 0.1, 0.2]) == pytest.approx(0.3)
    # BA 1 at 0.9 and at 0.5: the tie goes to 0.5
    assert analysis.select_threshold([1, 0], [0.9, 0.1]) == 0.5
    validation = {("UNI", "lora", 1): ([1, 1, 0, 0], [0.3, 0.35, 0.1, 0.2])}
    out = analysis.threshold_comparison(hand, validation)
    (row,) = out["rows"]
    assert out["available"] and "fold(s) 2" in row["note"]
    validation[("UNI", "lora", 2)] = ([1, 0], [0.9, 0.1])
    (row,) = analysis.threshold_comparison(hand, validation)["rows"]
    assert row["thresholds"] == pytest.approx([0.3, 0.5])
    # fold 1 at 0.3 calls i1-i4 atypical: sens 1, spec 2/3
    assert row["balanced_accuracy_at_chosen"] == pytest.approx([5 / 6, 2 / 3])
    assert row["balanced_accuracy_at_half"] == pytest.approx([5 / 6, 2 / 3])


def test_folds_on_different_images_are_refused():
    rs = results_set([FOLD1, FOLD2], per_fold_images=[IMAGES, ("x.png", *IMAGES[1:])])
    with pytest.raises(ResultsError, match="fold 2 predicts other images"):
        analysis.ensemble_metrics(rs)
    no_preds = ResultsSet("bare", None, (FoldRow("UNI", "lora", "AMi-Br", 1, 0.5, 0.5),))
    with pytest.raises(ResultsError, match="holds no per-image predictions"):
        analysis.calibration(no_preds)


def test_one_class_test_set_is_said_not_defined():
    rs = results_set([FOLD1], atypical=np.ones(6, bool))
    (row,) = analysis.ensemble_metrics(rs)
    assert row["note"] == analysis.ONE_CLASS and "balanced_accuracy" not in row


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_reliability_figure_written_atomically(hand, tmp_path, suffix):
    out = analysis.reliability_figure(analysis.calibration(hand), tmp_path / f"rel{suffix}")
    head = out.read_bytes()[:200]
    assert head.startswith(b"\x89PNG") if suffix == ".png" else b"<svg" in head or b"<?xml" in head
    assert [p.name for p in tmp_path.iterdir()] == [f"rel{suffix}"]
    with pytest.raises(InputError, match=r"rel\.pdf: unknown figure format"):
        analysis.reliability_figure(analysis.calibration(hand), tmp_path / "rel.pdf")


def test_results_set_written_and_read_gives_the_same_numbers(hand, tmp_path):
    from harness.results import write_results_set

    rows = [
        {**r.__dict__, **stats.fold_metrics(ATYPICAL, p)}
        for r, p in zip(hand.rows, (FOLD1, FOLD2), strict=True)
    ]
    folder = write_results_set(tmp_path / "set", rows, predictions=hand.predictions)
    loaded = load_results_set(folder)
    assert analysis.ensemble_metrics(loaded) == analysis.ensemble_metrics(hand)
