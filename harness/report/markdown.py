"""The report as markdown."""

from __future__ import annotations

from datetime import datetime, timezone

from harness import PAPER, __version__
from harness.claims import (
    ClaimResult,
    Context,
)
from harness.report.common import (
    HOW_TO_READ,
    ICON,
    VERDICT_WORDS,
    cell_text,
    claim_sections,
    format_expected,
    md_escape,
    set_description,
    tally,
)
from harness.report.figures import (
    FIGURES,
    TOP_FIGURES,
)
from harness.report.sections import (
    Marked,
    analyses_blocks,
    precision_blocks,
    prediction_analyses,
    summary_blocks,
    table3_blocks,
)


# ------------------------------------------------------------------------------ markdown
def _cell_md(cell) -> str:
    if not isinstance(cell, Marked):
        return md_escape(cell)
    marks = [ICON[s] if cell.text else f"{ICON[s]} {label}" for label, s in cell.marks]
    return " ".join([md_escape(cell.text)] * bool(cell.text) + marks)


def blocks_md(blocks: list[tuple], plots: dict) -> list[str]:
    """Markdown lines of report blocks (a blank line after each).

    Blocks are format-neutral tuples (made by `summary_blocks`, `table3_blocks`,
    `analyses_blocks`, `precision_blocks`): ("h2" | "h3" | "p", text) a heading or paragraph
    (text with inline markdown); ("table", head, rows) head a list of str, rows lists of cells,
    each a str or a `Marked` (text with verdict marks); ("figure", name) a FIGURES name, shown
    when `plots` (name -> image file name beside the report) has it, else left out; Marked marks
    become verdict icons."""
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
            f"| `{r.claim.id}` | {md_escape(r.claim.statement)} ({md_escape(r.claim.source)}) | "
            f"{md_escape(format_expected(r))} | {md_escape(cell_text(r))} | {verdict} |"
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
    set_name, protocol = set_description(ctx)
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
        *blocks_md(summary_blocks(results, ctx), plots),
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
    for section, items in claim_sections(results):
        out += [f"## {section}", "", f"{len(items)} claims: {tally(items)}.", ""]
        if section == "Table 3":
            out += [
                *blocks_md(table3_blocks(items, ctx), plots),
                "<details><summary>Every Table 3 claim</summary>",
                "",
                *_rows_md(items),
                "",
                "</details>",
                "",
            ]
        else:
            out += [*_rows_md(items), ""]
    out += blocks_md(precision_blocks(results, ctx), plots)
    out += blocks_md(analyses_blocks(analyses), plots)
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
                md_escape(d.get(k, "")) for k in ("topic", "paper", "code", "impact", "harness")
            )
            + " |"
        )
    out.append("")
    return "\n".join(out)
