"""The claim-by-claim report: a short terminal summary, markdown, HTML, JSON and JUnit XML.

Written for a pathologist as much as for an engineer: every row reads "the paper says ..., we
observe ..., verdict", grouped by the paper's sections, with the deviation ledger at the end.
For a results set with per-image predictions (`predictions.csv`), md, html and json add the
prediction-level analyses of `harness.analysis` and `harness.experts` (models among the experts,
fold ensemble vs fold mean, calibration, sensitivity and specificity of the atypical class):
reported, never judged, since the paper states no number for them.

`amibr-bench claims` prints `to_summary` and writes md, html and json into one folder
(`write_reports`); `render` makes one format. Figures are drawn to be read at their natural size
in the HTML page (`analysis.FIGURE_DPI`, text of at least `analysis.MIN_FONT_PT` points).
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import math
import re
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np

from harness import PAPER, __version__, analysis, paths, precision
from harness import stats as st
from harness.claims import (
    TABLE3_CONFIGS,
    ClaimResult,
    Context,
    RegistryError,
    build_context,
    config_label,
    count_statuses,
    evaluate_all,
    extra_configs,
    load_claims,
    load_deviations,
    split_config,
)
from harness.paths import InputError
from harness.results import TEST_SETS, ResultsError, ResultsSet

ICON = {st.PASSED: "✅", st.BETTER: "⬆️", st.FAILED: "❌", st.INCONCLUSIVE: "❔", st.NOT_RUN: "⏭️"}
# HTML verdict badges: plain text in a CSS-drawn box, never an emoji (no font needed).
BADGE = {
    st.PASSED: "passed",
    st.BETTER: "better",
    st.FAILED: "failed",
    st.INCONCLUSIVE: "inconclusive",
    st.NOT_RUN: "not run",
}
SECTION_ORDER = (
    "Smoke",
    "Abstract",
    "Datasets",
    "Models (Table 2, §4.1)",
    "Table 3",
    "Results: AMi-Br (§5)",
    "Results: AtNorM-Br (§5)",
    "Results: AtNorM-MD (§5)",
    "Statistical tests (Table 4, §6)",
    "Discussion (§6)",
    "Protocol (§4)",
)
VERDICT_WORDS = {
    st.PASSED: "the results agree with the paper within the tolerance",
    st.BETTER: "the results are better than the paper by more than the tolerance",
    st.FAILED: "the results disagree with the paper beyond the tolerance",
    st.INCONCLUSIVE: "too little evidence to decide (e.g. fewer folds than the paper)",
    st.NOT_RUN: "could not be checked here; the reason says what is missing",
}
HOW_TO_READ = (
    "A Table 3 mean passes when the observed fold mean lies within the tolerance "
    "±δ, δ = max(0.005, 2·s_ref·√(1/n_ref + 1/n_obs)), of the paper's value (s_ref: the "
    "authors' fold standard deviation); a standard deviation passes inside the 95 % chi-square "
    "interval of a 5-fold sample. Rankings count as reversed only beyond the noise of the fold "
    "means. Statistical significance uses α = 0.05 (an assumption: the paper's threshold is lost "
    "from the text). Details: `expected_results/README.md`."
)
FORMATS = ("text", "md", "json", "junit", "html")
SUFFIXES = {"text": ".txt", "md": ".md", "json": ".json", "junit": ".xml", "html": ".html"}
DEFAULT_FORMATS = ("md", "html", "json")  # what `amibr-bench claims` writes without --format
REPORT_STEM = "claims"


# ------------------------------------------------------------------------------ plain data
def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return _jsonable(x.item())
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def result_dict(r: ClaimResult) -> dict:
    """One claim's verdict as a plain dict (an element of the JSON report's `claims`)."""
    c, v = r.claim, r.verdict
    return _jsonable(
        {
            "id": c.id,
            "status": v.status,
            "expected": c.expected,
            "observed": v.observed,
            "source": c.source,
            "statement": c.statement,
            "reason": v.reason,
            "section": c.section,
            "tolerance": c.tolerance,
            "kind": c.kind,
            "needs": c.needs,
            "known_contradiction": c.known_contradiction,
            "confirmed_contradiction": r.confirmed_contradiction,
            "unexpected": r.unexpected,
            "details": v.details,
        }
    )


def format_expected(r: ClaimResult) -> str:
    """The paper's value in words ('307M', 'Virchow2 (LoRA) > ...', 'significant, LoRA higher')."""
    c, e = r.claim, r.claim.expected
    if c.kind in ("parameter_count",):
        return f"{e / 1e9:g}B" if e >= 1e9 else f"{e / 1e6:g}M"
    if c.kind == "table_cell":
        return f"{e:.4f}"
    if c.kind == "value_range":
        return f"{e[0]:.2f}–{e[1]:.2f}"
    if c.kind == "ranking":
        first = " > ".join(config_label(*split_config(x)) for x in e)
        return ("lowest: " if c.params.get("from") == "bottom" else "") + first
    if c.kind == "significance" and isinstance(e, dict):
        sig = {
            True: f"significant (p < {c.tolerance.get('alpha', st.ALPHA)})",
            None: "p-value lost from the text",
            False: "not significant",
        }[e.get("significant")]
        higher = {"end_to_end": "baselines", "linear_probe": "linear probing", "lora": "LoRA"}
        return f"{sig}; {higher.get(e.get('higher'), e.get('higher'))} higher"
    if isinstance(e, float):
        return f"{e:g}"
    return str(e)


def _summary(results: list[ClaimResult]) -> tuple[dict, str]:
    counts = count_statuses(results)
    line = " · ".join(f"{n} {s}" for s, n in counts.items()) + f" ({len(results)} claims)"
    return counts, line


def _sections(results: list[ClaimResult]) -> list[tuple[str, list[ClaimResult]]]:
    groups: dict[str, list[ClaimResult]] = defaultdict(list)
    for r in results:
        groups[r.claim.section].append(r)
    order = {s: i for i, s in enumerate(SECTION_ORDER)}
    return sorted(groups.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))


def _tally(items: list[ClaimResult]) -> str:
    return ", ".join(f"{n} {s}" for s, n in count_statuses(items).items() if n)


def _self_reference(results: list[ClaimResult], ctx: Context) -> str:
    """On the authors' own results set (tier paper), Table 3 cells restate the numbers they were
    read from; on any other set this note does not apply and is empty."""
    if ctx.results is None or ctx.results.manifest.get("tier") != "paper":
        return ""
    n = sum(Path(r.claim.file).name == "table3.yaml" and r.status == st.PASSED for r in results)
    return (
        f"{n} of the passes are Table 3 cells, whose expected values were read from these same "
        "per-fold numbers: on `paper` they only confirm that the numbers and the printed table "
        "agree; they test a reproduction when judged on a harness results set."
    )


def set_label(rs: ResultsSet | None) -> str:
    """A results set by name and path, 'paper (.../expected_results/paper)', so that two sets of
    one name tell apart; a merged set (`claims --add`) names the sets it was made from."""
    if rs is None:
        return "none"
    return f"{rs.name} ({_where(rs)})"


def _where(rs: ResultsSet) -> str:
    if rs.path:
        return str(rs.path)
    merged = rs.manifest.get("merged")
    if not merged:
        return "in memory"
    parts = [merged["base"], *merged["added"]]
    names = [f"{p['name']} from {p['path'] or 'memory'}" for p in parts]
    return f"in memory: {names[0]}, with {' and '.join(names[1:])} added"


def _set_description(ctx: Context) -> tuple[str, str]:
    rs = ctx.results
    if rs is None:
        return "none", "no results set"
    where = _where(rs)
    stale = rs.manifest.get("stale") or {}
    if stale:
        where += (
            f"; its store also holds results of an older version of {len(stale)} "
            f"configuration(s) ({', '.join(sorted(stale))}), not used here"
        )
    return f"{rs.name} ({where})", rs.protocol


def _cell_text(r: ClaimResult) -> str:
    v = r.verdict
    if v.status == st.NOT_RUN:
        return f"not run: {v.reason}"
    return v.reason or str(v.observed)


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def report_header(results: list[ClaimResult], ctx: Context | None) -> dict:
    """What the JSON report says around its claims: the results set (name, path, tier, preset,
    data, protocol, provenance from its manifest, or None when unrecorded), the summary counts,
    notes, and the harness version and date that made the report."""
    rs = ctx.results if ctx else None
    m = rs.manifest if rs else {}
    counts = count_statuses(results)
    note = _self_reference(results, ctx) if ctx else ""
    return _jsonable(
        {
            "report": "amibr-bench claim report",
            "paper": dict(PAPER),
            "harness_version": __version__,
            "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "results_set": {
                "name": rs.name if rs else None,
                "path": str(rs.path) if rs and rs.path else None,
                "created": m.get("created"),
                "written_by": m.get("harness_version"),
            },
            "tier": m.get("tier"),
            "preset": m.get("preset"),
            "data": m.get("data"),
            "protocol": rs.protocol if rs else None,
            "provenance": m.get("provenance"),
            "summary": {
                "claims": len(results),
                **counts,
                "known_contradictions_confirmed": sum(r.confirmed_contradiction for r in results),
                "unexpected": sum(r.unexpected for r in results),
            },
            "notes": [note] if note else [],
        }
    )


# ---------------------------------------------------------------------------------- figures
VERDICT_COLOURS = {
    st.PASSED: "tab:green",
    st.BETTER: "tab:blue",
    st.FAILED: "tab:red",
    st.INCONCLUSIVE: "tab:olive",
    st.NOT_RUN: "0.6",
}


def _table3_expectations(results: list[ClaimResult]) -> dict:
    """(model, method, dataset, metric) -> (expected mean, s_ref, n_ref, verdict of the mean)
    from the Table 3 mean claims."""
    out = {}
    for r in results:
        c = r.claim
        if c.kind == "table_cell" and c.section == "Table 3" and c.params.get("stat") == "mean":
            p = c.params
            out[(p["model"], p["method"], p["dataset"], p["metric"])] = (
                float(c.expected),
                float(c.tolerance["s_ref"]),
                int(c.tolerance["n_ref"]),
                r.status,
            )
    return out


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def forest_plot(results: list[ClaimResult], ctx: Context, path: Path) -> Path | None:
    """Table 3 as a forest plot: fold values, observed mean, the paper's value and its tolerance
    band, coloured by the mean's verdict (green passed, red failed, blue better, olive
    inconclusive). The set's configurations outside Table 3 (a user's model, `claims --add`)
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
                    delta = st.equivalence_margin(exp[1], exp[2], max(vals.size, 1))
                    seen.add(exp[3])
                    ax.plot([exp[0] - delta, exp[0] + delta], [y, y], lw=6, alpha=0.35,
                            color=VERDICT_COLOURS[exp[3]], solid_capstyle="butt", zorder=1)  # fmt: skip
                    ax.plot([exp[0]], [y], "|", color="tab:purple", ms=12, mew=2, zorder=4)
            ax.set_title(f"{dataset}: {'balanced accuracy' if row == 0 else 'AUROC'}")
            ax.grid(axis="x", alpha=0.3)
            for sep in (3, 10, n_table3):
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
    """The fold-averaged ROC curve (TPR on FPR_GRID, atypical = positive) and the mean AUROC."""
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


def _figures(
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


# ------------------------------------------------------------------ prediction-level analyses
def prediction_analyses(ctx: Context) -> dict:
    """The prediction-level analyses of the context's results set, as plain data (reported,
    never judged).

    {"available": False, "reason": str} for a set without predictions.csv (or whose folds
    predict different images); otherwise {"available": True, "threshold", "ensemble" (rows of
    `analysis.ensemble_metrics`), "calibration": {"binning", "rows"} (`analysis.calibration`),
    "sensitivity_specificity" (`analysis.sensitivity_specificity`), "threshold_choice"
    (`analysis.threshold_comparison`), "experts" (`experts_analysis`)}.
    """
    rs = ctx.results
    if rs is None or not rs.predictions:
        name = rs.name if rs else "none"
        return {
            "available": False,
            "reason": f"results set '{name}' holds per-fold metrics only, no per-image "
            "predictions (predictions.csv)",
        }
    try:
        out = {
            "available": True,
            "threshold": analysis.THRESHOLD,
            "ensemble": analysis.ensemble_metrics(rs),
            "calibration": {"binning": analysis.binning(), "rows": analysis.calibration(rs)},
            "sensitivity_specificity": analysis.sensitivity_specificity(rs),
            "threshold_choice": analysis.threshold_comparison(rs),
        }
    except ResultsError as exc:
        return {"available": False, "reason": str(exc)}
    out["experts"] = experts_analysis(ctx)
    return _jsonable(out)


def experts_analysis(ctx: Context) -> dict:
    """The set's models placed among the experts (`experts.models_vs_experts`).

    The votes come from the data root (`ctx.data_root`), or from the committed synthetic fixture
    for a set whose test sets are `synthetic:<name>`. Returns {"status": "done", "data_root",
    "data", "threshold", "tie_rule", "comparisons", "skipped"} (a summary `experts.experts_figure`
    draws) or {"status": "not run", "reason"} when the votes are absent or do not fit the
    predictions (the reason is the one-line error)."""
    from harness import experts

    rs = ctx.results
    synthetic = any(d.startswith("synthetic:") for d in rs.datasets)
    root = paths.SYNTHETIC_FIXTURE if synthetic else ctx.data_root
    if root is None or not root.is_dir():
        where = root if synthetic else ctx.data_hint
        return {
            "status": st.NOT_RUN,
            "reason": f"needs the expert votes of the datasets at {where} (--data-root or "
            f"${paths.DATA_ENV})",
        }
    try:
        comparisons, skipped = experts.models_vs_experts(rs, experts.load_vote_tables(root))
    except paths.InputError as exc:
        return {"status": st.NOT_RUN, "reason": str(exc)}
    return {
        "status": "done",
        "data_root": str(root),
        "data": "synthetic" if synthetic else "real",
        "threshold": analysis.THRESHOLD,
        "tie_rule": experts.TIE_RULE,
        "comparisons": comparisons,
        "skipped": skipped,
    }


@dataclass(frozen=True)
class Marked:
    """A table cell with verdict marks after its text: (label, status) pairs (md: icons, html:
    text badges)."""

    text: str
    marks: tuple[tuple[str, str], ...] = ()


def _num(value, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _mean_std(summary: dict | None) -> str:
    """'mean ± std' over folds; a single fold has no spread to show."""
    if not summary:
        return "–"
    if len(summary["per_fold"]) == 1:
        return f"{summary['fold_mean']:.4f} (one fold)"
    return f"{summary['fold_mean']:.4f} ± {summary['fold_std']:.4f}"


def _config(row: dict) -> str:
    return config_label(row["model"], row["method"])


def _short_expert(name: str) -> str:
    digits = "".join(c for c in name if c.isdigit())
    return f"E{digits}" if digits else name


def _experts_blocks(ex: dict) -> list[tuple]:
    blocks: list[tuple] = [("h3", "Models among the experts")]
    if ex["status"] != "done":
        return [*blocks, ("p", f"Not run: {ex['reason']}.")]
    blocks += [
        ("p", f"Expert votes from `{ex['data_root']}` ({ex['data']} data). Balanced accuracy "
              "(atypical = positive) of each expert against the consensus label (the majority "
              "of the votes, their own included), against each other expert and against the "
              "majority of the other experts; of each model, fold mean and fold ensemble at "
              f"threshold {ex['threshold']:g}, against the same labels. Unanimous / split "
              "images: scored against the consensus where all experts agree / do not. Ties: "
              f"{ex['tie_rule']}."),
        ("figure", "experts"),
    ]  # fmt: skip
    for comp in ex["comparisons"]:
        agree = comp["experts"]
        names = agree["experts"]
        pairs = ", ".join(
            f"{_short_expert(c['a'])}–{_short_expert(c['b'])} {_num(c['kappa'], 3)}"
            for c in agree["cohen_kappa"]
        )
        blocks.append(
            ("p", f"**{comp['dataset']}**: {comp['n_images']:,} predicted images, "
                  f"{agree['n_atypical']:,} atypical; all experts agree on "
                  f"{agree['unanimous_n']:,} ({_num(agree['unanimous_pct'], 1)} %). Fleiss' κ "
                  f"{_num(agree['fleiss_kappa'], 3)}; Cohen's κ {pairs} (mean "
                  f"{_num(agree['mean_cohen_kappa'], 3)}).")
        )  # fmt: skip
        head = ["Rater", "vs consensus", *(f"vs {_short_expert(n)}" for n in names),
                "vs the other experts", "unanimous images", "split images"]  # fmt: skip
        rows = []
        for i, name in enumerate(names):
            pair = agree["pairwise_balanced_accuracy"][name]
            by_votes = agree["vs_consensus_by_votes"][i]
            rows.append(
                [f"expert {_short_expert(name)}",
                 _num(agree["vs_consensus"][i]["balanced_accuracy"]),
                 *("–" if other == name else _num(pair.get(other)) for other in names),
                 _num(agree["vs_others"][i]["balanced_accuracy"]),
                 _num(by_votes["unanimous"]["balanced_accuracy"]),
                 _num(by_votes["split"]["balanced_accuracy"])]
            )  # fmt: skip
        for m in comp["models"]:
            for kind, label in (("fold_mean", "fold mean"), ("ensemble", "fold ensemble")):
                s = m[kind]
                rows.append(
                    [f"{config_label(m['model'], m['method'])}, {label}",
                     _num(s["vs"]["consensus"]), *(_num(s["vs"].get(n)) for n in names), "–",
                     _num(s["unanimous"]["balanced_accuracy"]),
                     _num(s["split"]["balanced_accuracy"])]
                )  # fmt: skip
        blocks.append(("table", head, rows))
    if ex["skipped"]:
        blocks.append(
            ("p", f"Not compared: {', '.join(ex['skipped'])} (one annotator, no expert votes).")
        )
    return blocks


def _analyses_blocks(an: dict) -> list[tuple]:
    """The analyses section as neutral blocks: ("h2"|"h3"|"p", text), ("table", head, rows),
    ("figure", name); `_blocks_md` and `_blocks_html` render them."""
    blocks: list[tuple] = [("h2", "Prediction-level analyses (reported, not judged)")]
    if not an["available"]:
        return [*blocks, ("p", f"Not available: {an['reason']}.")]
    blocks.append(
        ("p", "From `predictions.csv`; an image counts as atypical when prob_atypical ≥ "
              f"{an['threshold']:g} (atypical = positive class). The paper states no number for "
              "these figures, so they carry no verdict.")
    )  # fmt: skip
    blocks += _experts_blocks(an["experts"])
    notes = any("note" in r for r in an["ensemble"])
    rows = [
        [_config(r), r["dataset"], str(len(r["folds"])),
         _mean_std(r.get("balanced_accuracy")),
         _num((r.get("balanced_accuracy") or {}).get("ensemble")),
         _mean_std(r.get("auroc")), _num((r.get("auroc") or {}).get("ensemble")),
         *([r.get("note", "")] if notes else [])]
        for r in an["ensemble"]
    ]  # fmt: skip
    blocks += [
        ("h3", "Fold ensemble vs mean over folds"),
        ("p", "The fold ensemble averages the fold models' prob_atypical per image; the fold "
              "mean (± std, ddof=1) averages the folds' metrics, as Table 3 does."),
        ("table", ["Configuration", "Test set", "Folds", "BA, fold mean ± std",
                   "BA, fold ensemble", "AUROC, fold mean ± std", "AUROC, fold ensemble",
                   *(["Note"] if notes else [])], rows),
    ]  # fmt: skip
    cal = an["calibration"]
    rows = [
        [_config(r), r["dataset"], f"{r['n_images']:,}",
         ", ".join(_num(v, 3) for v in r["ece_per_fold"]), _num(r["ece_fold_mean"], 3),
         _num(r["ece_ensemble"], 3)]
        for r in cal["rows"]
    ]  # fmt: skip
    blocks += [
        ("h3", "Calibration"),
        ("p", f"Expected calibration error (ECE) of prob_atypical; binning: {cal['binning']}."),
        ("figure", "reliability"),
        ("table", ["Configuration", "Test set", "Images", "ECE per fold", "ECE, fold mean",
                   "ECE, fold ensemble"], rows),
    ]  # fmt: skip
    notes = any("note" in r for r in an["sensitivity_specificity"])
    rows = [
        [_config(r), r["dataset"], str(len(r["folds"])), _mean_std(r.get("sensitivity")),
         _mean_std(r.get("specificity")),
         ", ".join(f"{a:.3f} / {b:.3f}" for a, b in zip(
             (r.get("sensitivity") or {}).get("per_fold", []),
             (r.get("specificity") or {}).get("per_fold", []), strict=True)) or "–",
         *([r.get("note", "")] if notes else [])]
        for r in an["sensitivity_specificity"]
    ]  # fmt: skip
    blocks += [
        ("h3", "Sensitivity and specificity of the atypical class"),
        ("p", f"Per fold at threshold {an['threshold']:g}, as the paper prints them in §5; "
              "mean ± std over folds (ddof=1)."),
        ("table", ["Configuration", "Test set", "Folds", "Sensitivity, mean ± std",
                   "Specificity, mean ± std", "Per fold (sensitivity / specificity)",
                   *(["Note"] if notes else [])], rows),
    ]  # fmt: skip
    choice = an["threshold_choice"]
    text = f"{an['threshold']:g} against a threshold chosen on each fold's validation images: "
    if not choice["available"]:
        blocks += [("h3", "Decision threshold"), ("p", text + choice["reason"] + ".")]
    else:
        rows = [
            [_config(r), r["dataset"], r.get("note") or ", ".join(_num(t, 3) for t in r["thresholds"]),
             _num(r.get("fold_mean_at_half")), _num(r.get("fold_mean_at_chosen"))]
            for r in choice["rows"]
        ]  # fmt: skip
        blocks += [
            ("h3", "Decision threshold"),
            ("p", text.rstrip(": ") + "."),
            ("table", ["Configuration", "Test set", "Chosen thresholds", "BA at 0.5, fold mean",
                       "BA at the chosen threshold, fold mean"], rows),
        ]  # fmt: skip
    return blocks


def _precision_blocks(results: list[ClaimResult], ctx: Context) -> list[tuple]:
    """The faithful-vs-fast section for a set that carries fast runs (results.FAST_FILE; none
    otherwise): their numbers side by side, then each claim whose verdict the fast rows change
    (`precision.precision_check`, the `compare` of --against), or "no verdict changes"."""
    check = precision.precision_check(ctx, results)
    if not check["available"]:
        return []
    blocks: list[tuple] = [
        ("h2", "Faithful vs fast precision"),
        ("p", "The set's rows are the faithful runs (fp32, as the authors' scripts); it also "
              "carries fast runs of the same configurations (`fast_fold_metrics.csv`). Means "
              "over the folds both finished; Δ = fast − faithful; speed-up = seconds per fold, "
              "faithful / fast."),
        ("table", ["Configuration", "Faithful", "Fast", "Test set", "Folds", "BA faithful → fast",
                   "Δ BA", "AUROC faithful → fast", "Δ AUROC", "s/fold faithful", "s/fold fast",
                   "Speed-up"], [precision.cells(r) for r in check["rows"]]),
    ]  # fmt: skip

    def observed(x) -> str:
        return _num(x) if isinstance(x, float) else "–" if x is None else str(x)

    for v in check["variants"]:
        text = f"Every claim judged again with the {v['variant']} rows in place of the faithful "
        if not v["changes"]:
            blocks.append(("p", text + "ones: no verdict changes."))
            continue
        rows = [
            [f"`{c['id']}`", Marked("", ((c["old"], c["old"]),)),
             Marked("", ((c["new"], c["new"]),)),
             f"{observed(c['old_observed'])} → {observed(c['new_observed'])}", c["reason"]]
            for c in v["changes"]
        ]  # fmt: skip
        blocks += [
            ("p", text + f"ones: {len(rows)} verdict(s) change."),
            ("table", ["Claim", "Faithful", f"Fast ({v['variant']})", "Observed", "Why (fast)"],
             rows),
        ]  # fmt: skip
    return blocks


def _summary_blocks(results: list[ClaimResult], ctx: Context) -> list[tuple]:
    """The counts of each verdict as a table, then who failed and the set-specific note."""
    counts = count_statuses(results)
    rows = [[Marked("", ((s, s),)), str(n), VERDICT_WORDS[s]] for s, n in counts.items()]
    rows.append(["all claims", str(len(results)), ""])
    contra = sum(r.confirmed_contradiction for r in results)
    unexpected = sum(r.unexpected for r in results)
    blocks: list[tuple] = [
        ("h2", "Summary"),
        ("table", ["Verdict", "Claims", "Meaning"], rows),
        ("p", f"Of the {counts[st.FAILED]} failed, {contra} are contradictions the paper's own "
              f"evidence shows (expected); {unexpected} unexpected result(s)."),
    ]  # fmt: skip
    note = _self_reference(results, ctx)
    if note:
        blocks.append(("p", f"Note: {note}"))
    return blocks


def _extra_rows(ctx: Context | None) -> list[list]:
    """Table 3 rows of the set's configurations outside Table 3 (a user's model): the paper
    column empty ('—'), the observed fold mean ± std (ddof=0, as Table 3 prints), no verdict."""
    rows = []
    for config in extra_configs(ctx):
        model, method = split_config(config)
        row: list = [config_label(model, method)]
        for d in TEST_SETS:
            for metric in ("balanced_accuracy", "auroc"):
                vals = ctx.results.values(model, method, d, metric)
                row.append(
                    Marked(f"— → {vals.mean():.4f} ± {vals.std():.4f}") if vals.size else "–"
                )
        rows.append(row)
    return rows


def _table3_blocks(items: list[ClaimResult], ctx: Context | None = None) -> list[tuple]:
    """Table 3 compact: 'paper (mean ± std) → observed', marked with the mean and std verdicts;
    then the set's configurations outside Table 3 (the paper column '—')."""
    cells = {}
    for r in items:
        p = r.claim.params
        cells[(p["model"], p["method"], p["dataset"], p["metric"], p["stat"])] = r
    head = ["Configuration"] + [f"{d} {m}" for d in TEST_SETS for m in ("BA", "AUROC")]
    rows = []
    for config in TABLE3_CONFIGS:
        model, method = split_config(config)
        row: list = [config_label(model, method)]
        for d in TEST_SETS:
            for metric in ("balanced_accuracy", "auroc"):
                m = cells.get((model, method, d, metric, "mean"))
                s = cells.get((model, method, d, metric, "std"))
                if not m or not s:
                    row.append("–")
                    continue
                paper = f"{m.claim.expected:.4f} ± {s.claim.expected:.4f}"
                if m.status == st.NOT_RUN:
                    row.append(f"{paper} → not run")
                    continue
                obs_m = m.verdict.details.get("mean")
                obs_s = m.verdict.details.get("std")
                obs = f"{obs_m:.4f} ± {obs_s:.4f}" if obs_m is not None else "?"
                row.append(Marked(f"{paper} → {obs}", (("mean", m.status), ("std", s.status))))
        rows.append(row)
    extra = _extra_rows(ctx)
    note = (
        f" {len(extra)} configuration(s) of the results set are not rows of Table 3 (the paper "
        "has no number for them: —)."
        if extra
        else ""
    )
    return [
        ("p", "Paper (mean ± std over 5 folds) → observed; marks: the mean's verdict, then the "
              f"std's.{note}"),
        ("table", head, rows + extra),
    ]  # fmt: skip


# ------------------------------------------------------------------------------ markdown
def _cell_md(cell) -> str:
    if not isinstance(cell, Marked):
        return _md_escape(cell)
    marks = [ICON[s] if cell.text else f"{ICON[s]} {label}" for label, s in cell.marks]
    return " ".join([_md_escape(cell.text)] * bool(cell.text) + marks)


def _blocks_md(blocks: list[tuple], plots: dict) -> list[str]:
    out: list[str] = []
    for kind, *rest in blocks:
        if kind in ("h2", "h3"):
            out += [f"{'#' * int(kind[1])} {rest[0]}", ""]
        elif kind == "p":
            out += [rest[0], ""]
        elif kind == "figure":
            if plots.get(rest[0]):
                out += [f"![{FIGURES[rest[0]][1]}]({plots[rest[0]]})", ""]
        elif kind == "table":
            head, rows = rest
            out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            out += ["| " + " | ".join(_cell_md(c) for c in row) + " |" for row in rows]
            out.append("")
    return out


def _rows_md(items: list[ClaimResult]) -> list[str]:
    lines = [
        "| Claim | The paper says | Expected | We observe | Verdict |",
        "|---|---|---|---|---|",
    ]
    for r in items:
        verdict = f"{ICON[r.status]} {r.status}"
        if r.confirmed_contradiction:
            verdict += " (contradiction, expected)"
        elif r.unexpected:
            verdict += " (UNEXPECTED)"
        lines.append(
            f"| `{r.claim.id}` | {_md_escape(r.claim.statement)} ({_md_escape(r.claim.source)}) | "
            f"{_md_escape(format_expected(r))} | {_md_escape(_cell_text(r))} | {verdict} |"
        )
    return lines


def to_markdown(
    results: list[ClaimResult],
    ctx: Context,
    deviations: list[dict],
    plots: dict | None = None,
    analyses: dict | None = None,
) -> str:
    """`plots`: figure name (FIGURES) -> image file name beside the report; `analyses`: from
    `prediction_analyses` (computed here when not given)."""
    plots = plots or {}
    analyses = analyses if analyses is not None else prediction_analyses(ctx)
    set_name, protocol = _set_description(ctx)
    contra = [r for r in results if r.confirmed_contradiction]
    unexpected = [r for r in results if r.unexpected]
    out = [
        f"# Claim report — {PAPER['title']}",
        "",
        f"Banerjee et al., {PAPER['venue']} (arXiv {PAPER['arxiv']}), doi {PAPER['doi']}.",
        "",
        f"- **Results set:** {set_name}",
        f"- **Produced by:** {protocol}",
        f"- **Generated:** {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} "
        f"by amibr-bench {__version__}",
        "",
        *_blocks_md(_summary_blocks(results, ctx), plots),
        "## How to read this report",
        "",
        "Each claim is a statement of the paper with its expected value and a tolerance. Verdicts:",
        "",
        *[f"- {ICON[s]} **{s}** — {w}." for s, w in VERDICT_WORDS.items()],
        "",
        HOW_TO_READ,
        "",
    ]
    if contra:
        out += ["## Claims the paper's own evidence contradicts", ""]
        for r in contra:
            out += [
                f"- **`{r.claim.id}`** ({r.claim.source}) — the paper says: "
                f"*{r.claim.statement}*. We observe: {r.verdict.reason}. "
                f"Why: {r.claim.known_contradiction}",
                "",
            ]
    if unexpected:
        out += ["## Unexpected results", ""]
        for r in unexpected:
            what = (
                "a known contradiction no longer fails" if r.claim.known_contradiction else "failed"
            )
            out += [
                f"- **`{r.claim.id}`** ({what}) — the paper says: *{r.claim.statement}*. "
                f"We observe: {r.verdict.reason}",
                "",
            ]
    for name in TOP_FIGURES:
        if plots.get(name):
            out += [f"## {FIGURES[name][0]}", "", f"![{FIGURES[name][1]}]({plots[name]})", ""]
    for section, items in _sections(results):
        out += [f"## {section}", "", f"{len(items)} claims: {_tally(items)}.", ""]
        if section == "Table 3":
            out += [
                *_blocks_md(_table3_blocks(items, ctx), plots),
                "<details><summary>Every Table 3 claim</summary>",
                "",
                *_rows_md(items),
                "",
                "</details>",
                "",
            ]
        else:
            out += [*_rows_md(items), ""]
    out += _blocks_md(_precision_blocks(results, ctx), plots)
    out += _blocks_md(_analyses_blocks(analyses), plots)
    out += [
        "## Deviation ledger: the paper's text vs the authors' code",
        "",
        "| Topic | The paper says | The authors' code does | Consequence | This harness |",
        "|---|---|---|---|---|",
    ]
    for d in deviations:
        out.append(
            "| "
            + " | ".join(
                _md_escape(d.get(k, "")) for k in ("topic", "paper", "code", "impact", "harness")
            )
            + " |"
        )
    out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------------------------- html
_CSS = """body{font-family:system-ui,"Segoe UI","DejaVu Sans",Arial,sans-serif;margin:2em auto;
max-width:1400px;padding:0 1em;color:#222;line-height:1.4}
table{border-collapse:collapse;margin:1em 0;font-size:13px}
td,th{border:1px solid #ccc;padding:4px 6px;vertical-align:top;text-align:left}
th{background:#f2f2f2}tr.passed{background:#f1faf1}tr.failed{background:#fdf0f0}
tr.passed-and-better{background:#eef5fd}tr.inconclusive{background:#fffbea}
tr.not-run{background:#f7f7f7}code{font-size:12px;background:#f3f3f3;padding:0 2px}
.contra{font-style:italic;color:#7a2b00}img{max-width:100%;height:auto}
.badge{display:inline-block;padding:0 6px;margin:1px 0;border-radius:9px;font-size:12px;
font-weight:600;white-space:nowrap;border:1px solid}
.badge.passed{background:#dcf3dc;color:#1c5c1c;border-color:#8cc78c}
.badge.passed-and-better{background:#dceafa;color:#173f73;border-color:#86abd9}
.badge.failed{background:#fadcdc;color:#7d1616;border-color:#d98c8c}
.badge.inconclusive{background:#fbf1cc;color:#5e4a00;border-color:#d6bf6b}
.badge.not-run{background:#ececec;color:#444;border-color:#bbb}
table.meta td:first-child{font-weight:600}.contents{font-size:14px;line-height:1.7}
.nw{white-space:nowrap}"""
_MD_CODE = re.compile(r"`([^`]+)`")
_MD_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_MD_BOLD = re.compile(r"\*\*(.+?)\*\*")
_MD_ITALIC = re.compile(r"(?<![\w*])\*(?=\S)([^*]+?)(?<=\S)\*(?![\w*])")


def _link_html(m: re.Match) -> str:
    href = m[2].replace('"', "&quot;")  # m[2] is escaped already, but for quotes
    return f'<a href="{href}">{m[1]}</a>'


def inline_html(text) -> str:
    """Escape `text` for HTML and turn its inline markdown into tags: `code`, **bold**,
    *italic*, [text](link); nothing of the markdown syntax is left in the page."""
    out = []
    for i, part in enumerate(_MD_CODE.split(str(text))):
        if i % 2:
            out.append(f"<code>{html.escape(part)}</code>")
            continue
        part = html.escape(part, quote=False)
        part = _MD_LINK.sub(_link_html, part)
        part = _MD_BOLD.sub(r"<b>\1</b>", part)
        out.append(_MD_ITALIC.sub(r"<i>\1</i>", part))
    return "".join(out)


def badge(status: str, label: str | None = None) -> str:
    """A verdict as a text badge drawn by CSS (no emoji font needed)."""
    text = BADGE[status] if label in (None, status) else f"{label} {BADGE[status]}"
    return f"<span class='badge {status.replace(' ', '-')}' title='{html.escape(status)}'>{html.escape(text)}</span>"


def _cell_html(cell) -> str:
    if not isinstance(cell, Marked):
        return inline_html(cell)
    marks = " ".join(badge(s, label) for label, s in cell.marks)
    if not cell.text:
        return marks
    lines = cell.text.split(" → ")  # 'paper → observed' on two lines, the marks on a third
    text = "<br>→ ".join(f"<span class='nw'>{inline_html(t)}</span>" for t in lines)
    return f"{text}<br>{marks}" if marks else text


def _img_html(name: str, pngs: dict) -> str:
    if not pngs.get(name):
        return ""
    data = base64.b64encode(pngs[name]).decode()
    return f"<p><img alt='{html.escape(FIGURES[name][1])}' src='data:image/png;base64,{data}'></p>"


def _blocks_html(blocks: list[tuple], pngs: dict) -> list[str]:
    out = []
    for kind, *rest in blocks:
        if kind in ("h2", "h3"):
            out.append(f"<{kind}>{inline_html(rest[0])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{inline_html(rest[0])}</p>")
        elif kind == "figure":
            out.append(_img_html(rest[0], pngs))
        elif kind == "table":
            head, rows = rest
            out.append(
                "<table><tr>" + "".join(f"<th>{inline_html(h)}</th>" for h in head) + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{_cell_html(c)}</td>" for c in row) + "</tr>"
                          for row in rows)
                + "</table>"
            )  # fmt: skip
    return out


def _row_html(r: ClaimResult) -> str:
    note = ""
    if r.confirmed_contradiction:
        note = (
            "<div class='contra'>Contradiction (expected): "
            f"{inline_html(r.claim.known_contradiction)}</div>"
        )
    elif r.unexpected:
        note = "<div class='contra'><b>UNEXPECTED</b></div>"
    return (
        f"<tr class='{r.status.replace(' ', '-')}'><td><code>{html.escape(r.claim.id)}</code></td>"
        f"<td>{inline_html(r.claim.statement)} <small>({inline_html(r.claim.source)})</small></td>"
        f"<td>{inline_html(format_expected(r))}</td><td>{inline_html(_cell_text(r))}{note}</td>"
        f"<td>{badge(r.status)}</td></tr>"
    )


def to_html(
    results: list[ClaimResult],
    ctx: Context,
    deviations: list[dict],
    pngs: dict | None = None,
    analyses: dict | None = None,
) -> str:
    """One self-contained page. `pngs`: figure name (FIGURES) -> PNG bytes, embedded; `analyses`:
    from `prediction_analyses` (computed here when not given). Verdicts are text badges; inline
    markdown of the reasons becomes tags (`inline_html`)."""
    e = html.escape
    pngs = pngs or {}
    analyses = analyses if analyses is not None else prediction_analyses(ctx)
    set_name, protocol = _set_description(ctx)
    contra = [r for r in results if r.confirmed_contradiction]
    unexpected = [r for r in results if r.unexpected]
    parts = [
        f"<h1>Claim report — {e(PAPER['title'])}</h1>",
        f"<p>Banerjee et al., {e(PAPER['venue'])} (arXiv {e(PAPER['arxiv'])}), doi "
        f"{e(PAPER['doi'])}.</p>",
        "<table class='meta'>"
        f"<tr><td>Results set</td><td>{inline_html(set_name)}</td></tr>"
        f"<tr><td>Produced by</td><td>{inline_html(protocol)}</td></tr>"
        f"<tr><td>Generated</td><td>{datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} by "
        f"amibr-bench {e(__version__)}</td></tr></table>",
        *_blocks_html(_summary_blocks(results, ctx), pngs),
        "<h2>How to read this report</h2><p>Each claim is a statement of the paper with its "
        "expected value and a tolerance. Verdicts:</p><ul>",
        *(f"<li>{badge(s)} {e(w)}.</li>" for s, w in VERDICT_WORDS.items()),
        f"</ul><p>{inline_html(HOW_TO_READ)}</p>",
    ]
    if contra:
        parts.append("<h2>Claims the paper's own evidence contradicts</h2><ul>")
        parts += [
            f"<li><code>{e(r.claim.id)}</code> ({inline_html(r.claim.source)}): the paper says "
            f"<i>{inline_html(r.claim.statement)}</i>. We observe: "
            f"{inline_html(r.verdict.reason)}. Why: {inline_html(r.claim.known_contradiction)}"
            "</li>"
            for r in contra
        ]
        parts.append("</ul>")
    if unexpected:
        parts.append("<h2>Unexpected results</h2><ul>")
        parts += [
            f"<li><code>{e(r.claim.id)}</code>: the paper says <i>{inline_html(r.claim.statement)}"
            f"</i>. We observe: {inline_html(r.verdict.reason)}</li>"
            for r in unexpected
        ]
        parts.append("</ul>")
    for name in TOP_FIGURES:
        if pngs.get(name):
            parts += [f"<h2>{e(FIGURES[name][0])}</h2>", _img_html(name, pngs)]
    head = (
        "<table><tr><th>Claim</th><th>The paper says</th><th>Expected</th><th>We observe</th>"
        "<th>Verdict</th></tr>"
    )
    for section, items in _sections(results):
        parts.append(f"<h2>{e(section)}</h2><p>{len(items)} claims: {e(_tally(items))}.</p>")
        rows = "".join(_row_html(r) for r in items)
        if section == "Table 3":
            parts += _blocks_html(_table3_blocks(items, ctx), pngs)
            parts.append(
                f"<details><summary>Every Table 3 claim</summary>{head}{rows}</table></details>"
            )
        else:
            parts.append(f"{head}{rows}</table>")
    parts += _blocks_html(_precision_blocks(results, ctx), pngs)
    parts += _blocks_html(_analyses_blocks(analyses), pngs)
    parts.append(
        "<h2>Deviation ledger: the paper's text vs the authors' code</h2><table><tr>"
        "<th>Topic</th><th>The paper says</th><th>The authors' code does</th>"
        "<th>Consequence</th><th>This harness</th></tr>"
    )
    for d in deviations:
        parts.append(
            "<tr>"
            + "".join(
                f"<td>{inline_html(d.get(k, ''))}</td>"
                for k in ("topic", "paper", "code", "impact", "harness")
            )
            + "</tr>"
        )
    parts.append("</table>")
    title = f"Claim report: {ctx.results.name if ctx.results else 'none'}"
    return _html_page(title, [_with_contents("\n".join(parts))])


def _html_page(title: str, parts: list[str]) -> str:
    """A self-contained page: the report's style sheet, then `parts`."""
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{_CSS}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>"
    )


_H2 = re.compile(r"<h2>(.*?)</h2>")


def _with_contents(page: str) -> str:
    """Give every <h2> an id and list them, linked, after the page's first table."""
    seen: dict[str, int] = {}
    links = []

    def anchor(m: re.Match) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", re.sub(r"<[^>]+>", "", m[1]).lower()).strip("-")
        seen[slug] = seen.get(slug, 0) + 1
        slug = f"{slug}-{seen[slug]}" if seen[slug] > 1 else slug
        links.append(f"<a href='#{slug}'>{m[1]}</a>")
        return f"<h2 id='{slug}'>{m[1]}</h2>"

    page = _H2.sub(anchor, page)
    nav = "<p class='contents'><b>Contents:</b> " + " · ".join(links) + "</p>"
    head, sep, rest = page.partition("</table>")
    return head + sep + nav + rest


# --------------------------------------------------------------------------------- junit
def to_junit(results: list[ClaimResult], ctx: Context | None = None) -> str:
    """One testcase per claim; not run / inconclusive / confirmed contradictions are skipped."""
    counts = count_statuses(results)
    failures = sum(r.unexpected for r in results)
    skipped = (
        counts[st.NOT_RUN]
        + counts[st.INCONCLUSIVE]
        + sum(r.confirmed_contradiction for r in results)
    )
    name = ctx.results.name if ctx and ctx.results else "none"
    suite = ET.Element(
        "testsuite",
        name=f"amibr-bench claims ({name})",
        tests=str(len(results)),
        failures=str(failures),
        errors="0",
        skipped=str(skipped),
    )
    for r in results:
        case = ET.SubElement(suite, "testcase", classname=f"claims.{r.claim.kind}", name=r.claim.id)
        msg = f"{r.claim.statement} — {r.verdict.reason}"
        if r.confirmed_contradiction:
            ET.SubElement(
                case,
                "skipped",
                type="xfail",
                message=f"known contradiction: {r.claim.known_contradiction}",
            )
        elif r.unexpected:
            text = (
                "known contradiction unexpectedly passed: " if r.claim.known_contradiction else ""
            ) + msg
            ET.SubElement(case, "failure", message=text)
        elif r.status in (st.NOT_RUN, st.INCONCLUSIVE):
            ET.SubElement(case, "skipped", message=f"{r.status}: {r.verdict.reason}")
        ET.SubElement(
            case, "system-out"
        ).text = (
            f"status: {r.status}; expected: {format_expected(r)}; observed: {r.verdict.observed}"
        )
    ET.indent(suite)
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"
    )


# ---------------------------------------------------------------------------------- text
def _text_head(results: list[ClaimResult], ctx: Context) -> list[str]:
    name, protocol = _set_description(ctx)
    _, line = _summary(results)
    out = [f"results set: {name}", f"produced by: {protocol}", f"summary: {line}"]
    note = _self_reference(results, ctx)
    return out + ([f"note: {note}", ""] if note else [""])


def to_text(results: list[ClaimResult], ctx: Context) -> str:
    """Terminal report: every judged claim on one line; claims not run counted per section."""
    out = _text_head(results, ctx)
    for section, items in _sections(results):
        not_run = [r for r in items if r.status == st.NOT_RUN and not r.evaluator_error]
        out.append(f"{section}")
        for r in items:
            if r in not_run:
                continue
            flag = " (known contradiction)" if r.claim.known_contradiction else ""
            flag = " (UNEXPECTED)" if r.unexpected else flag
            out.append(f"  {r.status:<17} {r.claim.id}{flag}: {_cell_text(r)}")
        if not_run:
            reasons = Counter(r.verdict.reason for r in not_run)
            reason, n = reasons.most_common(1)[0]
            more = (
                f"; {len(reasons) - 1} other reason(s) in the full report"
                if len(reasons) > 1
                else ""
            )
            out.append(f"  not run           {len(not_run)} claim(s), e.g. {reason} ({n}x){more}")
    return "\n".join(out) + "\n"


SUMMARY_LISTED = 12  # claims listed per verdict in the short summary


def to_summary(results: list[ClaimResult], ctx: Context, written: list[Path] = ()) -> str:
    """The short terminal summary `amibr-bench claims` prints: counts per section, then each
    claim that did not pass (unexpected first), at most SUMMARY_LISTED per kind, and the report
    files written."""
    out = _text_head(results, ctx)
    width = max((len(s) for s, _ in _sections(results)), default=0)
    out += [f"  {section:<{width}}  {_tally(items)}" for section, items in _sections(results)]
    groups = (
        ("unexpected", [r for r in results if r.unexpected]),
        (
            "failed: contradictions the paper's own evidence shows (expected)",
            [r for r in results if r.confirmed_contradiction],
        ),
        ("inconclusive", [r for r in results if r.status == st.INCONCLUSIVE]),
        ("passed-and-better", [r for r in results if r.status == st.BETTER]),
    )
    for title, items in groups:
        if not items:
            continue
        out += ["", f"{title} ({len(items)}):"]
        out += [f"  {r.claim.id}: {_cell_text(r)}" for r in items[:SUMMARY_LISTED]]
        if len(items) > SUMMARY_LISTED:
            out.append(f"  ... {len(items) - SUMMARY_LISTED} more in the full report")
    check = precision.precision_check(ctx, results)
    if check["available"]:
        out += ["", precision.summary_line(check)]
    if written:
        out += ["", "full report:", *(f"  {p}" for p in written)]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------- json
def to_json(
    results: list[ClaimResult], ctx: Context | None = None, analyses: dict | None = None
) -> str:
    """The report as JSON: `report_header` (results set, tier, preset, provenance, summary,
    harness version and date), then `claims` (one `result_dict` each) and `analyses`
    (`prediction_analyses`, computed here when not given)."""
    if analyses is None:
        analyses = prediction_analyses(ctx) if ctx else {"available": False, "reason": "no set"}
    doc = {
        **report_header(results, ctx),
        "claims": [result_dict(r) for r in results],
        "analyses": _jsonable(analyses),
        "faithful_vs_fast": _jsonable(precision.precision_check(ctx, results)),
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


# ------------------------------------------------------------------------------ writing
def _format_text(
    fmt: str, results: list[ClaimResult], ctx: Context, analyses: dict | None, figures: dict
) -> str:
    if fmt == "json":
        return to_json(results, ctx, analyses)
    if fmt == "junit":
        return to_junit(results, ctx)
    if fmt == "text":
        return to_text(results, ctx)
    if fmt == "md":
        plots = {k: p.name for k, p in figures.items()}
        return to_markdown(results, ctx, load_deviations(), plots, analyses)
    if fmt == "html":
        pngs = {k: p.read_bytes() for k, p in figures.items()}
        return to_html(results, ctx, load_deviations(), pngs, analyses)
    raise ValueError(f"unknown format {fmt!r} ({', '.join(FORMATS)})")


def render(
    results: list[ClaimResult], ctx: Context, fmt: str = "md", out: Path | None = None
) -> str:
    """The report text in one format; with `out`, also writes it and (md/html) its figures
    beside it (md links them, html embeds them)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} ({', '.join(FORMATS)})")
    analyses = prediction_analyses(ctx) if fmt in DEFAULT_FORMATS else None
    with tempfile.TemporaryDirectory() as tmp:
        figures = {}
        if fmt == "html" or (fmt == "md" and out is not None):
            folder, stem = (out.parent, out.stem) if out is not None else (Path(tmp), "r")
            figures = _figures(results, ctx, analyses, folder, stem)
        text = _format_text(fmt, results, ctx, analyses, figures)
    if out is not None:
        paths.atomic_write(out, text)
    return text


def write_reports(
    results: list[ClaimResult],
    ctx: Context,
    folder: Path,
    formats: tuple[str, ...] = DEFAULT_FORMATS,
    stem: str = REPORT_STEM,
) -> list[Path]:
    """Write each format to folder/<stem><suffix> (figures once, as <stem>-<name>.png beside
    them); the analyses are computed once. Returns the written report files."""
    folder = Path(folder)
    analyses = prediction_analyses(ctx) if set(formats) & set(DEFAULT_FORMATS) else None
    figures = (
        _figures(results, ctx, analyses, folder, stem) if {"md", "html"} & set(formats) else {}
    )
    written = []
    for fmt in formats:
        text = _format_text(fmt, results, ctx, analyses, figures)
        written.append(paths.atomic_write(folder / f"{stem}{SUFFIXES[fmt]}", text))
    return written


def analyses_report(ctx: Context, folder: Path, stem: str) -> list[Path]:
    """The prediction-level analyses of one results set on their own (no claims), as md, html
    and json in `folder` (the smoke job's real-data subset, whose claims are not judged)."""
    folder = Path(folder)
    analyses = prediction_analyses(ctx)
    figures = _figures([], ctx, analyses, folder, stem)
    name, protocol = _set_description(ctx)
    title = (
        f"Prediction-level analyses of results set {ctx.results.name if ctx.results else 'none'}"
    )
    blocks = [("p", f"Results set: {name}. Produced by: {protocol}."),
              ("figure", "roc"), *_analyses_blocks(analyses)]  # fmt: skip
    md = "\n".join([f"# {title}", "", *_blocks_md(blocks, {k: p.name for k, p in figures.items()})])
    pngs = {k: p.read_bytes() for k, p in figures.items()}
    page = _html_page(title, [f"<h1>{html.escape(title)}</h1>", *_blocks_html(blocks, pngs)])
    doc = {**report_header([], ctx), "analyses": analyses}
    doc.pop("summary")
    texts = {
        ".md": md,
        ".html": page,
        ".json": json.dumps(doc, indent=2, ensure_ascii=False) + "\n",
    }
    return [paths.atomic_write(folder / f"{stem}{suffix}", text) for suffix, text in texts.items()]


# ----------------------------------------------------------------------- command line
def format_of(path: str) -> str:
    """The report format a file name asks for (.md, .html, .json, .xml = junit, .txt = text);
    InputError naming --out otherwise."""
    suffix = Path(path).suffix.lower()
    by_suffix = {v: k for k, v in SUFFIXES.items()} | {".htm": "html", ".markdown": "md"}
    if suffix not in by_suffix:
        raise paths.InputError(
            f"--out {path}: cannot tell the report format from the suffix "
            f"{suffix or '(none)'!r}; give --format ({', '.join(FORMATS)})"
        )
    return by_suffix[suffix]


def default_folder(ctx: Context) -> Path:
    """./reports/<results-set name>/ in the current directory."""
    name = ctx.results.name if ctx.results else "none"
    return Path.cwd() / "reports" / (re.sub(r"[^\w.-]+", "-", name).strip(".-") or "results")


def _writing(target: Path, write):
    """Run `write`; a file system refusal becomes one InputError line naming the path."""
    try:
        return write()
    except OSError as exc:
        raise paths.InputError(
            f"{exc.filename or target}: cannot write the report ({exc.strerror or exc})"
        ) from exc


def write_requested(args, results: list[ClaimResult], ctx: Context) -> None:
    """Where `amibr-bench claims` puts the report.

    Default: the short summary (`to_summary`) on standard output, md, html and json in --out-dir
    (default ./reports/<set>/). `--format X` alone prints X; `--out FILE` writes one format
    (--format, else the file's suffix); `--out -` prints it (md unless --format)."""
    fmt = getattr(args, "format", None)
    out = getattr(args, "out", None)
    out_dir = getattr(args, "out_dir", None)
    if out and out_dir:
        raise paths.InputError("--out and --out-dir: give one of them")
    if out == "-" or (fmt and not out and not out_dir):
        sys.stdout.write(render(results, ctx, fmt or "md"))
        return
    if out:
        path = Path(out)
        fmt = fmt or format_of(out)
        _writing(path, lambda: render(results, ctx, fmt, path))
        print(f"claim report ({_summary(results)[1]}) written to {path}")
        return
    folder = Path(out_dir) if out_dir else default_folder(ctx)
    formats = (fmt,) if fmt else DEFAULT_FORMATS
    written = _writing(folder, lambda: write_reports(results, ctx, folder, formats))
    sys.stdout.write(to_summary(results, ctx, written))


# ---------------------------------------------------------------------- regression check
STANDING = {st.PASSED: 2, st.BETTER: 2, st.INCONCLUSIVE: 1, st.FAILED: 0}  # NOT_RUN: no standing
CHANGES = ("regressed", "moved down", "improved", "moved up", "same", "not comparable")
WORSE = ("regressed", "moved down")


def compare(new: list[ClaimResult], old: list[ClaimResult]) -> list[dict]:
    """Claim by claim, how the verdict moved from `old` to `new` (e.g. a baseline run of the
    harness and the run after a change of model, recipe or dependency).

    change: regressed / improved (the verdict's standing fell or rose: passed > inconclusive >
    failed); moved down / moved up (same verdict, but a Table 3 mean shifted beyond the paired
    95 % interval of its fold-wise differences, `stats.paired_shift`: a real change even while
    the paper's tolerance still holds); same; or not comparable (not run on one side).
    delta: observed new - old."""
    before = {r.claim.id: r for r in old}
    rows = []
    for r in new:
        o = before.get(r.claim.id)
        if o is None:
            continue
        a, b = STANDING.get(o.status), STANDING.get(r.status)
        if a is None or b is None:
            change = "same" if o.status == r.status else "not comparable"
        else:
            change = "regressed" if b < a else "improved" if b > a else "same"
        numbers = [x.verdict.observed for x in (o, r)]
        delta = None
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in numbers):
            delta = float(numbers[1]) - float(numbers[0])
        if change == "same" and _shifted(r, o):
            change = "moved down" if delta < 0 else "moved up"
        rows.append(
            {
                "id": r.claim.id,
                "section": r.claim.section,
                "change": change,
                "old": o.status,
                "new": r.status,
                "old_observed": _jsonable(numbers[0]),
                "new_observed": _jsonable(numbers[1]),
                "delta": delta,
                "reason": r.verdict.reason,
            }
        )
    return rows


def _shifted(new: ClaimResult, old: ClaimResult) -> bool:
    """A Table 3 mean whose folds (the same five on both sides) moved beyond their noise."""
    if new.claim.kind != "table_cell" or new.claim.params.get("stat", "mean") != "mean":
        return False
    a, b = (r.verdict.details.get("folds") or [] for r in (new, old))
    if len(a) != len(b) or len(a) < 2:
        return False
    shift, margin = st.paired_shift(a, b)
    return abs(shift) > margin


def comparison_text(rows: list[dict], new_name: str, old_name: str, fmt: str = "md") -> str:
    """The regression check as markdown or plain text (json: the rows themselves)."""
    if fmt == "json":
        return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
    counts = Counter(r["change"] for r in rows)
    moved = sorted(
        (r for r in rows if r["delta"] and r["id"].startswith("table3.")),
        key=lambda r: -abs(r["delta"]),
    )[:10]
    md = fmt == "md"
    out = [
        f"{'# ' if md else ''}Regression check: {new_name} against {old_name}",
        "",
        " · ".join(f"{counts.get(k, 0)} {k}" for k in CHANGES) + f" ({len(rows)} claims)",
    ]
    for change in (c for c in CHANGES if c != "same"):
        items = [r for r in rows if r["change"] == change]
        if not items:
            continue
        out += ["", f"{'## ' if md else ''}{change} ({len(items)})"]
        for r in items:
            delta = f", {r['delta']:+.4f}" if r["delta"] is not None else ""
            out.append(
                f"{'- ' if md else '  '}{r['id']}: {r['old']} -> {r['new']}{delta}; {r['reason']}"
            )
    if moved:
        out += ["", f"{'## ' if md else ''}largest moves among Table 3 cells"]
        for r in moved:
            out.append(
                f"{'- ' if md else '  '}{r['id']}: {r['old_observed']} -> {r['new_observed']} "
                f"({r['delta']:+.4f}, {r['old']} -> {r['new']})"
            )
    return "\n".join(out) + "\n"


def _cli_compare(args, ctx: Context, results: list[ClaimResult], claims) -> int:
    """`claims --against OLD`: exit 1 when any claim got worse (regressed or moved down)."""
    fmt = getattr(args, "format", "md") or "md"
    if fmt not in ("md", "text", "json"):
        raise ResultsError(f"--against writes md, text or json, not {fmt}")
    old_ctx = build_context(args.against, getattr(args, "data_root", None), ctx.weights_dir)
    rows = compare(results, evaluate_all(claims, old_ctx))
    names = [set_label(c.results) for c in (ctx, old_ctx)]
    text = comparison_text(rows, *names, fmt=fmt)
    if getattr(args, "out", None):
        with _writing_to(args.out):
            paths.atomic_write(args.out, text)
        print(f"regression check written to {args.out}")
    else:
        sys.stdout.write(text)
    return 1 if any(r["change"] in WORSE for r in rows) else 0


@contextlib.contextmanager
def _writing_to(out) -> Iterator[None]:
    """A report that cannot be written where --out says is bad input (exit 2), not a bug."""
    try:
        yield
    except OSError as exc:
        raise InputError(f"{out}: cannot write the report there ({exc.strerror or exc})") from exc


def cli_claims(args) -> int:
    """`amibr-bench claims`: judge every claim. Exit 0 = every verdict as expected, 1 = an
    unexpected verdict (ClaimResult.unexpected: a failure, a known contradiction that passed, an
    evaluator error; with --against: a claim that got worse; with --add: a verdict that changes,
    `harness.whatif`), 2 = bad input (InputError)."""
    try:
        ctx = build_context(
            getattr(args, "results", "paper"),
            getattr(args, "data_root", None),
            getattr(args, "weights_dir", None),
        )
        claims = load_claims()
    except (ResultsError, RegistryError) as exc:
        print(f"amibr-bench: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "add", None):
        from harness import whatif

        return whatif.cli_add(args, ctx, claims)
    results = evaluate_all(claims, ctx)
    if getattr(args, "against", None):
        return _cli_compare(args, ctx, results, claims)
    write_requested(args, results, ctx)
    return 1 if any(r.unexpected for r in results) else 0
