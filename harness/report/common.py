"""The report's vocabulary and plain data: verdict words and badges, the claim as a dict,
the results set's label and the header every format shares."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from harness import PAPER, __version__
from harness import stats as st
from harness.claimkinds.cells import METHOD_WORDS
from harness.claims import (
    ClaimResult,
    Context,
    config_label,
    count_statuses,
    split_config,
)
from harness.results import ResultsSet

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
def jsonable(x):
    """`x` as plain JSON data: dict keys as text, tuples as lists, numpy scalars and arrays as
    Python numbers and lists, paths as text, a pydantic model as its dict, a non-finite float
    as None (JSON has no NaN)."""
    if hasattr(x, "model_dump"):  # a pydantic model (e.g. a claim's parsed `expected`)
        return jsonable(x.model_dump())
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return jsonable(x.item())
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def result_dict(r: ClaimResult) -> dict:
    """One claim's verdict as a plain dict (an element of the JSON report's `claims`)."""
    c, v = r.claim, r.verdict
    return jsonable(
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


def _number(x):
    """A number given as text ('0.7474', '3720', as a YAML file may quote it) as a float or an
    int; anything else unchanged."""
    if isinstance(x, str):
        for number in (int, float):
            try:
                return number(x)
            except ValueError:
                pass
    return x


def format_expected(r: ClaimResult) -> str:
    """The paper's value in words ('307M', 'Virchow2 (LoRA) > ...', 'significant, LoRA higher').

    Reads the claim's typed parameters and tolerance (`claim.args`, `claim.tol`); `expected` may
    be as written (a number possibly quoted as text, a mapping) or as parsed (a float, a pydantic
    model): both read the same."""
    c = r.claim
    e = c.expected.model_dump() if hasattr(c.expected, "model_dump") else c.expected
    e = [_number(x) for x in e] if isinstance(e, list | tuple) else _number(e)
    numbers = isinstance(e, list) and all(isinstance(x, int | float) for x in e)
    if c.kind == "parameter_count" and isinstance(e, int | float):
        return f"{e / 1e9:g}B" if e >= 1e9 else f"{e / 1e6:g}M"
    if c.kind == "table_cell" and isinstance(e, int | float):
        return f"{e:.4f}"
    if c.kind == "value_range" and numbers and len(e) == 2:
        return f"{e[0]:.2f}–{e[1]:.2f}"
    if c.kind == "ranking":
        first = " > ".join(config_label(*split_config(str(x))) for x in e)
        return ("lowest: " if getattr(c.args, "from_", "top") == "bottom" else "") + first
    if c.kind == "significance" and isinstance(e, dict):
        alpha = getattr(c.tol, "alpha", st.ALPHA)
        sig = {
            True: f"significant (p < {alpha:g})",
            None: "p-value lost from the text",
            False: "not significant",
        }[e.get("significant")]
        higher = e.get("higher")
        return sig if higher is None else f"{sig}; {METHOD_WORDS.get(higher, higher)} higher"
    if isinstance(e, float):
        return f"{e:g}"
    return str(e)


def summary_counts(results: list[ClaimResult]) -> tuple[dict, str]:
    """The number of claims per verdict (`count_statuses`: every status, zeros included) and the
    same as one line, '40 passed · 0 failed · ... (120 claims)'."""
    counts = count_statuses(results)
    line = " · ".join(f"{n} {s}" for s, n in counts.items()) + f" ({len(results)} claims)"
    return counts, line


def claim_sections(results: list[ClaimResult]) -> list[tuple[str, list[ClaimResult]]]:
    """The results grouped by the claim's section, in the paper's order (SECTION_ORDER; unknown
    sections after it, alphabetically); each group keeps the results' order."""
    groups: dict[str, list[ClaimResult]] = defaultdict(list)
    for r in results:
        groups[r.claim.section].append(r)
    order = {s: i for i, s in enumerate(SECTION_ORDER)}
    return sorted(groups.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))


def tally(items: list[ClaimResult]) -> str:
    """The verdicts of `items` in words, zeros left out: '12 passed, 1 failed'."""
    return ", ".join(f"{n} {s}" for s, n in count_statuses(items).items() if n)


def self_reference(results: list[ClaimResult], ctx: Context) -> str:
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


def set_description(ctx: Context) -> tuple[str, str]:
    """(the results set as 'name (where)', with a note when its store also holds results of an
    older version of some configurations; what produced it, `ResultsSet.protocol`), or ('none',
    'no results set')."""
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


def cell_text(r: ClaimResult) -> str:
    """What we observe, for a report's table: the verdict's reason ('not run: <reason>' for a
    claim not run), else its observed value."""
    v = r.verdict
    if v.status == st.NOT_RUN:
        return f"not run: {v.reason}"
    return v.reason or str(v.observed)


def md_escape(text: str) -> str:
    """`text` (anything, as str) safe inside a markdown table cell: '|' escaped, newlines as
    spaces."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def report_header(results: list[ClaimResult], ctx: Context | None) -> dict:
    """What the JSON report says around its claims: the results set (name, path, tier, preset,
    data, protocol, provenance from its manifest, or None when unrecorded), the summary counts,
    notes, and the harness version and date that made the report."""
    rs = ctx.results if ctx else None
    m = rs.manifest if rs else {}
    counts = count_statuses(results)
    note = self_reference(results, ctx) if ctx else ""
    return jsonable(
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
