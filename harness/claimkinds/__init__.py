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

| module | kinds |
|---|---|
| `table3` | table_cell, maximum, ranking, value_range, sens_spec |
| `comparisons` | dominance, baseline_beats_foundation, performance_drop, performance_drop_share, significance |
| `protocol` | protocol_setting, fold_count, config_count |
| `architecture` | parameter_count, parameter_similarity, architecture_property, lora_trainable |
| `dataset` | dataset_figure, slide_disjoint, external |
| `smoke` | smoke_above_chance, run_counter |
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
