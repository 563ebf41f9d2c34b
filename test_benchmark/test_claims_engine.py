"""The claims engine: registry validation, verdict logic, and the lowered-cell test.

The key test lowers one Table 3 cell by 0.05 in every fold and checks that exactly the claims
that cell decides change verdict (a claims suite that cannot fail is worthless).
"""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
import yaml
from helpers import paper_rows

from harness import claims as cl
from harness import stats as st
from harness.claimkinds import cells
from harness.claimkinds.base import RESULTS_NEEDS
from harness.results import write_results_set


def make_set(tmp_path, rows, predictions=None, manifest=None, name="test"):
    manifest = {"name": name, "tier": "full", "preset": "paper", **(manifest or {})}
    return write_results_set(tmp_path / name, rows, predictions=predictions, manifest=manifest)


@pytest.fixture(scope="module")
def result_claims() -> list[cl.Claim]:
    return [c for c in cl.load_claims() if c.needs in RESULTS_NEEDS]


def verdicts(claims, folder) -> dict[str, str]:
    ctx = cl.build_context(folder)
    return {r.claim.id: r.status for r in cl.evaluate_all(claims, ctx, strict=True)}


def test_lowered_cell_fails_exactly_the_claims_it_decides(tmp_path, result_claims):
    rows = paper_rows()
    for r in rows:
        if (r["model"], r["method"], r["dataset"]) == ("Virchow2", "lora", "AMi-Br"):
            r["balanced_accuracy"] = f"{float(r['balanced_accuracy']) - 0.05:.4f}"
    lowered = make_set(tmp_path, rows, manifest={"tier": "paper"}, name="lowered")
    before = verdicts(result_claims, "paper")
    after = verdicts(result_claims, lowered)
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {
        "table3.virchow2.lora.amibr.bacc.mean",  # the cell itself (its std is unchanged)
        "s5.amibr.virchow2.lora.bacc",  # §5 quotes it (0.8135)
        "abstract.max.amibr",  # it was the abstract's maximum
        "s5.amibr.best.bacc",  # best configuration on AMi-Br
        "s5.amibr.best-lora.bacc",  # best LoRA model on AMi-Br
    }
    assert {after[k] for k in changed} == {st.FAILED}
    assert after["table3.virchow2.lora.amibr.bacc.std"] == st.PASSED


def test_paper_set_fails_only_known_contradictions(result_claims):
    ctx = cl.build_context("paper")
    for r in cl.evaluate_all(result_claims, ctx, strict=True):
        assert not r.unexpected, (r.claim.id, r.verdict.reason)


def test_registry_covers_every_table3_cell():
    claims = cl.load_claims()
    ids = [c.id for c in claims]
    assert len(ids) == len(set(ids))
    cells = {
        (
            c.params["model"],
            c.params["method"],
            c.params["dataset"],
            c.params["metric"],
            c.params["stat"],
        )
        for c in claims
        if c.section == "Table 3"
    }
    assert len(cells) == 17 * 3 * 2 * 2
    for config in cl.TABLE3_CONFIGS:
        model, method = cl.split_config(config)
        assert (model, method, "AtNorM-MD", "auroc", "std") in cells


def write_registry(tmp_path, claims, paper=cl.PAPER_VERSION):
    (tmp_path / "x.yaml").write_text(yaml.safe_dump({"paper": paper, "claims": claims}))
    return tmp_path


GOOD = {
    "id": "a.b",
    "statement": "s",
    "source": "§1",
    "section": "S",
    "kind": "table_cell",
    "needs": "results",
    "params": {"model": "UNI", "method": "lora", "dataset": "AMi-Br", "metric": "auroc"},
    "expected": 0.8,
    "tolerance": {"rule": "fold_spread", "s_ref": 0.01, "n_ref": 5},
}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"kind": "telepathy"}, "x.yaml, claim 'a.b': unknown kind 'telepathy'"),
        ({"kind": "table_cel"}, "x.yaml, claim 'a.b': unknown kind 'table_cel' (did you mean"),
        ({"needs": "luck"}, "x.yaml, claim 'a.b': needs 'luck'"),
        ({"needs": "data"}, "x.yaml, claim 'a.b': kind 'table_cell' has needs 'results'"),
        ({"tolerance": {"rule": "vibes"}}, "x.yaml, claim 'a.b': tolerance.rule: 'vibes'"),
        ({"tolerance": "exact"}, "x.yaml, claim 'a.b': tolerance must be a mapping"),
        ({"source": None}, "x.yaml, claim 'a.b': missing field(s) source"),
        ({"kind": "external", "needs": "external", "params": {}}, "'a.b': params.why: missing"),
        ({"kind": "external", "params": {"why": "w"}}, "kind 'external' has needs 'external'"),
        ({"expected": "high"}, "x.yaml, claim 'a.b': expected: "),
    ],
)
def test_bad_registry_names_file_and_claim(tmp_path, change, message):
    with pytest.raises(cl.RegistryError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cl.load_claims(write_registry(tmp_path, [{**GOOD, **change}]))


def test_registry_duplicate_ids_and_version_pin(tmp_path):
    with pytest.raises(cl.RegistryError, match="duplicate id"):
        cl.load_claims(write_registry(tmp_path, [GOOD, GOOD]))
    with pytest.raises(cl.RegistryError, match="pinned to paper"):
        cl.load_claims(write_registry(tmp_path, [GOOD], paper="arXiv 2506.21444v1"))


def test_absent_configuration_is_not_run_with_manifest_reason(tmp_path, result_claims):
    rows = [r for r in paper_rows() if r["method"] == "end_to_end"]
    folder = make_set(
        tmp_path,
        rows,
        manifest={
            "configs": {
                "uni|lora": {"status": "not run", "reason": "needs a GPU and the weights of UNI"}
            }
        },
    )
    ctx = cl.build_context(folder)
    by_id = {c.id: c for c in result_claims}
    r = cl.evaluate(by_id["table3.uni.lora.amibr.bacc.mean"], ctx)
    assert r.status == st.NOT_RUN and "needs a GPU and the weights of UNI" in r.verdict.reason
    r = cl.evaluate(by_id["table3.virchow.lp.amibr.bacc.mean"], ctx)
    assert r.status == st.NOT_RUN and "has no rows for Virchow (linear probe)" in r.verdict.reason
    assert cl.evaluate(by_id["abstract.max.amibr"], ctx).status == st.NOT_RUN
    assert (
        cl.evaluate(by_id["table3.swin-transformer.baseline.amibr.bacc.mean"], ctx).status
        == st.PASSED
    )


def test_fewer_folds_is_inconclusive_with_numbers(tmp_path, result_claims):
    rows = [r for r in paper_rows() if r["fold"] in ("1", "2", "3")]
    ctx = cl.build_context(make_set(tmp_path, rows))
    by_id = {c.id: c for c in result_claims}
    r = cl.evaluate(by_id["table3.virchow2.lora.amibr.bacc.mean"], ctx)
    assert r.status == st.INCONCLUSIVE and "only 3 of the 5 folds" in r.verdict.reason
    assert cl.evaluate(by_id["t4.amibr.wilcoxon.lp-vs-lora"], ctx).status == st.INCONCLUSIVE
    assert cl.evaluate(by_id["s4.folds"], ctx).status == st.INCONCLUSIVE


def test_better_results_are_passed_and_better(tmp_path, result_claims):
    rows = paper_rows()
    for r in rows:
        if (r["model"], r["method"], r["dataset"]) == ("UNI", "lora", "AtNorM-MD"):
            r["auroc"] = f"{float(r['auroc']) + 0.08:.4f}"
    ctx = cl.build_context(make_set(tmp_path, rows))
    claim = next(c for c in result_claims if c.id == "table3.uni.lora.atnorm-md.auroc.mean")
    assert cl.evaluate(claim, ctx).status == st.BETTER


def rows_with_pairs(diffs: list[float], dataset: str = "AMi-Br") -> list[dict]:
    """The paper's rows with LoRA = linear probe + diffs[k] in the k-th (model, fold) pair of
    `dataset` (Wilcoxon pairs of the Table 4 claims)."""
    rows = paper_rows()
    probe = {
        (r["model"], r["fold"]): float(r["balanced_accuracy"])
        for r in rows
        if r["method"] == "linear_probe" and r["dataset"] == dataset
    }
    order = sorted(probe)
    for r in rows:
        if r["method"] == "lora" and r["dataset"] == dataset:
            pair = (r["model"], r["fold"])
            r["balanced_accuracy"] = f"{probe[pair] + diffs[order.index(pair)]:.4f}"
    return rows


GAINS = [0.01 + 0.001 * k for k in range(12)]


@pytest.mark.parametrize(
    ("diffs", "status", "said"),
    [
        # 23 of 35 pairs tied, LoRA higher in the other 12: the median difference is 0
        ([0.0] * 23 + GAINS, st.PASSED, "23 of 35 pairs tied"),
        ([0.0] * 23 + [-g for g in GAINS], st.FAILED, "linear probe is higher, not LoRA"),
        ([0.0] * 35, st.FAILED, "the ranks favour neither, not LoRA"),
        ([0.0] * 30 + GAINS[:5], st.FAILED, "not significant"),  # exact p = 2/2^5 > 0.05
    ],
)
def test_wilcoxon_claim_direction_comes_from_the_signed_ranks(
    tmp_path, result_claims, diffs, status, said
):
    ctx = cl.build_context(make_set(tmp_path, rows_with_pairs(diffs)))
    claim = next(c for c in result_claims if c.id == "t4.amibr.wilcoxon.lp-vs-lora")
    v = cl.evaluate(claim, ctx, strict=True).verdict
    assert v.status == status and said in v.reason, v.reason
    assert f"{diffs.count(0.0)} of 35 pairs tied" in v.reason
    assert v.details["n_tied"] == diffs.count(0.0)


def test_mann_whitney_claim_with_no_difference_favours_neither(tmp_path, result_claims):
    """All pooled values equal: P(X > Y) + P(X = Y)/2 = 0.5, so no side is higher (not the
    second by default)."""
    rows = paper_rows()
    for r in rows:
        if r["dataset"] == "AMi-Br":
            r["balanced_accuracy"] = "0.7000"
    ctx = cl.build_context(make_set(tmp_path, rows))
    claim = next(c for c in result_claims if c.id == "t4.amibr.mwu.baseline-vs-lora")
    v = cl.evaluate(claim, ctx, strict=True).verdict
    assert v.status == st.FAILED and v.observed.endswith("neither higher")
    assert "the ranks favour neither" in v.reason and "= 0.500" in v.reason


def test_reversed_strategies_fail_the_wilcoxon_claim(tmp_path, result_claims):
    rows = paper_rows()
    swap = {"lora": "linear_probe", "linear_probe": "lora"}
    for r in rows:
        r["method"] = swap.get(r["method"], r["method"])
    ctx = cl.build_context(make_set(tmp_path, rows))
    claim = next(c for c in result_claims if c.id == "t4.atnorm-br.wilcoxon.lp-vs-lora")
    r = cl.evaluate(claim, ctx)
    assert r.status == st.FAILED and "35 pairs" in r.verdict.reason


def fake_models(counts):
    mod = types.ModuleType("harness.models")
    mod.parameter_count = lambda key, head=None: counts[(key, head)]
    return mod


def test_a_broken_model_registry_is_an_error_not_a_skip(monkeypatch):
    claim = next(c for c in cl.load_claims() if c.id == "table2.virchow.params")
    monkeypatch.setitem(sys.modules, "harness.models", None)  # import fails
    with pytest.raises(ImportError):
        cl.evaluate(claim, cl.Context(), strict=True)  # pytest: the claim test fails
    r = cl.evaluate(claim, cl.Context())  # report: flagged, and the exit code says so
    assert r.status == st.NOT_RUN and r.verdict.reason.startswith("ERROR") and r.unexpected
    monkeypatch.setitem(
        sys.modules, "harness.models", fake_models({("virchow", None): 631_229_184})
    )
    assert cl.evaluate(claim, cl.Context()).status == st.PASSED  # -0.12 %, inside 0.5 %
    monkeypatch.setitem(
        sys.modules, "harness.models", fake_models({("virchow", None): 640_000_000})
    )
    assert cl.evaluate(claim, cl.Context()).status == st.FAILED


def test_dataset_claims_need_the_data():
    claim = cl.Claim(
        "d",
        "s",
        "T1",
        "Datasets",
        "dataset_figure",
        "data",
        {"rule": "exact"},
        {"dataset": "AMi-Br", "field": "total"},
        3720,
    )
    r = cl.evaluate(claim, cl.Context(data_root=None, data_hint="/nowhere"))
    assert r.status == st.NOT_RUN and "needs the public datasets at /nowhere" in r.verdict.reason


def predictions_for(rows, sens, spec, n_pos=184, n_neg=642):
    """Per-image predictions with exactly the given atypical-class sensitivity and specificity,
    the same in every fold; Virchow2 LoRA's AMi-Br rows of `rows` take the metrics they give
    (fold_metrics.csv must agree with predictions.csv)."""
    out = []
    for fold in range(1, 6):
        for k in range(n_pos):
            out.append(
                {
                    "model": "Virchow2",
                    "method": "lora",
                    "dataset": "AMi-Br",
                    "fold": fold,
                    "image": f"a{k}.png",
                    "label": "Atypical",
                    "prob_atypical": 0.9 if k < round(sens * n_pos) else 0.1,
                }
            )
        for k in range(n_neg):
            out.append(
                {
                    "model": "Virchow2",
                    "method": "lora",
                    "dataset": "AMi-Br",
                    "fold": fold,
                    "image": f"n{k}.png",
                    "label": "Normal",
                    "prob_atypical": 0.1 if k < round(spec * n_neg) else 0.9,
                }
            )
    fold = out[: n_pos + n_neg]
    given = st.fold_metrics(
        np.array([p["label"] == "Atypical" for p in fold]),
        np.array([p["prob_atypical"] for p in fold]),
    )
    for r in rows:
        if (r["model"], r["method"], r["dataset"]) == ("Virchow2", "lora", "AMi-Br"):
            r.update(balanced_accuracy=given["balanced_accuracy"], auroc=given["auroc"])
    return out


@pytest.mark.parametrize("sens, status", [(0.75, st.PASSED), (0.60, st.FAILED)])
def test_sensitivity_from_predictions(tmp_path, result_claims, sens, status):
    rows = paper_rows()
    ctx = cl.build_context(make_set(tmp_path, rows, predictions_for(rows, sens, 0.876)))
    by_id = {c.id: c for c in result_claims}
    assert cl.evaluate(by_id["s5.amibr.sensitivity"], ctx).status == status
    assert cl.evaluate(by_id["s5.amibr.specificity"], ctx).status == st.PASSED
    cell = cl.evaluate(by_id["table3.virchow2.lora.amibr.bacc.mean"], ctx)
    lo, hi = cell.verdict.details["ci95_images"]  # per-image bootstrap of the fold mean
    assert lo <= (sens + 0.876) / 2 <= hi and "over images" in cell.verdict.reason
    r = cl.evaluate(by_id["s5.atnorm-br.sensitivity"], ctx)
    assert r.status == st.NOT_RUN and "no rows for Vision Transformer" in r.verdict.reason


def test_protocol_settings_from_run_manifest(tmp_path, result_claims):
    settings = {
        "hyper": {"batch_size": 8, "max_epochs": 100, "early_stopping": 10},
        "lora": {
            "r": 8,
            "lora_alpha": 16,
            "lora_dropout": 0.3,
            "target_modules": ["qkv", "proj", "fc1", "fc2"],
        },
    }
    configs = {
        "virchow2|lora": {"status": "done", "settings": settings},
        "swin-b|end_to_end": {
            "status": "done",
            "settings": {"hyper": {"batch_size": 8, "early_stopping": 15}},
        },
    }
    ctx = cl.build_context(
        make_set(tmp_path, paper_rows(), manifest={"preset": "reference-code", "configs": configs})
    )
    by_id = {c.id: c for c in result_claims}
    for cid in (
        "s4.3.lora.rank",
        "s4.3.lora.alpha",
        "s4.3.lora.dropout",
        "s4.3.lora.targets",
        "s4.batch-size",
    ):
        assert cl.evaluate(by_id[cid], ctx).status == st.PASSED, cid
    r = cl.evaluate(by_id["s4.early-stopping"], ctx)
    assert r.status == st.FAILED and "virchow2|lora: 10" in r.verdict.reason
    assert "reference-code" in r.verdict.reason
    assert cl.evaluate(by_id["s4.threshold"], ctx).status == st.NOT_RUN
    # configuration counts describe the paper's own experiment only
    assert cl.evaluate(by_id["s4.2.seven-linear-probes"], ctx).status == st.NOT_RUN


def test_unexpected_pass_of_a_contradiction_is_flagged():
    claim = cl.Claim(
        "c",
        "s",
        "-",
        "S",
        "table_cell",
        "results",
        {"rule": "exact"},
        known_contradiction="because",
    )
    assert cl.ClaimResult(claim, cl.Verdict(st.PASSED, 1)).unexpected
    assert cl.ClaimResult(claim, cl.Verdict(st.FAILED, 1)).confirmed_contradiction
    with pytest.raises(ValueError):
        cl.Verdict(st.NOT_RUN)  # a not-run verdict always carries a reason


def test_cell_statistics_match_the_paper_convention():
    cell = cells.Cell("m", "lora", "AMi-Br", "auroc", np.array([0.8, 0.9]))
    assert cell.std == pytest.approx(0.05) and cell.sd == pytest.approx(0.05 * np.sqrt(2))


def test_generated_table3_files_are_up_to_date(tmp_path, monkeypatch):
    """table3.yaml and prose_numbers.yaml are generated: a hand edit makes this fail."""
    import importlib.util

    from harness import paths

    path = paths.EXPECTED_RESULTS / "generate_table3.py"
    spec = importlib.util.spec_from_file_location("generate_table3", path)
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    monkeypatch.setattr(gen, "OUT", tmp_path / "table3.yaml")
    monkeypatch.setattr(gen, "OUT_PROSE", tmp_path / "prose_numbers.yaml")
    gen.main()
    for name in ("table3.yaml", "prose_numbers.yaml"):
        committed = (paths.EXPECTED_RESULTS / name).read_text(encoding="utf-8")
        assert (tmp_path / name).read_text(encoding="utf-8") == committed, name


def test_regression_check_names_exactly_what_got_worse(tmp_path, result_claims, capsys):
    """`claims --results NEW --against OLD`: the lowered cell's five claims regress (exit 1);
    a set compared with itself has nothing to report."""
    from harness import cli, report

    rows = paper_rows()
    for r in rows:
        if (r["model"], r["method"], r["dataset"]) == ("Virchow2", "lora", "AMi-Br"):
            r["balanced_accuracy"] = f"{float(r['balanced_accuracy']) - 0.05:.4f}"
    lowered = make_set(tmp_path, rows, manifest={"tier": "paper"}, name="lowered")
    out = tmp_path / "regressions.json"
    code = cli.main(
        ["claims", "--results", str(lowered), "--against", "paper", "--format", "json",
         "--out", str(out)]
    )  # fmt: skip
    assert code == 1
    doc = json.loads(out.read_text())
    assert doc["new"].startswith(f"lowered ({lowered}") and doc["old"].startswith("paper (")
    changes = doc["rows"]
    assert doc["summary"]["regressed"] == 5 == sum(c["change"] == "regressed" for c in changes)
    regressed = {c["id"] for c in changes if c["change"] == "regressed"}
    assert regressed == {
        "table3.virchow2.lora.amibr.bacc.mean",
        "s5.amibr.virchow2.lora.bacc",
        "abstract.max.amibr",
        "s5.amibr.best.bacc",
        "s5.amibr.best-lora.bacc",
    }
    cell = next(c for c in changes if c["id"] == "table3.virchow2.lora.amibr.bacc.mean")
    assert cell["delta"] == pytest.approx(-0.05, abs=1e-4)
    assert {c["change"] for c in changes} <= {"regressed", "same"}
    ctx = cl.build_context("paper")
    same = report.compare(cl.evaluate_all(result_claims, ctx), cl.evaluate_all(result_claims, ctx))
    assert {c["change"] for c in same} == {"same"}
    text = report.comparison_text(changes, "lowered", "paper", fmt="text")
    assert "5 regressed" in text and "table3.virchow2.lora.amibr.bacc.mean" in text


def test_regression_check_sees_a_drop_within_the_papers_tolerance(tmp_path, result_claims):
    """AUROC -0.03 in every fold still passes against the paper, yet it is a change well beyond
    five folds' spread: the regression check reports it as moved down."""
    from harness import report

    rows = paper_rows()
    for r in rows:
        if (r["model"], r["method"], r["dataset"]) == ("UNI", "lora", "AtNorM-MD"):
            r["auroc"] = f"{float(r['auroc']) - 0.03:.4f}"
    dropped = make_set(tmp_path, rows, manifest={"tier": "paper"}, name="dropped")
    new = cl.evaluate_all(result_claims, cl.build_context(dropped))
    old = cl.evaluate_all(result_claims, cl.build_context("paper"))
    changes = {c["id"]: c for c in report.compare(new, old)}
    cell = changes["table3.uni.lora.atnorm-md.auroc.mean"]
    assert (cell["old"], cell["new"], cell["change"]) == (st.PASSED, st.PASSED, "moved down")
    assert [k for k, c in changes.items() if c["change"] != "same"] == [cell["id"]]


def _claim(**fields) -> cl.Claim:
    raw = {**GOOD, "tolerance": {"rule": "exact"}, **fields}
    return cl._claim_from(raw, cl.paths.EXPECTED_RESULTS / "x.yaml", 1)


@pytest.mark.parametrize(
    "attribute, models, expected, status",
    [
        ("class", ["uni", "h0-mini"], "VisionTransformer", st.PASSED),
        ("class", ["uni", "swin-b"], "VisionTransformer", st.FAILED),
        ("patch_embed.patch_size", ["vit-l16"], [16, 16], st.PASSED),
        ("patch_embed.patch_size", ["uni2-h"], [16, 16], st.FAILED),  # ViT-H/14
    ],
)
def test_architecture_properties_can_fail(attribute, models, expected, status):
    claim = _claim(
        kind="architecture_property",
        needs="architecture",
        params={"attribute": attribute, "models": models},
        expected=expected,
    )
    assert cl.evaluate(claim, cl.Context(None), strict=True).status == status


def test_lora_claim_fails_when_the_head_is_frozen_or_the_backbone_trains(monkeypatch):
    from harness import models

    claim = _claim(
        kind="lora_trainable", needs="architecture", params={"models": ["uni"]}, expected=True
    )
    assert cl.evaluate(claim, cl.Context(None), strict=True).status == st.PASSED
    monkeypatch.setitem(models.LORA_CONFIG, "modules_to_save", [])
    v = cl.evaluate(claim, cl.Context(None), strict=True).verdict
    assert v.status == st.FAILED and "the head does not train" in v.reason
    monkeypatch.setitem(models.LORA_CONFIG, "modules_to_save", ["head", "norm"])
    v = cl.evaluate(claim, cl.Context(None), strict=True).verdict
    assert v.status == st.FAILED and "norm" in v.reason


def test_external_claims_are_not_run_with_their_reason():
    for claim in (c for c in cl.load_claims() if c.kind == "external"):
        v = cl.evaluate(claim, cl.build_context("paper"), strict=True).verdict
        assert v.status == st.NOT_RUN and claim.params["why"] in v.reason


@pytest.mark.parametrize("said", [True, False])
@pytest.mark.parametrize(
    "diffs, found",
    [([0.0] * 23 + GAINS, "significant"), ([0.0] * 30 + GAINS[:5], "not significant")],
)
def test_a_significance_claim_is_judged_both_ways(tmp_path, result_claims, said, diffs, found):
    """`significant: false` was never checked (any p passed) and the text always said
    "significant": the verdict and the text follow the observed p-value."""
    import dataclasses

    ctx = cl.build_context(make_set(tmp_path, rows_with_pairs(diffs)))
    claim = next(c for c in result_claims if c.id == "t4.amibr.wilcoxon.lp-vs-lora")
    claim = dataclasses.replace(claim, expected={"significant": said, "higher": "lora"})
    v = cl.evaluate(claim, ctx, strict=True).verdict
    agree = said == (found == "significant")
    assert v.status == (st.PASSED if agree else st.FAILED), v.reason
    assert f"{found} at alpha" in v.reason and f"not {found} at alpha" not in v.reason, v.reason


def _smoke_set(configs: dict):
    return types.SimpleNamespace(name="s", manifest={"tier": "smoke", "configs": configs})


def _counter_claim(**params) -> cl.Claim:
    params = {"counter": "forward_passes_per_image", **params}
    return cl.Claim("c", "s", "-", "S", "run_counter", "run", {"rule": "exact"}, params, 1.0)


@pytest.mark.parametrize("lacking", ["backbone_forward_images", "unique_images"])
def test_a_forward_pass_counter_without_its_parts_is_not_run_naming_them(lacking):
    counters = {"backbone_forward_images": 40, "unique_images": 20, "folds": 5}
    del counters[lacking]
    rs = _smoke_set({"UNI|linear_probe": {"settings": {"counters": counters}}})
    v = cl.evaluate(_counter_claim(), cl.Context(rs), strict=True).verdict
    assert v.status == st.NOT_RUN and lacking in v.reason and "UNI|linear_probe" in v.reason


@pytest.mark.parametrize("method", ["linear_probe", "lora", "end_to_end"])
def test_a_missing_forward_pass_counter_names_the_method_asked(method):
    v = cl.evaluate(_counter_claim(method=method), cl.Context(_smoke_set({})), strict=True).verdict
    assert v.status == st.NOT_RUN and f"no {cells.METHOD_WORDS[method]} configuration" in v.reason


@pytest.mark.parametrize("name", ["lora.r", "r", "lora_r", "lora_config.r"])
def test_a_deliberate_override_is_seen_under_any_name_of_the_setting(name):
    """The smoke tier's override of a setting is recorded under one of its names: an alias too
    (only the last segment of `setting` was looked at)."""
    settings = {"tier": "full", "overrides": {name: 4}, "lora_config": {"r": 4}, "lora_r": 4}
    rs = types.SimpleNamespace(
        name="s", manifest={"tier": "full", "configs": {"UNI|lora": {"settings": settings}}}
    )
    params = {"setting": "lora.r", "aliases": ["lora_config.r", "lora_r"], "methods": ["lora"]}
    claim = cl.Claim("c", "s", "-", "S", "protocol_setting", "run", {"rule": "exact"}, params, 8)
    v = cl.evaluate(claim, cl.Context(rs), strict=True).verdict
    assert v.status == st.NOT_RUN and "on purpose" in v.reason, v.reason
