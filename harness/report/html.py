"""The report as one self-contained HTML page (figures inline, text verdict badges: no emoji
font needed, no literal markdown)."""

from __future__ import annotations

import base64
import html
import re
from datetime import datetime, timezone

from harness import PAPER, __version__
from harness.claims import (
    ClaimResult,
    Context,
)
from harness.report.common import (
    BADGE,
    HOW_TO_READ,
    VERDICT_WORDS,
    cell_text,
    claim_sections,
    format_expected,
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


def blocks_html(blocks: list[tuple], pngs: dict) -> list[str]:
    """HTML elements of report blocks, one str each (inline markdown turned into tags).

    Blocks are format-neutral tuples (made by `summary_blocks`, `table3_blocks`,
    `analyses_blocks`, `precision_blocks`): ("h2" | "h3" | "p", text) a heading or paragraph
    (text with inline markdown); ("table", head, rows) head a list of str, rows lists of cells,
    each a str or a `Marked` (text with verdict marks); ("figure", name) a FIGURES name, embedded
    when `pngs` (name -> PNG bytes) has it, else an empty string; Marked marks become text
    badges."""
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
        f"<td>{inline_html(format_expected(r))}</td><td>{inline_html(cell_text(r))}{note}</td>"
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
    set_name, protocol = set_description(ctx)
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
        *blocks_html(summary_blocks(results, ctx), pngs),
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
    for section, items in claim_sections(results):
        parts.append(f"<h2>{e(section)}</h2><p>{len(items)} claims: {e(tally(items))}.</p>")
        rows = "".join(_row_html(r) for r in items)
        if section == "Table 3":
            parts += blocks_html(table3_blocks(items, ctx), pngs)
            parts.append(
                f"<details><summary>Every Table 3 claim</summary>{head}{rows}</table></details>"
            )
        else:
            parts.append(f"{head}{rows}</table>")
    parts += blocks_html(precision_blocks(results, ctx), pngs)
    parts += blocks_html(analyses_blocks(analyses), pngs)
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
    return html_page(title, [_with_contents("\n".join(parts))])


def html_page(title: str, parts: list[str]) -> str:
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
