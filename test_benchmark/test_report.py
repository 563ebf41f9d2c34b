"""The claim report: every format carries each claim's verdict in plain words."""

from __future__ import annotations

import argparse
import json
from xml.etree import ElementTree as ET

import pytest

from harness import claims as cl
from harness import report
from harness import stats as st


@pytest.fixture(scope="module")
def judged():
    """Claims judged against the paper set, without the slow architecture/data kinds."""
    ctx = cl.build_context("paper")
    claims = [c for c in cl.load_claims() if c.needs in ("results", "predictions", "run")]
    return cl.evaluate_all(claims, ctx), ctx


def test_json_has_the_contract_fields(judged):
    results, _ = judged
    items = json.loads(report.to_json(results))["claims"]
    assert len(items) == len(results)
    for key in (
        "id",
        "status",
        "expected",
        "observed",
        "source",
        "statement",
        "reason",
        "section",
        "tolerance",
    ):
        assert key in items[0]
    lp = next(i for i in items if i["id"] == "s5.amibr.lp-range")
    assert lp["status"] == st.FAILED and lp["confirmed_contradiction"]
    assert "H-Optimus-1" in lp["reason"]


def test_junit_one_case_per_claim(judged):
    results, ctx = judged
    suite = ET.fromstring(report.to_junit(results, ctx).split("\n", 1)[1])
    cases = suite.findall("testcase")
    assert len(cases) == len(results) and suite.get("failures") == "0"
    by_name = {c.get("name"): c for c in cases}
    assert by_name["s5.amibr.sensitivity"].find("skipped") is not None  # not run -> skipped
    assert by_name["s5.amibr.lp-range"].find("skipped").get("type") == "xfail"
    assert by_name["abstract.max.amibr"].find("failure") is None


def test_markdown_reads_in_plain_words(judged, tmp_path):
    results, ctx = judged
    out = tmp_path / "r.md"
    text = report.render(results, ctx, "md", out)
    assert out.read_text() == text and (tmp_path / "r-forest.png").stat().st_size > 10_000
    assert "## Summary" in text and "| ✅ passed | " in text
    assert "## Claims the paper's own evidence contradicts" in text
    assert "## Results: AtNorM-MD (§5)" in text and "## Statistical tests (Table 4, §6)" in text
    assert "## Deviation ledger" in text and "patience" in text and "pretrained=False" in text
    assert "Virchow2 (LoRA) | 0.8135 ± 0.0145 → 0.8136 ± 0.0145" in text
    assert "35 pairs" in text  # how the Wilcoxon pairs were formed
    assert "![Forest plot of Table 3](r-forest.png)" in text


def test_html_embeds_the_plot(judged, tmp_path):
    results, ctx = judged
    text = report.render(results, ctx, "html", tmp_path / "r.html")
    assert text.startswith("<!doctype html>") and "data:image/png;base64," in text
    assert "Deviation ledger" in text


def test_cli_exit_codes(tmp_path, capsys):
    args = argparse.Namespace(
        results=str(tmp_path / "missing"), format="json", out=None, data_root=None, weights_dir=None
    )
    assert report.cli_claims(args) == 2
    assert "does not exist" in capsys.readouterr().err


def test_evaluator_errors_are_shown_and_set_the_exit_code(monkeypatch, tmp_path, capsys):
    """A claim the harness could not judge is listed on its own line and makes `claims` exit 1."""
    import argparse
    import dataclasses

    from harness import claims, report

    def broken(claim, params, ctx):
        raise RuntimeError("registry broke")

    kind = dataclasses.replace(claims.KINDS["parameter_count"], evaluate=broken)
    monkeypatch.setitem(claims.KINDS, "parameter_count", kind)
    ctx = claims.build_context("paper")
    results = claims.evaluate_all(claims.load_claims(), ctx)
    text = report.to_text(results, ctx)
    assert "table2.uni2-h.params (UNEXPECTED): not run: ERROR" in text
    args = argparse.Namespace(
        results="paper", format="text", out=None, data_root=None, weights_dir=None
    )
    assert report.cli_claims(args) == 1


def test_report_says_when_the_store_holds_stale_results(judged):
    from dataclasses import replace

    results, ctx = judged
    stale_set = replace(
        ctx.results,
        manifest={**ctx.results.manifest, "stale": {"UNI|lora|paper|full|real": ["abc"]}},
    )
    text = report.to_markdown(results, replace(ctx, results=stale_set), [])
    assert "older version of 1 configuration(s) (UNI|lora|paper|full|real), not used" in text


def test_mean_roc_curve_matches_its_auroc():
    import numpy as np

    rng = np.random.default_rng(0)
    ys = [rng.random(300) < 0.2 for _ in range(5)]
    ps = [np.clip(y * 0.3 + rng.random(300) * 0.7, 0, 1) for y in ys]
    tpr, auc = report.mean_roc(ys, ps)
    assert tpr[0] == 0.0 and tpr[-1] == 1.0 and np.all(np.diff(tpr) >= 0)
    assert np.trapezoid(tpr, report.FPR_GRID) == pytest.approx(auc, abs=0.01)
    perfect, auc1 = report.mean_roc([np.array([True, False])], [np.array([0.9, 0.1])])
    assert auc1 == 1.0 and perfect[1] == 1.0


def test_roc_figure_only_with_predictions(tmp_path, judged):
    from harness.results import write_results_set

    _, paper_ctx = judged
    assert report.roc_plot(paper_ctx, tmp_path / "none.png") is None  # per-fold numbers only
    rows, preds = [], []
    for fold in (1, 2):
        rows.append({"model": "UNI", "method": "lora", "dataset": "AMi-Br", "fold": fold,
                     "balanced_accuracy": 0.5, "auroc": 0.75, "pr_auc": ""})  # fmt: skip
        preds += [
            {
                "model": "UNI",
                "method": "lora",
                "dataset": "AMi-Br",
                "fold": fold,
                "image": f"{k}.png",
                "label": "Atypical" if k < 2 else "Normal",
                "prob_atypical": [0.9, 0.4, 0.6, 0.1][k],
            }  # fmt: skip
            for k in range(4)
        ]
    folder = write_results_set(tmp_path / "set", rows, predictions=preds, manifest={"name": "p"})
    ctx = cl.build_context(folder)
    text = report.render([], ctx, "md", tmp_path / "out" / "claims.md")
    assert (tmp_path / "out" / "claims-roc.png").stat().st_size > 10_000
    assert "![Fold-averaged ROC curves per test set](claims-roc.png)" in text
