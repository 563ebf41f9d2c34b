"""The claim registry (expected_results/*.yaml): loading and validating the claims, and judging
them against a Context (a results set, the data root, the weights folder).

Each claim names a kind; the kinds, their typed parameters and their evaluators live in
`harness.claimkinds` (one registered function per kind). A verdict is passed,
passed-and-better, failed, inconclusive or not run (always with a reason).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from harness import paths
from harness import stats as st
from harness.claimkinds import KINDS, NEEDS, get_kind
from harness.claimkinds.base import (
    Claim,
    ClaimResult,
    Context,
    Inconclusive,
    NotRun,
    RegistryError,
    Verdict,
)
from harness.claimkinds.cells import (
    BASELINES,
    FOUNDATION_MODELS,
    METHOD_WORDS,
    METRIC_WORDS,
    TABLE3_CONFIGS,
    config_label,
    extra_configs,
    split_config,
)
from harness.claimkinds.dataset import data_absence
from harness.results import TEST_SETS, load_results_set

PAPER_VERSION = "MELBA 2026:006 (arXiv 2506.21444v3)"
NON_CLAIM_FILES = ("deviations.yaml",)
REQUIRED = ("id", "statement", "source", "section", "kind", "needs", "tolerance")
# Claim kinds that read the data tree (needs: data); judged only on a public, not synthetic, tree.
DATA_KINDS = tuple(name for name, kind in KINDS.items() if kind.needs == "data")
# The evaluator of each kind: fn(claim, params, ctx) -> Verdict (harness.claimkinds).
EVALUATORS = {name: kind.evaluate for name, kind in KINDS.items()}


# ------------------------------------------------------------------------------- registry
def _claim_from(raw: Any, file: Path, index: int) -> Claim:
    """One YAML entry as a Claim, its params and tolerance validated against its kind;
    RegistryError naming the file, the claim and the field."""
    where = f"{file.name}, claim #{index}"
    if not isinstance(raw, dict):
        raise RegistryError(f"{file}: claim #{index} is not a mapping")
    if raw.get("id"):
        where = f"{file.name}, claim {raw['id']!r}"
    missing = [k for k in REQUIRED if not raw.get(k)]
    if "expected" not in raw:
        missing.append("expected")
    if missing:
        raise RegistryError(f"{where}: missing field(s) {', '.join(missing)}")
    if raw["needs"] not in NEEDS:
        raise RegistryError(f"{where}: needs {raw['needs']!r} is not one of {', '.join(NEEDS)}")
    kind = get_kind(raw["kind"], where)
    if not isinstance(raw["tolerance"], dict):
        raise RegistryError(f"{where}: tolerance must be a mapping with a rule")
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        raise RegistryError(f"{where}: params must be a mapping")
    known = set(REQUIRED) | {"params", "expected", "known_contradiction"}
    claim = Claim(
        id=str(raw["id"]),
        statement=str(raw["statement"]).strip(),
        source=str(raw["source"]),
        section=str(raw["section"]),
        kind=raw["kind"],
        needs=raw["needs"],
        tolerance=dict(raw["tolerance"]),
        params=dict(params),
        expected=raw["expected"],
        known_contradiction=(
            str(raw["known_contradiction"]).strip() if raw.get("known_contradiction") else None
        ),
        file=file.name,
        extra={k: v for k, v in raw.items() if k not in known},
    )
    return kind.validate(claim, where)


def claim_files(directory: Path | None = None) -> list[Path]:
    directory = Path(directory or paths.EXPECTED_RESULTS)
    return sorted(p for p in directory.glob("*.yaml") if p.name not in NON_CLAIM_FILES)


def load_claims(directory: Path | None = None) -> list[Claim]:
    """Every claim of expected_results/*.yaml, validated; raises RegistryError naming the file."""
    claims: list[Claim] = []
    seen: dict[str, str] = {}
    for file in claim_files(directory):
        try:
            doc = yaml.safe_load(file.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise RegistryError(f"{file}: not valid YAML ({exc})") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("claims"), list):
            raise RegistryError(f"{file}: needs a top-level 'claims:' list")
        if doc.get("paper") != PAPER_VERSION:
            raise RegistryError(
                f"{file}: pinned to paper {doc.get('paper')!r}, this suite checks {PAPER_VERSION!r}"
            )
        for i, raw in enumerate(doc["claims"], start=1):
            claim = _claim_from(raw, file, i)
            if claim.id in seen:
                raise RegistryError(
                    f"{file.name}, claim {claim.id!r}: duplicate id (also in {seen[claim.id]})"
                )
            seen[claim.id] = file.name
            claims.append(claim)
    return claims


def load_deviations(directory: Path | None = None) -> list[dict]:
    """The deviation ledger (expected_results/deviations.yaml): paper vs the authors' code."""
    file = Path(directory or paths.EXPECTED_RESULTS) / "deviations.yaml"
    if not file.is_file():
        return []
    doc = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    items = doc.get("deviations")
    if not isinstance(items, list):
        raise RegistryError(f"{file}: needs a top-level 'deviations:' list")
    for i, item in enumerate(items, start=1):
        lacking = [k for k in ("id", "topic", "paper", "code") if not item.get(k)]
        if lacking:
            raise RegistryError(f"{file}: deviation #{i} lacks {', '.join(lacking)}")
    return items


def build_context(
    results: str | Path | None = "paper", data_root=None, weights_dir=None
) -> Context:
    """A Context from CLI/pytest flags; raises ResultsError for a bad results set."""
    rs = load_results_set(results) if results is not None else None
    root = paths.data_root(data_root, required=False)
    hint = str(data_root or paths.os.environ.get(paths.DATA_ENV) or paths.SHARED_DATA)
    ctx = Context(rs, root, paths.weights_dir(weights_dir), hint)
    from harness import archfacts

    try:  # architecture facts from the on-disk memo; without a usable cache, computed here
        ctx.cache["archfacts"] = archfacts.ArchFacts(archfacts.cache_file())
    except paths.InputError:
        pass
    return ctx


def evaluate(claim: Claim, ctx: Context, *, strict: bool = False) -> ClaimResult:
    """Judge one claim. strict=True lets evaluator errors raise (pytest); else the claim is "not
    run" with an ERROR reason and counts as unexpected, so the report's exit code shows it."""
    if claim.needs in ("results", "predictions", "run") and ctx.results is None:
        return ClaimResult(claim, Verdict(st.NOT_RUN, reason="no results set was given"))
    if claim.needs == "data" and data_absence(ctx):
        return ClaimResult(claim, Verdict(st.NOT_RUN, reason=data_absence(ctx)))
    if claim.needs == "weights" and ctx.weights_dir is None:
        return ClaimResult(
            claim,
            Verdict(
                st.NOT_RUN,
                reason="needs the foundation-model weights (--weights-dir or $AMIBR_WEIGHTS)",
            ),
        )
    try:
        kind = get_kind(claim.kind, f"claim {claim.id!r}")
        if claim.args is None:  # a claim built in code, not loaded: validate it now
            claim = kind.validate(claim, f"claim {claim.id!r}")
        verdict = kind.evaluate(claim, claim.args, ctx)
    except NotRun as exc:
        verdict = Verdict(st.NOT_RUN, reason=str(exc))
    except Inconclusive as exc:
        verdict = Verdict(st.INCONCLUSIVE, reason=str(exc))
    except Exception as exc:  # noqa: BLE001 - the report goes on, but flags the error
        if strict:
            raise
        verdict = Verdict(
            st.NOT_RUN,
            reason=f"ERROR: the harness could not judge it ({type(exc).__name__}: {exc})",
            details={"evaluator_error": True},
        )
    return ClaimResult(claim, verdict)


def evaluate_all(claims: list[Claim], ctx: Context, *, strict: bool = False) -> list[ClaimResult]:
    out = [evaluate(c, ctx, strict=strict) for c in claims]
    save_facts(ctx)
    return out


def save_facts(ctx: Context) -> None:
    """Write the architecture facts this context computed to the on-disk memo, if it has one."""
    memo = ctx.cache.get("archfacts")
    if memo is not None:
        memo.save()


def count_statuses(results: list[ClaimResult]) -> dict[str, int]:
    counts = dict.fromkeys(st.STATUSES, 0)
    for r in results:
        counts[r.status] += 1
    return counts


__all__ = [
    "BASELINES",
    "DATA_KINDS",
    "KINDS",
    "METHOD_WORDS",
    "METRIC_WORDS",
    "NEEDS",
    "config_label",
    "extra_configs",
    "split_config",
    "Claim",
    "ClaimResult",
    "Context",
    "EVALUATORS",
    "FOUNDATION_MODELS",
    "Inconclusive",
    "NotRun",
    "PAPER_VERSION",
    "RegistryError",
    "TABLE3_CONFIGS",
    "TEST_SETS",
    "Verdict",
    "build_context",
    "count_statuses",
    "evaluate",
    "evaluate_all",
    "load_claims",
    "load_deviations",
]
