"""The claim-by-claim report (markdown, JSON, JUnit XML, HTML; a forest plot and ROC curves).

Written for a pathologist as much as for an engineer: every row reads "the paper says ..., we
observe ..., verdict", grouped by the paper's sections, with the deviation ledger at the end.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import json
import math
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np

from harness import PAPER, __version__, paths
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
    load_claims,
    load_deviations,
    split_config,
)
from harness.paths import InputError
from harness.results import TEST_SETS, ResultsError

ICON = {st.PASSED: "✅", st.BETTER: "⬆️", st.FAILED: "❌", st.INCONCLUSIVE: "❔", st.NOT_RUN: "⏭️"}
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


# ------------------------------------------------------------------------------ plain data
def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def result_dict(r: ClaimResult) -> dict:
    """One claim's verdict as a plain dict (the JSON report's element)."""
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


def _self_reference(results: list[ClaimResult], ctx: Context) -> str:
    """On the paper's own results set, Table 3 cells restate the numbers they were read from."""
    if ctx.results is None or ctx.results.name != "paper":
        return ""
    n = sum(Path(r.claim.file).name == "table3.yaml" and r.status == st.PASSED for r in results)
    return (
        f"{n} of the passes are Table 3 cells, whose expected values were read from these same "
        "per-fold numbers: on `paper` they only confirm that the numbers and the printed table "
        "agree; they test a reproduction when judged on a harness results set."
    )


def _set_description(ctx: Context) -> tuple[str, str]:
    rs = ctx.results
    if rs is None:
        return "none", "no results set"
    where = str(rs.path) if rs.path else "in memory"
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


# ---------------------------------------------------------------------------------- plot
def _table3_expectations(results: list[ClaimResult]) -> dict:
    """(model, method, dataset, metric) -> (expected mean, s_ref) from the Table 3 mean claims."""
    out = {}
    for r in results:
        c = r.claim
        if c.kind == "table_cell" and c.section == "Table 3" and c.params.get("stat") == "mean":
            p = c.params
            out[(p["model"], p["method"], p["dataset"], p["metric"])] = (
                float(c.expected),
                float(c.tolerance["s_ref"]),
                int(c.tolerance["n_ref"]),
            )
    return out


def forest_plot(results: list[ClaimResult], ctx: Context, path: Path) -> Path | None:
    """Table 3 as a forest plot: fold values, observed mean, the paper's value and its margin."""
    expect = _table3_expectations(results)
    rs = ctx.results
    if rs is None or not expect:
        return None
    configs = [c for c in TABLE3_CONFIGS if rs.has(*split_config(c))]
    if not configs:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ("balanced_accuracy", "auroc")
    fig, axes = plt.subplots(2, 3, figsize=(15, 10), sharey=True)
    ys = np.arange(len(configs))[::-1]
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
                    ax.plot(
                        [exp[0] - delta, exp[0] + delta],
                        [y, y],
                        color="tab:red",
                        lw=6,
                        alpha=0.25,
                        solid_capstyle="butt",
                        zorder=1,
                    )
                    ax.plot([exp[0]], [y], "|", color="tab:red", ms=12, mew=2, zorder=4)
            ax.set_title(f"{dataset} — {'balanced accuracy' if row == 0 else 'AUROC'}", fontsize=10)
            ax.grid(axis="x", alpha=0.3)
            for sep in (3, 10):
                if sep < len(configs):
                    ax.axhline(len(configs) - sep - 0.5, color="0.85", lw=0.8)
    axes[0, 0].set_yticks(ys, [config_label(*split_config(c)) for c in configs], fontsize=8)
    axes[1, 0].set_yticks(ys, [config_label(*split_config(c)) for c in configs], fontsize=8)
    title = (
        f"Table 3 vs results set '{rs.name}': grey = folds, black = fold mean, "
        "red tick = paper, red band = tolerance"
    )
    return _save(fig, title, path, fontsize=11, top=0.96)


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = [d for d in rs.datasets if any(rs.predictions_for(m, k, d)
                                              for m, k in rs.configurations)]  # fmt: skip
    if not datasets:
        return None
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 5.6), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        for model, method in rs.configurations:
            folds = rs.predictions_for(model, method, dataset)
            if not folds or any(y.all() or not y.any() for _, y, _ in folds.values()):
                continue
            tpr, auc = mean_roc(
                [y for _, y, _ in folds.values()], [p for _, _, p in folds.values()]
            )
            ax.plot(FPR_GRID, tpr, lw=1.2, color=STRATEGY_COLOURS.get(method, "black"),
                    label=f"{config_label(model, method)} ({auc:.3f})")  # fmt: skip
        ax.plot([0, 1], [0, 1], ":", color="0.7", lw=0.8)
        ax.set(title=dataset, xlabel="false-positive rate (normal called atypical)",
               ylabel="true-positive rate (atypical found)", xlim=(0, 1), ylim=(0, 1.01))  # fmt: skip
        ax.legend(fontsize=6, loc="lower right")
    title = (
        f"ROC curves of results set '{rs.name}' (as the paper's Figure 2): mean over folds, "
        "AUROC in brackets; blue = end to end, grey = linear probe, orange = LoRA"
    )
    return _save(fig, title, path, fontsize=10, top=0.94)


def _save(fig, title: str, path: Path, *, fontsize: int, top: float) -> Path:
    import matplotlib.pyplot as plt

    fig.suptitle(title, fontsize=fontsize)
    fig.tight_layout(rect=(0, 0, 1, top))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return paths.atomic_write(path, buf.getvalue())


FIGURES = (
    ("forest", "Table 3 at a glance", "Forest plot of Table 3"),
    ("roc", "ROC curves (Figure 2)", "Fold-averaged ROC curves per test set"),
)


def _figures(results: list[ClaimResult], ctx: Context, folder: Path, stem: str) -> dict:
    """name -> written PNG path, for the figures this results set can show."""
    made = {
        "forest": forest_plot(results, ctx, folder / f"{stem}-forest.png"),
        "roc": roc_plot(ctx, folder / f"{stem}-roc.png"),
    }
    return {k: v for k, v in made.items() if v is not None}


# ------------------------------------------------------------------------------ markdown
def _table3_matrix_md(results: list[ClaimResult]) -> list[str]:
    cells = {}
    for r in results:
        p = r.claim.params
        if r.claim.section == "Table 3":
            cells[(p["model"], p["method"], p["dataset"], p["metric"], p["stat"])] = r
    head = ["Configuration"] + [f"{d} {m}" for d in TEST_SETS for m in ("BA", "AUROC")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for config in TABLE3_CONFIGS:
        model, method = split_config(config)
        row = [config_label(model, method)]
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
                row.append(f"{paper} → {obs} {ICON[m.status]}{ICON[s.status]}")
        lines.append("| " + " | ".join(row) + " |")
    return lines


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
    results: list[ClaimResult], ctx: Context, deviations: list[dict], plots: dict | None = None
) -> str:
    """`plots`: figure name (FIGURES) -> image file name beside the report."""
    counts, line = _summary(results)
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
        f"- **Summary:** {line}",
        *(
            [f"- **Note:** {_self_reference(results, ctx)}"]
            if _self_reference(results, ctx)
            else []
        ),
        f"- **Of the {counts[st.FAILED]} failed:** {len(contra)} are contradictions the paper's "
        f"own evidence shows (expected); {len(unexpected)} unexpected.",
        "",
        "## How to read this report",
        "",
        "Each claim is a statement of the paper with its expected value and a tolerance. Verdicts:",
        "",
        *[f"- {ICON[s]} **{s}** — {w}." for s, w in VERDICT_WORDS.items()],
        "",
        "A Table 3 mean passes when the observed fold mean lies within "
        "δ = max(0.005, 2·s_ref·√(1/n_ref + 1/n_obs)) of the paper's value (s_ref: the authors' "
        "fold standard deviation); a standard deviation passes inside the 95 % chi-square interval "
        "of a 5-fold sample. Rankings count as reversed only beyond the noise of the fold means. "
        "Statistical significance uses α = 0.05 (an assumption: the paper's threshold is lost from "
        "the text). Details: `expected_results/README.md`.",
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
    for name, title, alt in FIGURES:
        if (plots or {}).get(name):
            out += [f"## {title}", "", f"![{alt}]({plots[name]})", ""]
    for section, items in _sections(results):
        c = count_statuses(items)
        tally = ", ".join(f"{n} {s}" for s, n in c.items() if n)
        out += [f"## {section}", "", f"{len(items)} claims: {tally}.", ""]
        if section == "Table 3":
            out += [
                "Paper (mean ± std over 5 folds) → observed; icons: mean verdict, std verdict.",
                "",
                *_table3_matrix_md(items),
                "",
                "<details><summary>Every Table 3 claim</summary>",
                "",
                *_rows_md(items),
                "",
                "</details>",
                "",
            ]
        else:
            out += [*_rows_md(items), ""]
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
_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}
td,th{border:1px solid #ccc;padding:4px 6px;
vertical-align:top}th{background:#f2f2f2}.passed{background:#e8f6e8}.failed{background:#fbe3e3}
.passed-and-better{background:#e3effb}.inconclusive{background:#fff6d6}.not-run{background:#f0f0f0}
code{font-size:12px}.contra{font-style:italic;color:#7a2b00}img{max-width:100%}"""


def _row_html(r: ClaimResult) -> str:
    e = html.escape
    note = ""
    if r.confirmed_contradiction:
        note = (
            f"<div class='contra'>Contradiction (expected): {e(r.claim.known_contradiction)}</div>"
        )
    elif r.unexpected:
        note = "<div class='contra'><b>UNEXPECTED</b></div>"
    return (
        f"<tr class='{r.status.replace(' ', '-')}'><td><code>{e(r.claim.id)}</code></td>"
        f"<td>{e(r.claim.statement)} <small>({e(r.claim.source)})</small></td>"
        f"<td>{e(format_expected(r))}</td><td>{e(_cell_text(r))}{note}</td>"
        f"<td>{ICON[r.status]} {e(r.status)}</td></tr>"
    )


def to_html(
    results: list[ClaimResult], ctx: Context, deviations: list[dict], pngs: dict | None = None
) -> str:
    """`pngs`: figure name (FIGURES) -> PNG bytes, embedded in the page."""
    e = html.escape
    counts, line = _summary(results)
    set_name, protocol = _set_description(ctx)
    contra = [r for r in results if r.confirmed_contradiction]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>Claim report</title>"
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Claim report — {e(PAPER['title'])}</h1>",
        f"<p>Banerjee et al., {e(PAPER['venue'])} (arXiv {e(PAPER['arxiv'])}).</p><ul>"
        f"<li><b>Results set:</b> {e(set_name)}</li><li><b>Produced by:</b> {e(protocol)}</li>"
        f"<li><b>Generated:</b> {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}, amibr-bench "
        f"{e(__version__)}</li><li><b>Summary:</b> {e(line)} {e(_self_reference(results, ctx))}</li>"
        f"<li><b>Contradictions the paper's own evidence shows:</b> {len(contra)}</li></ul>",
        "<h2>How to read this report</h2><ul>",
    ]
    parts += [f"<li>{ICON[s]} <b>{e(s)}</b> — {e(w)}.</li>" for s, w in VERDICT_WORDS.items()]
    parts.append("</ul>")
    if contra:
        parts.append("<h2>Claims the paper's own evidence contradicts</h2><ul>")
        parts += [
            f"<li><code>{e(r.claim.id)}</code>: the paper says <i>{e(r.claim.statement)}</i>. "
            f"We observe: {e(r.verdict.reason)}. Why: {e(r.claim.known_contradiction)}</li>"
            for r in contra
        ]
        parts.append("</ul>")
    for name, title, alt in FIGURES:
        if (pngs or {}).get(name):
            parts.append(
                f"<h2>{e(title)}</h2><img alt='{e(alt)}' "
                f"src='data:image/png;base64,{base64.b64encode(pngs[name]).decode()}'>"
            )
    head = (
        "<table><tr><th>Claim</th><th>The paper says</th><th>Expected</th><th>We observe</th>"
        "<th>Verdict</th></tr>"
    )
    for section, items in _sections(results):
        c = count_statuses(items)
        tally = ", ".join(f"{n} {s}" for s, n in c.items() if n)
        parts.append(f"<h2>{e(section)}</h2><p>{len(items)} claims: {e(tally)}.</p>")
        rows = "".join(_row_html(r) for r in items)
        if section == "Table 3":
            parts.append(
                f"<details><summary>Every Table 3 claim</summary>{head}{rows}</table></details>"
            )
        else:
            parts.append(f"{head}{rows}</table>")
    parts.append(
        "<h2>Deviation ledger: the paper's text vs the authors' code</h2><table><tr>"
        "<th>Topic</th><th>The paper says</th><th>The authors' code does</th>"
        "<th>Consequence</th><th>This harness</th></tr>"
    )
    for d in deviations:
        parts.append(
            "<tr>"
            + "".join(
                f"<td>{e(str(d.get(k, '')))}</td>"
                for k in ("topic", "paper", "code", "impact", "harness")
            )
            + "</tr>"
        )
    parts.append("</table></body></html>")
    return "\n".join(parts)


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


def to_text(results: list[ClaimResult], ctx: Context) -> str:
    """Terminal report: every judged claim on one line; claims not run counted per section."""
    name, protocol = _set_description(ctx)
    _, line = _summary(results)
    out = [f"results set: {name}", f"produced by: {protocol}", f"summary: {line}"]
    note = _self_reference(results, ctx)
    out += [f"note: {note}", ""] if note else [""]
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


def to_json(results: list[ClaimResult]) -> str:
    return json.dumps([result_dict(r) for r in results], indent=2, ensure_ascii=False) + "\n"


# ------------------------------------------------------------------------------ writing
def render(
    results: list[ClaimResult], ctx: Context, fmt: str = "md", out: Path | None = None
) -> str:
    """The report text; with `out`, also writes it and (md/html) its figures beside it."""
    deviations = load_deviations()
    if fmt == "json":
        text = to_json(results)
    elif fmt == "junit":
        text = to_junit(results, ctx)
    elif fmt == "text":
        text = to_text(results, ctx)
    elif fmt == "md":
        made = _figures(results, ctx, out.parent, out.stem) if out is not None else {}
        text = to_markdown(results, ctx, deviations, {k: p.name for k, p in made.items()})
    elif fmt == "html":
        with tempfile.TemporaryDirectory() as tmp:
            made = _figures(
                results, ctx, out.parent if out else Path(tmp), out.stem if out else "r"
            )
            text = to_html(results, ctx, deviations, {k: p.read_bytes() for k, p in made.items()})
    else:
        raise ValueError(f"unknown format {fmt!r} (text, md, json, junit, html)")
    if out is not None:
        paths.atomic_write(out, text)
    return text


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
    names = [c.results.name if c.results else "none" for c in (ctx, old_ctx)]
    text = comparison_text(rows, *names, fmt=fmt)
    if getattr(args, "out", None):
        with _writing(args.out):
            paths.atomic_write(args.out, text)
        print(f"regression check written to {args.out}")
    else:
        sys.stdout.write(text)
    return 1 if any(r["change"] in WORSE for r in rows) else 0


@contextlib.contextmanager
def _writing(out) -> Iterator[None]:
    """A report that cannot be written where --out says is bad input (exit 2), not a bug."""
    try:
        yield
    except OSError as exc:
        raise InputError(f"{out}: cannot write the report there ({exc.strerror or exc})") from exc


def cli_claims(args) -> int:
    """`amibr-bench claims`: judge every claim. Exit 0 = every verdict as expected, 1 = an
    unexpected verdict (ClaimResult.unexpected: a failure, a known contradiction that passed, an
    evaluator error; with --against: a claim that got worse), 2 = bad input (InputError)."""
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
    results = evaluate_all(claims, ctx)
    if getattr(args, "against", None):
        return _cli_compare(args, ctx, results, claims)
    out = Path(args.out) if getattr(args, "out", None) else None
    fmt = getattr(args, "format", "md") or "md"
    if out is None:
        text = render(results, ctx, fmt)
    else:
        with _writing(out):
            text = render(results, ctx, fmt, out)
    _, line = _summary(results)
    if out is None:
        sys.stdout.write(text)
    else:
        print(f"claim report ({line}) written to {out}")
    return 1 if any(r.unexpected for r in results) else 0
