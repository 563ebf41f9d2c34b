"""Does my model change a conclusion? `amibr-bench claims --results BASE --add SET`.

The claims are judged twice: on the base results set (say `paper`, the authors' numbers) and on
the base with SET's rows added (`results.merge_results_sets`: a configuration SET shares with the
base is replaced by SET's rows). The verdicts are diffed with `report.compare`, the diff that
`claims --against` prints, and every claim whose verdict or observed value differs is listed, the
paper's comparative conclusions first: the best configuration per test set (kind `maximum`), the
rankings (`ranking`), Table 4 and "LoRA beats linear probing" (`significance`, `dominance`), value
ranges (`value_range`), performance drops (`performance_drop`, `performance_drop_share`) and "an
end-to-end baseline is best out of domain" (`baseline_beats_foundation`) -- the kinds registered
with `comparative=True`; the claim groups take a user's model in through
`claimkinds.cells.group` / `extra_configs`.

Only claims a results set decides are judged (`needs` results, predictions or run); the others
read the data tree, the architectures or nothing, so adding rows cannot change them. Claims that
count the set's own configurations or folds (`inventory_kinds()`: "eight foundation models are
compared", "five folds") describe the paper's experiment, not a conclusion from it: judged on the
base only, they are named as not compared.

Exit status (`cli_add`): 0 = no verdict changes, 1 = a verdict changes (a conclusion of the paper
reads differently with SET's rows), 2 = bad input (a results set that cannot be read, or that does
not fit the base, named on one line).
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

from harness import paths, report
from harness.claimkinds.base import RESULTS_NEEDS
from harness.claims import KINDS, Claim, Context, config_label, evaluate_all, split_config
from harness.results import ResultsError, ResultsSet, load_results_set, merge_results_sets

FORMATS = ("text", "md", "json")
LISTED = 12  # rows per group in the terminal text


def conclusion_kinds() -> tuple[str, ...]:
    """The kinds registered `comparative` (harness.claimkinds): their changes are listed first.
    Read from the registry when called, so a kind registered later is in it."""
    return tuple(name for name, kind in KINDS.items() if kind.comparative)


def inventory_kinds() -> tuple[str, ...]:
    """The kinds registered `inventory` (how many models, how many folds): not compared."""
    return tuple(name for name, kind in KINDS.items() if kind.inventory)


def _configs_text(configs) -> str:
    return ", ".join(config_label(*split_config(c)) for c in configs)


def what_changes(claims: list[Claim], base: Context, merged: Context) -> dict:
    """Judge `claims` on the base context and on the merged one (whose results set came from
    `merge_results_sets`) and diff them with `report.compare`.

    Returns plain data: base / merged (name, path), added ([{name, path, configs}]), replaced
    ({"<model>|<method>": added set's name}), compared (claims judged on both), not_compared
    ([{id, why}]), and the changed claims as `report.compare` rows plus kind, statement,
    conclusion (kind in conclusion_kinds()) and verdict_changed (the status differs):
    `conclusions` and `other`, each verdict changes first; summary counts."""
    inventory, comparative = inventory_kinds(), conclusion_kinds()
    judged = [c for c in claims if c.needs in RESULTS_NEEDS and c.kind not in inventory]
    skipped = [c for c in claims if c.needs in RESULTS_NEEDS and c.kind in inventory]
    by_id = {c.id: c for c in judged}
    rows = report.compare(evaluate_all(judged, merged), evaluate_all(judged, base))
    changed = []
    for row in rows:
        claim = by_id[row["id"]]
        row.update(
            kind=claim.kind,
            statement=claim.statement,
            conclusion=claim.kind in comparative,
            verdict_changed=row["old"] != row["new"],
        )
        if row["verdict_changed"] or row["old_observed"] != row["new_observed"]:
            changed.append(row)
    changed.sort(key=lambda r: not r["verdict_changed"])  # stable: registry order within
    info = merged.results.manifest.get("merged") or {}
    conclusions = [r for r in changed if r["conclusion"]]
    other = [r for r in changed if not r["conclusion"]]
    return {
        "base": {"name": base.results.name, "path": _path(base.results)},
        "merged": {"name": merged.results.name, "path": None},
        "added": info.get("added", []),
        "replaced": info.get("replaced", {}),
        "compared": len(judged),
        "not_compared": [
            {
                "id": c.id,
                "why": "counts the set's own configurations or folds (the paper's "
                "experiment, not a conclusion from it)",
            }
            for c in skipped
        ],  # fmt: skip
        "summary": {
            "conclusions_verdict_changed": sum(r["verdict_changed"] for r in conclusions),
            "conclusions_observed_changed": sum(not r["verdict_changed"] for r in conclusions),
            "other_verdict_changed": sum(r["verdict_changed"] for r in other),
            "other_observed_changed": sum(not r["verdict_changed"] for r in other),
        },
        "conclusions": conclusions,
        "other": other,
    }


def _path(rs: ResultsSet) -> str | None:
    return str(rs.path) if rs.path else None


def changes_verdicts(doc: dict) -> bool:
    """True when adding the rows changes any judged claim's verdict (exit status 1)."""
    return any(r["verdict_changed"] for r in doc["conclusions"] + doc["other"])


def changes_text(doc: dict, fmt: str = "text") -> str:
    """`what_changes`'s result as terminal text (each group at most LISTED rows), md (every row)
    or json."""
    if fmt == "json":
        return json.dumps(report.jsonable(doc), indent=2, ensure_ascii=False) + "\n"
    md = fmt == "md"
    h1, h2, item = ("# ", "## ", "- ") if md else ("", "", "  ")
    base = f"{doc['base']['name']} ({doc['base']['path'] or 'in memory'})"
    out = [f"{h1}What changes when results are added to {base}", ""]
    for a in doc["added"]:
        out.append(f"{item}added: {a['name']} ({a['path'] or 'in memory'}): "
                   f"{_configs_text(a['configs'])}")  # fmt: skip
    by_set: dict[str, list[str]] = {}
    for config, by in doc["replaced"].items():
        by_set.setdefault(by, []).append(config)
    for by, configs in by_set.items():
        out.append(f"{item}replaced by the rows of {by}: {_configs_text(configs)}")
    if not by_set:
        out.append(f"{item}replaced: none (every added configuration is new)")
    s = doc["summary"]
    out += [
        "",
        f"{s['conclusions_verdict_changed']} conclusion(s) change their verdict, "
        f"{s['conclusions_observed_changed']} only their observed value; "
        f"{s['other_verdict_changed']} other claim(s) change their verdict, "
        f"{s['other_observed_changed']} only their observed value ({doc['compared']} claims "
        f"judged on {doc['base']['name']} and on {doc['merged']['name']})",
    ]
    groups = (
        ("conclusions whose verdict changes", [r for r in doc["conclusions"] if r["verdict_changed"]]),
        ("conclusions whose observed value changes, verdict kept",
         [r for r in doc["conclusions"] if not r["verdict_changed"]]),
        ("other claims whose verdict changes", [r for r in doc["other"] if r["verdict_changed"]]),
        ("other claims whose observed value changes, verdict kept",
         [r for r in doc["other"] if not r["verdict_changed"]]),
    )  # fmt: skip
    for title, items in groups:
        if not items:
            continue
        out += ["", f"{h2}{title} ({len(items)})" + ("" if md else ":"), *[""] * md]
        shown = items if md else items[:LISTED]
        for r in shown:
            verdict = f"{r['old']} -> {r['new']}" if r["verdict_changed"] else r["new"]
            out.append(f"{item}{'`' * md}{r['id']}{'`' * md} ({r['kind']}): {verdict}")
            before, after = _observed(r["old_observed"]), _observed(r["new_observed"])
            if not md:
                if r["new_observed"] is None and r["reason"]:
                    after += f" ({r['reason']})"
                out.append(f"    {before} -> {after}")
                continue
            out += [
                f"  the paper: {r['statement']}",
                f"  before: {before}",
                f"  after: {after}",
                *([f"  why: {r['reason']}"] if r["verdict_changed"] and r["reason"] else []),
            ]
        if len(items) > len(shown):
            out.append(f"{item}... {len(items) - len(shown)} more (--format md or json lists all)")
    if doc["not_compared"]:
        ids = ", ".join(n["id"] for n in doc["not_compared"])
        out += ["", f"not compared: {ids} ({doc['not_compared'][0]['why']})"]
    return "\n".join(out) + "\n"


def _observed(value) -> str:
    """An observed value as the list prints it; a claim not judged to a value has none."""
    return "no value" if value is None else str(value)


def load_added(specs: list[str]) -> list[ResultsSet]:
    """The results sets of --add; ResultsError on one line, naming --add and the file."""
    added = []
    for spec in specs:
        try:
            added.append(load_results_set(spec))
        except ResultsError as exc:
            raise ResultsError(f"--add {spec}: {exc}") from exc
    return added


def _refuse_repeats(base: ResultsSet, added: list[ResultsSet]) -> None:
    """A set added onto itself, or added twice, adds nothing: bad input, named (ResultsError)."""
    seen = {base.path.resolve(): "--results"} if base.path else {}
    for rs in added:
        where = rs.path.resolve() if rs.path else None
        if where is not None and where in seen:
            raise ResultsError(
                f"--add {rs.path}: the same results set as {seen[where]}; it adds nothing "
                "(give --add a set of your own runs)"
            )
        if where is not None:
            seen[where] = "an earlier --add"


def cli_add(args, ctx: Context, claims: list[Claim]) -> int:
    """`claims --results BASE --add SET [--add SET2 ...]`: what changes (terminal text; md or
    json with --format / --out; --out - prints). With --out-dir, the merged set's full claim
    report (md, html, json, with the added models beside the paper's rows) is written there too.
    Exit 0 = no verdict changes, 1 = a verdict changes, 2 = bad input (InputError)."""
    out = getattr(args, "out", None)
    fmt = getattr(args, "format", None) or (report.format_of(out) if out and out != "-" else "text")
    if fmt not in FORMATS:
        asked = f"--format {fmt}" if getattr(args, "format", None) else f"--out {out}"
        raise ResultsError(f"{asked}: --add writes {', '.join(FORMATS)}, not {fmt}")
    if ctx.results is None:
        raise ResultsError("--add needs a base results set (--results)")
    added = load_added(args.add)  # one-line ResultsErrors
    _refuse_repeats(ctx.results, added)
    merged = merge_results_sets(ctx.results, *added)
    merged_ctx = replace(ctx, results=merged, cache=dict(ctx.cache))
    doc = what_changes(claims, ctx, merged_ctx)
    text = changes_text(doc, fmt)
    if out and out != "-":
        with report.writing_to(out):
            paths.atomic_write(out, text)
        print(f"what changes written to {out}")
    else:
        sys.stdout.write(text)
    out_dir = getattr(args, "out_dir", None)
    if out_dir:
        with report.writing_to(out_dir):
            written = report.write_reports(
                evaluate_all(claims, merged_ctx), merged_ctx, Path(out_dir)
            )
        print("claim report of the merged set:", *(f"  {p}" for p in written), sep="\n")
    return 1 if changes_verdicts(doc) else 0
