"""pytest integration of the claims: `--results`, claim parameters, the end-of-run report.

Claim tests call `check_claim`: not run and inconclusive become skips (with the reason, never a
pass), a known contradiction is an xfail(strict=True) so that it must keep failing, and every
verdict is collected; at the end of a session that ran claim tests the markdown claim report is
written to reports/ and its summary printed.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import pytest

from harness import paths
from harness import stats as st
from harness.claims import (
    Claim,
    ClaimResult,
    Context,
    build_context,
    count_statuses,
    evaluate,
    load_claims,
)
from harness.paths import InputError

RESULTS_KEY = pytest.StashKey[dict]()
CONTEXT_KEY = pytest.StashKey[Context]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("amibr-bench claims")
    group.addoption(
        "--results",
        default="paper",
        help="results set the claim tests judge: 'paper' (the authors' numbers) or a folder",
    )
    group.addoption(
        "--weights-dir",
        default=None,
        help="foundation-model weights (default $AMIBR_WEIGHTS, then the offline HF cache)",
    )
    group.addoption(
        "--train-full",
        action="store_true",
        help="first train every runnable Table 3 configuration into the --results folder "
        "(full tier, CUDA and weights needed; finished folds are reused)",
    )
    group.addoption(
        "--claims-report",
        default=None,
        help="markdown claim report to write (default reports/claims-<results set>.md)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[RESULTS_KEY] = {}


@lru_cache(maxsize=1)
def registry() -> tuple[Claim, ...]:
    """The claim registry, loaded once per process (a bad registry fails collection, naming it)."""
    return tuple(load_claims())


def claim_params(kind: str) -> list:
    """pytest params for every claim of one kind: id = claim id, strict xfail if contradicted."""
    out = []
    for claim in registry():
        if claim.kind != kind:
            continue
        marks = [pytest.mark.claims]
        if claim.known_contradiction:
            marks.append(
                pytest.mark.xfail(
                    strict=True,
                    raises=AssertionError,
                    reason=f"known contradiction: {claim.known_contradiction}",
                )
            )
        out.append(pytest.param(claim, id=claim.id, marks=marks))
    return out


@pytest.fixture(scope="session")
def claims_context(request: pytest.FixtureRequest) -> Context:
    """The Context every claim test is judged against (--results, --data-root, --weights-dir)."""
    config = request.config
    if CONTEXT_KEY not in config.stash:
        spec = config.getoption("--results")
        if config.getoption("--train-full"):
            _train_full(config, spec)
        try:
            config.stash[CONTEXT_KEY] = build_context(
                spec,
                config.getoption("--data-root", default=None),
                config.getoption("--weights-dir", default=None),
            )
        except InputError as exc:
            pytest.exit(f"--results {spec}: {exc}", returncode=4)
    return config.stash[CONTEXT_KEY]


def _train_full(config: pytest.Config, spec: str) -> None:
    """The claim tests' trainer: each (configuration, fold) trains once, into the results folder."""
    from harness import runner

    if spec == "paper":
        pytest.exit("--train-full needs --results FOLDER (where the harness writes its results)", 4)
    skipped = runner.train_plan(
        Path(spec),
        data_root=config.getoption("--data-root", default=None),
        weights_dir=config.getoption("--weights-dir", default=None),
        preset=os.environ.get("AMIBR_PRESET", "paper"),
    )
    for name, why in skipped.items():
        print(f"amibr-bench: {name} not trained: {why}")


def check_claim(claim: Claim, ctx: Context, config: pytest.Config) -> ClaimResult:
    """Judge one claim inside a test: skip (not run / inconclusive) or assert it holds."""
    result = evaluate(claim, ctx, strict=True)
    config.stash[RESULTS_KEY][claim.id] = result
    v = result.verdict
    if v.status == st.NOT_RUN:
        pytest.skip(f"not run: {v.reason}")
    if v.status == st.INCONCLUSIVE:
        pytest.skip(f"inconclusive: {v.reason}")
    assert v.status in (st.PASSED, st.BETTER), (
        f"{claim.id} {v.status}: the paper says {claim.statement} ({claim.source}; expected "
        f"{claim.expected!r}); we observe {v.reason}"
    )
    return result


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    results: dict[str, ClaimResult] = config.stash.get(RESULTS_KEY, {})
    if not results or CONTEXT_KEY not in config.stash:
        return
    from harness.claims import save_facts
    from harness.report import render

    ctx = config.stash[CONTEXT_KEY]
    save_facts(ctx)  # architecture facts computed by the claim tests, for the next run
    items = list(results.values())
    name = ctx.results.name if ctx.results else "none"
    flag = config.getoption("--claims-report", default=None)
    out = Path(flag) if flag else paths.output_dir("reports") / f"claims-{name}.md"
    tr = terminalreporter
    tr.section("amibr-bench claim report")
    counts = count_statuses(items)
    tr.write_line(f"results set: {name} — {ctx.results.protocol if ctx.results else 'none'}")
    tr.write_line(" · ".join(f"{n} {s}" for s, n in counts.items()) + f" ({len(items)} claims)")
    contra = sum(r.confirmed_contradiction for r in items)
    unexpected = [r.claim.id for r in items if r.unexpected]
    tr.write_line(
        f"contradictions the paper's own evidence shows (xfail): {contra}; "
        f"unexpected: {len(unexpected)}"
        + (f" ({', '.join(unexpected[:10])})" if unexpected else "")
    )
    try:
        render(items, ctx, "md", out)
        tr.write_line(f"markdown report: {out}")
    except OSError as exc:  # a read-only checkout must not turn a green run red
        tr.write_line(f"could not write the claim report to {out}: {exc}")
