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
    RESULTS_NEEDS,
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
    TABLE3_CONFIGS,
    config_label,
    extra_configs,
    split_config,
)
from harness.claimkinds.dataset import data_absence
from harness.results import load_results_set

PAPER_VERSION = "MELBA 2026:006 (arXiv 2506.21444v3)"
NON_CLAIM_FILES = ("deviations.yaml",)
REQUIRED = ("id", "statement", "source", "section", "kind", "needs", "tolerance")
TEXT_FIELDS = ("id", "statement", "source", "section")  # text as written, never a list or a number


def data_kinds() -> tuple[str, ...]:
    """The registered kinds that read the data tree (needs: data), judged only on a public, not
    synthetic, tree; read from the registry when called, so a kind registered later is in it."""
    return tuple(name for name, kind in KINDS.items() if kind.needs == "data")


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
    not_text = [k for k in (*TEXT_FIELDS, "known_contradiction") if k in raw
                and raw[k] is not None and not isinstance(raw[k], str)]  # fmt: skip
    if not_text:
        got = ", ".join(f"{k} is {type(raw[k]).__name__} {raw[k]!r:.40}" for k in not_text)
        raise RegistryError(f"{where}: field(s) must be text: {got}")
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


def _where(mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"


def _duplicate_key(node: yaml.Node, claim: str = "", seen_nodes: set | None = None) -> str | None:
    """The first mapping key written twice under `node` (YAML keeps the last one silently), as
    "claim 'x', line 12: key 'model' written twice (first at line 9)"; None when there is none.
    A mapping with an `id` names the claim for everything below it. `seen_nodes`: the nodes
    already walked (an alias may point back up the tree)."""
    seen_nodes = set() if seen_nodes is None else seen_nodes
    if id(node) in seen_nodes:
        return None
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        ids = [v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == "id"]
        if ids and isinstance(ids[0], yaml.ScalarNode):
            claim = f"claim {ids[0].value!r}, "
        seen: dict[str, yaml.Node] = {}
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value in seen:
                first = seen[key.value].start_mark.line + 1
                return (f"{claim}line {key.start_mark.line + 1}: key {key.value!r} written "
                        f"twice (first at line {first})")  # fmt: skip
            if isinstance(key, yaml.ScalarNode):
                seen[key.value] = key
        children = [v for _, v in node.value]
    elif isinstance(node, yaml.SequenceNode):
        children = node.value
    else:
        return None
    found = (_duplicate_key(c, claim, seen_nodes) for c in children)
    return next((d for d in found if d), None)


def read_yaml(file: Path) -> Any:
    """One registry file, parsed; RegistryError on one line naming the file and where it is
    wrong: unreadable, not UTF-8, not YAML, or a mapping key written twice."""
    try:
        loader = yaml.SafeLoader(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{file}: cannot be read as UTF-8 text ({exc})") from exc
    try:
        node = loader.get_single_node()
        duplicate = _duplicate_key(node) if node is not None else None
        if duplicate:
            raise RegistryError(f"{file}: {duplicate}")
        return loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise RegistryError(
            f"{file}: not valid YAML at {_where(mark)}: {exc.problem or exc.context}"
        ) from exc
    except yaml.YAMLError as exc:
        raise RegistryError(f"{file}: not valid YAML ({' '.join(str(exc).split())})") from exc
    finally:
        loader.dispose()


def claim_files(directory: Path | None = None) -> list[Path]:
    """The claim files of `directory` (default expected_results/): every *.yaml but the
    deviation ledger (NON_CLAIM_FILES), sorted by name. A missing folder gives no files."""
    directory = Path(directory or paths.EXPECTED_RESULTS)
    return sorted(p for p in directory.glob("*.yaml") if p.name not in NON_CLAIM_FILES)


def load_claims(directory: Path | None = None) -> list[Claim]:
    """Every claim of expected_results/*.yaml, validated; raises RegistryError naming the file."""
    claims: list[Claim] = []
    seen: dict[str, str] = {}
    for file in claim_files(directory):
        doc = read_yaml(file)
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
    doc = read_yaml(file)
    items = doc.get("deviations") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise RegistryError(f"{file}: needs a top-level 'deviations:' list")
    for i, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise RegistryError(f"{file}: deviation #{i} is not a mapping")
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
    if claim.needs in RESULTS_NEEDS and ctx.results is None:
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
    """Judge every claim (`evaluate`, in order), then save the architecture facts computed on the
    way to the on-disk memo (`save_facts`), so that the next run reads them instead of building
    the models again. strict: as for `evaluate`."""
    out = [evaluate(c, ctx, strict=strict) for c in claims]
    save_facts(ctx)
    return out


def save_facts(ctx: Context) -> None:
    """Write the architecture facts this context computed to the on-disk memo, if it has one."""
    memo = ctx.cache.get("archfacts")
    if memo is not None:
        memo.save()


def count_statuses(results: list[ClaimResult]) -> dict[str, int]:
    """How many results have each verdict status: every status of stats.STATUSES, in that order,
    zero included."""
    counts = dict.fromkeys(st.STATUSES, 0)
    for r in results:
        counts[r.status] += 1
    return counts


__all__ = [
    "BASELINES",
    "FOUNDATION_MODELS",
    "KINDS",
    "PAPER_VERSION",
    "TABLE3_CONFIGS",
    "Claim",
    "ClaimResult",
    "Context",
    "RegistryError",
    "Verdict",
    "build_context",
    "claim_files",
    "config_label",
    "count_statuses",
    "data_kinds",
    "evaluate",
    "evaluate_all",
    "extra_configs",
    "load_claims",
    "load_deviations",
    "save_facts",
    "split_config",
]
