"""Reading a results set for claims: one configuration's per-fold values of one metric on one
test set (`Cell`), the groups of configurations claims range over (Table 3's rows, plus a
results set's configurations outside Table 3), and the words the verdicts use."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness import registry
from harness.claimkinds.base import Context, Inconclusive, NotRun
from harness.results import TEST_SETS, ResultsSet, canonical_model

# Display names and the 17 rows of Table 3 ("model|method", in the paper's order) come from the
# model registry (harness.registry), where each model carries its Table 3 row and methods.
BASELINES = registry.table3_names("end_to_end", "baseline")
FOUNDATION_MODELS = registry.table3_names("linear_probe", "foundation")
TABLE3_CONFIGS = tuple(f"{registry.get_spec(k).name}|{m}" for k, m in registry.paper_plan())
METHOD_WORDS = {"end_to_end": "end-to-end", "linear_probe": "linear probe", "lora": "LoRA"}
METRIC_WORDS = {"balanced_accuracy": "balanced accuracy", "auroc": "AUROC", "pr_auc": "PR-AUC"}


@dataclass(frozen=True, eq=False)
class Cell:
    """One configuration's per-fold values of one metric on one test set."""

    model: str
    method: str
    dataset: str
    metric: str
    values: np.ndarray

    @property
    def n(self) -> int:
        return int(self.values.size)

    @property
    def mean(self) -> float:
        return float(self.values.mean())

    @property
    def std(self) -> float:
        """Population std (ddof=0), as the paper prints."""
        return float(self.values.std())

    @property
    def sd(self) -> float:
        """Sample std (ddof=1), for tolerance margins."""
        return float(self.values.std(ddof=1)) if self.n > 1 else 0.0

    @property
    def label(self) -> str:
        return config_label(self.model, self.method)


def config_label(model: str, method: str) -> str:
    """'Virchow2 (LoRA)': a configuration as the report names it."""
    return f"{model} ({METHOD_WORDS.get(method, method)})"


def split_config(spec: str) -> tuple[str, str]:
    """(model result name, method) of '<model>|<method>'."""
    model, _, method = spec.partition("|")
    return canonical_model(model), method


def group(among: str | tuple | list | None, ctx: Context | None = None) -> list[str]:
    """The configurations ("model|method") a claim ranges over: "all" or one method's rows of
    Table 3, or an explicit list. With a results set in `ctx`, "all" and a method also take the
    set's configurations that are not in Table 3 (a user's model, or rows added with
    `claims --add`), so that a new model competes for the maxima and rankings."""
    if among in (None, "all"):
        base = list(TABLE3_CONFIGS)
    elif isinstance(among, str):
        base = [c for c in TABLE3_CONFIGS if c.endswith(f"|{among}")]
    else:
        out = []
        for item in among:
            out.extend(group(item, ctx) if "|" not in item else [item])
        return list(dict.fromkeys(out))
    return base + [
        c for c in extra_configs(ctx) if among in (None, "all") or c.endswith(f"|{among}")
    ]


def models_with(ctx: Context, models, *methods: str) -> list[str]:
    """`models`, plus the results set's models outside Table 3 that have every one of `methods`."""
    have: dict[str, set] = {}
    for config in extra_configs(ctx):
        model, _, method = config.partition("|")
        have.setdefault(model, set()).add(method)
    return list(models) + [m for m, got in have.items() if set(methods) <= got and m not in models]


def extra_configs(ctx: Context | None) -> list[str]:
    """The results set's configurations ("model|method") that are not rows of Table 3 and have
    rows on at least one of its test sets (a model trained only on the synthetic fixture has
    none: it is no row of the Table 3 view, forest plot or comparisons)."""
    if ctx is None or ctx.results is None:
        return []
    known, rs = set(TABLE3_CONFIGS), ctx.results
    return [
        f"{model}|{method}"
        for model, method in rs.configurations
        if f"{model}|{method}" not in known and any(rs.has(model, method, d) for d in TEST_SETS)
    ]


def results_of(ctx: Context) -> ResultsSet:
    """The context's results set; NotRun when there is none."""
    if ctx.results is None:
        raise NotRun("no results set was given")
    return ctx.results


def get_cell(ctx: Context, config: str, dataset: str, metric: str) -> Cell:
    """Per-fold values of one configuration ('<model>|<method>'); NotRun naming what is absent."""
    rs = results_of(ctx)
    model, method = split_config(config)
    if not rs.has(model, method):
        raise NotRun(rs.absence_reason(model, method))
    values = rs.values(model, method, dataset, metric)
    if values.size == 0:
        if not rs.has(model, method, dataset):
            raise NotRun(rs.absence_reason(model, method, dataset))
        raise NotRun(
            f"{config_label(model, method)} has no {METRIC_WORDS.get(metric, metric)} on {dataset}"
        )
    return Cell(model, method, dataset, metric, values)


def get_cells(
    ctx: Context, configs: list[str], dataset: str, metric: str, min_folds: int = 1
) -> list[Cell]:
    """Cells of several configurations; NotRun lists every missing one, Inconclusive short ones."""
    cells, missing = [], []
    for config in configs:
        try:
            cells.append(get_cell(ctx, config, dataset, metric))
        except NotRun as exc:
            missing.append(str(exc))
    if len(missing) > 2:
        raise NotRun(
            f"{len(missing)} of the {len(configs)} configurations it compares have no results in "
            f"this results set, e.g. {missing[-1]} (`amibr-bench plan` lists what each needs)"
        )
    if missing:
        raise NotRun("; ".join(dict.fromkeys(missing)))
    short = [f"{c.label} {c.n}" for c in cells if c.n < min_folds]
    if short:
        raise Inconclusive(f"fewer than {min_folds} folds: " + ", ".join(short))
    return cells


def f4(x: float) -> str:
    """A metric as the verdicts print it (4 decimals)."""
    return f"{x:.4f}"


def canonical_cfg(spec: str) -> str:
    """'<model>|<method>' with the registry's model name."""
    model, method = split_config(spec)
    return f"{model}|{method}"
