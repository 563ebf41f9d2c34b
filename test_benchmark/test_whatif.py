"""Does my model change a conclusion? `amibr-bench claims --results paper --add SET`
(harness.whatif on results.merge_results_sets), and a user's model beside the paper's rows in the
report (Table 3 view, forest plot, ROC curves)."""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict

import numpy as np
import pytest
from helpers import claims, paper_rows

from harness import claims as cl
from harness import cli, report, whatif
from harness import stats as st
from harness.results import (
    TEST_SETS,
    ResultsError,
    load_results_set,
    merge_results_sets,
    write_results_set,
)

USER = "MyFM"
METRICS = ("balanced_accuracy", "auroc")


def declared(*methods: str, model: str = USER) -> dict:
    """manifest configs declaring a user's model (as `amibr-bench run --models FILE` records it)."""
    spec = {"family": "user", "name": model}
    return {f"{model}|{m}": {"settings": {"model": spec}} for m in methods}


def paper_extremes() -> dict:
    """(dataset, fold, metric) -> (lowest, highest) over every published configuration."""
    seen = defaultdict(list)
    for r in paper_rows():
        for metric in METRICS:
            seen[(r["dataset"], int(r["fold"]), metric)].append(float(r[metric]))
    return {k: (min(v), max(v)) for k, v in seen.items()}


def user_rows(shift: float) -> list[dict]:
    """MyFM, linear probe and LoRA, 5 folds on the three test sets: each fold `shift` above the
    best published configuration of that fold (shift > 0), or below the worst (shift < 0); LoRA
    0.01 further out than the linear probe."""
    rows = []
    for (dataset, fold, metric), (low, high) in paper_extremes().items():
        for method, extra in (("linear_probe", 0.0), ("lora", 0.01)):
            value = high + shift + extra if shift > 0 else low + shift - extra
            rows.append({"model": USER, "method": method, "dataset": dataset, "fold": fold,
                         "metric": metric, "value": round(min(max(value, 0.0), 1.0), 4)})  # fmt: skip
    merged: dict[tuple, dict] = {}
    for r in rows:
        key = (r["model"], r["method"], r["dataset"], r["fold"])
        merged.setdefault(key, dict(zip(("model", "method", "dataset", "fold"), key, strict=True)))
        merged[key][r["metric"]] = r["value"]
    return list(merged.values())


def user_set(tmp_path, shift: float, name: str = "mine"):
    manifest = {"name": name, "tier": "full", "configs": declared("linear_probe", "lora")}
    return write_results_set(tmp_path / name, user_rows(shift), manifest=manifest)


def changed(doc: dict) -> dict[str, dict]:
    return {r["id"]: r for r in doc["conclusions"] + doc["other"]}


# ------------------------------------------------------------------ does it change a conclusion
def test_a_model_above_every_atnorm_md_result_changes_the_maximum(quick_registry, tmp_path, capsys):
    folder = user_set(tmp_path, +0.03)
    code, out, err = claims(capsys, "--results", "paper", "--add", str(folder), "--format", "json")
    assert code == 1, err
    doc = json.loads(out)
    rows = changed(doc)
    md_max = [
        c.id for c in quick_registry if c.kind == "maximum" and c.params["dataset"] == "AtNorM-MD"
    ]
    assert md_max and all(rows[i]["verdict_changed"] and rows[i]["conclusion"] for i in md_max)
    for i in md_max:
        assert rows[i]["old"] == st.PASSED and USER in rows[i]["new_observed"], rows[i]
        assert USER not in rows[i]["old_observed"]
    assert doc["added"][0]["configs"] == [f"{USER}|linear_probe", f"{USER}|lora"]
    assert doc["replaced"] == {}
    # the short terminal text names the claim and the model
    code, text, _ = claims(capsys, "--results", "paper", "--add", str(folder))
    assert code == 1 and "conclusions whose verdict changes" in text
    line = next(t for t in text.splitlines() if t.strip().startswith(f"{md_max[0]} (maximum)"))
    after = text.splitlines()[text.splitlines().index(line) + 1]
    assert "passed -> failed" in line and f"by {USER} (LoRA)" in after, text


def test_a_model_below_the_best_changes_no_maximum(quick_registry, tmp_path, capsys):
    folder = user_set(tmp_path, -0.03, "worse")
    code, out, err = claims(capsys, "--results", "paper", "--add", str(folder), "--format", "json")
    assert code in (0, 1), err
    doc = json.loads(out)
    assert doc["compared"] > 0 and not doc["replaced"]
    assert [r["id"] for r in doc["conclusions"] if r["kind"] == "maximum"] == []
    # the worse model does enter the comparisons: the ranges of a strategy widen to it
    assert any(USER in str(r["new_observed"]) for r in doc["conclusions"])


@pytest.mark.parametrize("fmt", ["text", "md"])
def test_a_claim_left_without_a_value_says_why_not_none(quick_registry, tmp_path, capsys, fmt):
    """A partial run (2 folds, `run --folds 1-2`) makes the maxima inconclusive: the list says
    'no value' and why, never Python's None."""
    rows = [r for r in user_rows(+0.03) if r["fold"] <= 2]
    manifest = {"name": "partial", "configs": declared("linear_probe", "lora")}
    folder = write_results_set(tmp_path / "partial", rows, manifest=manifest)
    code, text, err = claims(capsys, "--results", "paper", "--add", str(folder), "--format", fmt)
    assert code == 1, err
    assert "passed -> inconclusive" in text and "None" not in text, text
    why = "fewer than 5 folds: MyFM (linear probe) 2"
    assert ("-> no value (" + why if fmt == "text" else "after: no value") in text, text


@pytest.mark.parametrize(
    "tier, data, judged",
    [("smoke", "real", False), ("full", "synthetic", False), ("full", "real", True)],
)
def test_protocol_settings_of_an_added_trial_run_are_not_judged(tmp_path, tier, data, judged):
    """The merged set has no tier of its own: an added smoke-tier run (or one on synthetic data)
    records its tier's settings, not the protocol's, so the protocol claims stay "not run"."""
    settings = {"model": {"family": "user", "name": USER}, "tier": tier, "data": data,
                "threshold": 0.5, "hyper": {"batch_size": 8}}  # fmt: skip
    manifest = {"name": "trial", "tier": tier, "data": data,
                "configs": {f"{USER}|linear_probe": {"settings": settings}}}  # fmt: skip
    rows = [r for r in user_rows(+0.03) if r["method"] == "linear_probe"]
    folder = write_results_set(tmp_path / "trial", rows, manifest=manifest)
    merged = merge_results_sets(load_results_set("paper"), load_results_set(folder))
    ids = ("s4.threshold", "s4.batch-size")
    protocol = [c for c in cl.load_claims() if c.id in ids]
    results = cl.evaluate_all(protocol, cl.Context(merged))
    assert len(results) == len(ids)
    for r in results:
        if judged:
            assert r.status == st.PASSED, r.verdict.reason
        else:
            assert r.status == st.NOT_RUN, r.verdict.reason
            assert f"{tier}-tier run on {data} data" in r.verdict.reason


def test_replaced_configuration_is_named_and_its_rows_used(quick_registry, tmp_path, capsys):
    """A set holding UNI (LoRA) too: its rows replace the paper's (UNI LoRA 0.10 higher on
    AMi-Br, now the best there)."""
    rows = [r for r in paper_rows() if (r["model"], r["method"]) == ("UNI", "lora")]
    for r in rows:
        if r["dataset"] == "AMi-Br":
            r["balanced_accuracy"] = f"{float(r['balanced_accuracy']) + 0.10:.4f}"
    folder = write_results_set(tmp_path / "rerun", rows, manifest={"name": "rerun"})
    merged = merge_results_sets(load_results_set("paper"), load_results_set(folder))
    assert merged.manifest["merged"]["replaced"] == {"UNI|lora": "rerun"}
    assert len(merged.rows) == len(paper_rows())
    assert np.allclose(
        merged.values("UNI", "lora", "AMi-Br", "balanced_accuracy"),
        [float(r["balanced_accuracy"]) for r in rows if r["dataset"] == "AMi-Br"],
    )
    code, text, _ = claims(capsys, "--results", "paper", "--add", str(folder))
    assert code == 1 and "replaced by the rows of rerun: UNI (LoRA)" in text, text
    code, out, _ = claims(capsys, "--results", "paper", "--add", str(folder), "--format", "json")
    rows_by_id = changed(json.loads(out))
    assert "UNI (LoRA)" in rows_by_id["abstract.max.amibr"]["new_observed"]
    assert not rows_by_id["table3.uni.lora.amibr.bacc.mean"]["conclusion"]


def test_merged_set_names_its_parts_and_leaves_the_paper_tier(tmp_path):
    base, mine = load_results_set("paper"), load_results_set(user_set(tmp_path, +0.03))
    merged = merge_results_sets(base, mine)
    assert merged.name == "paper+mine" and merged.path is None
    assert merged.manifest["tier"] is None and "files" not in merged.manifest
    assert (USER, "lora") in merged.configurations and len(merged.rows) == len(base.rows) + 30
    assert merged.manifest["merged"]["added"][0]["path"] == str(mine.path)
    assert report.set_label(merged).startswith(f"paper+mine (in memory: paper from {base.path}")


def test_a_set_that_does_not_fit_is_one_line_naming_its_file(tmp_path):
    rows = [r for r in user_rows(+0.03) if r["dataset"] != "AtNorM-Br"]
    folder = write_results_set(
        tmp_path / "two",
        rows,
        manifest={"name": "two", "configs": declared("lora", "linear_probe")},
    )
    with pytest.raises(ResultsError) as err:
        merge_results_sets(load_results_set("paper"), load_results_set(folder))
    text = str(err.value)
    assert "\n" not in text and text.startswith(str(folder / "fold_metrics.csv"))
    assert "no rows for test set AtNorM-Br" in text


def undeclared_model(tmp_path):
    folder = tmp_path / "undeclared"
    write_results_set(
        folder, user_rows(0.03), manifest={"configs": declared("lora", "linear_probe")}
    )
    (folder / "manifest.json").unlink()  # the user's model is declared nowhere now
    return ["--add", str(folder)], f"--add {folder}: {folder / 'fold_metrics.csv'}"


def missing_test_set(tmp_path):
    rows = [r for r in user_rows(0.03) if r["dataset"] != "AtNorM-MD"]
    folder = write_results_set(
        tmp_path / "part", rows, manifest={"configs": declared("lora", "linear_probe")}
    )
    return ["--add", str(folder)], f"{folder / 'fold_metrics.csv'}: cannot be added"


def synthetic_test_sets(tmp_path):
    """A set trained on the synthetic fixture (`run --data-root fixtures/synthetic`)."""
    rows = [{**r, "dataset": f"synthetic:{r['dataset']}"} for r in user_rows(0.03)]
    folder = write_results_set(
        tmp_path / "synth", rows, manifest={"configs": declared("lora", "linear_probe")}
    )
    return ["--add", str(folder)], (
        f"{folder / 'fold_metrics.csv'}: cannot be added to results set 'paper': its test sets "
        "(synthetic:AMi-Br, synthetic:AtNorM-Br, synthetic:AtNorM-MD) are none of 'paper' "
        "(AMi-Br, AtNorM-Br, AtNorM-MD); it was trained on a synthetic tree: train on the "
        "public data (--data-root)"
    )


def html_format(tmp_path):
    return ["--add", "paper", "--format", "html"], "--format html: --add writes text, md, json"


def junit_file(tmp_path):
    out = tmp_path / "changes.xml"
    return ["--add", "paper", "--out", str(out)], f"--out {out}: --add writes text, md, json"


def the_base_itself(tmp_path):
    return ["--add", "paper"], "the same results set as --results; it adds nothing"


def one_set_twice(tmp_path):
    folder = write_results_set(
        tmp_path / "mine", user_rows(0.03), manifest={"configs": declared("lora", "linear_probe")}
    )
    return ["--add", str(folder), "--add", f"{folder}/"], "the same results set as an earlier --add"


@pytest.mark.parametrize(
    "make",
    [
        undeclared_model,
        missing_test_set,
        synthetic_test_sets,
        html_format,
        junit_file,
        the_base_itself,
        one_set_twice,
    ],  # fmt: skip
    ids=lambda f: f.__name__,
)
def test_bad_add_is_one_line_and_exit_2(quick_registry, tmp_path, capsys, make):
    argv, message = make(tmp_path)
    code, out, err = claims(capsys, "--results", "paper", *argv)
    assert code == 2 and out == "" and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and message in err, err


def test_add_writes_md_and_the_merged_report(quick_registry, tmp_path, capsys):
    folder = user_set(tmp_path, +0.03)
    out_file, out_dir = tmp_path / "changes.md", tmp_path / "merged"
    argv = ["--add", str(folder), "--out", str(out_file), "--out-dir", str(out_dir)]
    code, out, _ = claims(capsys, "--results", "paper", *argv)
    assert code == 1 and str(out_file) in out and str(out_dir / "claims.md") in out
    text = out_file.read_text()
    assert text.startswith("# What changes when results are added to paper")
    assert "## conclusions whose verdict changes" in text and "the paper: The best" in text
    page = (out_dir / "claims.md").read_text()
    assert f"| {USER} (LoRA) | — → " in page and "with mine from" in page


# ---------------------------------------------------------- a user's model beside Table 3's rows
@pytest.fixture()
def with_user_model(tmp_path):
    """One plain results set: the paper's rows and MyFM's."""
    manifest = {"name": "mixed", "tier": "full", "configs": declared("linear_probe", "lora")}
    folder = write_results_set(
        tmp_path / "mixed", paper_rows() + user_rows(0.03), manifest=manifest
    )
    return cl.build_context(folder)


@pytest.fixture()
def merged_ctx(tmp_path):
    merged = merge_results_sets(
        load_results_set("paper"), load_results_set(user_set(tmp_path, 0.03))
    )
    return cl.Context(merged)


def _judged(ctx):
    return cl.evaluate_all([c for c in cl.load_claims() if c.needs == "results"], ctx)


@pytest.mark.parametrize("which", ["with_user_model", "merged_ctx"])
def test_table3_view_shows_the_user_model(request, which):
    ctx = request.getfixturevalue(which)
    results = _judged(ctx)
    text = report.to_markdown(results, ctx, [])
    vals = ctx.results.values(USER, "lora", "AtNorM-MD", "balanced_accuracy")
    row = next(line for line in text.splitlines() if line.startswith(f"| {USER} (LoRA) | "))
    assert f"— → {vals.mean():.4f} ± {vals.std():.4f}" in row
    assert "Virchow2 (LoRA) | 0.8135 ± 0.0145 → 0.8136 ± 0.0145" in text  # the paper's rows stay
    page = report.to_html(results, ctx, [])
    assert f"<td>{USER} (LoRA)</td>" in page


def _capture(monkeypatch) -> list:
    figures = []
    save = report.figures._save

    def keep(fig, title, path):
        figures.append(fig)
        return save(fig, title, path)

    monkeypatch.setattr(report.figures, "_save", keep)
    return figures


@pytest.mark.parametrize("which", ["with_user_model", "merged_ctx"])
def test_forest_plot_has_the_user_model(request, monkeypatch, tmp_path, which):
    ctx = request.getfixturevalue(which)
    figures = _capture(monkeypatch)
    assert report.forest_plot(_judged(ctx), ctx, tmp_path / "f.png") is not None
    labels = [t.get_text() for t in figures[-1].axes[0].get_yticklabels()]
    assert f"{USER} (LoRA)" in labels and f"{USER} (linear probe)" in labels
    assert "Virchow2 (LoRA)" in labels and len(labels) == 17 + 2


def test_roc_figure_has_the_user_model(monkeypatch, tmp_path):
    rng = np.random.default_rng(1)
    rows, preds = [], []
    for model, method in ((USER, "lora"), ("UNI", "lora")):
        for fold in (1, 2):
            for dataset in TEST_SETS:
                y = np.arange(40) % 3 == 0
                p = np.clip(0.3 + 0.4 * y + rng.normal(0, 0.2, y.size), 0, 1)
                rows.append({"model": model, "method": method, "dataset": dataset, "fold": fold,
                             **st.fold_metrics(y, p)})  # fmt: skip
                preds += [{"model": model, "method": method, "dataset": dataset, "fold": fold,
                           "image": f"i{i}.png", "label": "Atypical" if a else "Normal",
                           "prob_atypical": q} for i, (a, q) in enumerate(zip(y, p, strict=True))]  # fmt: skip
    folder = write_results_set(
        tmp_path / "roc", rows, predictions=preds, manifest={"configs": declared("lora")}
    )
    figures = _capture(monkeypatch)
    assert report.roc_plot(cl.build_context(folder), tmp_path / "roc.png") is not None
    labels = {t.get_label() for ax in figures[-1].axes for t in ax.get_lines()}
    assert {f"{USER} (LoRA)", "UNI (LoRA)"} <= labels
    assert "not drawn" not in figures[-1]._suptitle.get_text()
    # added to the paper's numbers (no predictions), the figure says what it leaves out
    user_folder = write_results_set(
        tmp_path / "mine",
        [r for r in rows if r["model"] == USER],
        predictions=[q for q in preds if q["model"] == USER],
        manifest={"configs": declared("lora")},
    )
    merged = merge_results_sets(load_results_set("paper"), load_results_set(user_folder))
    assert report.roc_plot(cl.Context(merged), tmp_path / "merged.png") is not None
    title = figures[-1]._suptitle.get_text()
    assert "17 configuration(s) without per-image predictions not drawn" in title, title


def test_whatif_lists_conclusion_kinds_the_registry_has():
    kinds = {c.kind for c in cl.load_claims()}
    assert set(whatif.conclusion_kinds()) <= kinds and set(whatif.inventory_kinds()) <= kinds


def test_help_states_the_add_exit_status(capsys):
    with pytest.raises(SystemExit):
        cli.main(["claims", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert (
        "with --add, a claim whose verdict changes" in text
        and "Exit 1 when a verdict changes" in text
    )


@pytest.fixture()
def synthetic_only(tmp_path):
    """A set of MyFM trained on the synthetic fixture only (`run --data-root fixtures/synthetic`):
    its test sets are synthetic:*, so it has nothing to show beside Table 3's rows."""
    rows = [{**r, "dataset": f"synthetic:{r['dataset']}"} for r in user_rows(0.03)]
    manifest = {"name": "synth", "tier": "smoke", "data": "synthetic",
                "configs": declared("linear_probe", "lora")}  # fmt: skip
    return cl.Context(load_results_set(write_results_set(tmp_path / "s", rows, manifest=manifest)))


@pytest.mark.parametrize("view", ["forest plot", "Table 3 view", "comparisons"])
def test_a_model_only_on_synthetic_test_sets_is_no_row_beside_table3(
    synthetic_only, monkeypatch, tmp_path, view
):
    ctx = synthetic_only
    results = _judged(ctx)
    if view == "forest plot":  # no empty panels titled with the public test sets
        assert report.forest_plot(results, ctx, tmp_path / "f.png") is None
    elif view == "Table 3 view":  # no row of dashes
        assert f"| {USER} (LoRA) |" not in report.to_markdown(results, ctx, [])
    else:  # "e.g." names a configuration the set lacks, not MyFM (which it holds, on synthetic:*)
        best = next(r for r in results if r.claim.id == "abstract.max.amibr")
        assert best.status == st.NOT_RUN and USER not in best.verdict.reason, best.verdict.reason


def test_a_merged_set_describes_no_fast_runs_it_does_not_carry(tmp_path):
    """merge_results_sets keeps no fast_configs (nor stale, files, counters) of the base: the
    merged set carries no fast rows, so its manifest must not describe any."""
    folder = write_results_set(
        tmp_path / "mine", user_rows(0.03), manifest={"configs": declared("lora", "linear_probe")}
    )
    paper = load_results_set("paper")
    base = dataclasses.replace(
        paper, manifest={**paper.manifest, "fast_configs": {"UNI|lora": {}}, "stale": ["x"]}
    )
    merged = merge_results_sets(base, load_results_set(folder))
    assert not merged.fast
    assert not {"fast_configs", "stale", "files", "counters"} & set(merged.manifest)


@pytest.mark.parametrize("method", ["linear_probe", "lora", "end_to_end"])
def test_a_model_with_one_strategy_joins_the_groups_without_an_error(tmp_path, method):
    """A user's model trained one way only: Table 4's Wilcoxon pairs only models with both
    strategies (still 35 pairs), the "LoRA beats linear probing" dominance leaves it out, and no
    claim ends as an evaluator error."""
    rows = [{**r, "method": method} for r in user_rows(0.03) if r["method"] == "lora"]
    folder = write_results_set(tmp_path / "one", rows, manifest={"configs": declared(method)})
    merged = merge_results_sets(load_results_set("paper"), load_results_set(folder))
    results = cl.evaluate_all(
        [c for c in cl.load_claims() if c.needs == "results"], cl.Context(merged)
    )
    assert not [r.claim.id for r in results if r.evaluator_error]
    wilcoxon = [
        r for r in results if r.claim.kind == "significance" and r.claim.args.test == "wilcoxon"
    ]
    assert wilcoxon and all(r.verdict.details["n_x"] == 35 for r in wilcoxon)
    maxima = [r for r in results if r.claim.kind == "maximum" and r.claim.args.among == "all"]
    assert maxima and all(USER in str(r.verdict.observed) for r in maxima)  # it competes
