"""The claim registry (expected_results/*.yaml) and one evaluator per claim kind.

A claim is a statement of the paper with its source, expected value and tolerance rule. An
evaluator judges it against a Context (a results set, the data root, the weights folder) and
returns a Verdict: passed, passed-and-better, failed, inconclusive or not run (always with a
reason).
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from harness import data, paths, registry, splits
from harness import stats as st
from harness.results import (
    TEST_SETS,
    ResultsSet,
    canonical_model,
    load_results_set,
)

PAPER_VERSION = "MELBA 2026:006 (arXiv 2506.21444v3)"
NEEDS = ("data", "architecture", "results", "predictions", "weights", "run", "external")
# Claim kinds whose evaluator reads the data tree; they must declare needs: data, which
# evaluate() judges only on a public (not synthetic) tree.
DATA_KINDS = ("dataset_figure", "slide_disjoint")
RULES = ("exact", "abs", "rel", "printed", "fold_spread", "std_interval", "alpha")
NON_CLAIM_FILES = ("deviations.yaml",)
REQUIRED = ("id", "statement", "source", "section", "kind", "needs", "tolerance")

# Display names and the 17 rows of Table 3 ("model|method", in the paper's order) come from the
# model registry (harness.registry), where each model carries its Table 3 row and methods.
BASELINES = registry.table3_names("end_to_end", "baseline")
FOUNDATION_MODELS = registry.table3_names("linear_probe", "foundation")
TABLE3_CONFIGS = tuple(f"{registry.get_spec(k).name}|{m}" for k, m in registry.paper_plan())
METHOD_WORDS = {"end_to_end": "end-to-end", "linear_probe": "linear probe", "lora": "LoRA"}
METRIC_WORDS = {"balanced_accuracy": "balanced accuracy", "auroc": "AUROC", "pr_auc": "PR-AUC"}


class RegistryError(paths.InputError):
    """The claim registry is malformed; the message names the file and the claim."""


# ------------------------------------------------------------------------------- data types
@dataclass(frozen=True)
class Claim:
    """One entry of expected_results/*.yaml (also readable like a dict: claim['params'])."""

    id: str
    statement: str
    source: str
    section: str
    kind: str
    needs: str
    tolerance: dict
    params: dict = field(default_factory=dict)
    expected: Any = None
    known_contradiction: str | None = None
    file: str = ""
    extra: dict = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        if key in self.extra:
            return self.extra[key]
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            value = self[key]
        except AttributeError:
            return default
        return default if value is None else value


@dataclass(frozen=True)
class Verdict:
    """An evaluator's judgement: status, what was observed, and why (in plain words)."""

    status: str
    observed: Any = None
    reason: str = ""
    details: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in st.STATUSES:
            raise ValueError(f"unknown verdict status {self.status!r}")
        if self.status in (st.NOT_RUN, st.INCONCLUSIVE) and not self.reason:
            raise ValueError(f"a '{self.status}' verdict needs a reason")


@dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    verdict: Verdict

    @property
    def status(self) -> str:
        return self.verdict.status

    @property
    def confirmed_contradiction(self) -> bool:
        return bool(self.claim.known_contradiction) and self.status == st.FAILED

    @property
    def evaluator_error(self) -> bool:
        return bool(self.verdict.details.get("evaluator_error"))

    @property
    def unexpected(self) -> bool:
        """A failure nobody expected, a known contradiction that no longer fails, or a claim the
        harness could not judge because of an error (never to be read as a mere "not run")."""
        if self.evaluator_error:
            return True
        if self.claim.known_contradiction:
            return self.status in (st.PASSED, st.BETTER)
        return self.status == st.FAILED


@dataclass
class Context:
    """What claims are judged against. Any part may be absent; claims needing it are not run."""

    results: ResultsSet | None = None
    data_root: Path | None = None
    weights_dir: Path | None = None
    data_hint: str = str(paths.SHARED_DATA)
    cache: dict = field(default_factory=dict)


class NotRun(Exception):
    """Raised inside an evaluator: the claim cannot be judged here (message = reason)."""


class Inconclusive(Exception):
    """Raised inside an evaluator: too little evidence to decide (message = the numbers)."""


# ------------------------------------------------------------------------------- registry
def _claim_from(raw: Any, file: Path, index: int) -> Claim:
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
    tol = raw["tolerance"]
    if not isinstance(tol, dict) or tol.get("rule") not in RULES:
        raise RegistryError(f"{where}: tolerance must be a mapping with rule in {', '.join(RULES)}")
    if raw["kind"] not in EVALUATORS:
        raise RegistryError(
            f"{where}: unknown kind {raw['kind']!r} (known: {', '.join(sorted(EVALUATORS))})"
        )
    if (raw["kind"] in DATA_KINDS) != (raw["needs"] == "data"):
        raise RegistryError(
            f"{where}: kind {raw['kind']!r} with needs {raw['needs']!r}: the kinds that read the "
            f"data tree ({', '.join(DATA_KINDS)}) and only they have needs 'data'"
        )
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        raise RegistryError(f"{where}: params must be a mapping")
    if (raw["kind"] == "external") != (raw["needs"] == "external") or (
        raw["kind"] == "external" and not params.get("why")
    ):
        raise RegistryError(
            f"{where}: a claim nothing here can check has kind and needs 'external' and says "
            "why in params.why"
        )
    known = set(REQUIRED) | {"params", "expected", "known_contradiction"}
    return Claim(
        id=str(raw["id"]),
        statement=str(raw["statement"]).strip(),
        source=str(raw["source"]),
        section=str(raw["section"]),
        kind=raw["kind"],
        needs=raw["needs"],
        tolerance=dict(tol),
        params=dict(params),
        expected=raw["expected"],
        known_contradiction=(
            str(raw["known_contradiction"]).strip() if raw.get("known_contradiction") else None
        ),
        file=file.name,
        extra={k: v for k, v in raw.items() if k not in known},
    )


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


# ---------------------------------------------------------------------------- cell helpers
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
    return f"{model} ({METHOD_WORDS.get(method, method)})"


def split_config(spec: str) -> tuple[str, str]:
    model, _, method = spec.partition("|")
    return canonical_model(model), method


def _group(among: str | list | None, ctx: Context | None = None) -> list[str]:
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
            out.extend(_group(item, ctx) if "|" not in item else [item])
        return list(dict.fromkeys(out))
    return base + [
        c for c in extra_configs(ctx) if among in (None, "all") or c.endswith(f"|{among}")
    ]


def extra_configs(ctx: Context | None) -> list[str]:
    """The results set's configurations ("model|method") that are not rows of Table 3."""
    if ctx is None or ctx.results is None:
        return []
    known = set(TABLE3_CONFIGS)
    keys = (f"{model}|{method}" for model, method in ctx.results.configurations)
    return [k for k in keys if k not in known]


def _results(ctx: Context) -> ResultsSet:
    if ctx.results is None:
        raise NotRun("no results set was given")
    return ctx.results


def get_cell(ctx: Context, config: str, dataset: str, metric: str) -> Cell:
    rs = _results(ctx)
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


def _f(x: float) -> str:
    return f"{x:.4f}"


def _min_folds(claim: Claim) -> int:
    return int(claim.tolerance.get("min_folds", claim.params.get("min_folds", 5)))


# ------------------------------------------------------------------------------ evaluators
def eval_table_cell(claim: Claim, ctx: Context) -> Verdict:
    """A Table 3 mean (fold_spread rule) or std (std_interval rule) of one configuration."""
    p, tol = claim.params, claim.tolerance
    config = f"{p['model']}|{p['method']}"
    cell = get_cell(ctx, config, p["dataset"], p["metric"])
    need = _min_folds(claim)
    vals = ", ".join(_f(v) for v in cell.values)
    details = {"folds": cell.values.tolist(), "n": cell.n, "mean": cell.mean, "std": cell.std}
    if cell.n < need:
        raise Inconclusive(
            f"only {cell.n} of the {need} folds the claim needs: mean {_f(cell.mean)} "
            f"(folds {vals})"
        )
    if p.get("stat", "mean") == "mean":
        delta = st.equivalence_margin(
            tol["s_ref"], tol["n_ref"], cell.n, floor=tol.get("floor", 0.005), k=tol.get("k", 2.0)
        )
        j = st.judge_mean(cell.mean, float(claim.expected), delta)
        details.update(delta=delta, low=j.low, high=j.high)
        observed = round(cell.mean, 5)
        text = f"mean {_f(cell.mean)} over {cell.n} folds ({vals}); {j.note}"
        if cell.n >= 2:
            lo, hi = st.bootstrap_mean_ci(cell.values, n_resamples=2000)
            details["ci95_folds"] = (lo, hi)
            text += f"; 95% bootstrap interval over folds {_f(lo)}-{_f(hi)}"
        per_image = _prediction_ci(ctx, cell)
        if per_image:
            details["ci95_images"] = per_image
            text += f"; 95% bootstrap interval over images {_f(per_image[0])}-{_f(per_image[1])}"
        paper_set = ctx.results is not None and ctx.results.manifest.get("tier") == "paper"
        if paper_set and round(cell.mean, 4) != float(claim.expected) and j.status == st.PASSED:
            text += (
                f"; the fold values average {cell.mean:.5f} where the paper prints "
                f"{claim.expected} (the folds are themselves rounded to 4 decimals)"
            )
        return Verdict(j.status, observed, text, details)
    lo, hi = st.std_interval(
        float(claim.expected),
        tol["n_ref"],
        cell.n,
        confidence=tol.get("confidence", 0.95),
        floor=tol.get("floor", 1e-4),
    )
    j = st.judge_std(cell.std, lo, hi)
    details.update(low=lo, high=hi)
    return Verdict(
        j.status,
        round(cell.std, 5),
        f"fold std {_f(cell.std)} over {cell.n} folds ({vals}); {j.note}",
        details,
    )


def _prediction_ci(ctx: Context, cell: Cell) -> tuple[float, float] | None:
    """Bootstrap CI of the fold-averaged metric over test images, when predictions exist."""
    rs = ctx.results
    if not rs or not rs.predictions or cell.metric not in st.PER_SAMPLE_METRICS:
        return None
    folds = rs.predictions_for(cell.model, cell.method, cell.dataset)
    if not folds or len({tuple(names) for names, _, _ in folds.values()}) != 1:
        return None  # the folds must score the same images for a paired resampling
    _, y, _ = next(iter(folds.values()))
    if y.all() or not y.any():
        return None  # one class only: no interval for a two-class metric
    probs = np.vstack([prob for _, _, prob in folds.values()])
    _, lo, hi = st.bootstrap_prediction_ci(y, probs, cell.metric, n_resamples=299)
    return lo, hi


def _order_violations(cells: list[Cell], order: list[str]) -> list[tuple[Cell, Cell]]:
    """(expected higher, expected lower) pairs whose order the observed means reverse."""
    by = {f"{c.model}|{c.method}": c for c in cells}
    ordered = [by[canonical_cfg(o)] for o in order]
    rest = [c for key, c in by.items() if key not in set(order)]
    pairs = list(zip(ordered, ordered[1:], strict=False)) + [(ordered[-1], c) for c in rest]
    return [(a, b) for a, b in pairs if not a.mean > b.mean]


def canonical_cfg(spec: str) -> str:
    model, method = split_config(spec)
    return f"{model}|{method}"


def _judge_order(cells: list[Cell], order: list[str], k: float, sign: int) -> tuple[str, str]:
    """Status and explanation of an ordering claim with noise margins."""
    if sign < 0:  # ranking from the bottom: negate the means
        cells = [Cell(c.model, c.method, c.dataset, c.metric, -c.values) for c in cells]
    bad = _order_violations(cells, order)
    if not bad:
        return st.PASSED, ""
    notes, hard = [], False
    for a, b in bad:
        gap = b.mean - a.mean
        margin = st.difference_margin(a.sd, a.n, b.sd, b.n, k=k)
        hard |= gap > margin
        notes.append(
            f"{b.label} ({_f(abs(b.mean))}) is {'above' if sign > 0 else 'below'} "
            f"{a.label} ({_f(abs(a.mean))}) by {gap:.4f} "
            f"({'beyond' if gap > margin else 'within'} the noise margin {margin:.4f})"
        )
    return (st.FAILED if hard else st.INCONCLUSIVE), "; ".join(notes)


def _ranking_text(cells: list[Cell], sign: int, top: int) -> str:
    ranked = sorted(cells, key=lambda c: -sign * c.mean)[:top]
    return ", ".join(f"{i}. {c.label} {_f(c.mean)}" for i, c in enumerate(ranked, 1))


def eval_ranking(claim: Claim, ctx: Context) -> Verdict:
    """Named configurations hold the first (or last) places, in the stated order."""
    p = claim.params
    order = [canonical_cfg(o) for o in p["order"]]
    configs = _group(p.get("among"), ctx)
    cells = get_cells(ctx, configs, p["dataset"], p["metric"], _min_folds(claim))
    sign = -1 if p.get("from", "top") == "bottom" else 1
    status, why = _judge_order(cells, order, claim.tolerance.get("k", 2.0), sign)
    where = "lowest" if sign < 0 else "highest"
    observed = _ranking_text(cells, sign, len(order) + 1)
    text = f"{where} {METRIC_WORDS[p['metric']]} on {p['dataset']}: {observed}"
    if status == st.INCONCLUSIVE:
        raise Inconclusive(f"{why}; {text}")
    return Verdict(status, observed, f"{why}; {text}" if why else text)


def eval_maximum(claim: Claim, ctx: Context) -> Verdict:
    """The best mean over a group equals the stated value and is attained by the stated config."""
    p, tol = claim.params, claim.tolerance
    cells = get_cells(
        ctx, _group(p.get("among"), ctx), p["dataset"], p["metric"], _min_folds(claim)
    )
    want = canonical_cfg(p["config"])
    status, why = _judge_order(cells, [want], tol.get("k", 2.0), 1)
    best = max(cells, key=lambda c: c.mean)
    observed = f"{_f(best.mean)} by {best.label}"
    if status == st.INCONCLUSIVE:
        raise Inconclusive(f"{why}; best is {observed}")
    if status == st.FAILED:
        return Verdict(
            st.FAILED,
            observed,
            f"the best is {observed}, not {config_label(*split_config(want))}: {why}",
        )
    delta = st.equivalence_margin(
        tol["s_ref"], tol["n_ref"], best.n, floor=tol.get("floor", 0.005), k=tol.get("k", 2.0)
    )
    j = st.judge_mean(best.mean, float(claim.expected), delta)
    return Verdict(j.status, observed, f"best is {observed}; {j.note}", {"delta": delta})


def eval_value_range(claim: Claim, ctx: Context) -> Verdict:
    """Every configuration of a strategy lies in the printed range [lo, hi] (printed precision)."""
    p, tol = claim.params, claim.tolerance
    cells = get_cells(ctx, _group(p["method"], ctx), p["dataset"], p["metric"], _min_folds(claim))
    lo, hi = (float(x) for x in claim.expected)
    half = float(tol.get("step", 0.01)) / 2
    low_c, high_c = min(cells, key=lambda c: c.mean), max(cells, key=lambda c: c.mean)
    observed = f"{_f(low_c.mean)} ({low_c.model}) to {_f(high_c.mean)} ({high_c.model})"
    outside = [c for c in cells if not (lo - half <= c.mean < hi + half)]
    if outside:
        names = ", ".join(f"{c.label} {_f(c.mean)}" for c in outside)
        return Verdict(
            st.FAILED,
            observed,
            f"outside {lo:g}-{hi:g} even after rounding to the printed precision: {names}",
        )
    return Verdict(
        st.PASSED, observed, f"all {len(cells)} within {lo:g}-{hi:g} at printed precision"
    )


def _models_with(ctx: Context, models, *methods: str) -> list[str]:
    """`models`, plus the results set's models outside Table 3 that have every one of `methods`."""
    extra = [c.partition("|") for c in extra_configs(ctx)]
    have: dict[str, set] = {}
    for model, _, method in extra:
        have.setdefault(model, set()).add(method)
    return list(models) + [m for m, got in have.items() if set(methods) <= got and m not in models]


def eval_dominance(claim: Claim, ctx: Context) -> Verdict:
    """For each model, one strategy's mean beats the other's on every listed test set and metric."""
    p, k = claim.params, claim.tolerance.get("k", 2.0)
    models = p.get("models") or _models_with(ctx, FOUNDATION_MODELS, p["better"], p["worse"])
    gaps, bad = [], []
    for dataset in p["datasets"]:
        for metric in p["metrics"]:
            better = get_cells(
                ctx, [f"{m}|{p['better']}" for m in models], dataset, metric, _min_folds(claim)
            )
            worse = get_cells(
                ctx, [f"{m}|{p['worse']}" for m in models], dataset, metric, _min_folds(claim)
            )
            for b, w in zip(better, worse, strict=True):
                gap = b.mean - w.mean
                gaps.append((gap, b, dataset, metric))
                if gap <= 0:
                    bad.append(
                        (gap, st.difference_margin(b.sd, b.n, w.sd, w.n, k=k), b, dataset, metric)
                    )
    gap, b, dataset, metric = min(gaps, key=lambda g: g[0])
    observed = f"smallest gain {gap:+.4f} ({b.model} on {dataset}, {METRIC_WORDS[metric]})"
    if not bad:
        return Verdict(
            st.PASSED,
            observed,
            f"all {len(gaps)} comparisons favour {METHOD_WORDS[p['better']]}; {observed}",
        )
    text = "; ".join(
        f"{b.model} on {d} ({METRIC_WORDS[m]}): {g:+.4f}, margin {mg:.4f}" for g, mg, b, d, m in bad
    )
    if all(-g <= mg for g, mg, *_ in bad):
        raise Inconclusive(f"reversed within noise: {text}")
    return Verdict(st.FAILED, observed, f"not better: {text}")


def eval_baseline_beats_foundation(claim: Claim, ctx: Context) -> Verdict:
    """Count (test set, metric) pairs where the best baseline beats the best LP and best LoRA."""
    p = claim.params
    hits, misses = 0, []
    for dataset in p["datasets"]:
        for metric in p["metrics"]:
            best = {}
            for method in ("end_to_end", "linear_probe", "lora"):
                cells = get_cells(ctx, _group(method, ctx), dataset, metric, _min_folds(claim))
                best[method] = max(cells, key=lambda c: c.mean)
            b = best["end_to_end"]
            rivals = [best["linear_probe"], best["lora"]]
            if all(b.mean > r.mean for r in rivals):
                hits += 1
            else:
                top = max(rivals, key=lambda c: c.mean)
                misses.append(
                    f"{dataset} {METRIC_WORDS[metric]}: {top.label} {_f(top.mean)} "
                    f">= {b.label} {_f(b.mean)}"
                )
    total = len(p["datasets"]) * len(p["metrics"])
    need = int(p["min_count"])
    observed = f"{hits} of {total}"
    text = f"a baseline beats both strategies in {observed} (needs >= {need})"
    if misses:
        text += "; not in: " + "; ".join(misses)
    return Verdict(st.PASSED if hits >= need else st.FAILED, observed, text)


def eval_performance_drop(claim: Claim, ctx: Context) -> Verdict:
    """Performance drops from AMi-Br to the external test sets (per strategy, or a share)."""
    p = claim.params
    ref = p.get("reference", "AMi-Br")
    need = _min_folds(claim)
    if p["mode"] == "each_strategy":
        found, lacking = [], []
        for method in p["methods"]:
            for ext in p["external"]:
                droppers = []
                for config in _group(method, ctx):
                    drops = all(
                        get_cells(ctx, [config], ext, m, need)[0].mean
                        < get_cells(ctx, [config], ref, m, need)[0].mean
                        for m in p["metrics"]
                    )
                    if drops:
                        droppers.append(split_config(config)[0])
                (found if droppers else lacking).append(
                    f"{METHOD_WORDS[method]} on {ext}: {', '.join(droppers) or 'none'}"
                )
        observed = "; ".join(found + lacking)
        status = st.FAILED if lacking else st.PASSED
        return Verdict(
            status, observed, f"configurations lower on both metrics than on {ref}: {observed}"
        )
    configs = _group(p.get("among"), ctx)
    ext, metric = p["external"], p["metric"]
    lower = [
        c
        for c in configs
        if get_cells(ctx, [c], ext, metric, need)[0].mean
        < get_cells(ctx, [c], ref, metric, need)[0].mean
    ]
    share = len(lower) / len(configs)
    observed = f"{len(lower)} of {len(configs)} ({share:.0%})"
    not_lower = [config_label(*split_config(c)) for c in configs if c not in lower]
    text = (
        f"{observed} configurations score lower on {ext} than on {ref} "
        f"(needs >= {p['min_share']:.0%})"
    )
    if not_lower:
        text += "; not lower: " + ", ".join(not_lower)
    return Verdict(st.PASSED if share >= p["min_share"] else st.FAILED, observed, text)


def eval_significance(claim: Claim, ctx: Context) -> Verdict:
    """Table 4: Wilcoxon (paired by model and fold) or Mann-Whitney U between two strategies."""
    p, alpha = claim.params, float(claim.tolerance.get("alpha", st.ALPHA))
    expected = claim.expected or {}
    dataset, metric, x_m, y_m = p["dataset"], p["metric"], p["x"], p["y"]
    xs = get_cells(ctx, _group(x_m, ctx), dataset, metric)
    ys = get_cells(ctx, _group(y_m, ctx), dataset, metric)
    if p["test"] == "wilcoxon":
        pairs_x, pairs_y = [], []
        for cx in xs:
            cy = next((c for c in ys if c.model == cx.model), None)
            if cy is None:  # a model with one of the two strategies only: nothing to pair
                continue
            fx = ctx.results.folds(cx.model, x_m, dataset)
            fy = ctx.results.folds(cy.model, y_m, dataset)
            common = sorted(set(fx) & set(fy))
            pairs_x += [cx.values[fx.index(f)] for f in common]
            pairs_y += [cy.values[fy.index(f)] for f in common]
        n_need = int(p.get("n", 35))
        how = (
            f"{len(pairs_x)} pairs (each model's {METHOD_WORDS[x_m]} and {METHOD_WORDS[y_m]} "
            "on the same fold)"
        )
        if len(pairs_x) < n_need:
            raise Inconclusive(f"{how}; the paper's test uses {n_need}")
        res = st.wilcoxon_paired(pairs_x, pairs_y, pairing=how)
        effect = (
            f"signed ranks of {METHOD_WORDS[y_m]} - {METHOD_WORDS[x_m]}: rank-biserial "
            f"{res.effect:+.3f}, Hodges-Lehmann shift {res.shift:+.4f}; {res.n_tied} of "
            f"{res.n_x} pairs tied (zero difference, left out of the ranks: zero_method "
            f"'{st.WILCOXON_ZERO_METHOD}')"
        )
    else:
        vx = np.concatenate([c.values for c in xs])
        vy = np.concatenate([c.values for c in ys])
        need_x, need_y = int(p.get("n_x", vx.size)), int(p.get("n_y", vy.size))
        how = (
            f"{vx.size} {METHOD_WORDS[x_m]} fold values ({len(xs)} models) vs {vy.size} "
            f"{METHOD_WORDS[y_m]} fold values ({len(ys)} models), unpaired"
        )
        if vx.size < need_x or vy.size < need_y:
            raise Inconclusive(f"{how}; the paper's test uses {need_x} vs {need_y}")
        res = st.mann_whitney(vx, vy, pairing=how)
        effect = (
            f"P({METHOD_WORDS[x_m]} > {METHOD_WORDS[y_m]}) + P(tie)/2 = {res.effect:.3f} "
            f"(common-language effect size; {res.n_tied} of {res.n_x * res.n_y} cross pairs "
            f"tied); pooled means {_f(vx.mean())} vs {_f(vy.mean())}"
        )
    details = {
        "test": res.test,
        "statistic": res.statistic,
        "pvalue": res.pvalue,
        "n_x": res.n_x,
        "n_y": res.n_y,
        "pairing": how,
        "effect": res.effect,
        "shift": res.shift,
        "n_tied": res.n_tied,
    }
    higher = {"x": x_m, "y": y_m}.get(res.higher)
    side = f"{METHOD_WORDS[higher]} higher" if higher else "neither higher"
    observed = f"p = {res.pvalue:.2g}, {side}"
    text = f"{res.test} on {METRIC_WORDS[metric]}, {how}: p = {res.pvalue:.3g}; {effect}"
    if expected.get("higher") and higher != expected["higher"]:
        shown = f"{METHOD_WORDS[higher]} is higher" if higher else "the ranks favour neither"
        return Verdict(
            st.FAILED,
            observed,
            f"{shown}, not {METHOD_WORDS[expected['higher']]}; {text}",
            details,
        )
    if expected.get("significant") is True and not res.significant(alpha):
        return Verdict(st.FAILED, observed, f"not significant at alpha {alpha}; {text}", details)
    if expected.get("significant") is None:
        text += " (the paper's p-value is lost from the text; only the direction is judged)"
    else:
        text += f" (significant at alpha {alpha}, an assumed threshold)"
    return Verdict(st.PASSED, observed, text, details)


def eval_sens_spec(claim: Claim, ctx: Context) -> Verdict:
    """Sensitivity or specificity of the atypical class at threshold 0.5, from predictions."""
    p = claim.params
    rs = _results(ctx)
    model, method = split_config(f"{p['model']}|{p['method']}")
    if not rs.predictions:
        raise NotRun(
            "needs per-image predictions (predictions.csv); "
            f"results set '{rs.name}' holds per-fold metrics only"
        )
    folds = rs.predictions_for(model, method, p["dataset"])
    if not folds:
        raise NotRun(
            f"predictions.csv has no rows for {config_label(model, method)} on {p['dataset']}"
        )
    if len(folds) < _min_folds(claim):
        raise Inconclusive(f"predictions for {len(folds)} of {_min_folds(claim)} folds")
    idx = 0 if p["quantity"] == "sensitivity" else 1
    per_fold = [st.sensitivity_specificity(y, prob)[idx] for _, y, prob in folds.values()]
    value = float(np.mean(per_fold))
    details = {"folds": per_fold}
    images = {tuple(names) for names, _, _ in folds.values()}
    _, y, _ = next(iter(folds.values()))
    if len(images) == 1 and y.any() and not y.all():
        probs = np.vstack([prob for _, _, prob in folds.values()])
        details["ci95_images"] = st.bootstrap_prediction_ci(
            y, probs, p["quantity"], n_resamples=499
        )[1:]
    tol = float(claim.tolerance["value"])
    diff = value - float(claim.expected)
    status = st.PASSED if abs(diff) <= tol else (st.BETTER if diff > 0 else st.FAILED)
    return Verdict(
        status,
        round(value, 4),
        f"{p['quantity']} {_f(value)} (mean of {len(per_fold)} "
        f"folds), {diff:+.4f} from the paper (tolerance ±{tol:g})",
        details,
    )


def _lookup(settings: dict, key: str):
    """settings['a.b'] or settings['a']['b'] or settings['a_b']; KeyError if none."""
    if key in settings:
        return settings[key]
    node: Any = settings
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            break
        node = node[part]
    else:
        return node
    flat = key.replace(".", "_")
    if flat in settings:
        return settings[flat]
    raise KeyError(key)


def _same(a, b) -> bool:
    if isinstance(b, list):
        return isinstance(a, list | tuple) and sorted(map(str, a)) == sorted(map(str, b))
    if isinstance(b, float) or isinstance(a, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    return a == b


def _protocol_run(rs: ResultsSet) -> None:
    """Protocol statements describe runs of the protocol: a smoke tier or synthetic data is
    "not run", never "passed" (their settings are the tier's, not the paper's experiment)."""
    tier, data_kind = rs.manifest.get("tier"), rs.manifest.get("data")
    if tier == "smoke" or data_kind == "synthetic":
        raise NotRun(
            f"a statement about the paper's protocol; results set '{rs.name}' is a "
            f"{tier or 'unknown'}-tier run on {data_kind or 'unknown'} data; judged on runs of "
            "the full protocol (`nox -s full_gpu`)"
        )


def eval_protocol_setting(claim: Claim, ctx: Context) -> Verdict:
    """A protocol setting (LoRA rank, batch size, ...) as recorded in the run manifest."""
    rs, p = _results(ctx), claim.params
    _protocol_run(rs)
    methods = p.get("methods") or ["end_to_end", "linear_probe", "lora"]
    keys = [p["setting"], *p.get("aliases", [])]
    entries = {
        k: v
        for k, v in (rs.manifest.get("configs") or {}).items()
        if k.partition("|")[2] in methods and isinstance(v, dict) and v.get("settings")
    }
    if not entries:
        raise NotRun(
            f"needs a run manifest: results set '{rs.name}' records no run settings for "
            f"{'/'.join(METHOD_WORDS[m] for m in methods)} (manifest.json configs[...].settings)"
        )
    seen, wrong, unknown, overridden = {}, [], [], {}
    for name, entry in entries.items():
        changed = entry["settings"].get("overrides") or {}
        last = p["setting"].rpartition(".")[2]
        if last in changed:  # a tier (smoke) that departs from the protocol on purpose
            overridden[name] = changed[last]
            continue
        for key in keys:
            try:
                value = _lookup(entry["settings"], key)
                break
            except KeyError:
                continue
        else:
            unknown.append(name)
            continue
        seen[name] = value
        if not _same(value, claim.expected):
            wrong.append(f"{name}: {value!r}")
    if not seen and overridden:
        values = ", ".join(f"{k}: {v!r}" for k, v in overridden.items())
        raise NotRun(
            f"the {rs.manifest.get('tier', 'run')} tier sets {p['setting']} on purpose ({values}); "
            "judged on runs of the full protocol"
        )
    if not seen:
        raise NotRun(f"the run manifest does not record '{p['setting']}'")
    preset = rs.manifest.get("preset", "unknown")
    observed = sorted({repr(v) for v in seen.values()})
    text = f"{len(seen)} configuration(s) of preset '{preset}'"
    if unknown:
        text += f"; not recorded for {', '.join(unknown)}"
    if overridden:
        text += f"; set on purpose by the tier for {', '.join(overridden)}"
    if wrong:
        return Verdict(st.FAILED, ", ".join(observed), f"differs in {', '.join(wrong)} ({text})")
    return Verdict(st.PASSED, ", ".join(observed), f"as stated in {text}")


def eval_fold_count(claim: Claim, ctx: Context) -> Verdict:
    """Every configuration was cross-validated with the stated number of folds."""
    rs = _results(ctx)
    _protocol_run(rs)
    want = int(claim.expected)
    counts = {}
    for model, method in rs.configurations:
        folds = set()
        for ds in rs.datasets:
            folds |= set(rs.folds(model, method, ds))
        counts[config_label(model, method)] = folds
    too_many = [f"{k}: {sorted(v)}" for k, v in counts.items() if max(v) > want]
    short = [f"{k}: {len(v)}" for k, v in counts.items() if len(v) < want]
    sizes = sorted({len(v) for v in counts.values()})
    observed = "/".join(map(str, sizes)) + " folds"
    if too_many:
        return Verdict(st.FAILED, observed, f"folds beyond {want}: {'; '.join(too_many)}")
    if short:
        raise Inconclusive(f"partial run, fewer than {want} folds: {'; '.join(short)}")
    return Verdict(st.PASSED, observed, f"all {len(counts)} configurations have folds 1-{want}")


def eval_config_count(claim: Claim, ctx: Context) -> Verdict:
    """How many distinct models the paper's own results evaluate with the given strategies."""
    rs, p = _results(ctx), claim.params
    if rs.manifest.get("tier") != "paper":
        raise NotRun(
            "a statement about the paper's own experiment; judged on the authors' "
            f"results set ('paper') only, not on '{rs.name}'"
        )
    methods = p["methods"]
    models = sorted({m for m, meth in rs.configurations if meth in methods})
    want = int(claim.expected)
    observed = len(models)
    strategies = " or ".join(METHOD_WORDS[m] for m in methods)
    text = f"{observed} model(s) with {strategies}: {', '.join(models)}"
    if observed == want:
        return Verdict(st.PASSED, observed, text)
    pending = [
        k
        for k, v in (rs.manifest.get("configs") or {}).items()
        if k.partition("|")[2] in methods and canonical_model(k.partition("|")[0]) not in models
    ]
    if observed < want and pending:
        raise NotRun(f"{text}; not run: {', '.join(pending)}")
    return Verdict(st.FAILED, observed, text)


def _fact(ctx: Context, fact: str, key: str, compute):
    """An architecture fact: from the on-disk memo (harness.archfacts) when the context has one
    (contexts made by build_context), else computed once per Context. The memo is keyed by the
    registry entry's digest and the LoRA settings, per torch/timm/peft version."""
    cache = ctx.cache.setdefault("facts", {})
    if (fact, key) not in cache:
        memo = ctx.cache.get("archfacts")
        if memo is None:
            cache[(fact, key)] = compute()
        else:
            from harness import registry

            salt = json.dumps(registry.LORA_CONFIG, sort_keys=True) if "lora" in fact else ""
            digest = registry.get_spec(key).digest() + salt
            cache[(fact, key)] = memo.get(fact, key, digest, compute)
    return cache[(fact, key)]


def _count(ctx: Context, key: str, head) -> int:
    """Parameters of a registry model built on the meta device. Imported late (it needs torch and
    timm); a registry that cannot build a model is an error, never a claim "not run"."""

    def compute() -> int:
        models = importlib.import_module("harness.models")
        return int(models.parameter_count(key, head=head))

    return _fact(ctx, f"parameters:{head}", key, compute)


def _meta_model(ctx: Context, key: str, lora: bool = False):
    """A registry model built on the meta device (LoRA-wrapped with its one-logit head when
    `lora`), once per Context."""
    cache = ctx.cache.setdefault("meta_models", {})
    if (key, lora) not in cache:
        torch = importlib.import_module("torch")
        models = importlib.import_module("harness.models")
        with torch.device("meta"):
            model = models.build_backbone(key)
            if lora:
                model = models.wrap_lora(models.attach_head(model))
        cache[(key, lora)] = model
    return cache[(key, lora)]


def _attribute(obj, path: str):
    """'patch_embed.patch_size', 'layers.0.blocks.0.window_size', or 'class' (the class name)."""
    if path == "class":
        return type(obj).__name__
    for part in path.split("."):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return list(obj) if isinstance(obj, tuple) else obj


def eval_architecture_property(claim: Claim, ctx: Context) -> Verdict:
    """A property the paper states of an architecture (its family, patch size, window size),
    read from the model harness.models builds on the meta device."""
    p = claim.params
    seen = {
        key: _fact(
            ctx,
            f"attribute:{p['attribute']}",
            key,
            lambda k=key: _attribute(_meta_model(ctx, k), p["attribute"]),
        )
        for key in p["models"]
    }
    wrong = [f"{k}: {v}" for k, v in seen.items() if not _same(v, claim.expected)]
    text = f"{p['attribute']} of " + ", ".join(f"{k} {v}" for k, v in seen.items())
    if wrong:
        return Verdict(st.FAILED, "; ".join(wrong), f"{text} (differs: {', '.join(wrong)})")
    return Verdict(st.PASSED, str(claim.expected), text)


def eval_lora_trainable(claim: Claim, ctx: Context) -> Verdict:
    """After the LoRA wrap only the adapters and the new head train; the backbone is frozen."""
    stray, counts = {}, {}
    for key in claim.params["models"]:

        def compute(key=key) -> dict:
            model = _meta_model(ctx, key, lora=True)
            names = [n for n, q in model.named_parameters() if q.requires_grad]
            extra = [
                n
                for n in names
                if not any(t in n for t in ("lora_A.", "lora_B.", "head.modules_to_save."))
            ]
            if not any("head.modules_to_save." in n for n in names):
                extra.append("(the head does not train)")
            count = sum(q.numel() for q in model.parameters() if q.requires_grad)
            return {"count": int(count), "stray": extra}

        fact = _fact(ctx, "lora-trainable", key, compute)
        counts[key], stray[key] = fact["count"], list(fact["stray"])
    wrong = {k: v for k, v in stray.items() if v}
    text = "trainable: " + ", ".join(f"{k} {_millions(n)}" for k, n in counts.items())
    if wrong:
        detail = "; ".join(f"{k}: {', '.join(v[:3])}" for k, v in wrong.items())
        return Verdict(st.FAILED, False, f"{text}; besides adapters and head: {detail}")
    return Verdict(st.PASSED, True, f"{text}, all in LoRA matrices and the new head")


def eval_external(claim: Claim, ctx: Context) -> Verdict:
    """A statement nothing public here can check; it stays in the ledger as 'not run'."""
    raise NotRun(f"cannot be checked from the public data, code or results: {claim.params['why']}")


def _millions(n: float) -> str:
    return f"{n / 1e9:.4g}B" if n >= 1e9 else f"{n / 1e6:.2f}M"


def eval_parameter_count(claim: Claim, ctx: Context) -> Verdict:
    """A printed parameter count vs the architecture built by harness.models."""
    p, tol = claim.params, claim.tolerance
    n = _count(ctx, p["model_key"], p.get("head"))
    expected = float(claim.expected)
    allowed = st.printed_tolerance(expected, float(tol.get("step", 1)), float(tol.get("rel", 0)))
    diff = n - expected
    head = p.get("head") or "no head"
    text = (
        f"{n:,} parameters ({_millions(n)}, {head}); the paper prints {_millions(expected)}; "
        f"off by {diff / 1e6:+.2f}M ({diff / expected:+.2%}); tolerance ±{_millions(allowed)}"
    )
    return Verdict(st.PASSED if abs(diff) <= allowed else st.FAILED, n, text)


def eval_parameter_similarity(claim: Claim, ctx: Context) -> Verdict:
    """Architectures 'of similar size': largest / smallest parameter count <= max_ratio."""
    p = claim.params
    counts = {m["model_key"]: _count(ctx, m["model_key"], m.get("head")) for m in p["models"]}
    big, small = max(counts, key=counts.get), min(counts, key=counts.get)
    ratio = counts[big] / counts[small]
    listing = ", ".join(f"{k} {_millions(v)}" for k, v in counts.items())
    text = f"{listing}; {big} is {ratio:.1f}x {small} (similar means <= {p['max_ratio']}x)"
    return Verdict(st.PASSED if ratio <= p["max_ratio"] else st.FAILED, round(ratio, 2), text)


def _data_absence(ctx: Context) -> str | None:
    """Why a claim on the data tree cannot be judged here (None: it can): no tree, or a synthetic
    one, whose figures are made up and so must never pass or fail a statement of the paper."""
    if ctx.data_root is None:
        return f"needs the public datasets at {ctx.data_hint} (--data-root or ${paths.DATA_ENV})"
    if data.is_synthetic(ctx.data_root):
        return (
            f"{ctx.data_root} is a synthetic tree (its {data.SYNTHETIC_MARKER} file says so): "
            "its figures are made up, so the paper's dataset statements are judged on the "
            "public datasets only"
        )
    return None


def eval_dataset(claim: Claim, ctx: Context) -> Verdict:
    """Dataset figures and slide disjointness, judged by harness.data on the public datasets."""
    absent = _data_absence(ctx)
    if absent:
        raise NotRun(absent)
    if claim.kind == "slide_disjoint":
        rows = splits.author_folds(ctx.data_root)
        observed = not splits.slide_overlaps(rows, between=claim.params.get("between", "all"))
    else:
        observed = data.figure(ctx.data_root, claim.params["dataset"], claim.params["field"])
    ok = st.within_tolerance(observed, claim.expected, claim.tolerance)
    shown = f"{observed:.4g}" if isinstance(observed, float) else repr(observed)
    return Verdict(st.PASSED if ok else st.FAILED, observed, f"observed {shown} in {ctx.data_root}")


def _smoke_set(ctx: Context) -> ResultsSet:
    rs = _results(ctx)
    if rs.manifest.get("tier") != "smoke":
        raise NotRun(
            f"needs a smoke results set (`amibr-bench smoke`); '{rs.name}' is tier "
            f"{rs.manifest.get('tier', 'unknown')}"
        )
    return rs


def eval_smoke_above_chance(claim: Claim, ctx: Context) -> Verdict:
    """Each strategy learns where the signal is known: the worst synthetic test set's fold mean."""
    rs, p = _smoke_set(ctx), claim.params
    method, metric = p["method"], p.get("metric", "balanced_accuracy")
    prefix = p.get("datasets", "synthetic:")
    per_set = {}
    for model, meth in rs.configurations:
        if meth != method:
            continue
        for ds in rs.datasets:
            values = rs.values(model, meth, ds, metric) if ds.startswith(prefix) else []
            if len(values):
                per_set[f"{model} on {ds}"] = float(np.mean(values))
    if not per_set:
        raise NotRun(f"the results set holds no {METHOD_WORDS[method]} rows on {prefix}* test sets")
    observed = round(min(per_set.values()), 4)
    detail = ", ".join(f"{k} {v:.3f}" for k, v in sorted(per_set.items()))
    ok = observed >= float(claim.expected)
    return Verdict(st.PASSED if ok else st.FAILED, observed, f"fold-mean {metric}: {detail}")


def eval_run_counter(claim: Claim, ctx: Context) -> Verdict:
    """A count the run recorded in its manifest (backbone forward passes, shared slides)."""
    rs, p = _smoke_set(ctx), claim.params
    counter = p["counter"]
    if counter == "forward_passes_per_image":
        ratios, parts = {}, []
        for key, entry in (rs.manifest.get("configs") or {}).items():
            counts = ((entry or {}).get("settings") or {}).get("counters") or {}
            if key.endswith("|" + p.get("method", "linear_probe")) and counts:
                passes, unique = counts["backbone_forward_images"], counts["unique_images"]
                ratios[key] = passes / max(unique, 1)
                parts.append(
                    f"{key}: {passes} backbone passes for {unique} images and "
                    f"{counts.get('folds', '?')} folds ({ratios[key]:.2f} per image"
                    + (
                        f"; {counts['embedding_cache_hits']} embeddings reused from the cache)"
                        if counts.get("embedding_cache_hits")
                        else ")"
                    )
                )
        if not ratios:
            raise NotRun("no linear-probe configuration recorded its forward-pass counter")
        observed = max(ratios.values())
        text = "; ".join(parts)
        ok = observed <= float(claim.expected)
        return Verdict(st.PASSED if ok else st.FAILED, observed, text)
    counters = rs.manifest.get("counters") or {}
    if counter not in counters:
        raise NotRun(f"the run manifest records no counter {counter!r}")
    observed = counters[counter]
    ok = observed == claim.expected
    return Verdict(
        st.PASSED if ok else st.FAILED, observed, f"the run recorded {counter} = {observed}"
    )


EVALUATORS: dict[str, Callable[[Claim, Context], Verdict]] = {
    "parameter_count": eval_parameter_count,
    "parameter_similarity": eval_parameter_similarity,
    "table_cell": eval_table_cell,
    "maximum": eval_maximum,
    "ranking": eval_ranking,
    "value_range": eval_value_range,
    "dominance": eval_dominance,
    "baseline_beats_foundation": eval_baseline_beats_foundation,
    "performance_drop": eval_performance_drop,
    "significance": eval_significance,
    "sens_spec": eval_sens_spec,
    "protocol_setting": eval_protocol_setting,
    "fold_count": eval_fold_count,
    "config_count": eval_config_count,
    "dataset_figure": eval_dataset,
    "slide_disjoint": eval_dataset,
    "smoke_above_chance": eval_smoke_above_chance,
    "run_counter": eval_run_counter,
    "architecture_property": eval_architecture_property,
    "lora_trainable": eval_lora_trainable,
    "external": eval_external,
}


def evaluate(claim: Claim, ctx: Context, *, strict: bool = False) -> ClaimResult:
    """Judge one claim. strict=True lets evaluator errors raise (pytest); else the claim is "not
    run" with an ERROR reason and counts as unexpected, so the report's exit code shows it."""
    if claim.needs in ("results", "predictions", "run") and ctx.results is None:
        return ClaimResult(claim, Verdict(st.NOT_RUN, reason="no results set was given"))
    if claim.needs == "data" and _data_absence(ctx):
        return ClaimResult(claim, Verdict(st.NOT_RUN, reason=_data_absence(ctx)))
    if claim.needs == "weights" and ctx.weights_dir is None:
        return ClaimResult(
            claim,
            Verdict(
                st.NOT_RUN,
                reason="needs the foundation-model weights (--weights-dir or $AMIBR_WEIGHTS)",
            ),
        )
    try:
        verdict = EVALUATORS[claim.kind](claim, ctx)
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
