"""Prediction-level analyses of a results set's `predictions.csv` (plain data + figures).

Each function takes a `harness.results.ResultsSet` whose `predictions` are present and returns
lists of plain dicts (JSON-ready: str, int, float, None), one per configuration and test set
(a *cell*: model, method, test set):

* `ensemble_metrics`: the fold ensemble (the mean `prob_atypical` of the fold models per image)
  beside the mean over folds, balanced accuracy and AUROC from `harness.stats.fold_metrics` (the
  one metric definition of the harness; paper §4, PROTOCOL.md "metrics").
* `calibration`: expected calibration error per fold, its fold mean and the ensemble's, with the
  binning stated in every row (`binning()`); `reliability_figure` draws the reliability diagrams.
* `sensitivity_specificity`: of the atypical class per fold and their mean, as the paper prints
  them in §5 ("sensitivity = 0.7511, specificity = 0.8760 of the atypical class").
* `threshold_comparison`: the 0.5 threshold against one chosen on each fold's validation images;
  results sets hold no validation predictions today, so it says so instead of inventing them.

Decisions are those of `harness.stats`: an image is called atypical when
`prob_atypical >= THRESHOLD` (the authors' scripts call Normal when sigmoid(logit) > 0.5).
A problem with the predictions (folds that predict different images) raises
`harness.results.ResultsError` naming `predictions.csv`.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness import paths, stats
from harness.results import ResultsError, ResultsSet

THRESHOLD = 0.5
ECE_BINS = 10
NO_VALIDATION = "not available: the results set holds no validation predictions"
FIGURE_FORMATS = ("png", "svg")
# Figures are drawn to be read at their natural size in the HTML report (a page at most
# MAX_FIGURE_PX wide): every text at least MIN_FONT_PT points at FIGURE_DPI dots per inch.
FIGURE_DPI = 100
MIN_FONT_PT = 9
MAX_FIGURE_PX = 1400
LEGEND_INSIDE_MAX = 6  # more entries than this go into one legend below the panels
ONE_CLASS = "not defined: the test set has images of one class only"


def binning(n_bins: int = ECE_BINS) -> str:
    """How `expected_calibration_error` bins, in words (printed beside every ECE)."""
    w = 1.0 / n_bins
    return (
        f"{n_bins} equal-width bins of prob_atypical, [0, {w:g}], ({w:g}, {2 * w:g}], ..., "
        f"({1 - w:g}, 1] (scikit-learn calibration_curve, strategy 'uniform'); ECE = sum over "
        "non-empty bins of (images in the bin / all images) * |mean prob_atypical - fraction "
        "atypical|"
    )


@dataclass(frozen=True)
class Cell:
    """One configuration's predictions on one test set, every fold on the same images.

    `images`: n image names (sorted); `is_atypical`: bool array (n,), the set's label;
    `probs`: float64 array (folds, n) of prob_atypical; `folds`: the fold numbers, in row order.
    """

    model: str
    method: str
    dataset: str
    folds: tuple[int, ...]
    images: tuple[str, ...]
    is_atypical: np.ndarray
    probs: np.ndarray

    @property
    def ensemble(self) -> np.ndarray:
        """The fold ensemble's prob_atypical per image: the mean over the fold models, (n,)."""
        return self.probs.mean(axis=0)

    @property
    def both_classes(self) -> bool:
        return bool(self.is_atypical.any() and not self.is_atypical.all())

    def key(self) -> dict:
        return {"model": self.model, "method": self.method, "dataset": self.dataset}


def predictions_file(results: ResultsSet) -> str:
    """The set's predictions.csv, for error messages."""
    return str(results.path / "predictions.csv") if results.path else "predictions.csv"


def prediction_cells(results: ResultsSet) -> list[Cell]:
    """Every (configuration, test set) with predictions, in the set's order.

    Raises ResultsError (naming predictions.csv) when the set holds no predictions, or when the
    folds of one cell predict different images or give one image different labels: a fold
    ensemble and per-image comparisons need the same images in every fold.
    """
    if not results.predictions:
        raise ResultsError(
            f"results set {results.name!r} holds no per-image predictions (predictions.csv); "
            "prediction-level analyses need them"
        )
    cells = []
    for model, method in results.configurations:
        for dataset in results.datasets:
            by_fold = results.predictions_for(model, method, dataset)
            if not by_fold:
                continue
            folds = tuple(by_fold)
            images, labels, _ = by_fold[folds[0]]
            for fold in folds[1:]:
                other, other_labels, _ = by_fold[fold]
                if other != images or not np.array_equal(other_labels, labels):
                    raise ResultsError(
                        f"{predictions_file(results)}: {model} | {method} | {dataset}: "
                        f"fold {fold} predicts other images or labels than fold {folds[0]} "
                        f"({len(other)} vs {len(images)} images); a fold ensemble needs the "
                        "same images in every fold"
                    )
            probs = np.stack([by_fold[f][2] for f in folds]).astype(np.float64)
            cells.append(Cell(model, method, dataset, folds, tuple(images), labels, probs))
    return cells


def _float(value: float | None) -> float | None:
    """A plain float (JSON-ready), unrounded."""
    return None if value is None else float(value)


def _mean_std(values: Iterable[float]) -> tuple[float, float]:
    v = np.asarray(list(values), float)
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def _fold_summary(values, ensemble: float | None = None) -> dict:
    """per_fold values, their fold_mean and fold_std (ddof=1), and the ensemble's if given."""
    values = [float(v) for v in values]
    mean, std = _mean_std(values)
    out = {"per_fold": values, "fold_mean": mean, "fold_std": std}
    return out if ensemble is None else {**out, "ensemble": float(ensemble)}


def _cell_rows(results: ResultsSet, metrics_of) -> list[dict]:
    """One row per cell: its key, n_images, folds and `metrics_of(cell)`, or a note when the
    test set has one class only (the metrics are not defined)."""
    rows = []
    for cell in prediction_cells(results):
        row = {**cell.key(), "n_images": len(cell.images), "folds": list(cell.folds)}
        rows.append(
            {**row, **metrics_of(cell)} if cell.both_classes else {**row, "note": ONE_CLASS}
        )
    return rows


def ensemble_metrics(results: ResultsSet) -> list[dict]:
    """Per cell: balanced accuracy and AUROC of each fold, their mean and std (ddof=1), and of
    the fold ensemble (mean prob_atypical of the fold models per image), all from
    `stats.fold_metrics` (threshold 0.5; AUROC identical for either positive class)."""

    def metrics_of(cell: Cell) -> dict:
        per_fold = [stats.fold_metrics(cell.is_atypical, p) for p in cell.probs]
        ens = stats.fold_metrics(cell.is_atypical, cell.ensemble)
        return {
            metric: _fold_summary([m[metric] for m in per_fold], ens[metric])
            for metric in ("balanced_accuracy", "auroc")
        }

    return _cell_rows(results, metrics_of)


# ----------------------------------------------------------------------------- calibration
def expected_calibration_error(is_atypical, prob_atypical, n_bins: int = ECE_BINS) -> dict:
    """ECE of prob_atypical against the label (atypical = 1), binned as `binning()` states.

    Inputs: bool/0-1 array (n,), float array (n,) in [0, 1]. Returns {"ece": float, "bins":
    [{"low", "high", "n", "mean_prob", "frac_atypical"} for each non-empty bin]}. The per-bin
    means come from `sklearn.calibration.calibration_curve` (strategy "uniform"); the counts use
    the same bin assignment (right-closed bins, the first also closed on the left).
    """
    from sklearn.calibration import calibration_curve

    y = np.asarray(is_atypical, bool)
    p = np.asarray(prob_atypical, float)
    if y.size == 0:
        raise ValueError("calibration needs at least one image")
    frac, mean_prob = calibration_curve(y, p, n_bins=n_bins, strategy="uniform", pos_label=True)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    counts = np.bincount(np.searchsorted(edges[1:-1], p), minlength=n_bins)
    filled = np.flatnonzero(counts)
    weights = counts[filled] / y.size
    return {
        "ece": float(np.sum(weights * np.abs(mean_prob - frac))),
        "bins": [
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "n": int(counts[b]),
                "mean_prob": float(mp),
                "frac_atypical": float(fr),
            }
            for b, mp, fr in zip(filled, mean_prob, frac, strict=True)
        ],
    }


def calibration(results: ResultsSet, n_bins: int = ECE_BINS) -> list[dict]:
    """Per cell: ECE of each fold model, their mean, and the fold ensemble's ECE with its bins
    (for the reliability diagram); `binning` states how the bins were formed."""
    rows = []
    for cell in prediction_cells(results):
        per_fold = [expected_calibration_error(cell.is_atypical, p, n_bins) for p in cell.probs]
        ens = expected_calibration_error(cell.is_atypical, cell.ensemble, n_bins)
        rows.append(
            {
                **cell.key(),
                "n_images": len(cell.images),
                "binning": binning(n_bins),
                "ece_per_fold": [_float(c["ece"]) for c in per_fold],
                "ece_fold_mean": _float(np.mean([c["ece"] for c in per_fold])),
                "ece_ensemble": _float(ens["ece"]),
                "ensemble_bins": ens["bins"],
            }
        )
    return rows


# -------------------------------------------------------------------- sensitivity/specificity
def sensitivity_specificity(results: ResultsSet) -> list[dict]:
    """Per cell: sensitivity and specificity of the atypical class (atypical = positive) at the
    0.5 threshold for each fold, their means and stds (ddof=1), via
    `stats.sensitivity_specificity`; as the paper prints them in §5."""

    def metrics_of(cell: Cell) -> dict:
        pairs = [stats.sensitivity_specificity(cell.is_atypical, p, THRESHOLD) for p in cell.probs]
        return {
            name: _fold_summary(pair[i] for pair in pairs)
            for i, name in enumerate(("sensitivity", "specificity"))
        }

    return _cell_rows(results, metrics_of)


# -------------------------------------------------------------------------------- threshold
def select_threshold(is_atypical, prob_atypical) -> float:
    """The threshold on prob_atypical that maximises balanced accuracy on validation images.

    Candidates are `sklearn.metrics.roc_curve`'s thresholds (every distinct score; an image is
    atypical when prob_atypical >= threshold), plus 0.5; among equally good thresholds the one
    closest to 0.5 wins. Inputs: arrays (n,) with both classes; raises ValueError otherwise.
    """
    from sklearn.metrics import roc_curve

    y = np.asarray(is_atypical, bool)
    p = np.asarray(prob_atypical, float)
    if y.all() or not y.any():
        raise ValueError("choosing a threshold needs validation images of both classes")
    fpr, tpr, thresholds = roc_curve(y, p, drop_intermediate=False)
    finite = np.isfinite(thresholds)
    candidates = np.append(thresholds[finite], THRESHOLD)
    sens_spec = [stats.sensitivity_specificity(y, p, t) for t in candidates]
    bacc = np.array([(s + c) / 2 for s, c in sens_spec])
    best = np.flatnonzero(np.isclose(bacc, bacc.max(), rtol=0, atol=1e-12))
    return float(candidates[best[np.argmin(np.abs(candidates[best] - THRESHOLD))]])


def threshold_comparison(
    results: ResultsSet, validation: Mapping[tuple[str, str, int], tuple] | None = None
) -> dict:
    """Balanced accuracy at 0.5 against a threshold chosen on each fold's validation images.

    `validation` maps (model, method, fold) to (is_atypical, prob_atypical) arrays of that fold's
    validation images. Results sets keep no validation predictions today; without them the
    answer is {"available": False, "reason": NO_VALIDATION} and no number is made up.
    Otherwise {"available": True, "rows": [per cell: per-fold thresholds, balanced accuracy at
    0.5 and at the chosen threshold, their fold means]}; cells whose folds lack validation
    predictions are listed with a note.
    """
    if not validation:
        return {"available": False, "reason": NO_VALIDATION}
    rows = []
    for cell in prediction_cells(results):
        row = {**cell.key(), "folds": list(cell.folds)}
        lacking = [f for f in cell.folds if (cell.model, cell.method, f) not in validation]
        if lacking or not cell.both_classes:
            note = ONE_CLASS if not cell.both_classes else None
            note = note or f"{NO_VALIDATION} for fold(s) {', '.join(map(str, lacking))}"
            rows.append({**row, "note": note})
            continue
        chosen, at_half, at_chosen = [], [], []
        for fold, p in zip(cell.folds, cell.probs, strict=True):
            t = select_threshold(*validation[(cell.model, cell.method, fold)])
            chosen.append(t)
            at_half.append(stats.balanced_accuracy(cell.is_atypical, p, THRESHOLD))
            at_chosen.append(stats.balanced_accuracy(cell.is_atypical, p, t))
        row.update(
            thresholds=[_float(t) for t in chosen],
            balanced_accuracy_at_half=[_float(v) for v in at_half],
            balanced_accuracy_at_chosen=[_float(v) for v in at_chosen],
            fold_mean_at_half=_float(np.mean(at_half)),
            fold_mean_at_chosen=_float(np.mean(at_chosen)),
        )
        rows.append(row)
    return {"available": True, "rows": rows}


# ---------------------------------------------------------------------------------- figures
def figure_format(path: str | os.PathLike) -> str:
    """ "png" or "svg" from a figure file's suffix; InputError naming the file otherwise."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FIGURE_FORMATS:
        raise paths.InputError(
            f"{path}: unknown figure format {path.suffix or '(none)'!r} (use .png or .svg)"
        )
    return fmt


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Write a matplotlib figure atomically as PNG or SVG (by the file's suffix) and close it.

    Raises InputError for any other suffix, naming the file."""
    import matplotlib.pyplot as plt

    try:
        fmt = figure_format(path)
    except paths.InputError:
        plt.close(fig)
        raise
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=FIGURE_DPI)
    plt.close(fig)
    return paths.atomic_write(path, buf.getvalue())


def place_legends(fig, axes, numbers: list[dict[str, str]]) -> None:
    """Legends of panels that share their entries (one line per configuration).

    Up to LEGEND_INSIDE_MAX entries: one legend per panel, each label followed by that panel's
    number from `numbers` (one dict label -> text per panel, e.g. the AUROC). More entries: one
    legend below the panels without the numbers (the report's tables carry them). The figure
    must use the constrained layout. Text at MIN_FONT_PT."""
    labels = {label for ax in axes for label in ax.get_legend_handles_labels()[1]}
    if len(labels) <= LEGEND_INSIDE_MAX:
        for ax, nums in zip(axes, numbers, strict=True):
            handles, names = ax.get_legend_handles_labels()
            ax.legend(handles, [f"{n} ({nums[n]})" if n in nums else n for n in names],
                      fontsize=MIN_FONT_PT, loc="lower right")  # fmt: skip
        return
    shown: dict[str, object] = {}
    for ax in axes:
        for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
            shown.setdefault(name, handle)
    fig.legend(list(shown.values()), list(shown), loc="outside lower center", ncol=3,
               fontsize=MIN_FONT_PT, frameon=False)  # fmt: skip


def reliability_figure(rows: list[dict], path: str | os.PathLike) -> Path | None:
    """Reliability diagrams from `calibration(...)` rows: one panel per test set, one line per
    configuration (its fold ensemble: fraction atypical against mean prob_atypical per bin),
    ECE in the legend (`place_legends`); written atomically (.png or .svg). None when `rows` is
    empty."""
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from harness.claims import config_label

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    width = min(MAX_FIGURE_PX / FIGURE_DPI, 4.6 * len(datasets))
    fig, axes = plt.subplots(1, len(datasets), figsize=(width, 5.4), squeeze=False,
                             layout="constrained")  # fmt: skip
    numbers = []
    for ax, dataset in zip(axes[0], datasets, strict=True):
        numbers.append({})
        for r in (r for r in rows if r["dataset"] == dataset):
            xs = [b["mean_prob"] for b in r["ensemble_bins"]]
            ys = [b["frac_atypical"] for b in r["ensemble_bins"]]
            label = config_label(r["model"], r["method"])
            ax.plot(xs, ys, "o-", ms=4, lw=1.2, label=label)
            numbers[-1][label] = f"ECE {r['ece_ensemble']:.3f}"
        ax.plot([0, 1], [0, 1], ":", color="0.6", lw=0.8)
        ax.set(title=dataset, xlabel="mean prob_atypical in the bin",
               ylabel="fraction atypical in the bin", xlim=(0, 1), ylim=(0, 1))  # fmt: skip
    place_legends(fig, axes[0], numbers)
    bins = rows[0]["binning"].split(" of prob_atypical")[0]
    fig.suptitle(f"Reliability of the fold ensembles ({bins} of prob_atypical)", fontsize=10)
    return save_figure(fig, path)
