"""One registry, the single source: the plan of Table 3, the names of results sets and claims, and
the configuration hashes all derive from harness.registry; the packaged claim registry."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest
from paper_table3 import TABLE3

from harness import claims, config, plan, registry, results
from harness.results import ResultsError, validate_fold_rows

# sha256 over every plan configuration's hash under both presets, per registry version. A change
# of any model's description changes it: bump registry.REGISTRY_VERSION (results of the older
# registry then read as stale) and add the new value; never edit an old one.
# Digest of every plan configuration's hash, per registry version. Registry version 1 was
# 94750226ff29ef6d until v0.3.0 added the fold assignment (the authors' committed folds) and the
# precision to every hash, the reference-code preset's Virchow LoRA normalisation and the fast
# preset: all deliberate.
PLAN_HASHES = {"1": "9ed11ee35805d8d2"}


def test_plan_is_table3_in_the_papers_order() -> None:
    named = tuple((registry.get_spec(k).name, m) for k, m in plan.PAPER_PLAN)
    assert named == TABLE3 and len(plan.PAPER_PLAN) == 17
    assert plan.EXTRA_PLAN == (("h0-mini", "linear_probe"), ("h0-mini", "lora"))
    assert claims.TABLE3_CONFIGS == tuple(f"{m}|{meth}" for m, meth in TABLE3)
    assert claims.BASELINES == tuple(m for m, meth in TABLE3 if meth == "end_to_end")
    assert claims.FOUNDATION_MODELS == tuple(m for m, meth in TABLE3 if meth == "lora")
    assert plan.FOUNDATION_KEYS == tuple(registry.resolve_key(m) for m in claims.FOUNDATION_MODELS)
    for key, method in plan.PAPER_PLAN + plan.EXTRA_PLAN:
        assert method in registry.get_spec(key).methods


def test_results_model_names_map_to_registry_entries() -> None:
    for text, name in results.MODEL_NAMES.items():
        spec = registry.get_spec(registry.resolve_key(text))
        assert spec.name == name and text in (spec.key, *spec.aliases)
    paper = results.load_results_set("paper")
    for model, method in paper.configurations:
        assert registry.get_spec(registry.resolve_key(model)).in_paper(method), model
    for spec in registry.SPECS.values():
        for spelling in (spec.key, spec.name.upper(), *spec.aliases):
            assert results.canonical_model(spelling) == spec.name


def _model_refs(claim) -> tuple[set[str], set[str]]:
    """(result names, registry keys) a claim refers to."""
    p, names, keys = claim.params, set(), set()
    if isinstance(p.get("model"), str):
        names.add(p["model"])
    for field in ("config", "order", "among"):
        value = p.get(field)
        for item in [value] if isinstance(value, str) else value or []:
            if isinstance(item, str) and "|" in item:
                names.add(item.partition("|")[0])
    if isinstance(p.get("model_key"), str):
        keys.add(p["model_key"])
    for item in p.get("models") or []:
        if isinstance(item, dict):
            keys.add(item["model_key"])
        elif item in registry.SPECS:
            keys.add(item)
        else:
            names.add(item)
    return names, keys


def test_every_model_the_claims_name_is_a_registry_entry() -> None:
    known_names = {s.name for s in registry.SPECS.values()}
    seen_names, seen_keys = set(), set()
    for claim in claims.load_claims():
        names, keys = _model_refs(claim)
        assert names <= known_names, (claim.id, names - known_names)
        assert keys <= set(registry.SPECS), (claim.id, keys - set(registry.SPECS))
        seen_names |= names
        seen_keys |= keys
    # the walk above does see the claims' models (else it would pass vacuously)
    assert {m for m, _ in TABLE3} <= seen_names
    assert {"uni", "vit-l16", "h0-mini"} <= seen_keys


def test_configuration_hashes_of_the_paper_models_are_kept() -> None:
    hashes = sorted(
        config.RunConfig(k, m, preset).hash
        for k, m in plan.PAPER_PLAN + plan.EXTRA_PLAN
        for preset in config.PRESETS
    )
    digest = hashlib.sha256(json.dumps(hashes).encode()).hexdigest()[:16]
    assert digest == PLAN_HASHES[registry.REGISTRY_VERSION], (
        "a configuration's description changed: if deliberate, record the new digest (bump "
        "REGISTRY_VERSION when a model's entry changed) and say why above"
    )


def test_presentation_fields_do_not_enter_the_hash() -> None:
    uni = registry.get_spec("uni")
    moved = replace(uni, table3_order=99, paper_methods=(), aliases=("u",))
    assert moved.digest() == uni.digest()
    assert replace(uni, lora_targets=("qkv",)).digest() != uni.digest()


def test_a_new_paper_model_is_one_entry() -> None:
    """One spec with a Table 3 row lands in the plan, the claims' row list and the names."""
    spec = replace(registry.get_spec("uni"), key="uni-next", name="UNI-next", table3_order=10)
    with registry.registered(spec):
        rows = registry.paper_plan()
        assert ("uni-next", "linear_probe") in rows and ("uni-next", "lora") in rows
        assert rows.index(("uni-next", "linear_probe")) == rows.index(("uni", "lora")) - 1
        assert registry.table3_names("lora")[-1] == "UNI-next"
        assert results.canonical_model("uni-next") == "UNI-next"
    assert results.canonical_model("uni-next") == "uni-next"  # gone with its entry


def _rows(model: str) -> list[dict]:
    return [
        {"model": model, "method": "linear_probe", "dataset": "AMi-Br", "fold": "1"}
        | {"balanced_accuracy": "0.7", "auroc": "0.8", "pr_auc": ""}
    ]


def test_unknown_model_names_are_refused_unless_described() -> None:
    with pytest.raises(ResultsError, match=r"line 2: unknown model 'NoSuchFM'.*--models FILE"):
        validate_fold_rows(_rows("NoSuchFM"), "x/fold_metrics.csv")
    assert validate_fold_rows(_rows("NoSuchFM"), "x.csv", declared={"NoSuchFM"})
    manifest = {
        "configs": {
            "NoSuchFM|linear_probe": {
                "settings": {"model": {"family": "user", "name": "NoSuchFM"}}
            },
            "Other|lora": {"settings": {"model": {"family": "foundation", "name": "Other"}}},
            "Broken|lora": "not an object",
        }
    }
    assert results.declared_models(manifest) == {"NoSuchFM"}
