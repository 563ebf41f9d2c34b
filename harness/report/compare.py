"""The regression check (`claims --against OLD`): the verdicts of two results sets side by
side, with what got worse."""

from __future__ import annotations

import json
import sys
from collections import Counter

from harness import paths
from harness import stats as st
from harness.claims import (
    ClaimResult,
    Context,
    build_context,
    evaluate_all,
)
from harness.report.common import (
    jsonable,
    set_label,
)
from harness.report.writing import format_of, writing_to

# ---------------------------------------------------------------------- regression check
STANDING = {st.PASSED: 2, st.BETTER: 2, st.INCONCLUSIVE: 1, st.FAILED: 0}  # NOT_RUN: no standing
CHANGES = ("regressed", "moved down", "improved", "moved up", "same", "not comparable")
WORSE = ("regressed", "moved down")
COMPARISON_FORMATS = ("md", "text", "json")  # what `claims --against` writes


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
                "old_observed": jsonable(numbers[0]),
                "new_observed": jsonable(numbers[1]),
                "delta": delta,
                "reason": r.verdict.reason,
            }
        )
    return rows


def _shifted(new: ClaimResult, old: ClaimResult) -> bool:
    """A Table 3 mean whose folds (the same five on both sides) moved beyond their noise."""
    if new.claim.kind != "table_cell" or new.claim.args.stat != "mean":
        return False
    a, b = (r.verdict.details.get("folds") or [] for r in (new, old))
    if len(a) != len(b) or len(a) < 2:
        return False
    shift, margin = st.paired_shift(a, b)
    return abs(shift) > margin


def comparison_text(rows: list[dict], new_name: str, old_name: str, fmt: str = "md") -> str:
    """The regression check as markdown or plain text; json: {"new", "old" (the two sets' labels,
    name and path), "summary" (claims per change), "rows"}."""
    counts = Counter(r["change"] for r in rows)
    if fmt == "json":
        doc = {
            "new": new_name,
            "old": old_name,
            "summary": {k: counts.get(k, 0) for k in CHANGES},
            "rows": rows,
        }
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
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


def cli_compare(args, ctx: Context, results: list[ClaimResult], claims) -> int:
    """`claims --against OLD`: exit 1 when any claim got worse (regressed or moved down).

    The format is --format, else the suffix of --out (`format_of`), else md; `--out -` prints.
    A format other than md, text or json is refused (InputError, exit 2) before OLD is judged."""
    out = getattr(args, "out", None)
    to_file = bool(out) and out != "-"
    fmt = getattr(args, "format", None) or (format_of(out) if to_file else "md")
    if fmt not in COMPARISON_FORMATS:
        raise paths.InputError(
            f"--against writes {', '.join(COMPARISON_FORMATS[:-1])} or {COMPARISON_FORMATS[-1]}, "
            f"not {fmt}"
            + ("" if getattr(args, "format", None) else f" (the suffix of --out {out})")
        )
    old_ctx = build_context(args.against, getattr(args, "data_root", None), ctx.weights_dir)
    rows = compare(results, evaluate_all(claims, old_ctx))
    names = [set_label(c.results) for c in (ctx, old_ctx)]
    text = comparison_text(rows, *names, fmt=fmt)
    if to_file:
        with writing_to(out):
            paths.atomic_write(out, text)
        print(f"regression check written to {out}")
    else:
        sys.stdout.write(text)
    return 1 if any(r["change"] in WORSE for r in rows) else 0
