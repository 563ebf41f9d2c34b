"""The claim report: every format carries each claim's verdict in plain words."""

from __future__ import annotations

import argparse
import copy
import json
import re
from dataclasses import replace
from xml.etree import ElementTree as ET

import pytest
import yaml

from harness import claims as cl
from harness import report
from harness import stats as st
from harness.claimkinds import cells
from harness.results import METHODS, ResultsError

NOT_RUN = cl.Verdict(st.NOT_RUN, reason="not judged here")


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


def bad_manifest(tmp_path, monkeypatch):
    from harness.results import write_results_set

    row = {"model": "UNI", "method": "lora", "dataset": "AMi-Br", "fold": 1,
           "balanced_accuracy": 0.5, "auroc": 0.75, "pr_auc": ""}  # fmt: skip
    folder = write_results_set(tmp_path / "set", [row], manifest={"name": "s"})
    (folder / "manifest.json").write_text(json.dumps({"configs": {"UNI|lora": {"settings": 8}}}))
    return ["--results", str(folder)], ResultsError, "manifest.json: 1 problem(s)"


def broken_registry(tmp_path, monkeypatch):
    (tmp_path / "reg").mkdir()
    (tmp_path / "reg" / "x.yaml").write_text(f"paper: {cl.PAPER_VERSION}\nclaims: [{{id: a}}]\n")
    monkeypatch.setattr(report.command, "load_claims", lambda: cl.load_claims(tmp_path / "reg"))
    return [], cl.RegistryError, "x.yaml, claim 'a': missing field(s)"


@pytest.mark.parametrize("make", [bad_manifest, broken_registry], ids=lambda f: f.__name__)
def test_bad_input_reaches_the_one_line_of_cli_main(tmp_path, monkeypatch, capsys, make):
    """cli_claims leaves bad input (ResultsError, RegistryError) to `cli.main`: one line, exit 2,
    and with AMIBR_DEBUG=1 the exception itself, as for every command."""
    from harness import cli

    argv, error, says = make(tmp_path, monkeypatch)
    argv = ["claims", *argv, "--format", "json"]
    monkeypatch.delenv("AMIBR_DEBUG", raising=False)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and err.startswith("amibr-bench: ") and err.count("\n") == 1
    monkeypatch.setenv("AMIBR_DEBUG", "1")
    with pytest.raises(error, match=re.escape(says)):
        cli.main(argv)


def test_evaluator_errors_are_shown_and_set_the_exit_code(monkeypatch, tmp_path, capsys):
    """A claim the harness could not judge is listed on its own line and makes `claims` exit 1."""
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


# ------------------------------------------------------- claims as written vs as validated
def _table3_raw() -> list[dict]:
    """The 12 Table 3 claims of EfficientNetV2 (end-to-end), as written in table3.yaml."""
    file = next(f for f in cl.claim_files() if f.name == "table3.yaml")
    raws = yaml.safe_load(file.read_text(encoding="utf-8"))["claims"]
    return [r for r in raws if r["params"]["model"] == "EfficientNetV2"]


def _quote(raw):
    raw["expected"] = str(raw["expected"])


def _no_stat(raw):
    if raw["params"]["stat"] == "mean":
        del raw["params"]["stat"]  # the default of table_cell


def _lower_model(raw):
    raw["params"]["model"] = raw["params"]["model"].lower()


def _wider(raw):
    if raw["tolerance"]["rule"] == "fold_spread":
        raw["tolerance"]["k"] = 3


WRITTEN_AS = {  # every way a claim may be written that validation reads the same
    "as printed": lambda raw: None,
    "expected quoted": _quote,
    "stat omitted": _no_stat,
    "model in lower case": _lower_model,
    "tolerance k 3": _wider,
}


def _judge_registry(tmp_path, change) -> tuple[list, cl.Context]:
    raws = copy.deepcopy(_table3_raw())
    for raw in raws:
        change(raw)
    (tmp_path / "reg").mkdir()
    (tmp_path / "reg" / "table3.yaml").write_text(
        yaml.safe_dump({"paper": cl.PAPER_VERSION, "claims": raws}), encoding="utf-8"
    )
    ctx = cl.build_context("paper")
    return cl.evaluate_all(cl.load_claims(tmp_path / "reg"), ctx), ctx


@pytest.mark.parametrize("written", list(WRITTEN_AS))
def test_the_report_reads_claims_as_validated(tmp_path, written):
    """The report reads each claim's typed parameters and tolerance (claim.args, claim.tol), as
    the evaluators do: a quoted expected value, an omitted default `stat` or a model name in
    another case renders in md and html, with the row in the Table 3 view."""
    results, ctx = _judge_registry(tmp_path, WRITTEN_AS[written])
    assert len(results) == 12 and all(r.status == st.PASSED for r in results)
    row = "EfficientNetV2 (end-to-end) | 0.7474 ± 0.0167 → 0.7474 ± 0.0167"
    md = report.to_markdown(results, ctx, [])
    assert row in md
    page = report.to_html(results, ctx, [])
    assert "0.7474 ± 0.0167</span><br>→ <span class='nw'>0.7474 ± 0.0167" in page
    for r in results:
        assert report.format_expected(r) == f"{float(r.claim.expected):.4f}"
    assert "0.7474 ± 0.0167" in report.render(results, ctx, "md", tmp_path / "r.md")


@pytest.mark.parametrize("written", list(WRITTEN_AS))
def test_the_forest_plot_draws_the_band_each_verdict_used(tmp_path, monkeypatch, written):
    """Each Table 3 mean's band in the forest plot is the interval its verdict was judged with
    (details low/high), whatever k, floor or spelling the claim was written with."""
    results, ctx = _judge_registry(tmp_path, WRITTEN_AS[written])
    drawn = []
    monkeypatch.setattr(report.figures, "_save", lambda fig, title, path: drawn.append(fig))
    report.forest_plot(results, ctx, tmp_path / "f.png")
    lines = [line for ax in drawn[0].axes for line in ax.lines if line.get_linewidth() == 6]
    bands = sorted(x for line in lines for x in line.get_xdata())
    means = [r for r in results if r.claim.args.stat == "mean"]
    want = sorted(r.verdict.details[end] for r in means for end in ("low", "high"))
    assert len(means) == len(lines) == 6 and bands == pytest.approx(want)


def _quoted(value):
    if isinstance(value, bool) or not isinstance(value, int | float | list | dict):
        return value
    if isinstance(value, list):
        return [_quoted(v) for v in value]
    if isinstance(value, dict):
        return {k: _quoted(v) for k, v in value.items()}
    return str(value)


KIND_RAW = {}  # kind -> its first claim in expected_results/, as written
for _file in cl.claim_files():
    for _raw in yaml.safe_load(_file.read_text(encoding="utf-8"))["claims"]:
        KIND_RAW.setdefault(_raw["kind"], _raw)


@pytest.mark.parametrize("kind", sorted(KIND_RAW))
def test_expected_reads_the_same_as_written_quoted_or_parsed(tmp_path, kind):
    """For every kind, `format_expected` gives one text for the expected value as written, with
    its numbers quoted, and as the kind's type parses it (a float, a pydantic model)."""
    from pydantic import TypeAdapter

    raw = KIND_RAW[kind]
    (tmp_path / "x.yaml").write_text(
        yaml.safe_dump({"paper": cl.PAPER_VERSION, "claims": [raw]}), encoding="utf-8"
    )
    claim = cl.load_claims(tmp_path)[0]
    parsed = TypeAdapter(cl.KINDS[kind].expected).validate_python(raw["expected"])
    texts = {
        report.format_expected(cl.ClaimResult(replace(claim, expected=e), NOT_RUN))
        for e in (raw["expected"], _quoted(raw["expected"]), parsed)
    }
    assert len(texts) == 1 and "None" not in texts.pop()


@pytest.mark.parametrize("higher", [None, *METHODS])
def test_a_significance_claim_names_the_higher_strategy_in_the_claims_words(higher):
    claim = next(c for c in cl.load_claims() if c.kind == "significance")
    expected = {"significant": True, "higher": higher}
    text = report.format_expected(cl.ClaimResult(replace(claim, expected=expected), NOT_RUN))
    assert "None" not in text and text.startswith("significant (p < 0.05)")
    assert text.endswith(f"; {cells.METHOD_WORDS[higher]} higher" if higher else "(p < 0.05)")


@pytest.mark.parametrize("fmt", ["md", "html"])
def test_render_writes_beside_the_file_only_what_it_links(judged, tmp_path, fmt):
    """md links its figures, drawn beside it; html embeds them, so it is the only file written."""
    results, ctx = judged
    out = tmp_path / f"r.{fmt}"
    report.render(results, ctx, fmt, out)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == (["r-forest.png", "r.md"] if fmt == "md" else ["r.html"])
