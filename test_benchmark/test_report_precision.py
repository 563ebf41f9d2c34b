"""The report's "Faithful vs fast precision" section (harness.precision): a results set that
carries fast runs beside its faithful rows (fast_fold_metrics.csv) shows their numbers side by
side and every claim whose verdict the fast rows change; a set without them shows no section."""

from __future__ import annotations

import json

import pytest

from harness import claims as cl
from harness import precision, regression, report
from harness.results import (
    FAST_FILE,
    METHODS,
    PAPER_SET,
    ResultsError,
    load_results_set,
    write_results_set,
)

CONFIG = ("EfficientNetV2", "end_to_end")
KEY = "|".join(CONFIG)
SECONDS = {"faithful": 100.0, "fast": 40.0}  # per fold: speed-up 2.50x


@pytest.fixture(scope="module")
def claims():
    """The claims judged on a results set alone (no architecture or data kinds: fast)."""
    return [c for c in cl.load_claims() if c.needs == "results"]


def carrying(folder, shift: float):
    """The paper's own set, written again with a bf16 run of EfficientNetV2 (end-to-end) whose
    balanced accuracy is the paper's + `shift` on every fold."""
    paper = load_results_set("paper")
    manifest = json.loads((PAPER_SET / "manifest.json").read_text())
    manifest.pop("files", None)
    manifest["name"] = folder.name
    folds = [1, 2, 3, 4, 5]
    manifest["configs"][KEY] = {
        "status": "done", "hash": "f" * 16, "folds": folds,
        "settings": {"preset": "paper", "precision": {"precision": "fp32"},
                     "fold_seconds": [SECONDS["faithful"]] * 5},
    }  # fmt: skip
    manifest["fast_configs"] = {
        KEY: [{"variant": "paper/bf16", "hash": "b" * 16, "folds": folds,
               "settings": {"fold_seconds": [SECONDS["fast"]] * 5}}]
    }  # fmt: skip
    fast = [
        {**r.__dict__, "balanced_accuracy": r.balanced_accuracy + shift, "variant": "paper/bf16"}
        for r in paper.rows
        if (r.model, r.method) == CONFIG
    ]
    write_results_set(folder, paper.rows, manifest=manifest, fast_rows=fast)
    return cl.build_context(folder)


def reports(ctx, results) -> dict[str, str]:
    return {
        "md": report.to_markdown(results, ctx, []),
        "html": report.to_html(results, ctx, []),
        "summary": report.to_summary(results, ctx),
    }


def test_a_verdict_the_fast_rows_flip_is_named_with_both_verdicts(tmp_path, claims):
    ctx = carrying(tmp_path / "flip", -0.1)
    results = cl.evaluate_all(claims, ctx)
    by_id = {r.claim.id: r for r in results}
    flipped = "table3.efficientnetv2.baseline.amibr.bacc.mean"
    assert by_id[flipped].status == "passed"  # the paper's own numbers
    check = report.precision_check(ctx, results)
    (variant,) = check["variants"]
    changes = {c["id"]: c for c in variant["changes"]}
    assert variant["variant"] == "paper/bf16" and changes[flipped]["new"] == "failed"
    assert changes[flipped]["old"] == "passed"
    assert all(c["old"] != c["new"] for c in variant["changes"])
    assert not any("efficientnet" not in i and i.startswith("table3.") for i in changes)
    rows = {r["dataset"]: r for r in check["rows"]}
    assert set(rows) == {"AMi-Br", "AtNorM-Br", "AtNorM-MD"}
    bacc = ctx.results.values(*CONFIG, "AMi-Br", "balanced_accuracy").mean()
    assert rows["AMi-Br"]["balanced_accuracy_faithful"] == pytest.approx(bacc)
    assert rows["AMi-Br"]["balanced_accuracy_delta"] == pytest.approx(-0.1)
    assert rows["AMi-Br"]["auroc_delta"] == pytest.approx(0.0)
    assert rows["AMi-Br"]["speedup"] == pytest.approx(2.5)
    text = reports(ctx, results)
    md = text["md"]
    assert "## Faithful vs fast precision" in md
    assert (
        f"| EfficientNetV2 (end-to-end) | paper/fp32 | paper/bf16 | AMi-Br | 5 | {bacc:.4f} → "
        f"{bacc - 0.1:.4f} | -0.1000 |" in md
    )
    assert "| 100.0 | 40.0 | 2.50× |" in md
    assert f"| `{flipped}` | ✅ passed | ❌ failed |" in md
    assert f"{len(changes)} verdict(s) change" in md
    assert "Faithful vs fast precision</h2>" in text["html"] and flipped in text["html"]
    assert f"{flipped} passed -> failed" in text["summary"]
    doc = json.loads(report.to_json(results, ctx))
    assert {c["id"] for c in doc["faithful_vs_fast"]["variants"][0]["changes"]} == set(changes)


def test_fast_rows_that_change_nothing_say_so(tmp_path, claims):
    ctx = carrying(tmp_path / "same", 0.0)
    results = cl.evaluate_all(claims, ctx)
    text = reports(ctx, results)
    assert "paper/bf16 rows in place of the faithful ones: no verdict changes." in text["md"]
    assert "faithful vs fast precision: paper/bf16: no verdict changes" in text["summary"]
    assert "| +0.0000 |" in text["md"]


def test_a_set_without_fast_runs_has_no_section(tmp_path, claims):
    ctx = carrying(tmp_path / "none", -0.1)
    paper = load_results_set("paper")
    manifest = {**ctx.results.manifest, "fast_configs": {}}
    manifest.pop("files")
    write_results_set(tmp_path / "none", paper.rows, manifest=manifest, fast_rows=[])
    assert not (tmp_path / "none" / FAST_FILE).exists()
    ctx = cl.build_context(tmp_path / "none")
    results = cl.evaluate_all(claims, ctx)
    text = reports(ctx, results)
    assert all("aithful vs fast" not in t for t in text.values())
    assert json.loads(report.to_json(results, ctx))["faithful_vs_fast"] == {"available": False}


def paper_rows():
    return load_results_set("paper").rows


def _entry(manifest: dict, where: str) -> dict:
    return manifest["configs"][KEY] if where == "configs" else manifest["fast_configs"][KEY][0]


@pytest.mark.parametrize("where", ["configs", "fast_configs"])
@pytest.mark.parametrize(
    "field, value, problem",
    [
        ("fold_seconds", "100", "settings.fold_seconds: input should be a valid list"),
        ("fold_seconds", 100, "settings.fold_seconds: input should be a valid list"),
        ("fold_seconds", ["x", 1, 1, 1, 1], "settings.fold_seconds[0]: input should be a valid number"),
        ("fold_seconds", [-1, 1, 1, 1, 1], "settings.fold_seconds[0]: input should be greater than"),
        ("precision", "bf16", "settings.precision: input should be a valid dictionary"),
        ("preset", 5, "settings.preset: input should be a valid string"),
        ("variant", 3, "variant: input should be a valid string"),
    ],
)  # fmt: skip
def test_a_mistyped_manifest_field_the_comparison_reads_is_refused_on_load(
    tmp_path, where, field, value, problem
):
    """The faithful-vs-fast section reads settings.precision, settings.fold_seconds and the fast
    entries' variant: a wrong type there was a traceback in the report; now the set is refused
    when it loads, naming manifest.json and the field."""
    folder = tmp_path / "set"
    carrying(folder, -0.1)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.pop("files")
    entry = _entry(manifest, where)
    (entry if field == "variant" else entry.setdefault("settings", {}))[field] = value
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ResultsError) as info:
        load_results_set(folder)
    assert f"{folder / 'manifest.json'}: 1 problem(s)" in str(info.value)
    assert f"field {where}['{KEY}']" in str(info.value) and problem in str(info.value)


@pytest.mark.parametrize("old_fast, new_fast", [(False, True), (True, False), (True, True)])
def test_update_baseline_keeps_the_new_sets_fast_runs_and_no_stale_ones(
    tmp_path, old_fast, new_fast
):
    """`regression --update-baseline` from a set carrying fast runs keeps them (they were dropped
    while manifest.json still listed them); a baseline whose older fast file the new set lacks
    loses it (it was kept and digested as part of the new baseline)."""
    baseline, new = tmp_path / "baseline", tmp_path / "new"
    carrying(baseline, -0.2) if old_fast else write_results_set(baseline, paper_rows())
    carrying(new, 0.01) if new_fast else write_results_set(new, paper_rows())
    regression.update_baseline(new, baseline, "test")
    updated, source = load_results_set(baseline), load_results_set(new)
    assert (baseline / FAST_FILE).is_file() == new_fast
    assert updated.fast == source.fast
    assert updated.manifest.get("fast_configs", {}) == source.manifest.get("fast_configs", {})


@pytest.mark.parametrize("method", METHODS)
def test_the_comparison_names_a_configuration_as_the_rest_of_the_report(method):
    """'UNI (LoRA)', 'UNI (end-to-end)': `claims.config_label`, not the method's key."""
    row = {"config": f"UNI|{method}", "faithful": "fp32", "fast": "bf16", "dataset": "AMi-Br",
           "folds": [1], "speedup": None, "seconds_per_fold_faithful": None,
           "seconds_per_fold_fast": None}  # fmt: skip
    for metric in precision.COMPARED:
        row |= {f"{metric}_faithful": 0.8, f"{metric}_fast": 0.7, f"{metric}_delta": -0.1}
    assert precision.cells(row)[0] == cl.config_label("UNI", method)
