"""Claim kinds: one registered evaluator per kind, each with its typed parameters.

Where to add a kind: write its parameter type and its evaluator in the module of its family, or
in a new module imported below, and register it:

    class Gap(KindParams):                      # the `params:` of its claims, typed
        config: Config
        dataset: TestSet
        metric: Metric = "balanced_accuracy"

    @register("gap", Gap, needs="results", tolerances=(Absolute,), expected=float)
    def gap(claim: Claim, p: Gap, ctx: Context) -> Verdict:
        ...                                     # raise NotRun / Inconclusive, or return a Verdict

`harness.claims.load_claims` then validates every claim of that kind when the files load.

The modules group the kinds by family: `table3` (one cell, maxima, rankings, ranges,
sensitivity/specificity), `comparisons` (strategy against strategy, drops out of domain, Table 4),
`protocol` (settings and counts of a run), `architecture` (parameter counts, properties, what LoRA
trains), `dataset` (Table 1 figures, slide disjointness, statements nothing here can check) and
`smoke` (the smoke run's own checks). `python -m harness.claimkinds` lists every registered kind
with its module, `needs`, tolerance rules, parameters and the number of claims using it.
"""

from harness.claimkinds import architecture, comparisons, dataset, protocol, smoke, table3
from harness.claimkinds.base import (
    KINDS,
    NEEDS,
    Claim,
    ClaimResult,
    Context,
    Inconclusive,
    Kind,
    KindParams,
    NotRun,
    RegistryError,
    Verdict,
    get_kind,
    register,
)

__all__ = [
    "KINDS",
    "NEEDS",
    "Claim",
    "ClaimResult",
    "Context",
    "Inconclusive",
    "Kind",
    "KindParams",
    "NotRun",
    "RegistryError",
    "Verdict",
    "architecture",
    "comparisons",
    "dataset",
    "get_kind",
    "protocol",
    "register",
    "smoke",
    "table3",
]


def listing() -> list[dict]:
    """One row per registered kind: name, module, needs, tolerance rules, parameters (name: type,
    required or default) and how many claims of expected_results/ use it."""
    from harness.claims import load_claims

    used: dict[str, int] = {}
    for claim in load_claims():
        used[claim.kind] = used.get(claim.kind, 0) + 1
    rows = []
    for name, kind in sorted(KINDS.items(), key=lambda kv: (kv[1].evaluate.__module__, kv[0])):
        params = [
            (field.alias or p) + ("" if field.is_required() else f"={field.default!r}")
            for p, field in kind.params.model_fields.items()
        ]
        rows.append(
            {
                "kind": name,
                "module": kind.evaluate.__module__.rpartition(".")[2],
                "needs": kind.needs,
                "rules": ", ".join(kind.rules),
                "params": ", ".join(params) or "-",
                "claims": used.get(name, 0),
            }
        )
    return rows


def main() -> int:
    """`python -m harness.claimkinds`: the registered kinds, two lines each (any terminal width)."""
    for row in listing():
        print(
            f"{row['kind']} ({row['module']}; needs {row['needs']}; rules {row['rules']}; "
            f"{row['claims']} claim(s))\n    params: {row['params']}"
        )
    return 0
