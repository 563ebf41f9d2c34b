"""`amibr-bench claims`: judge every claim and write the report (or, with --against, the
regression check; with --add, what a results set's rows change)."""

from __future__ import annotations

from harness.claims import (
    build_context,
    evaluate_all,
    load_claims,
)
from harness.report.compare import (
    cli_compare,
)
from harness.report.writing import (
    write_requested,
)


def cli_claims(args) -> int:
    """`amibr-bench claims`: judge every claim. Exit 0 = every verdict as expected, 1 = an
    unexpected verdict (ClaimResult.unexpected: a failure, a known contradiction that passed, an
    evaluator error; with --against: a claim that got worse; with --add: a verdict that changes,
    `harness.whatif`), 2 = bad input: an InputError (a missing results set, a malformed claim
    registry: ResultsError, RegistryError) is raised to `harness.cli.main`, which prints it as
    one line (AMIBR_DEBUG=1: the traceback) and returns 2."""
    ctx = build_context(
        getattr(args, "results", "paper"),
        getattr(args, "data_root", None),
        getattr(args, "weights_dir", None),
    )
    claims = load_claims()
    if getattr(args, "add", None):
        from harness import whatif

        return whatif.cli_add(args, ctx, claims)
    results = evaluate_all(claims, ctx)
    if getattr(args, "against", None):
        return cli_compare(args, ctx, results, claims)
    write_requested(args, results, ctx)
    return 1 if any(r.unexpected for r in results) else 0
