"""Results sets: the per-fold numbers claims are judged against (read, validate, write).

A results set is a folder (see docs/ARCHITECTURE.md) with `fold_metrics.csv` (required),
`predictions.csv` and `manifest.json` (optional). `load_results_set("paper")` is the authors' own
per-fold numbers in `expected_results/paper/`. Every problem with a file is reported in ONE
`ResultsError` that names the file and lists what is wrong, so a bad set never half-loads.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import json
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness import __version__, data, paths, registry
from harness import stats as st
from harness.paths import EXPECTED_RESULTS, MODELS_ENV, InputError
from harness.registry import METHODS
from harness.splits import N_FOLDS

TEST_SETS = data.DATASETS  # the three test sets (harness.data)
LABELS = data.LABELS
METRICS = ("balanced_accuracy", "auroc", "pr_auc")
FOLD_COLUMNS = ("model", "method", "dataset", "fold", "balanced_accuracy", "auroc", "pr_auc")
PRED_COLUMNS = ("model", "method", "dataset", "fold", "image", "label", "prob_atypical")
# The fast runs (harness.precision) of configurations whose faithful rows are the set's rows: the
# same columns, plus the run's variant ('<preset>/<precision>', e.g. 'paper/bf16').
FAST_FILE = "fast_fold_metrics.csv"
FAST_COLUMNS = (*FOLD_COLUMNS, "variant")
PAPER_SET = EXPECTED_RESULTS / "paper"
MAX_LISTED = 12  # problems listed in one error message
# How far a metric of fold_metrics.csv may lie from the same metric recomputed from
# predictions.csv: rounding to 3 decimals or finer (the paper prints 4) plus float noise.
AGREEMENT_TOLERANCE = 5e-4

# Harness model keys and aliases -> the names the paper (and the authors' outputs) print, derived
# from the registry; canonical_model also knows the user models registered with --models FILE.
MODEL_NAMES = {
    text: spec.name
    for spec in registry.SPECS.values()
    if not spec.user
    for text in (spec.key, *spec.aliases)
}


class ResultsError(InputError):
    """A results set is missing, incomplete or inconsistent; the message names the file."""


def known_models() -> dict[str, str]:
    """Every accepted spelling of a model name, lower case (key, result name, alias) -> its
    result name: the registry's index (user models registered with --models included)."""
    return registry.name_index()


def canonical_model(name: str) -> str:
    """The paper's name for a model given a harness key or any casing ('virchow2' -> 'Virchow2')."""
    return registry.canonical_name(name)


def declared_models(manifest: Mapping) -> set[str]:
    """Result names of the user models a results set's manifest describes (the harness records
    each configuration's model spec under configs[...]['settings']['model']), so a set with a
    user's model loads without its models file."""
    out = set()
    configs = manifest.get("configs")
    for entry in configs.values() if isinstance(configs, dict) else ():
        settings = entry.get("settings") if isinstance(entry, dict) else None
        spec = settings.get("model") if isinstance(settings, dict) else None
        if isinstance(spec, dict) and spec.get("family") == registry.USER and spec.get("name"):
            out.add(str(spec["name"]).strip())
    return out


def is_known_model(name: str, declared: Iterable[str] = ()) -> bool:
    """A model of the registry (any spelling) or one of the user models a manifest declares."""
    return name.strip().lower() in registry.name_index() or name.strip() in set(declared)


def unknown_model(name: str) -> str:
    """'unknown model 'Virchow 2' (did you mean 'Virchow2'?)': the closest known spelling
    (difflib, case-insensitive) mapped to its result name, or the list of known names; a user's
    own model needs its models file."""
    known = registry.name_index()
    close = difflib.get_close_matches(name.strip().lower(), list(known), n=1, cutoff=0.6)
    hint = f"; a user's own model: pass its models file with --models FILE or ${MODELS_ENV}"
    if close:
        return f"unknown model {name!r} (did you mean {known[close[0]]!r}?){hint}"
    names = ", ".join(sorted(set(known.values())))
    return f"unknown model {name!r} (known: {names}){hint}"


def config_key(model: str, method: str) -> str:
    """The manifest key of a configuration: '<model>|<method>' with the paper's model name."""
    return f"{canonical_model(model)}|{method}"


@dataclass(frozen=True)
class FoldRow:
    """One fold of one configuration evaluated on one test set."""

    model: str
    method: str
    dataset: str
    fold: int
    balanced_accuracy: float
    auroc: float
    pr_auc: float | None = None


@dataclass(frozen=True)
class Prediction:
    """One image's predicted probability of being atypical, for one fold's model."""

    model: str
    method: str
    dataset: str
    fold: int
    image: str
    label: str
    prob_atypical: float


@dataclass
class ResultsSet:
    """A validated results set; lookups use the paper's model names."""

    name: str
    path: Path | None
    rows: tuple[FoldRow, ...]
    predictions: tuple[Prediction, ...] | None = None
    manifest: dict = field(default_factory=dict)
    # FAST_FILE: variant ('paper/bf16') -> the fast run's fold rows of configurations in `rows`.
    fast: dict[str, tuple[FoldRow, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._cells: dict[tuple[str, str, str], list[FoldRow]] = defaultdict(list)
        for row in self.rows:
            self._cells[(row.model, row.method, row.dataset)].append(row)
        for cell in self._cells.values():
            cell.sort(key=lambda r: r.fold)
        self._preds: dict[tuple[str, str, str], list[Prediction]] = defaultdict(list)
        for p in self.predictions or ():
            self._preds[(p.model, p.method, p.dataset)].append(p)

    @property
    def configurations(self) -> list[tuple[str, str]]:
        """(model, method) pairs present, in first-seen order."""
        seen: dict[tuple[str, str], None] = {}
        for row in self.rows:
            seen.setdefault((row.model, row.method), None)
        return list(seen)

    @property
    def datasets(self) -> list[str]:
        return sorted({row.dataset for row in self.rows})

    @property
    def protocol(self) -> str:
        """Which protocol produced the numbers, in words (from the manifest)."""
        m = self.manifest
        if m.get("protocol"):
            return str(m["protocol"])
        parts = [
            f"preset {m['preset']}" if m.get("preset") else None,
            f"tier {m['tier']}" if m.get("tier") else None,
            f"{m['data']} data" if m.get("data") else None,
        ]
        text = ", ".join(p for p in parts if p)
        return text or "unknown (no manifest.json)"

    def has(self, model: str, method: str, dataset: str | None = None) -> bool:
        model = canonical_model(model)
        if dataset is None:
            return any(k[0] == model and k[1] == method for k in self._cells)
        return (model, method, dataset) in self._cells

    def folds(self, model: str, method: str, dataset: str) -> list[int]:
        return [r.fold for r in self._cells.get((canonical_model(model), method, dataset), [])]

    def values(self, model: str, method: str, dataset: str, metric: str) -> np.ndarray:
        """Per-fold values of one metric, ordered by fold (empty if the cell is absent)."""
        rows = self._cells.get((canonical_model(model), method, dataset), [])
        vals = [getattr(r, metric) for r in rows]
        return np.array([v for v in vals if v is not None], dtype=float)

    def config_entry(self, model: str, method: str) -> dict:
        """The manifest's entry for a configuration (status, reason, settings), or {}."""
        configs = self.manifest.get("configs") or {}
        want = config_key(model, method)
        for key, entry in configs.items():
            m, _, meth = key.partition("|")
            if config_key(m, meth) == want:
                return entry if isinstance(entry, dict) else {}
        return {}

    def absence_reason(self, model: str, method: str, dataset: str | None = None) -> str:
        """Why a configuration has no rows: the manifest's reason, else a plain statement."""
        reason = self.config_entry(model, method).get("reason")
        what = f"{canonical_model(model)} ({method.replace('_', ' ')})"
        if reason:
            return f"{what}: {reason}"
        where = f" on {dataset}" if dataset else ""
        return f"the results set has no rows for {what}{where}"

    def predictions_for(self, model: str, method: str, dataset: str) -> dict[int, tuple]:
        """fold -> (image names, is_atypical bool array, prob_atypical array)."""
        out: dict[int, list[Prediction]] = defaultdict(list)
        for p in self._preds.get((canonical_model(model), method, dataset), ()):
            out[p.fold].append(p)
        result = {}
        for fold, preds in sorted(out.items()):
            preds.sort(key=lambda p: p.image)
            result[fold] = (
                [p.image for p in preds],
                np.array([p.label == "Atypical" for p in preds]),
                np.array([p.prob_atypical for p in preds], dtype=float),
            )
        return result


# ------------------------------------------------------------------------------- validation
def _number(value, *, allow_empty: bool = False) -> tuple[float | None, str | None]:
    """Parse one metric cell: (value, problem)."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return (None, None) if allow_empty else (None, "is empty")
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None, f"is not a number ({value!r})"
    if math.isnan(x) or not 0.0 <= x <= 1.0:
        return None, f"is outside [0, 1] ({value!r})"
    return x, None


def _fold(value) -> tuple[int | None, str | None]:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None, f"fold {value!r} is not an integer"
    if not f.is_integer():
        return None, f"fold {value!r} is not an integer"
    if not 1 <= f <= N_FOLDS:
        return None, f"fold {value!r} is not one of the protocol's folds 1-{N_FOLDS}"
    return int(f), None


def _known_dataset(name: str) -> bool:
    return name in TEST_SETS or data.is_synthetic_test_set(name)


def _raise(source: str, problems: list[str]) -> None:
    if not problems:
        return
    shown = problems[:MAX_LISTED]
    more = f"; ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    raise ResultsError(f"{source}: {len(problems)} problem(s): " + "; ".join(shown) + more)


def validate_fold_rows(
    rows: Iterable[Mapping],
    source: str = "fold_metrics.csv",
    declared: Iterable[str] = (),
    lines: Iterable[int] | None = None,
) -> list[FoldRow]:
    """Check fold-metric rows (dicts keyed by FOLD_COLUMNS); one ResultsError lists every problem.

    Checks: columns, numbers in [0, 1], a model of the registry (or one of the user models
    `declared` by the set's manifest, see `declared_models`), known method and test set, no duplicate
    (model, method, dataset, fold), and no holes: within a configuration every test set has the
    same folds, and every configuration covers the same test sets. `lines`: the file's line number
    of each row (default 2, 3, ...: line 1 is the header).
    """
    rows = list(rows)
    problems: list[str] = []
    if not rows:
        _raise(source, ["no rows (a results set needs at least one fold)"])
    columns = set().union(*(r.keys() for r in rows))
    missing = [c for c in FOLD_COLUMNS if c not in columns and c != "pr_auc"]
    if missing:
        _raise(
            source, [f"missing column(s): {', '.join(missing)} (needs {', '.join(FOLD_COLUMNS)})"]
        )
    out: list[FoldRow] = []
    seen: dict[tuple, int] = {}
    declared = set(declared)
    unknown: dict[str, list[int]] = defaultdict(list)
    for i, raw in zip(range(2, len(rows) + 2) if lines is None else lines, rows, strict=True):
        where = f"line {i}"
        model = str(raw.get("model") or "").strip()
        method = str(raw.get("method") or "").strip()
        dataset = str(raw.get("dataset") or "").strip()
        bad = False
        if not model:
            problems.append(f"{where}: empty model")
            bad = True
        elif not is_known_model(model, declared):
            unknown[model].append(i)
            bad = True
        if method not in METHODS:
            problems.append(f"{where}: unknown method {method!r} (one of {', '.join(METHODS)})")
            bad = True
        if not _known_dataset(dataset):
            problems.append(
                f"{where}: unknown dataset {dataset!r} (one of {', '.join(TEST_SETS)} "
                "or synthetic:<name>)"
            )
            bad = True
        fold, problem = _fold(raw.get("fold"))
        if problem:
            problems.append(f"{where}: {problem}")
            bad = True
        metrics = {}
        for metric in METRICS:
            value, problem = _number(raw.get(metric), allow_empty=metric == "pr_auc")
            if problem:
                problems.append(f"{where}: {metric} {problem}")
                bad = True
            metrics[metric] = value
        if bad:
            continue
        model = canonical_model(model)
        key = (model, method, dataset, fold)
        if key in seen:
            problems.append(
                f"{where}: duplicate row for {model} | {method} | {dataset} | fold {fold} "
                f"(first at line {seen[key]})"
            )
            continue
        seen[key] = i
        out.append(FoldRow(model, method, dataset, fold, **metrics))
    problems += [_unknown_lines(name, lines) for name, lines in unknown.items()]
    _raise(source, problems)  # holes only make sense once every row is readable
    _raise(source, _holes(out))
    return out


def _unknown_lines(name: str, lines: list[int]) -> str:
    more = f" and {len(lines) - 1} more row(s)" if len(lines) > 1 else ""
    return f"line {lines[0]}{more}: {unknown_model(name)}"


def _holes(rows: list[FoldRow]) -> list[str]:
    """Configurations whose (test set, fold) grid is incomplete."""
    grid: dict[tuple[str, str], dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for r in rows:
        grid[(r.model, r.method)][r.dataset].add(r.fold)
    all_sets = {r.dataset for r in rows}
    problems = []
    for (model, method), by_set in grid.items():
        name = f"{model} | {method}"
        folds = set().union(*by_set.values())
        for dataset in sorted(all_sets):
            have = by_set.get(dataset, set())
            if not have:
                problems.append(
                    f"{name} has no rows for test set {dataset} (other configurations do)"
                )
                continue
            lacking = sorted(folds - have)
            if lacking:
                problems.append(
                    f"{name} lacks fold(s) {', '.join(map(str, lacking))} on {dataset} "
                    "(present on another test set)"
                )
    return problems


def validate_predictions(
    rows: Iterable[Mapping],
    folds: list[FoldRow],
    source: str = "predictions.csv",
    fold_source: str = "fold_metrics.csv",
    declared: Iterable[str] = (),
) -> list[Prediction]:
    """Check per-image predictions against the fold rows (as validate_fold_rows returned them,
    so that folds[k] is line k + 2 of fold_source); one ResultsError lists every problem.

    Checks: columns, folds 1-5, labels, probabilities in [0, 1], known models, no duplicate
    image, every (configuration, test set, fold) present in the folds, and agreement: each
    fold's metrics recomputed from its predictions with stats.fold_metrics must match
    fold_source within AGREEMENT_TOLERANCE (an inverted or mismatched predictions.csv would
    otherwise draw ROC curves that contradict the claims judged on the fold metrics)."""
    rows = list(rows)
    problems: list[str] = []
    columns = set().union(*(r.keys() for r in rows)) if rows else set(PRED_COLUMNS)
    missing = [c for c in PRED_COLUMNS if c not in columns]
    if missing:
        _raise(
            source, [f"missing column(s): {', '.join(missing)} (needs {', '.join(PRED_COLUMNS)})"]
        )
    cells = {(r.model, r.method, r.dataset, r.fold) for r in folds}
    out, seen, orphan = [], set(), set()
    unknown: dict[str, list[int]] = defaultdict(list)
    names: dict[str, str] = {}  # raw model name -> canonical, once per distinct name
    for i, raw in enumerate(rows, start=2):
        where = f"line {i}"
        fold, problem = _fold(raw.get("fold"))
        if problem:
            problems.append(f"{where}: {problem}")
            continue
        label = str(raw.get("label") or "").strip()
        if label not in LABELS:
            problems.append(f"{where}: label {label!r} is not one of {', '.join(LABELS)}")
            continue
        prob, problem = _number(raw.get("prob_atypical"))
        if problem:
            problems.append(f"{where}: prob_atypical {problem}")
            continue
        name = str(raw.get("model") or "").strip()
        if name not in names:
            names[name] = canonical_model(name) if is_known_model(name, declared) else ""
        model = names[name]
        if not model:
            unknown[name].append(i)
            continue
        key = (model, str(raw.get("method")).strip(), str(raw.get("dataset")).strip(), fold)
        image = str(raw.get("image") or "").strip()
        if key not in cells:
            orphan.add(key)
            continue
        if (key, image) in seen:
            problems.append(
                f"{where}: duplicate prediction for {image} in {' | '.join(map(str, key))}"
            )
            continue
        seen.add((key, image))
        out.append(Prediction(*key, image=image, label=label, prob_atypical=prob))
    problems += [_unknown_lines(name, lines) for name, lines in unknown.items()]
    for key in sorted(orphan, key=str):
        problems.append(
            f"predictions for {' | '.join(map(str, key))} but fold_metrics.csv has no such fold"
        )
    _raise(source, problems)
    _raise(source, _disagreements(out, folds, fold_source))
    return out


def _disagreements(preds: list[Prediction], folds: list[FoldRow], fold_source: str) -> list[str]:
    """Folds whose metrics, recomputed from their predictions, differ from the fold rows."""
    by_cell: dict[tuple, list[Prediction]] = defaultdict(list)
    for p in preds:
        by_cell[(p.model, p.method, p.dataset, p.fold)].append(p)
    problems = []
    for line, row in enumerate(folds, start=2):
        key = (row.model, row.method, row.dataset, row.fold)
        cell = by_cell.get(key)
        if not cell:
            continue
        name = f"{' | '.join(map(str, key[:3]))} | fold {row.fold}"
        y = np.array([p.label == "Atypical" for p in cell])
        try:
            recomputed = st.fold_metrics(y, np.array([p.prob_atypical for p in cell], float))
        except ValueError as exc:
            problems.append(
                f"{name}: its {len(cell)} predictions cannot give the metrics on {fold_source} "
                f"line {line} ({exc})"
            )
            continue
        for metric in METRICS:
            printed = getattr(row, metric)
            if printed is not None and abs(recomputed[metric] - printed) > AGREEMENT_TOLERANCE:
                problems.append(
                    f"{name}: {metric} from its {len(cell)} predictions is "
                    f"{recomputed[metric]:.4f}, but {fold_source} line {line} says {printed:.4f} "
                    f"(they may differ by {AGREEMENT_TOLERANCE} at most)"
                )
    return problems


def validate_fast_rows(
    rows: Iterable[Mapping],
    folds: list[FoldRow],
    source: str = FAST_FILE,
    declared: Iterable[str] = (),
) -> dict[str, tuple[FoldRow, ...]]:
    """Check the fast runs' fold rows (dicts keyed by FAST_COLUMNS) against the set's own rows
    `folds`; returns variant -> its rows. One ResultsError lists every problem.

    Each variant is checked like fold_metrics.csv (`validate_fold_rows`: numbers, names, no
    duplicate, no holes), and each of its configurations and test sets must be one the set's rows
    hold: a fast run travels with the faithful run it is compared with (harness.precision)."""
    rows = list(rows)
    if rows and "variant" not in set().union(*(r.keys() for r in rows)):
        _raise(source, [f"missing column variant (needs {', '.join(FAST_COLUMNS)})"])
    groups: dict[str, list[tuple[int, Mapping]]] = defaultdict(list)
    problems = []
    for i, raw in enumerate(rows, start=2):
        variant = str(raw.get("variant") or "").strip()
        if variant:
            groups[variant].append((i, raw))
        else:
            problems.append(f"line {i}: empty variant")
    _raise(source, problems)
    cells = {(r.model, r.method, r.dataset) for r in folds}
    out = {}
    for variant, numbered in groups.items():
        lines, raws = zip(*numbered, strict=True)
        checked = validate_fold_rows(raws, f"{source} (variant {variant})", declared, lines)
        problems += [
            f"line {line}: {r.model} | {r.method} | {r.dataset} (variant {variant}) has no "
            "faithful rows in fold_metrics.csv to be compared with"
            for line, r in zip(lines, checked, strict=True)
            if (r.model, r.method, r.dataset) not in cells
        ]
        out[variant] = tuple(checked)
    _raise(source, problems)
    return out


# --------------------------------------------------------------------------------- reading
def _read_csv(path: Path) -> list[dict]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:  # a BOM is not data
            reader = csv.DictReader(fh)
            if reader.fieldnames is None:
                _raise(str(path), ["the file is empty (no header)"])
            return [dict(r) for r in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ResultsError(f"{path}: cannot be read ({exc})") from exc


def resolve(spec: str | os.PathLike) -> Path:
    """'paper' -> expected_results/paper; a folder, or a fold_metrics.csv inside one."""
    if str(spec) == "paper":
        return PAPER_SET
    path = Path(spec).expanduser()
    if path.is_file() and path.name == "fold_metrics.csv":
        path = path.parent
    return path


def load_results_set(spec: str | os.PathLike = "paper") -> ResultsSet:
    """Load and validate a results set ('paper' or a folder); raises ResultsError."""
    folder = resolve(spec)
    metrics_file = folder / "fold_metrics.csv"
    if not folder.is_dir():
        raise ResultsError(
            f"{folder}: results set folder does not exist (expected fold_metrics.csv in it)"
        )
    if not metrics_file.is_file():
        raise ResultsError(f"{metrics_file}: missing (every results set needs fold_metrics.csv)")
    manifest = read_manifest(folder / "manifest.json")
    _check_digests(folder, manifest)
    rows = validate_fold_rows(_read_csv(metrics_file), str(metrics_file), declared_models(manifest))
    predictions = None
    pred_file = folder / "predictions.csv"
    if pred_file.is_file():
        predictions = tuple(
            validate_predictions(
                _read_csv(pred_file),
                rows,
                str(pred_file),
                str(metrics_file),
                declared_models(manifest),
            )
        )
    fast_file = folder / FAST_FILE
    fast = {}
    if fast_file.is_file():
        fast = validate_fast_rows(
            _read_csv(fast_file), rows, str(fast_file), declared_models(manifest)
        )
    name = manifest.get("name") or ("paper" if folder == PAPER_SET else folder.name)
    return ResultsSet(str(name), folder, tuple(rows), predictions, manifest, fast)


SET_FILES = ("fold_metrics.csv", "predictions.csv", FAST_FILE)


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


class Settings(_Strict):
    """configs[...].settings: the fields the report reads back (harness.precision), typed; the
    others (RunConfig.describe's) are kept as they are."""

    preset: str | None = None
    precision: dict[str, Any] | None = None  # RunConfig.speed().describe()
    fold_seconds: list[Annotated[float, Field(ge=0, allow_inf_nan=False)] | None] = []


class ConfigEntry(_Strict):
    """manifest.json configs['<model>|<method>']: what happened to one configuration."""

    status: str | None = None
    reason: str | None = None
    hash: str | None = None
    settings: Settings = Settings()
    folds: list[int] = []
    variant: str | None = None  # fast_configs: the fast run's '<preset>/<precision>'


class Manifest(_Strict):
    """The types of manifest.json's known fields (docs/ARCHITECTURE.md, results-set format);
    other fields are kept as they are."""

    name: str | None = None
    tier: str | None = None
    preset: str | None = None
    data: str | None = None
    protocol: str | None = None
    created: str | None = None
    harness_version: str | None = None
    source: dict[str, Any] = {}
    configs: dict[str, ConfigEntry] = {}
    counters: dict[str, Any] = {}
    notes: list[str] = []
    stale: dict[str, list[str]] = {}
    files: dict[str, str] | None = None
    # FAST_FILE's runs: '<model>|<method>' -> one entry per variant (its `variant`, hash, folds).
    fast_configs: dict[str, list[ConfigEntry]] = {}


def check_manifest(manifest: Any, path: str | os.PathLike) -> dict:
    """The manifest itself if its known fields have the right types; else ResultsError naming
    the file and every wrong field (e.g. configs['UNI|lora'].settings)."""
    if not isinstance(manifest, dict):
        raise ResultsError(f"{path}: must hold a JSON object, not {type(manifest).__name__}")
    try:
        Manifest.model_validate(manifest)
    except ValidationError as exc:
        _raise(
            str(path),
            [
                f"field {_field(e['loc'])}: {e['msg'][:1].lower()}{e['msg'][1:]} (got {_short(e['input'])})"
                for e in exc.errors()
            ],
        )
    return manifest


def _field(loc: tuple) -> str:
    """('configs', 'UNI|lora', 'settings') -> "configs['UNI|lora'].settings"."""
    parts = [f".{p}" if isinstance(p, str) and p.isidentifier() else f"[{p!r}]" for p in loc]
    return "".join(parts).lstrip(".")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_manifest(path: Path) -> dict:
    """manifest.json of a results set, type-checked ({} when the set has none)."""
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{path}: not valid JSON ({exc})") from exc
    return check_manifest(manifest, path)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check_digests(folder: Path, manifest: Mapping) -> None:
    """A set the harness wrote records its files' digests in manifest.json, written last: any
    mismatch means an export stopped half-way or a file was changed afterwards."""
    recorded = manifest.get("files")
    if recorded is None:
        return  # a set written by other tools: no digests to check
    if not isinstance(recorded, dict):
        raise ResultsError(f"{folder / 'manifest.json'}: 'files' must map file names to sha256")
    for name in SET_FILES:
        path = folder / name
        if name not in recorded:
            if path.is_file():
                raise ResultsError(
                    f"{path}: not part of this results set (manifest.json lists no digest for "
                    "it): left from another export; remove it or export the set again"
                )
            continue
        if not path.is_file():
            raise ResultsError(f"{path}: missing, but manifest.json records it in this set")
        if _digest(path.read_bytes()) != recorded[name]:
            raise ResultsError(
                f"{path}: does not match the sha256 manifest.json records for it: the export "
                "stopped half-way or the file was changed afterwards; export the set again "
                "(or drop 'files' from manifest.json to accept the edit)"
            )


# --------------------------------------------------------------------------------- writing
def _as_dict(row) -> dict:
    return asdict(row) if hasattr(row, "__dataclass_fields__") else dict(row)


def _csv_text(columns: tuple[str, ...], rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: "" if row.get(c) is None else row.get(c) for c in columns})
    return buf.getvalue()


def write_results_set(
    directory: str | os.PathLike,
    fold_rows: Iterable,
    predictions: Iterable | None = None,
    manifest: Mapping | None = None,
    fast_rows: Iterable | None = None,
) -> Path:
    """Validate, then write a results set; returns the folder.

    Each file is replaced atomically, manifest.json last with the sha256 of the others, so that
    a set interrupted between two files is detected on loading instead of read half old, half
    new. Rows may be FoldRow/Prediction objects or dicts. `predictions=None` keeps an existing
    predictions.csv; `manifest=None` keeps the existing manifest's fields; `created` and
    `harness_version` are filled in when absent. `fast_rows` (dicts keyed by FAST_COLUMNS) is
    written to FAST_FILE; None keeps an existing one, an empty list removes it.
    """
    folder = Path(directory)
    if manifest is None:
        manifest = read_manifest(folder / "manifest.json")
    manifest = check_manifest(manifest, folder / "manifest.json")
    fold_dicts = [_as_dict(r) for r in fold_rows]
    rows = validate_fold_rows(
        fold_dicts, str(folder / "fold_metrics.csv"), declared_models(manifest)
    )
    texts = {"fold_metrics.csv": _csv_text(FOLD_COLUMNS, [_as_dict(r) for r in rows])}
    metrics_name = str(folder / "fold_metrics.csv")
    if predictions is not None:
        pred_dicts = [_as_dict(p) for p in predictions]
        validate_predictions(
            pred_dicts,
            rows,
            str(folder / "predictions.csv"),
            metrics_name,
            declared_models(manifest),
        )
        texts["predictions.csv"] = _csv_text(PRED_COLUMNS, pred_dicts)
    elif (folder / "predictions.csv").is_file():
        old = folder / "predictions.csv"
        validate_predictions(
            _read_csv(old), rows, str(old), metrics_name, declared_models(manifest)
        )
    fast_file = folder / FAST_FILE
    fast_dicts = None if fast_rows is None else [_as_dict(r) for r in fast_rows]
    if fast_dicts:
        validate_fast_rows(fast_dicts, rows, str(fast_file), declared_models(manifest))
        texts[FAST_FILE] = _csv_text(FAST_COLUMNS, fast_dicts)
    elif fast_dicts is None and fast_file.is_file():
        validate_fast_rows(_read_csv(fast_file), rows, str(fast_file), declared_models(manifest))
    full = dict(check_manifest(manifest, folder / "manifest.json"))
    full.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    full.setdefault("harness_version", __version__)
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        paths.atomic_write(folder / name, text)
    if fast_dicts == []:  # no fast run travels with this set (any left is from an older export)
        fast_file.unlink(missing_ok=True)
    full["files"] = {
        name: _digest((folder / name).read_bytes())
        for name in SET_FILES
        if (folder / name).is_file()
    }
    paths.atomic_write(folder / "manifest.json", json.dumps(full, indent=2, sort_keys=True) + "\n")
    return folder


# --------------------------------------------------------------------------------- merging
def _configs(rs: ResultsSet) -> str:
    return ", ".join(f"{model} {method}" for model, method in rs.configurations)


def _set_ref(rs: ResultsSet) -> dict:
    return {"name": rs.name, "path": str(rs.path) if rs.path else None}


def _check_same_test_sets(base: ResultsSet, extra: ResultsSet) -> None:
    """ResultsError, naming `extra`'s fold_metrics.csv, when it shares no test set with `base`
    (e.g. a set trained on the synthetic fixture added to one on the public data)."""
    if not base.datasets or not extra.datasets or set(base.datasets) & set(extra.datasets):
        return
    where = extra.path / "fold_metrics.csv" if extra.path else extra.name
    kinds = {"synthetic" if data.is_synthetic_test_set(d) else "public" for d in extra.datasets}
    base_kinds = {"synthetic" if data.is_synthetic_test_set(d) else "public" for d in base.datasets}
    hint = ""
    if kinds == {"synthetic"} and base_kinds == {"public"}:
        hint = (
            "; it was trained on a synthetic tree: train on the public data (--data-root) "
            "to compare with these results"
        )
    raise ResultsError(
        f"{where}: cannot be added to results set '{base.name}': its test sets "
        f"({', '.join(extra.datasets)}) are none of '{base.name}' ({', '.join(base.datasets)})"
        + hint
    )


def merge_results_sets(base: ResultsSet, *added: ResultsSet) -> ResultsSet:
    """One results set, in memory: `base`'s rows with each set of `added` laid over them.

    Where an added set holds a configuration (model|method) that `base` (or an earlier added
    set) holds too, its rows and predictions replace the earlier ones for that configuration;
    the others are kept. The manifest is `base`'s (preset, data, configurations, with the added
    sets' configuration entries laid over them, so that their user models stay declared), with
    the tier only where every set shares it and never 'paper' (the authors' own experiment,
    which the merged set no longer is), each set's protocol, and `merged`: {"base": {name, path}, "added": [{name, path, configs}], "replaced":
    {"<model>|<method>": "<name of the set whose rows replaced it>"}}; `files` (digests of
    files on disk), `counters`, `fast_configs` and `stale` are dropped (the merged set carries no
    fast runs). The name is "<base>+<added>+...", the path None.

    Raises ResultsError, on one line naming the added set's fold_metrics.csv, when it shares no
    test set with the base (e.g. a set on the synthetic test sets added to one on the public
    ones) or the merged rows would have holes (an added configuration lacks a test set or fold
    the others have). Used by `amibr-bench claims --add` (harness.whatif)."""
    rows = {(r.model, r.method): [] for r in base.rows}
    for r in base.rows:
        rows[(r.model, r.method)].append(r)
    preds: dict[tuple[str, str], list[Prediction]] = defaultdict(list)
    for p in base.predictions or ():
        preds[(p.model, p.method)].append(p)
    configs = dict(base.manifest.get("configs") or {})
    replaced: dict[str, str] = {}
    merged = {"base": _set_ref(base), "added": [], "replaced": replaced}
    for extra in added:
        _check_same_test_sets(base, extra)
        for config in extra.configurations:
            key = "|".join(config)
            if config in rows:
                replaced[key] = extra.name
                configs = {
                    k: v for k, v in configs.items() if config_key(*k.partition("|")[::2]) != key
                }
            rows[config] = [r for r in extra.rows if (r.model, r.method) == config]
            preds[config] = [p for p in extra.predictions or () if (p.model, p.method) == config]
        configs.update(extra.manifest.get("configs") or {})
        merged["added"].append(
            {**_set_ref(extra), "configs": ["|".join(c) for c in extra.configurations]}
        )
        holes = _holes([r for cell in rows.values() for r in cell])
        if holes:
            where = extra.path / "fold_metrics.csv" if extra.path else extra.name
            more = f" (and {len(holes) - 1} more)" if len(holes) > 1 else ""
            raise ResultsError(f"{where}: cannot be added to results set '{base.name}': "
                               f"{holes[0]}{more}")  # fmt: skip
    # files and counters describe the folder on disk; fast_configs and stale describe the base's
    # own runs, whose fast rows the merged set does not carry (fast={})
    dropped = ("files", "counters", "fast_configs", "stale")
    manifest = {k: v for k, v in base.manifest.items() if k not in dropped}
    tiers = {base.manifest.get("tier"), *(a.manifest.get("tier") for a in added)}
    manifest.update(
        name="+".join([base.name, *(a.name for a in added)]),
        # the authors' own experiment ('paper') no longer, once rows are added; mixed tiers: none
        tier=tiers.pop() if len(tiers) == 1 and "paper" not in tiers else None,
        protocol="; ".join(
            [f"{base.name}: {base.protocol}"]
            + [f"added from {a.name} ({_configs(a)}): {a.protocol}" for a in added]
        ),
        configs=configs,
        merged=merged,
    )
    all_preds = [p for cell in preds.values() for p in cell]
    return ResultsSet(
        manifest["name"],
        None,
        tuple(r for cell in rows.values() for r in cell),
        tuple(all_preds) if all_preds or base.predictions is not None else None,
        manifest,
    )
