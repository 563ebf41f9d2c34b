"""The claim-kind registry (harness.claimkinds): every kind declares typed parameters and
tolerances, and a claim whose params, tolerance or expected value do not fit its kind is refused
when the claims load, naming the file, the claim and the field (not later as "could not judge")."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from harness import claims as cl
from harness import data
from harness import stats as st
from harness.claimkinds import KINDS, KindParams, base, register
from harness.claimkinds.base import Config, Context, TestSet, Verdict
from harness.claimkinds.cells import get_cell
from harness.results import load_results_set

RAW = {}  # kind -> the first claim of that kind in expected_results/, as written
for _file in cl.claim_files():
    for _raw in yaml.safe_load(_file.read_text(encoding="utf-8"))["claims"]:
        RAW.setdefault(_raw["kind"], (_file.name, _raw))


def load_one(tmp_path, raw: dict) -> cl.Claim:
    (tmp_path / "x.yaml").write_text(
        yaml.safe_dump({"paper": cl.PAPER_VERSION, "claims": [raw]}), encoding="utf-8"
    )
    return cl.load_claims(tmp_path)[0]


def refused(tmp_path, raw: dict, *fragments: str) -> str:
    with pytest.raises(cl.RegistryError) as info:
        load_one(tmp_path, raw)
    message = str(info.value)
    assert message.startswith(f"x.yaml, claim {raw['id']!r}: "), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert "\n" not in message
    return message


def test_every_kind_is_used_and_every_claim_is_typed():
    """The registry and the YAML agree: each kind judges at least one claim, and every loaded
    claim carries its validated parameters and tolerance."""
    loaded = cl.load_claims()
    assert {c.kind for c in loaded} == set(KINDS)
    for claim in loaded:
        kind = KINDS[claim.kind]
        assert isinstance(claim.args, kind.params), claim.id
        assert claim.tol.rule == claim.tolerance["rule"] and claim.needs == kind.needs


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_misspelt_parameter_names_the_claim_and_the_field(tmp_path, kind):
    """For every kind: a parameter name with a typo is an unknown field, with a did-you-mean."""
    file, raw = RAW[kind]
    raw = copy.deepcopy(raw)
    assert load_one(tmp_path, raw).id == raw["id"]  # the claim as written loads
    params = raw.get("params") or {}
    if not params:  # a kind without parameters takes none
        raw["params"] = {"dataset": "AMi-Br"}
        refused(tmp_path, raw, "params.dataset: unknown field")
        return
    name = sorted(params)[0]
    typo = name[:-1] + ("x" if name[-1] != "x" else "y")
    raw["params"] = {(typo if k == name else k): v for k, v in params.items()}
    message = refused(tmp_path, raw, f"params.{typo}: unknown field (did you mean {name!r}?)")
    assert f"params.{name}: missing" not in message  # said once, as the misspelt field


@pytest.mark.parametrize(
    "kind, field, value, fragment",
    [
        ("table_cell", "dataset", "AtNorm-MD", "'AtNorm-MD' is not a test set (did you mean 'AtNorM-MD'?)"),
        ("table_cell", "model", "Virchow 3", "'Virchow 3' is not a model of the registry (did you mean"),
        ("table_cell", "metric", "balanced_acc", "is not a metric (did you mean 'balanced_accuracy'?)"),
        ("table_cell", "method", "LoRA", "'LoRA' is not a method (did you mean 'lora'?)"),
        ("table_cell", "stat", "median", "params.stat: Input should be 'mean' or 'std'"),
        ("maximum", "config", "Virchow2|LoRA", "'LoRA' is not a method"),
        ("maximum", "config", "Virchow2", "is not '<model>|<method>'"),
        ("ranking", "among", "loRA", "is not a method or 'all' (did you mean 'lora'?)"),
        ("ranking", "from", "middle", "params.from: Input should be 'top' or 'bottom'"),
        ("parameter_count", "model_key", "virchow-2", "is not a registry key (did you mean 'virchow2'?)"),
        ("dataset_figure", "field", "totl", "'totl' is not a figure of harness.data.figures"),
        ("significance", "test", "t-test", "params.test: Input should be 'wilcoxon' or 'mann_whitney'"),
        ("dominance", "datasets", "AMi-Br", "params.datasets: Input should be a valid list"),
    ],
)  # fmt: skip
def test_a_wrong_value_names_the_claim_the_field_and_a_fix(tmp_path, kind, field, value, fragment):
    raw = copy.deepcopy(RAW[kind][1])
    raw["params"][field] = value
    refused(tmp_path, raw, f"params.{field}: ", fragment)


@pytest.mark.parametrize(
    "kind, change, fragment",
    [
        ("table_cell", {"sref": 0.01}, "tolerance.sref: unknown field (did you mean 's_ref'?)"),
        ("table_cell", {"rule": "std_interval", "s_ref": None, "k": None}, "a mean is judged with"),
        ("table_cell", {"k": -1}, "tolerance.k: Input should be greater than 0"),
        ("ranking", {"rule": "exact"}, "tolerance.rule: 'exact' is not a rule of kind 'ranking'"),
        ("sens_spec", {"value": None}, "tolerance.value: "),
        ("significance", {"alpha": 5}, "tolerance.alpha: Input should be less than 1"),
    ],
)
def test_a_wrong_tolerance_names_the_claim_and_the_field(tmp_path, kind, change, fragment):
    raw = copy.deepcopy(RAW[kind][1])
    tol = {**raw["tolerance"], **change}
    if "sref" in change:
        tol.pop("s_ref")
    tol = {k: v for k, v in tol.items() if v is not None or k == "value"}
    raw["tolerance"] = tol
    refused(tmp_path, raw, fragment)


@pytest.mark.parametrize(
    "kind, expected, fragment",
    [
        ("table_cell", "0.81", None),  # YAML's quoted number still reads as a number
        ("table_cell", "high", "expected: Input should be a valid number"),
        ("significance", {"higher": "LoRA"}, "expected.higher: 'LoRA' is not a method"),
        ("significance", {"signifcant": True}, "expected.signifcant: unknown field"),
        ("value_range", [0.6], "expected.1: missing"),
        ("lora_trainable", "yes please", "expected: Input should be a valid boolean"),
    ],
)
def test_a_wrong_expected_value_is_refused_at_load(tmp_path, kind, expected, fragment):
    raw = {**copy.deepcopy(RAW[kind][1]), "expected": expected}
    if fragment is None:
        assert load_one(tmp_path, raw).id == raw["id"]
    else:
        refused(tmp_path, raw, fragment)


def test_a_claim_built_in_code_is_validated_when_judged():
    claim = cl.Claim("c", "s", "-", "S", "fold_count", "results", {"rule": "exact"}, {"n": 5}, 5)
    with pytest.raises(cl.RegistryError, match="params.n: unknown field"):
        cl.evaluate(claim, Context(load_results_set("paper")), strict=True)
    result = cl.evaluate(claim, Context(load_results_set("paper")))
    assert result.unexpected and "params.n: unknown field" in result.verdict.reason


def test_adding_a_kind_is_one_registered_function_and_its_parameter_type(tmp_path, monkeypatch):
    """A new kind is usable from YAML, validated and judged, with nothing else edited."""
    monkeypatch.setattr(base, "KINDS", dict(KINDS))  # keep the real registry clean

    class Gap(KindParams):
        config: Config
        dataset: TestSet

    @register("gap_to_paper", Gap, needs="results", tolerances=(base.Absolute,), expected=float)
    def gap_to_paper(claim, p: Gap, ctx):
        mean = get_cell(ctx, p.config, p.dataset, "balanced_accuracy").mean
        ok = abs(mean - claim.expected) <= claim.tol.value
        return Verdict(st.PASSED if ok else st.FAILED, round(mean, 4), f"mean {mean:.4f}")

    monkeypatch.setattr(cl, "KINDS", base.KINDS)
    raw = {
        "id": "my.gap",
        "statement": "Virchow2 with LoRA reaches 0.81 on AMi-Br",
        "source": "Table 3",
        "section": "Mine",
        "kind": "gap_to_paper",
        "needs": "results",
        "params": {"config": "virchow2|lora", "dataset": "AMi-Br"},
        "expected": 0.81,
        "tolerance": {"rule": "abs", "value": 0.01},
    }
    claim = load_one(tmp_path, raw)
    assert claim.args.config == "Virchow2|lora"  # any spelling -> the registry's name
    result = cl.evaluate(claim, cl.build_context("paper"), strict=True)
    assert result.status == st.PASSED and result.verdict.observed == pytest.approx(0.8136, abs=1e-3)
    refused(tmp_path, {**raw, "params": {"config": "Virchow2|lora", "datset": "AMi-Br"}},
            "params.datset: unknown field (did you mean 'dataset'?)")  # fmt: skip
    with pytest.raises(ValueError, match="registered twice"):
        register("gap_to_paper", Gap, needs="results")(gap_to_paper)


def test_figure_fields_are_the_figures_the_data_layer_computes(synth_root):
    """dataset_figure validates `field` against data.FIGURE_FIELDS: it must list every figure."""
    for dataset in data.DATASETS:
        figures = data.figures(data.load_records(synth_root, dataset), dataset)
        assert set(figures) <= set(data.FIGURE_FIELDS), dataset
    assert set(data.figures(data.load_records(synth_root, "AMi-Br"), "AMi-Br")) == set(
        data.FIGURE_FIELDS
    )


def test_the_kind_listing_is_made_from_the_registry(capsys):
    """`python -m harness.claimkinds` lists every registered kind with its module, needs, rules
    and parameters, counted against the claims: nothing to keep in step by hand."""
    import harness.claimkinds as package

    rows = {r["kind"]: r for r in package.listing()}
    assert set(rows) == set(KINDS)
    assert sum(r["claims"] for r in rows.values()) == len(cl.load_claims())
    cell = rows["table_cell"]
    assert (cell["module"], cell["needs"], cell["rules"]) == (
        "table3",
        "results",
        "fold_spread, std_interval",
    )
    assert cell["params"] == "model, method, dataset, metric, stat='mean'"
    assert "from='top'" in rows["ranking"]["params"]
    assert package.main() == 0
    assert "table_cell" in capsys.readouterr().out


def test_the_kinds_declare_which_conclusions_claims_add_compares():
    """`claims --add` lists comparative conclusions first and skips the set's own inventory;
    both lists come from the kinds (issue: maxima, rankings, Table 4, LoRA vs linear probing,
    an end-to-end baseline best out of domain)."""
    from harness import whatif

    assert set(whatif.conclusion_kinds()) == {
        "maximum",
        "ranking",
        "value_range",
        "significance",
        "dominance",
        "performance_drop",
        "performance_drop_share",
        "baseline_beats_foundation",
    }
    assert set(whatif.inventory_kinds()) == {"config_count", "fold_count"}
    assert all(KINDS[k].needs == "results" for k in whatif.conclusion_kinds())


def test_a_field_spelt_as_a_python_keyword_is_suggested_as_written(tmp_path):
    """`from` is `from_` in Python; the did-you-mean names the field as the YAML spells it."""
    raw = next(
        copy.deepcopy(r)
        for f in cl.claim_files()
        for r in yaml.safe_load(f.read_text(encoding="utf-8"))["claims"]
        if "from" in (r.get("params") or {})
    )
    raw["params"]["frm"] = raw["params"].pop("from")
    refused(tmp_path, raw, "params.frm: unknown field (did you mean 'from'?)")


@pytest.mark.parametrize(
    "part, change, fragment",
    [
        ("tolerance", {"s_ref": float("nan")}, "tolerance.s_ref: Input should be a finite number"),
        ("tolerance", {"s_ref": float("inf")}, "tolerance.s_ref: Input should be a finite number"),
        ("tolerance", {"s_ref": "-inf"}, "tolerance.s_ref: Input should be a finite number"),
        ("tolerance", {"n_ref": True}, "tolerance.n_ref: a yes/no is not a number"),
        ("tolerance", {"min_folds": False}, "tolerance.min_folds: a yes/no is not a number"),
        ("tolerance", {"k": None}, "tolerance.k: Input should be a valid number"),
        ("tolerance", {"s_ref": -0.1}, "tolerance.s_ref: Input should be greater than or equal to 0"),
        ("expected", float("nan"), "expected: must be a finite number"),
        ("expected", "inf", "expected: must be a finite number"),
        ("expected", True, "expected: Input should be a valid number"),
        ("expected", [0.7, 0.8], "expected: Input should be a valid number"),
        ("expected", {"mean": 0.7}, "expected: Input should be a valid number"),
        ("id", ["t.a"], "id is list"),
        ("id", 12, "id is int"),
        ("statement", ["a", "b"], "statement is list"),
        ("section", {"a": 1}, "section is dict"),
        ("known_contradiction", ["why"], "known_contradiction is list"),
    ],
)  # fmt: skip
def test_a_value_of_the_wrong_type_is_refused_naming_the_field(tmp_path, part, change, fragment):
    """Tolerances and expected values are finite numbers, never a yes/no read as 1 or 0; the text
    fields are text (a list or a number was silently turned into its repr)."""
    raw = copy.deepcopy(RAW["table_cell"][1])
    if part == "tolerance":
        raw["tolerance"] = {**raw["tolerance"], **change}
    else:
        raw[part] = change
    with pytest.raises(cl.RegistryError) as info:
        load_one(tmp_path, raw)
    message = str(info.value)
    assert message.startswith(f"x.yaml, claim {raw['id']!r}: "), message
    assert fragment in message and "\n" not in message, message


TABLE_CELL = yaml.safe_dump(
    {"paper": cl.PAPER_VERSION, "claims": [RAW["table_cell"][1]]}, sort_keys=False
)
CLAIM_ID = RAW["table_cell"][1]["id"]


@pytest.mark.parametrize(
    "text, fragment",
    [
        (TABLE_CELL.replace("  kind: table_cell\n", "  kind: table_cell\n  kind: maximum\n"),
         f"claim {CLAIM_ID!r}, line"),
        (TABLE_CELL.replace("    stat: mean\n", "    stat: mean\n    stat: std\n"),
         "key 'stat' written twice"),
        (TABLE_CELL + f"paper: {cl.PAPER_VERSION}\n", "key 'paper' written twice (first at line 1)"),
        (TABLE_CELL.replace("claims:\n", "claims:\n\t"), "not valid YAML at line 3"),
        (TABLE_CELL.replace("  kind: table_cell\n", "  kind: [table_cell\n"), "not valid YAML at line"),
        (TABLE_CELL + "- &a [*a]\n", "claim #2 is not a mapping"),
        ("- a list\n", "needs a top-level 'claims:' list"),
        (b"\xff\xfe not utf-8", "cannot be read as UTF-8 text"),
    ],
)  # fmt: skip
def test_a_broken_registry_file_is_one_line_naming_the_file(tmp_path, text, fragment):
    """Duplicate keys (YAML keeps the last silently), bad YAML, bytes that are not UTF-8, an
    alias that points back to itself: one RegistryError line naming the file and the place."""
    file = tmp_path / "x.yaml"
    file.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    with pytest.raises(cl.RegistryError) as info:
        cl.load_claims(tmp_path)
    message = str(info.value)
    assert "x.yaml" in message and fragment in message and "\n" not in message, message


@pytest.mark.parametrize(
    "text",
    ["deviations: [1, 2]\n", "- just a list\n", "deviations: [\n", "a: 1\na: 2\n"],
)
def test_a_broken_deviation_ledger_is_one_line(tmp_path, text):
    (tmp_path / "deviations.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(cl.RegistryError) as info:
        cl.load_deviations(tmp_path)
    assert "deviations.yaml" in str(info.value) and "\n" not in str(info.value)


# ------------------------------------------------------------------ review: values as judged
NUMERIC = sorted(
    k
    for k, (_, raw) in RAW.items()
    if KINDS[k].expected is not Any  # a kind without a type keeps the text as written
    and isinstance(raw["expected"], int | float | list)
    and not isinstance(raw["expected"], bool)
    and all(isinstance(x, int | float) for x in (raw["expected"] if isinstance(raw["expected"], list) else [raw["expected"]]))
)  # fmt: skip


def _quoted(value):
    return [str(x) for x in value] if isinstance(value, list) else str(value)


def _plain(value):
    return list(value) if isinstance(value, tuple | list) else [value]


@pytest.mark.parametrize("kind", NUMERIC)
def test_a_quoted_number_is_stored_and_judged_as_the_number(tmp_path, kind):
    """A quoted '0.7474' loads as the number 0.7474 (not the text), for every kind with a
    numeric expected value, and is judged (and shown by the report) as the unquoted claim is."""
    from harness import report

    raw = copy.deepcopy(RAW[kind][1])
    plain = load_one(tmp_path, raw)
    quoted = load_one(tmp_path, {**raw, "expected": _quoted(raw["expected"])})
    assert not any(isinstance(x, str) for x in _plain(quoted.expected)), quoted.expected
    assert base.same_value(_plain(quoted.expected), _plain(plain.expected))
    if KINDS[kind].needs in base.RESULTS_NEEDS:
        ctx = Context(load_results_set("paper"))
        one, two = cl.evaluate(plain, ctx), cl.evaluate(quoted, ctx)
        assert not two.evaluator_error, two.verdict.reason
        assert (one.status, one.verdict.observed) == (two.status, two.verdict.observed)
        assert report.format_expected(one) == report.format_expected(two)


def _claims_of(kind: str) -> list[dict]:
    return [
        r
        for f in cl.claim_files()
        for r in yaml.safe_load(f.read_text(encoding="utf-8"))["claims"]
        if r["kind"] == kind
    ]


@pytest.mark.parametrize(
    "test, field, value",
    [("mann_whitney", "n", 35), ("wilcoxon", "n_x", 35), ("wilcoxon", "n_y", 70)],
)
def test_a_sample_size_of_the_other_test_is_refused(tmp_path, test, field, value):
    """`n` is Wilcoxon's pair count, `n_x`/`n_y` Mann-Whitney's sample sizes: given to the other
    test they were silently ignored."""
    raw = next(copy.deepcopy(r) for r in _claims_of("significance") if r["params"]["test"] == test)
    for other in ("n", "n_x", "n_y"):
        raw["params"].pop(other, None)
    assert load_one(tmp_path, raw).args.test == test
    raw["params"][field] = value
    refused(tmp_path, raw, f"{field} is not a sample size of test {test!r}")


@pytest.mark.parametrize(
    "kind, change, fragment",
    [
        ("ranking", {"among": "lora", "order": ["Swin Transformer|end_to_end"]}, "order names Swin Transformer|end_to_end"),
        ("ranking", {"among": ["Virchow2|lora", "UNI|lora"], "order": ["Virchow2|linear_probe"]}, "order names Virchow2|linear_probe"),
        ("maximum", {"among": "linear_probe", "config": "Virchow2|lora"}, "config names Virchow2|lora"),
        ("maximum", {"among": ["end_to_end"], "config": "virchow2|lora"}, "config names Virchow2|lora"),
        ("ranking", {"among": []}, "an empty list ranges over nothing"),
        ("maximum", {"among": []}, "an empty list ranges over nothing"),
        ("performance_drop_share", {"among": []}, "an empty list ranges over nothing"),
    ],
)  # fmt: skip
def test_a_group_that_cannot_hold_the_named_configuration_is_refused(
    tmp_path, kind, change, fragment
):
    """A ranked or best configuration outside `among`, or an empty `among`, was a KeyError or a
    ZeroDivisionError when judged ('could not judge'): refused at load, naming the field."""
    raw = copy.deepcopy(RAW[kind][1])
    raw["params"].update(change)
    if kind == "ranking" and "order" in change:
        raw["expected"] = change["order"]
    refused(tmp_path, raw, "params", fragment)


@pytest.mark.parametrize(
    "expected, ok",
    [
        (lambda order: list(order), True),
        (lambda order: [o.lower() for o in order], True),  # any spelling of the model
        (lambda order: order[::-1], False),
        (lambda order: order[:1], False),
        (lambda order: [*order, "UNI|lora"], False),
    ],
)
def test_a_rankings_expected_value_repeats_its_order(tmp_path, expected, ok):
    """`expected` is what the report shows for a ranking, `params.order` what is judged: they
    must name the same configurations in the same order."""
    raw = next(copy.deepcopy(r) for r in _claims_of("ranking") if len(r["params"]["order"]) > 1)
    raw["expected"] = expected(raw["params"]["order"])
    if ok:
        assert load_one(tmp_path, raw).id == raw["id"]
    else:
        refused(tmp_path, raw, "expected: must repeat params.order")


PRINTED_KINDS = sorted(k for k, kind in KINDS.items() if base.Printed in kind.tolerances)


@pytest.mark.parametrize("kind", PRINTED_KINDS)
@pytest.mark.parametrize("units", [{}, {"decimals": 2, "step": 0.01}])
def test_a_printed_tolerance_gives_exactly_one_unit(tmp_path, kind, units):
    raw = copy.deepcopy(RAW[kind][1])
    raw["tolerance"] = {"rule": "printed", **units}
    refused(tmp_path, raw, "give exactly one of decimals and step")


def _printed_verdict(monkeypatch, kind: str, tolerance: dict, offset: float) -> str:
    """The verdict of a `kind` claim under a printed `tolerance` when the observed value (for
    value_range: the lowest and the highest mean) lies `offset` outside the printed one."""
    from harness.claimkinds import architecture, dataset

    raw = copy.deepcopy(RAW[kind][1])
    ctx = Context(load_results_set("paper"))
    if kind == "value_range":
        p = raw["params"]
        means = [get_cell(ctx, c, p["dataset"], p["metric"]).mean
                 for c in cl.TABLE3_CONFIGS if c.endswith("|" + p["method"])]  # fmt: skip
        expected = [min(means) + offset, max(means) - offset]
    else:
        expected = 1000 if kind == "parameter_count" else 12.0
        observed = expected - offset
        monkeypatch.setattr(architecture, "_count", lambda *a: observed)
        monkeypatch.setattr(dataset.data, "figure", lambda *a: observed)
        monkeypatch.setattr(dataset, "data_absence", lambda ctx: None)
    raw.update(expected=expected, tolerance={"rule": "printed", **tolerance})
    fields = ("id", "statement", "source", "section", "kind", "needs", "tolerance", "params")
    claim = KINDS[kind].validate(cl.Claim(*(raw[k] for k in fields), expected), "x")
    return KINDS[kind].evaluate(claim, claim.args, ctx).status


@pytest.mark.parametrize("kind", PRINTED_KINDS)
@pytest.mark.parametrize("tolerance, unit", [({"step": 0.1}, 0.1), ({"decimals": 1}, 0.1),
                                             ({"step": 10}, 10), ({"decimals": 0}, 1)])  # fmt: skip
def test_a_printed_tolerance_reads_the_same_in_every_kind(monkeypatch, kind, tolerance, unit):
    """`printed` with `step` or `decimals` allows half a unit of the last printed digit in every
    kind that accepts it (dataset_figure read only decimals, parameter_count and value_range only
    step)."""
    assert _printed_verdict(monkeypatch, kind, tolerance, 0.3 * unit) == st.PASSED
    assert _printed_verdict(monkeypatch, kind, tolerance, -0.3 * unit) == st.PASSED
    assert _printed_verdict(monkeypatch, kind, tolerance, 0.8 * unit) == st.FAILED


@pytest.mark.parametrize(
    "observed, value, status",
    [
        (0.75, 0.1, st.PASSED),
        (0.75, 0.0, st.FAILED),
        (0.65, 0.1, st.FAILED),
        (0.85, 0.0, st.PASSED),
    ],
)
def test_smoke_above_chance_allows_its_absolute_tolerance(observed, value, status):
    """The abs tolerance of smoke_above_chance was registered but never read."""
    import types

    import numpy as np

    rs = types.SimpleNamespace(
        name="s", manifest={"tier": "smoke"}, configurations=[("ResNet18", "end_to_end")],
        datasets=["synthetic:a"], values=lambda *a: np.array([observed]),
    )  # fmt: skip
    claim = cl.Claim("c", "s", "-", "S", "smoke_above_chance", "run", {"rule": "abs", "value": value},
                     {"method": "end_to_end"}, 0.8)  # fmt: skip
    assert cl.evaluate(claim, Context(rs), strict=True).status == status


@pytest.mark.parametrize("rules", [(base.FoldSpread, base.Order), (base.Exact, base.Exact)])
def test_a_kind_cannot_register_two_tolerances_of_one_rule(rules):
    with pytest.raises(ValueError, match="two tolerance models for rule"):
        register("twice", needs="results", tolerances=rules)
    assert "twice" not in KINDS
