"""The report's figures: the forest plot of Table 3 and the ROC curves as in Figure 2
(matplotlib, drawn to be read at their natural size in the HTML page)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness import analysis
from harness import stats as st
from harness.claims import (
    TABLE3_CONFIGS,
    ClaimResult,
    Context,
    config_label,
    extra_configs,
    split_config,
)
from harness.results import TEST_SETS

# ---------------------------------------------------------------------------------- figures
VERDICT_COLOURS = {
    st.PASSED: "tab:green",
    st.BETTER: "tab:blue",
    st.FAILED: "tab:red",
    st.INCONCLUSIVE: "tab:olive",
    st.NOT_RUN: "0.6",
}


def _table3_expectations(results: list[ClaimResult]) -> dict:
    """(model, method, dataset, metric) -> (expected mean, band, verdict of the mean) from the
    Table 3 mean claims; band: the verdict's own tolerance interval (details 'low', 'high', as
    `table_cell` judged it), None when the verdict has none (not run, inconclusive)."""
    out = {}
    for r in results:
        c = r.claim
        if c.kind == "table_cell" and c.section == "Table 3" and c.args.stat == "mean":
            p, d = c.args, r.verdict.details
            band = (d["low"], d["high"]) if "low" in d and "high" in d else None
            out[(p.model, p.method, p.dataset, p.metric)] = (float(c.expected), band, r.status)
    return out


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def forest_plot(results: list[ClaimResult], ctx: Context, path: Path) -> Path | None:
    """Table 3 as a forest plot: fold values, observed mean, the paper's value and the tolerance
    band its mean claim was judged with (the verdict's details 'low'-'high', so band and verdict
    agree; none for a verdict without one), coloured by the mean's verdict (green passed, red
    failed, blue better). The set's configurations outside Table 3 (a user's model, `claims --add`)
    follow below a line, without a paper value. None without any configuration in the set."""
    expect = _table3_expectations(results)
    rs = ctx.results
    if rs is None or not expect:
        return None
    configs = [c for c in TABLE3_CONFIGS if rs.has(*split_config(c))]
    n_table3 = len(configs)
    configs += extra_configs(ctx)  # a user's model: fold values and mean, no paper value
    if not configs:
        return None
    plt = _pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    metrics = ("balanced_accuracy", "auroc")
    fig, axes = plt.subplots(
        2, 3, figsize=(13.8, 2.4 + 0.55 * len(configs)), sharey=True, layout="constrained"
    )
    ys = np.arange(len(configs))[::-1]
    # a line between the strategies of Table 3 (wherever rows are missing) and before the extras
    methods = [split_config(c)[1] for c in configs[:n_table3]]
    separators = {i for i in range(1, n_table3) if methods[i] != methods[i - 1]} | {n_table3}
    seen = set()
    for row, metric in enumerate(metrics):
        for col, dataset in enumerate(TEST_SETS):
            ax = axes[row, col]
            for y, config in zip(ys, configs, strict=True):
                model, method = split_config(config)
                vals = rs.values(model, method, dataset, metric)
                if vals.size:
                    ax.scatter(vals, np.full(vals.size, y), s=9, color="0.6", zorder=2)
                    ax.plot([vals.mean()], [y], "o", color="black", ms=5, zorder=3)
                exp = expect.get((model, method, dataset, metric))
                if exp:
                    paper, band, status = exp
                    if band is not None:
                        seen.add(status)
                        ax.plot(band, [y, y], lw=6, alpha=0.35, color=VERDICT_COLOURS[status],
                                solid_capstyle="butt", zorder=1)  # fmt: skip
                    ax.plot([paper], [y], "|", color="tab:purple", ms=12, mew=2, zorder=4)
            ax.set_title(f"{dataset}: {'balanced accuracy' if row == 0 else 'AUROC'}")
            ax.grid(axis="x", alpha=0.3)
            for sep in separators:
                if 0 < sep < len(configs):
                    ax.axhline(len(configs) - sep - 0.5, color="0.85", lw=0.8)
    for row in range(2):
        axes[row, 0].set_yticks(ys, [config_label(*split_config(c)) for c in configs])
    handles = [
        Line2D([], [], ls="", marker="o", ms=4, color="0.6", label="fold"),
        Line2D([], [], ls="", marker="o", ms=5, color="black", label="fold mean"),
        Line2D([], [], ls="", marker="|", ms=12, mew=2, color="tab:purple", label="the paper"),
        *(Patch(color=VERDICT_COLOURS[s], alpha=0.35, label=f"tolerance, mean {s}")
          for s in VERDICT_COLOURS if s in seen),
    ]  # fmt: skip
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4),
               fontsize=analysis.MIN_FONT_PT, frameon=False)  # fmt: skip
    return _save(fig, f"Table 3 against results set '{rs.name}'", path)


FPR_GRID = np.linspace(0.0, 1.0, 201)
STRATEGY_COLOURS = {"end_to_end": "tab:blue", "linear_probe": "0.55", "lora": "tab:orange"}


def mean_roc(is_atypical_by_fold, prob_by_fold) -> tuple[np.ndarray, float]:
    """The fold-averaged ROC curve and the mean AUROC (atypical = positive).

    is_atypical_by_fold, prob_by_fold: one 1-D array per fold (bool labels, float
    prob_atypical; a fold's two arrays of one length, both classes present). Returns the TPR
    interpolated on FPR_GRID and averaged over folds, float64 of shape (len(FPR_GRID),) with
    TPR[0] = 0, and the mean of the folds' AUROCs (the paper's Figure 2)."""
    from sklearn.metrics import roc_curve

    tprs, aucs = [], []
    for y, p in zip(is_atypical_by_fold, prob_by_fold, strict=True):
        fpr, tpr, _ = roc_curve(y, p)
        tprs.append(np.interp(FPR_GRID, fpr, tpr))
        aucs.append(st.auroc(y, p))
    tpr = np.mean(tprs, axis=0)
    tpr[0] = 0.0
    return tpr, float(np.mean(aucs))


def roc_plot(ctx: Context, path: Path) -> Path | None:
    """Figure 2 for a results set with per-image predictions: one panel per test set, one
    fold-averaged ROC curve per configuration, coloured by strategy."""
    rs = ctx.results
    if rs is None or not rs.predictions:
        return None
    datasets = [d for d in rs.datasets if any(rs.predictions_for(m, k, d)
                                              for m, k in rs.configurations)]  # fmt: skip
    if not datasets:
        return None
    plt = _pyplot()
    width = min(analysis.MAX_FIGURE_PX / analysis.FIGURE_DPI, 4.6 * len(datasets))
    fig, axes = plt.subplots(1, len(datasets), figsize=(width, 5.4), squeeze=False,
                             layout="constrained")  # fmt: skip
    numbers = []
    for ax, dataset in zip(axes[0], datasets, strict=True):
        numbers.append({})
        for model, method in rs.configurations:
            folds = rs.predictions_for(model, method, dataset)
            if not folds or any(y.all() or not y.any() for _, y, _ in folds.values()):
                continue
            tpr, auc = mean_roc(
                [y for _, y, _ in folds.values()], [p for _, _, p in folds.values()]
            )
            label = config_label(model, method)
            ax.plot(FPR_GRID, tpr, lw=1.2, color=STRATEGY_COLOURS.get(method, "black"),
                    label=label)  # fmt: skip
            numbers[-1][label] = f"{auc:.3f}"
        ax.plot([0, 1], [0, 1], ":", color="0.7", lw=0.8)
        ax.set(title=dataset, xlabel="false-positive rate (normal called atypical)",
               ylabel="true-positive rate (atypical found)", xlim=(0, 1), ylim=(0, 1.01))  # fmt: skip
    analysis.place_legends(fig, axes[0], numbers)
    title = (
        f"ROC curves of results set '{rs.name}' (as the paper's Figure 2), mean over folds;\n"
        "AUROC in brackets; blue = end-to-end, grey = linear probe, orange = LoRA"
    )
    drawn = {label for panel in numbers for label in panel}
    missing = [c for c in rs.configurations if config_label(*c) not in drawn]
    if missing:  # e.g. the paper's rows in a merged set: per-fold metrics, no predictions
        title += (
            f"\n{len(missing)} configuration(s) without per-image predictions not drawn, "
            f"e.g. {config_label(*missing[0])}"
        )
    return _save(fig, title, path)


def _save(fig, title: str, path: Path) -> Path:
    """Title the figure and write it as `analysis.save_figure` does (atomic, FIGURE_DPI)."""
    fig.suptitle(title, fontsize=10)
    return analysis.save_figure(fig, path)


FIGURES = {  # name -> (heading, alt text)
    "forest": ("Table 3 at a glance", "Forest plot of Table 3"),
    "roc": ("ROC curves (Figure 2)", "Fold-averaged ROC curves per test set"),
    "experts": ("Models among the experts", "Balanced accuracy of experts and models"),
    "reliability": ("Reliability diagrams", "Reliability diagrams of the fold ensembles"),
}
TOP_FIGURES = ("forest", "roc")  # shown before the claim sections; the others in the analyses


def draw_figures(
    results: list[ClaimResult], ctx: Context, analyses: dict, folder: Path, stem: str
) -> dict:
    """name -> written PNG path, for the figures this results set can show."""
    made = {
        "forest": forest_plot(results, ctx, folder / f"{stem}-forest.png"),
        "roc": roc_plot(ctx, folder / f"{stem}-roc.png"),
    }
    if analyses and analyses.get("available"):
        from harness import experts

        ex = analyses["experts"]
        if ex.get("comparisons"):
            made["experts"] = experts.experts_figure(ex, folder / f"{stem}-experts.png")
        made["reliability"] = analysis.reliability_figure(
            analyses["calibration"]["rows"], folder / f"{stem}-reliability.png"
        )
    return {k: v for k, v in made.items() if v is not None}
