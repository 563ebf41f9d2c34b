"""What every claim kind shares: the claim and verdict records, the context a claim is judged
against, the kind registry (`register`), the typed tolerances, and the vocabulary types that
parameters are made of (test set, metric, method, model, configuration).

A kind is data plus one function: its name, the parameter type (a pydantic model, unknown fields
forbidden), the tolerance rules it accepts (one pydantic model per rule), the one `needs` value
its claims carry, the type of `expected`, and the evaluator `(claim, params, ctx) -> Verdict`.
`harness.claims.load_claims` validates every claim of `expected_results/*.yaml` against its kind
when the files load, so a typo names the claim and the field before anything is judged (the
pattern of lm-evaluation-harness's task registry and `TaskConfig`).
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from harness import paths, registry
from harness import stats as st
from harness.results import METHODS, METRICS, TEST_SETS, ResultsSet

NEEDS = ("data", "architecture", "results", "predictions", "weights", "run", "external")
# The needs a results set decides: claims judged on --results (and compared by `claims --add`).
RESULTS_NEEDS = ("results", "predictions", "run")


class RegistryError(paths.InputError):
    """The claim registry is malformed; the message names the file, the claim and the field."""


# ------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class Claim:
    """One entry of expected_results/*.yaml (also readable like a dict: claim['params']).

    `params` and `tolerance` are the mappings as written; `args` and `tol` are the same, validated
    into the kind's parameter and tolerance types (filled in by `harness.claims.load_claims`, or
    by `evaluate` for a claim built in code)."""

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
    args: Any = field(default=None, compare=False, repr=False)
    tol: Any = field(default=None, compare=False, repr=False)

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
    """One claim and its verdict (what `harness.claims.evaluate` returns): `status` is the
    verdict's; `confirmed_contradiction` a known contradiction that fails as the paper's own
    evidence says; `evaluator_error` a claim the harness could not judge because of a bug;
    `unexpected` what makes the exit status 1."""

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


# ------------------------------------------------------------------------- vocabulary types
def _closest(value: str, allowed: list[str] | tuple[str, ...]) -> str | None:
    """The allowed word closest to `value` (case-insensitive, difflib), or None."""
    lower = {a.lower(): a for a in allowed}
    close = difflib.get_close_matches(str(value).lower(), list(lower), n=1, cutoff=0.6)
    return lower[close[0]] if close else None


def _did_you_mean(value: str, allowed: list[str] | tuple[str, ...]) -> str:
    """' (did you mean 'x'?)' for the closest allowed word, else the list of allowed words."""
    close = _closest(value, allowed)
    return f" (did you mean {close!r}?)" if close else f" (one of: {', '.join(allowed)})"


def _one_of(what: str, allowed: tuple[str, ...]) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"{value!r} is not a {what}{_did_you_mean(value, allowed)}")
        return value

    return check


def _paper_model(value: str) -> str:
    """A model's result name (any accepted spelling -> the registry's name)."""
    index = registry.name_index()
    name = index.get(str(value).strip().lower())
    if name is None:
        names = sorted(set(index.values()))
        raise ValueError(f"{value!r} is not a model of the registry{_did_you_mean(value, names)}")
    return name


def _model_key(value: str) -> str:
    if value not in registry.SPECS:
        keys = sorted(registry.SPECS)
        raise ValueError(f"{value!r} is not a registry key{_did_you_mean(value, keys)}")
    return value


def _config(value: str) -> str:
    """'<model>|<method>' with the registry's model name."""
    model, bar, method = str(value).partition("|")
    if not bar:
        raise ValueError(f"{value!r} is not '<model>|<method>' (e.g. 'Virchow2|lora')")
    return f"{_paper_model(model)}|{_one_of('method', METHODS)(method)}"


TestSet = Annotated[str, AfterValidator(_one_of("test set", TEST_SETS))]
Metric = Annotated[str, AfterValidator(_one_of("metric", METRICS))]
Method = Annotated[str, AfterValidator(_one_of("method", METHODS))]
ModelName = Annotated[str, AfterValidator(_paper_model)]
ModelKey = Annotated[str, AfterValidator(_model_key)]
Config = Annotated[str, AfterValidator(_config)]


def _group(value: Any) -> str | tuple[str, ...]:
    """'all', a method (its rows of Table 3), or a list of methods and configurations."""

    def item(text: Any) -> str:
        if not isinstance(text, str):
            raise ValueError(f"{text!r} is not a method or '<model>|<method>'")
        if "|" in text:
            return _config(text)
        return _one_of("method or 'all'", ("all", *METHODS))(text)

    if isinstance(value, list | tuple):
        if not value:
            raise ValueError("an empty list ranges over nothing (give 'all', a method or a list)")
        return tuple(item(v) for v in value)
    return item(value)


# "all", one method's rows, or a list of methods and '<model>|<method>' configurations
Group = Annotated[Any, AfterValidator(_group)]


class KindParams(BaseModel):
    """Base of every kind's parameter type: unknown fields are errors; values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def check_tolerance(self, tol: Tolerance) -> str | None:
        """A problem with this tolerance for these parameters (None: it fits)."""
        return None

    def check_expected(self, expected: Any) -> str | None:
        """A problem with this (validated) expected value for these parameters (None: it fits)."""
        return None


class NoParams(KindParams):
    """A kind without parameters."""


# ------------------------------------------------------------------------------- tolerances
class _Tolerance(BaseModel):
    # finite numbers only; a number written as text ('0.01') reads as a number, a yes/no does not
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _not_yes_no(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("a yes/no is not a number")
        return value

    # the number of folds a configuration needs before it is judged (fewer: inconclusive)
    min_folds: int = Field(5, ge=1)


class Exact(_Tolerance):
    """Observed equals expected."""

    rule: Literal["exact"]


class Absolute(_Tolerance):
    """|observed - expected| <= value (higher by more: passed-and-better where the kind says)."""

    rule: Literal["abs"]
    value: float = Field(ge=0)


class Relative(_Tolerance):
    """|observed - expected| <= value * |expected|."""

    rule: Literal["rel"]
    value: float = Field(ge=0)


class Printed(_Tolerance):
    """Equal at the printed precision: the last printed digit is given as `decimals` places or as
    a `step` (exactly one of them); `rel` widens it to a share of the printed value."""

    rule: Literal["printed"]
    decimals: int | None = Field(None, ge=0)
    step: float | None = Field(None, gt=0)
    rel: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _one_unit(self) -> Printed:
        if (self.decimals is None) == (self.step is None):
            raise ValueError("give exactly one of decimals and step (the printed last digit)")
        return self

    def half_width(self, expected: float) -> float:
        """How far a value may lie from the printed `expected` (same unit): half a unit of the
        last printed digit, or `rel` * |expected|, whichever is larger (stats.printed_tolerance)."""
        unit = self.step if self.step is not None else 10.0**-self.decimals
        return st.printed_tolerance(float(expected), unit, self.rel)


class FoldSpread(_Tolerance):
    """A mean within k noise margins of the paper's: the margin comes from the paper's fold
    spread `s_ref` over `n_ref` folds and the observed fold count (stats.equivalence_margin)."""

    rule: Literal["fold_spread"]
    s_ref: float = Field(ge=0)
    n_ref: int = Field(ge=2)
    k: float = Field(2.0, gt=0)
    floor: float = Field(0.005, ge=0)


class Order(_Tolerance):
    """An order of means; a reversal within k noise margins is inconclusive, not failed."""

    rule: Literal["fold_spread"]
    k: float = Field(2.0, gt=0)


class StdInterval(_Tolerance):
    """A fold std inside the chi-square interval of the paper's std (stats.std_interval)."""

    rule: Literal["std_interval"]
    n_ref: int = Field(ge=2)
    confidence: float = Field(0.95, gt=0, lt=1)
    floor: float = Field(1e-4, ge=0)


class Alpha(_Tolerance):
    """A test's p-value against the significance level `alpha`."""

    rule: Literal["alpha"]
    alpha: float = Field(st.ALPHA, gt=0, lt=1)


Tolerance = Exact | Absolute | Relative | Printed | FoldSpread | Order | StdInterval | Alpha


def same_value(a, b) -> bool:
    """Equal as a claim means it: lists as multisets of strings, numbers to 1e-9."""
    if isinstance(b, list):
        return isinstance(a, list | tuple) and sorted(map(str, a)) == sorted(map(str, b))
    if isinstance(b, float) or isinstance(a, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    return a == b


# ------------------------------------------------------------------------------- the registry
def _rule(tolerance: type[_Tolerance]) -> str:
    """The rule name a tolerance model answers to (its `rule` literal)."""
    return tolerance.model_fields["rule"].annotation.__args__[0]


@dataclass(frozen=True)
class Kind:
    """One claim kind: what its claims carry and the function that judges them."""

    name: str
    params: type[KindParams]
    evaluate: Callable[[Claim, Any, Context], Verdict]
    needs: str
    tolerances: tuple[type[_Tolerance], ...]
    expected: Any
    # A conclusion drawn by comparing configurations (a maximum, a ranking, a test between
    # strategies): what `claims --add` reports first when a new model's rows change it.
    comparative: bool = False
    # A statement about the results set's own inventory (how many models, how many folds): it
    # describes the paper's experiment, so `claims --add` does not compare it.
    inventory: bool = False

    @property
    def rules(self) -> tuple[str, ...]:
        return tuple(map(_rule, self.tolerances))

    def validate(self, claim: Claim, where: str) -> Claim:
        """The claim with `args` and `tol` filled in; RegistryError naming `where` and the field."""
        from dataclasses import replace

        if claim.needs != self.needs:
            raise RegistryError(
                f"{where}: kind {self.name!r} has needs {self.needs!r}, not {claim.needs!r}"
            )
        problems: list[str] = []
        args = _parse(self.params, claim.params, "params", problems)
        rule = (claim.tolerance or {}).get("rule") if isinstance(claim.tolerance, dict) else None
        tol = None
        if rule not in self.rules:
            problems.append(
                f"tolerance.rule: {rule!r} is not a rule of kind {self.name!r}"
                f"{_did_you_mean(str(rule), self.rules)}"
            )
        else:
            model = self.tolerances[self.rules.index(rule)]
            tol = _parse(model, claim.tolerance, "tolerance", problems)
        n_problems = len(problems)
        expected = _parse(
            TypeAdapter(self.expected), claim.expected, "expected", problems, strict=True
        )
        if args is not None and tol is not None:
            clash = args.check_tolerance(tol)
            if clash:
                problems.append(clash)
        if args is not None and len(problems) == n_problems:
            clash = args.check_expected(expected)
            if clash:
                problems.append(clash)
        if problems:
            raise RegistryError(f"{where}: " + "; ".join(problems))
        # the parsed value (a quoted '0.7474' is the number 0.7474); a mapping read into a pydantic
        # model (significance's SignificanceExpected) stays the mapping as written
        if isinstance(expected, BaseModel):
            expected = claim.expected
        return replace(claim, args=args, tol=tol, expected=expected)


KINDS: dict[str, Kind] = {}


def register(
    name: str,
    params: type[KindParams] = NoParams,
    *,
    needs: str,
    tolerances: tuple[type[_Tolerance], ...] = (Exact,),
    expected: Any = Any,
    comparative: bool = False,
    inventory: bool = False,
) -> Callable:
    """Decorator: `fn(claim, params, ctx) -> Verdict` judges the claims of kind `name`."""
    if needs not in NEEDS:
        raise ValueError(f"kind {name!r}: needs {needs!r} is not one of {', '.join(NEEDS)}")

    rules = [_rule(t) for t in tolerances]
    twice = sorted({r for r in rules if rules.count(r) > 1})
    if twice:
        raise ValueError(f"kind {name!r}: two tolerance models for rule(s) {', '.join(twice)}")

    def add(fn: Callable[[Claim, Any, Context], Verdict]) -> Callable:
        if name in KINDS:
            raise ValueError(f"claim kind {name!r} is registered twice")
        KINDS[name] = Kind(
            name, params, fn, needs, tuple(tolerances), expected, comparative, inventory
        )
        return fn

    return add


def get_kind(name: str, where: str = "") -> Kind:
    """The registered kind; RegistryError with a did-you-mean for an unknown name."""
    try:
        return KINDS[name]
    except (KeyError, TypeError):
        raise RegistryError(
            f"{where + ': ' if where else ''}unknown kind {name!r}"
            f"{_did_you_mean(str(name), sorted(KINDS))}"
        ) from None


def _walk(value: Any):
    """A YAML value and everything inside it (lists, mappings)."""
    yield value
    items = (
        value.values()
        if isinstance(value, dict)
        else value
        if isinstance(value, list | tuple)
        else ()
    )
    for item in items:
        yield from _walk(item)


def _parse(model, value: Any, what: str, problems: list[str], strict: bool = False):
    """Validate `value` with a pydantic model or TypeAdapter; append one line per error.

    strict (for `expected`): finite numbers only, and a yes/no is never read as a number (the
    value is validated strictly, as JSON so that a YAML list may be a tuple); a number written
    as text ('0.81') still reads as a number."""
    adapter = model if isinstance(model, TypeAdapter) else None
    try:
        if adapter is not None and strict:
            if any(isinstance(x, bool) for x in _walk(value)):
                parsed = adapter.validate_json(json.dumps(value), strict=True)
            else:
                parsed = adapter.validate_python(value)
            bad = [x for x in _walk(parsed) if isinstance(x, float) and not math.isfinite(x)]
            if bad:
                problems.append(f"{what}: must be a finite number (got {value!r:.60})")
                return None
            return parsed
        if adapter is not None:
            return adapter.validate_python(value)
        return model.model_validate(value if value is not None else {})
    except ValidationError as exc:
        fields = [f.alias or n for n, f in model.model_fields.items()] if adapter is None else []
        errors = exc.errors()
        # a misspelt field is also a missing one: name it once, as the unknown field with its fix
        meant = {
            _closest(str(e["loc"][-1]), fields)
            for e in errors
            if e.get("type") == "extra_forbidden" and e.get("loc")
        }
        problems.extend(
            _error_line(e, what, fields)
            for e in errors
            if not (e.get("type") == "missing" and len(e["loc"]) == 1 and e["loc"][0] in meant)
        )
        return None


def _error_line(error: dict, what: str, fields: list[str]) -> str:
    loc = [str(x) for x in error.get("loc", ())]
    name = ".".join([what, *loc]) if loc else what
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        hint = _did_you_mean(loc[-1], fields) if fields else ""
        return f"{name}: unknown field{hint}"
    if kind == "missing":
        return f"{name}: missing"
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    got = repr(error.get("input"))
    return f"{name}: {message}" + ("" if got in message else f" (got {got})")
