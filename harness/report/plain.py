"""The report as plain text (the terminal summary and the full text), JSON and JUnit XML."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from xml.etree import ElementTree as ET

from harness import stats as st
from harness.claims import (
    ClaimResult,
    Context,
    count_statuses,
)
from harness.report.common import (
    cell_text,
    claim_sections,
    format_expected,
    jsonable,
    report_header,
    result_dict,
    self_reference,
    set_description,
    summary_counts,
    tally,
)
from harness.report.sections import (
    precision_check,
    precision_summary_line,
    prediction_analyses,
)


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
    name, protocol = set_description(ctx)
    _, line = summary_counts(results)
    out = [f"results set: {name}", f"produced by: {protocol}", f"summary: {line}"]
    note = self_reference(results, ctx)
    return out + ([f"note: {note}", ""] if note else [""])


def to_text(results: list[ClaimResult], ctx: Context) -> str:
    """Terminal report: every judged claim on one line; claims not run counted per section."""
    out = _text_head(results, ctx)
    for section, items in claim_sections(results):
        not_run = [r for r in items if r.status == st.NOT_RUN and not r.evaluator_error]
        out.append(f"{section}")
        for r in items:
            if r in not_run:
                continue
            flag = " (known contradiction)" if r.claim.known_contradiction else ""
            flag = " (UNEXPECTED)" if r.unexpected else flag
            out.append(f"  {r.status:<17} {r.claim.id}{flag}: {cell_text(r)}")
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
    width = max((len(s) for s, _ in claim_sections(results)), default=0)
    out += [f"  {section:<{width}}  {tally(items)}" for section, items in claim_sections(results)]
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
        out += [f"  {r.claim.id}: {cell_text(r)}" for r in items[:SUMMARY_LISTED]]
        if len(items) > SUMMARY_LISTED:
            out.append(f"  ... {len(items) - SUMMARY_LISTED} more in the full report")
    check = precision_check(ctx, results)
    if check["available"]:
        out += ["", precision_summary_line(check)]
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
        "analyses": jsonable(analyses),
        "faithful_vs_fast": jsonable(precision_check(ctx, results)),
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
