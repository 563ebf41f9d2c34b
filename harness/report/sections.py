"""The report's sections as format-neutral blocks (headings, paragraphs, tables, figures):
the Table 3 view, the prediction-level analyses and the experts (harness.analysis,
harness.experts), the faithful-vs-fast precision comparison (harness.precision)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness import analysis, paths, precision
from harness import stats as st
from harness.claims import (
    TABLE3_CONFIGS,
    ClaimResult,
    Context,
    config_label,
    count_statuses,
    evaluate_all,
    extra_configs,
    split_config,
)
from harness.report.common import (
    VERDICT_WORDS,
    jsonable,
    self_reference,
)
from harness.results import TEST_SETS, ResultsError


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
    return jsonable(out)


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


def analyses_blocks(an: dict) -> list[tuple]:
    """The analyses section as neutral blocks: ("h2"|"h3"|"p", text), ("table", head, rows),
    ("figure", name); `blocks_md` and `blocks_html` render them."""
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


def precision_check(ctx, results) -> dict[str, Any]:
    """The report's faithful-vs-fast section as plain data: {"available": False} for a set
    without fast runs; else {"available": True, "rows": `precision.set_comparison`, "variants": [{"variant",
    "changes": the `report.compare` rows whose verdict differs (old: faithful, new: fast)}]}.
    The claims are judged again (claims.evaluate_all) on `precision.variant_set` for each fast variant;
    `results` are the faithful set's verdicts. Kept in ctx.cache (the formats share it)."""
    rs = ctx.results if ctx is not None else None
    if rs is None or not rs.fast:
        return {"available": False}
    if "precision_check" in ctx.cache:
        return ctx.cache["precision_check"]
    from harness.report.compare import compare  # compare -> writing -> sections: imported late

    claims = [r.claim for r in results]
    variants = []
    for name in sorted(rs.fast):
        cache = {k: v for k, v in ctx.cache.items() if k == "archfacts"}
        fast_ctx = Context(precision.variant_set(rs, name), ctx.data_root, ctx.weights_dir, ctx.data_hint,
                           cache)  # fmt: skip
        changed = [
            row
            for row in compare(evaluate_all(claims, fast_ctx), results)
            if row["old"] != row["new"]
        ]
        variants.append({"variant": name, "changes": changed})
    out = {"available": True, "rows": precision.set_comparison(rs), "variants": variants}
    ctx.cache["precision_check"] = out
    return out


def precision_summary_line(check: Mapping[str, Any]) -> str:
    """The terminal summary's line for a `precision_check`: the verdicts each fast variant
    changes, or that it changes none."""
    parts = []
    for v in check["variants"]:
        if not v["changes"]:
            parts.append(f"{v['variant']}: no verdict changes")
            continue
        listed = ", ".join(f"{c['id']} {c['old']} -> {c['new']}" for c in v["changes"][:5])
        more = f" and {len(v['changes']) - 5} more" if len(v["changes"]) > 5 else ""
        parts.append(f"{v['variant']}: {len(v['changes'])} verdict(s) change ({listed}{more})")
    return "faithful vs fast precision: " + "; ".join(parts)


def precision_blocks(results: list[ClaimResult], ctx: Context) -> list[tuple]:
    """The faithful-vs-fast section for a set that carries fast runs (results.FAST_FILE; none
    otherwise): their numbers side by side, then each claim whose verdict the fast rows change
    (`precision_check`, the `compare` of --against), or "no verdict changes"."""
    check = precision_check(ctx, results)
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


def summary_blocks(results: list[ClaimResult], ctx: Context) -> list[tuple]:
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
    note = self_reference(results, ctx)
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


def table3_blocks(items: list[ClaimResult], ctx: Context | None = None) -> list[tuple]:
    """Table 3 compact: 'paper (mean ± std) → observed', marked with the mean and std verdicts;
    then the set's configurations outside Table 3 (the paper column '—')."""
    cells = {}
    for r in items:
        if r.claim.kind != "table_cell":
            continue
        p = r.claim.args  # typed: `stat` defaults to the mean, model names canonical
        cells[(p.model, p.method, p.dataset, p.metric, p.stat)] = r
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
                paper = f"{float(m.claim.expected):.4f} ± {float(s.claim.expected):.4f}"
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
