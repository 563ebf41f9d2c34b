"""The report, read by a researcher: prediction-level sections, the JSON header, what the
terminal shows and where the files go, an HTML page without raw markdown or emoji, readable
figures, tolerances worded as tolerances, notes only where they apply, protocol claims of a
smoke or synthetic run "not run"."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import datetime

import numpy as np
import pytest
from helpers import paper_rows
from matplotlib.figure import Figure
from PIL import Image

import harness
from harness import analysis, cli, experts, paths, report, report_screenshot, smoke
from harness import claims as cl
from harness import stats as st
from harness.claims import load_deviations
from harness.report_screenshot import html_problems, is_emoji
from harness.results import load_results_set, write_results_set

NEEDS_RESULTS = ("results", "predictions", "run")
PROVENANCE = {"harness_version": "9.9.9", "torch": "2.14.1", "device": "cpu (x86_64)"}


def fast_claims() -> list[cl.Claim]:
    """The claims a results set decides (no model building, no data tree): seconds."""
    return [c for c in cl.load_claims() if c.needs in NEEDS_RESULTS]


def few_claims() -> list[cl.Claim]:
    """A handful of claims (UNI's Table 3 cells, a contradiction, a smoke claim): for tests of
    where the report goes, not of what it says."""
    keep = ("table3.uni.", "s5.amibr.lp-range", "smoke.")
    return [c for c in fast_claims() if c.id.startswith(keep)]


def prediction_set(folder, *, name="tiny", tier="smoke", data="synthetic", provenance=None):
    """Two configurations, two folds, on the synthetic fixture's voted test sets (AMi-Br test
    split, AtNorM-MD): the images and labels of the committed votes, noisy probabilities."""
    tables = [
        t
        for t in experts.load_vote_tables(paths.SYNTHETIC_FIXTURE)
        if t.subset in ("test split",) or t.dataset.endswith("AtNorM-MD")
    ]
    rng = np.random.default_rng(0)
    rows, preds = [], []
    for model, method in (("UNI", "lora"), ("Virchow2", "linear_probe")):
        for fold in (1, 2):
            for t in tables:
                p = np.clip(0.2 + 0.55 * t.consensus + rng.normal(0, 0.2, t.consensus.size), 0, 1)
                rows.append({"model": model, "method": method, "dataset": t.dataset,
                             "fold": fold, **st.fold_metrics(t.consensus, p)})  # fmt: skip
                preds += [
                    {"model": model, "method": method, "dataset": t.dataset, "fold": fold,
                     "image": img, "label": "Atypical" if y else "Normal", "prob_atypical": q}
                    for img, y, q in zip(t.images, t.consensus, p.tolist(), strict=True)
                ]  # fmt: skip
    manifest = {"name": name, "tier": tier, "preset": "paper", "data": data}
    if provenance:
        manifest["provenance"] = provenance
    return write_results_set(folder / name, rows, predictions=preds, manifest=manifest)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(results, context) of the tiny prediction set, with provenance in its manifest."""
    folder = prediction_set(tmp_path_factory.mktemp("sets"), provenance=PROVENANCE)
    ctx = cl.build_context(folder)
    return cl.evaluate_all(fast_claims(), ctx), ctx


@pytest.fixture(scope="module")
def paper():
    ctx = cl.build_context("paper")
    return cl.evaluate_all(fast_claims(), ctx), ctx


def record_figures(monkeypatch) -> list:
    """Every matplotlib figure saved from now on, with its dpi, in order."""
    seen = []
    save = Figure.savefig

    def record(fig, *args, **kwargs):
        seen.append((fig, kwargs.get("dpi")))
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    return seen


@pytest.fixture(scope="module")
def tiny_written(tiny, tmp_path_factory):
    """The tiny set's md, html and json reports: (suffix -> text, folder, name -> (figure,
    dpi) of the figures drawn, in the order `report.draw_figures` draws them)."""
    results, ctx = tiny
    folder = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        seen = record_figures(mp)
        written = report.write_reports(results, ctx, folder)
    names = [n for n in report.FIGURES if (folder / f"claims-{n}.png").is_file()]
    texts = {p.suffix: p.read_text(encoding="utf-8") for p in written}
    return texts, folder, dict(zip(names, seen, strict=True))


@pytest.fixture(scope="module")
def tiny_reports(tiny_written):
    return tiny_written[:2]


# ------------------------------------------------------------------ 1. analyses sections
SECTIONS = (
    "Prediction-level analyses (reported, not judged)",
    "Models among the experts",
    "Fold ensemble vs mean over folds",
    "Calibration",
    "Sensitivity and specificity of the atypical class",
    "Decision threshold",
)


@pytest.mark.parametrize("section", SECTIONS)
def test_prediction_sections_in_md_and_html(tiny_reports, section):
    texts, _ = tiny_reports
    assert re.search(rf"^##+ {re.escape(section)}$", texts[".md"], re.M)
    assert re.search(rf"<h[23][^>]*>{re.escape(section)}</h[23]>", texts[".html"])


def test_prediction_sections_show_the_analysis_numbers(tiny, tiny_reports):
    (_, ctx), (texts, folder) = tiny, tiny_reports
    rs = ctx.results
    for name in ("experts", "reliability", "roc", "forest"):
        assert (folder / f"claims-{name}.png").stat().st_size > 10_000, name
        assert f"(claims-{name}.png)" in texts[".md"]
    assert texts[".html"].count("data:image/png;base64,") == 4
    md = texts[".md"]
    for row in analysis.ensemble_metrics(rs):
        label = cl.config_label(row["model"], row["method"])
        ens = row["balanced_accuracy"]["ensemble"]
        assert re.search(rf"\| {re.escape(label)} \| {row['dataset']} \| 2 \|[^\n]*{ens:.4f}", md)
    for row in analysis.calibration(rs):
        assert f"| {row['ece_ensemble']:.3f} |" in md
    assert analysis.binning() in md  # the ECE binning is stated
    assert "not available: the results set holds no validation predictions" in md
    data = json.loads(texts[".json"])["analyses"]
    assert data["available"] and data["experts"]["status"] == "done"
    assert data["ensemble"] == analysis.ensemble_metrics(rs)
    assert data["sensitivity_specificity"] == analysis.sensitivity_specificity(rs)
    compared = {c["dataset"] for c in data["experts"]["comparisons"]}
    assert compared == {"synthetic:AMi-Br", "synthetic:AtNorM-MD"}
    summary = experts.expert_summary(paths.SYNTHETIC_FIXTURE, rs.path)
    assert data["experts"]["comparisons"] == json.loads(json.dumps(summary["comparisons"]))


def test_paper_set_says_why_no_analyses(paper):
    results, ctx = paper
    md = report.to_markdown(results, ctx, [])
    assert "Not available: results set 'paper' holds per-fold metrics only" in md
    assert "### Models among the experts" not in md
    assert json.loads(report.to_json(results, ctx))["analyses"]["available"] is False


@pytest.mark.parametrize(
    ("root", "reason"),
    [
        (None, "needs the expert votes of the datasets at"),
        (paths.SYNTHETIC_FIXTURE, "no predictions on a test set with expert votes"),
    ],
)
def test_experts_section_not_run_says_why(tmp_path, tiny, root, reason):
    """A set with the public test-set names: no data root, or votes of another tree."""
    _, ctx = tiny
    rs = ctx.results
    rows = [{**r.__dict__, "dataset": r.dataset.removeprefix("synthetic:")} for r in rs.rows]
    preds = [{**p.__dict__, "dataset": p.dataset.removeprefix("synthetic:")}
             for p in rs.predictions]  # fmt: skip
    folder = write_results_set(tmp_path / "real-names", rows, predictions=preds,
                               manifest={"name": "real-names", "tier": "full", "data": "real"})  # fmt: skip
    real_ctx = replace(cl.build_context(folder), data_root=root)
    md = report.to_markdown([], real_ctx, [])
    section = md.split("### Models among the experts", 1)[1].split("###", 1)[0]
    assert "Not run: " in section and reason in section
    assert "### Calibration" in md  # the other analyses need no votes


# ----------------------------------------------------------------------------- 4. JSON header
def test_json_header_around_the_claims(tiny, paper):
    results, ctx = tiny
    doc = json.loads(report.to_json(results, ctx))
    assert doc["results_set"]["name"] == "tiny" and doc["results_set"]["path"] == str(
        ctx.results.path
    )
    assert (doc["tier"], doc["preset"], doc["data"]) == ("smoke", "paper", "synthetic")
    assert doc["provenance"] == PROVENANCE
    counts = cl.count_statuses(results)
    assert doc["summary"] == {
        "claims": len(results),
        **counts,
        "known_contradictions_confirmed": sum(r.confirmed_contradiction for r in results),
        "unexpected": sum(r.unexpected for r in results),
    }
    assert doc["harness_version"] == harness.__version__
    assert datetime.fromisoformat(doc["generated"]).tzinfo is not None
    assert [c["id"] for c in doc["claims"]] == [r.claim.id for r in results]
    assert doc["notes"] == []  # the self-reference note is the paper set's only
    p_results, p_ctx = paper
    p_doc = json.loads(report.to_json(p_results, p_ctx))
    assert p_doc["tier"] == "paper" and p_doc["provenance"] is None
    assert "read from these same per-fold numbers" in p_doc["notes"][0]


# -------------------------------------------------------------------------- 2. command line
@pytest.fixture()
def quick_cli(monkeypatch, tmp_path):
    """`amibr-bench claims` on the fast claims, run in an empty current directory."""
    monkeypatch.setattr(report.command, "load_claims", few_claims)
    monkeypatch.setattr(report.writing, "draw_figures", lambda *args: {})  # figures: tested above
    monkeypatch.chdir(tmp_path)

    def run(capsys, *argv):
        code = cli.main(["claims", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_claims_prints_a_summary_and_writes_md_html_json(quick_cli, capsys, tiny, tmp_path):
    _, ctx = tiny
    code, out, err = quick_cli(capsys, "--results", str(ctx.results.path))
    folder = tmp_path / "reports" / "tiny"
    assert code == 0 and err == ""
    for suffix in (".md", ".html", ".json"):
        assert (folder / f"claims{suffix}").stat().st_size > 1000
        assert str(folder / f"claims{suffix}") in out
    assert "|---|" not in out and "<td>" not in out and len(out.splitlines()) < 60
    assert out.startswith("results set: tiny") and "Table 3" in out


def test_claims_out_dir(quick_cli, capsys, tiny, tmp_path):
    _, ctx = tiny
    code, out, _ = quick_cli(capsys, "--results", "paper", "--out-dir", str(tmp_path / "r"))
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "r").glob("claims.*")) == [
        "claims.html",
        "claims.json",
        "claims.md",
    ]
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize(
    ("argv", "starts"),
    [
        (["--format", "md"], "# Claim report"),
        (["--out", "-"], "# Claim report"),
        (["--format", "json", "--out", "-"], "{"),
        (["--format", "text"], "results set: paper"),
    ],
)
def test_claims_prints_one_format_only_when_asked(quick_cli, capsys, tmp_path, argv, starts):
    code, out, _ = quick_cli(capsys, "--results", "paper", *argv)
    assert code == 0 and out.startswith(starts)
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize(
    ("out", "fmt", "head"),
    [
        ("runs/full/report/claims.md", None, "# Claim report"),  # noxfile.py / tox.ini
        ("r.html", None, "<!doctype html>"),
        ("r.json", None, "{"),
        ("r.xml", None, "<?xml"),
        ("report.out", "md", "# Claim report"),
    ],
)
def test_claims_out_file_format_from_suffix(quick_cli, capsys, tmp_path, out, fmt, head):
    code, text, _ = quick_cli(
        capsys, "--results", "paper", "--out", out, *(["--format", fmt] if fmt else [])
    )
    assert code == 0 and f"written to {out}" in text
    assert (tmp_path / out).read_text(encoding="utf-8").startswith(head)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--out", "report.pdf"], "--out report.pdf: cannot tell the report format"),
        (["--out", "a.md", "--out-dir", "d"], "--out and --out-dir"),
        (["--out-dir", "a-file/sub"], "a-file"),
    ],
)
def test_claims_bad_output_options_are_one_line(quick_cli, capsys, tmp_path, argv, message):
    (tmp_path / "a-file").write_text("not a folder")
    code, _, err = quick_cli(capsys, "--results", "paper", *argv)
    assert code == 2 and err.startswith("amibr-bench") and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not list(tmp_path.glob("*.md")) and not (tmp_path / "d").exists()


# ------------------------------------------------------------------------------ 3. HTML
def test_html_pages_have_no_raw_markdown_and_no_emoji(tiny_reports, paper, tmp_path):
    results, ctx = paper
    pages = {"tiny": tiny_reports[0][".html"], "paper": report.render(results, ctx, "html")}
    for name, page in pages.items():
        assert html_problems(page) == [], name
        assert "<code>expected_results/README.md</code>" in page  # inline code made a tag
        assert "<tr><th>Verdict</th><th>Claims</th><th>Meaning</th></tr>" in page
        assert "passed · " not in page  # the counts are a table, not a run-on line


MARKDOWN = ["use `amibr-bench plan`", "**Summary:** 3 passed", "see [the README](README.md)"]


@pytest.mark.parametrize("bad", [*MARKDOWN, *report.ICON.values(), "\u2b06\ufe0f", "\u2713\u2705"])
def test_html_check_catches_raw_markdown_and_emoji(bad):
    assert html_problems(f"<html><body><p>{bad}</p><style>a{{}}</style></body></html>")


@pytest.mark.parametrize("text", MARKDOWN)
def test_inline_markdown_leaves_nothing_for_the_check(text):
    assert html_problems(f"<p>{report.inline_html(text)}</p>") == []


@pytest.mark.parametrize(
    ("text", "html_text"),
    [
        ("needs `amibr-bench smoke` first", "needs <code>amibr-bench smoke</code> first"),
        ("**b** and *i*", "<b>b</b> and <i>i</i>"),
        ("[README](README.md)", '<a href="README.md">README</a>'),
        ("k * sqrt(a) * b <x>", "k * sqrt(a) * b &lt;x&gt;"),
        ("`a<b`", "<code>a&lt;b</code>"),
    ],
)
def test_inline_markdown_becomes_tags(text, html_text):
    assert report.inline_html(text) == html_text


def test_html_has_the_compact_table3_and_text_badges(paper):
    results, ctx = paper
    page = report.to_html(results, ctx, [])
    row = re.search(r"<td>Virchow2 \(LoRA\)</td><td>(.*?)</td>", page)[1]
    assert "0.8135 ± 0.0145</span><br>→ <span class='nw'>0.8136 ± 0.0145" in row
    assert "class='badge passed'" in row and ">mean passed<" in row and ">std passed<" in row
    assert not any(is_emoji(ch) for ch in page)


# --------------------------------------------------------------------- figures, readable
def _texts(fig):
    from matplotlib.text import Text

    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


@pytest.mark.parametrize("name", ["forest", "roc", "experts", "reliability"])
def test_figures_read_at_their_displayed_size(tiny_written, name):
    fig, dpi = tiny_written[2][name]
    assert dpi == analysis.FIGURE_DPI
    assert fig.get_figwidth() * dpi <= analysis.MAX_FIGURE_PX  # shown unscaled in the page
    small = [(t.get_text()[:30], t.get_fontsize()) for t in _texts(fig)
             if t.get_fontsize() < analysis.MIN_FONT_PT]  # fmt: skip
    assert small == []


def test_forest_band_is_red_only_where_the_mean_fails(monkeypatch, tmp_path):
    drawn = record_figures(monkeypatch)
    rows = paper_rows()
    for r in rows:
        if (r["model"], r["method"], r["dataset"]) == ("UNI", "lora", "AMi-Br"):
            r["balanced_accuracy"] = f"{float(r['balanced_accuracy']) - 0.1:.4f}"
    folder = write_results_set(tmp_path / "low", rows, manifest={"name": "low", "tier": "full"})
    ctx = cl.build_context(folder)
    results = cl.evaluate_all([c for c in fast_claims() if c.kind == "table_cell"], ctx)
    failed = [r for r in results if r.status == st.FAILED and r.claim.section == "Table 3"]
    assert [r.claim.id for r in failed] == ["table3.uni.lora.amibr.bacc.mean"]
    report.forest_plot(results, ctx, tmp_path / "f.png")
    (fig, _) = drawn[-1]
    bands = [ln.get_color() for ax in fig.axes for ln in ax.lines if ln.get_linewidth() == 6]
    assert len(bands) == 6 * 17
    assert bands.count(report.VERDICT_COLOURS[st.FAILED]) == 1
    assert bands.count(report.VERDICT_COLOURS[st.PASSED]) == 6 * 17 - 1


# ------------------------------------------------------------------------- 5. explanations
DELTA = 0.0123


@pytest.mark.parametrize("observed", [0.80 - 2 * DELTA, 0.80 + DELTA / 2, 0.80 + 2 * DELTA])
def test_mean_verdict_states_difference_and_tolerance_apart(observed):
    note = st.judge_mean(observed, 0.80, DELTA).note
    assert f"{observed - 0.80:+.4f} from the paper" in note
    assert f"tolerance ±{DELTA:.4f}" in note


@pytest.mark.parametrize("observed", [0.001, 0.02, 0.2])
def test_std_verdict_names_the_tolerance_interval(observed):
    lo, hi = st.std_interval(0.02, 5, 5)
    assert f"tolerance interval [{lo:.4f}, {hi:.4f}]" in st.judge_std(observed, lo, hi).note


TOLERANCE_AS_DIFFERENCE = re.compile(r"within \d+(\.\d+)? of|(?<!tolerance )±\d")


@pytest.mark.parametrize("shift", [0.0, -0.08, 0.08])
def test_no_reason_words_a_tolerance_as_a_difference(tmp_path, shift):
    rows = paper_rows()
    for r in rows:
        r["balanced_accuracy"] = f"{min(1.0, float(r['balanced_accuracy']) + shift):.4f}"
    folder = write_results_set(tmp_path / "s", rows, manifest={"name": "s", "tier": "full"})
    results = cl.evaluate_all(fast_claims(), cl.build_context(folder))
    bad = [(r.claim.id, r.verdict.reason) for r in results
           if TOLERANCE_AS_DIFFERENCE.search(r.verdict.reason or "")]  # fmt: skip
    assert bad == []


@pytest.fixture(scope="module")
def not_paper(tmp_path_factory):
    """The authors' numbers in a harness set (tier full): paper-only notes must not appear."""
    folder = write_results_set(
        tmp_path_factory.mktemp("copy") / "copy",
        paper_rows(),
        manifest={"name": "copy", "tier": "full", "data": "real"},
    )
    ctx = cl.build_context(folder)
    return cl.evaluate_all(fast_claims(), ctx), ctx


PAPER_ONLY = ("folds are themselves rounded to 4 decimals", "read from these same per-fold")


RENDER = {
    "text": report.to_text,
    "md": lambda results, ctx: report.to_markdown(results, ctx, []),
    "html": lambda results, ctx: report.to_html(results, ctx, []),
    "json": report.to_json,
}


@pytest.mark.parametrize("fmt", RENDER)
def test_notes_for_the_paper_set_only(not_paper, paper, fmt):
    results, ctx = not_paper
    assert not [note for note in PAPER_ONLY if note in RENDER[fmt](results, ctx)]
    assert all(note in RENDER[fmt](*paper) for note in PAPER_ONLY)


SETTINGS = {
    "hyper": {"batch_size": 8, "max_epochs": 100, "early_stopping": 15, "plateau_factor": 0.5,
              "plateau_patience": 3},
    "lora": {"r": 8, "lora_alpha": 16, "lora_dropout": 0.3,
             "target_modules": ["qkv", "proj", "fc1", "fc2"]},
    "threshold": 0.5,
    "optimizer": "Adam",
}  # fmt: skip
PROTOCOL_CLAIMS = [c for c in cl.load_claims() if c.kind in ("protocol_setting", "fold_count")]


@pytest.fixture(scope="module")
def protocol_sets(tmp_path_factory):
    rows = [r for r in paper_rows() if r["method"] in ("lora", "end_to_end", "linear_probe")]
    configs = {f"{r['model']}|{r['method']}": {"status": "done", "settings": SETTINGS}
               for r in rows}  # fmt: skip
    out = {}
    for tier, data in (("smoke", "real"), ("full", "synthetic"), ("full", "real")):
        out[(tier, data)] = cl.build_context(
            write_results_set(tmp_path_factory.mktemp(f"{tier}-{data}") / "s", rows,
                              manifest={"name": f"{tier}-{data}", "tier": tier, "data": data,
                                        "configs": configs})
        )  # fmt: skip
    return out


@pytest.mark.parametrize("run", [("smoke", "real"), ("full", "synthetic")])
@pytest.mark.parametrize("claim", PROTOCOL_CLAIMS, ids=lambda c: c.id)
def test_protocol_claims_not_run_on_smoke_or_synthetic_sets(protocol_sets, run, claim):
    r = cl.evaluate(claim, protocol_sets[run])
    assert r.status == st.NOT_RUN and "judged on runs of the full protocol" in r.verdict.reason
    assert cl.evaluate(claim, protocol_sets[("full", "real")]).status == st.PASSED


# ------------------------------------------------------------------------------ smoke report
def test_smoke_report_holds_the_real_subset_analyses(monkeypatch, tmp_path, capsys):
    from rich.console import Console

    monkeypatch.setattr(smoke, "load_claims", few_claims)
    monkeypatch.setattr(report.writing, "draw_figures", lambda *args: {})
    synth = prediction_set(tmp_path, name="synthetic")
    prediction_set(tmp_path, name="real", data="real")
    out = tmp_path / "report"
    assert smoke._claim_report(synth, paths.SYNTHETIC_FIXTURE, out, Console()) == 0
    names = sorted(p.name for p in out.iterdir() if not p.name.endswith(".png"))
    assert names == ["claims.html", "claims.json", "claims.md",
                     "real-subset.html", "real-subset.json", "real-subset.md"]  # fmt: skip
    md = (out / "real-subset.md").read_text(encoding="utf-8")
    assert "### Models among the experts" in md and "### Calibration" in md
    assert json.loads((out / "real-subset.json").read_text())["results_set"]["name"] == "real"
    assert html_problems((out / "real-subset.html").read_text(encoding="utf-8")) == []
    smoke._claim_report(synth, None, out, Console())  # no real data: no real-data report
    assert not list(out.glob("real-subset*"))
    assert "real-subset.md" in capsys.readouterr().out


def test_loaded_prediction_set_is_what_the_tests_describe(tiny):
    rs = load_results_set(tiny[1].results.path)
    assert {d for d in rs.datasets} == {"synthetic:AMi-Br", "synthetic:AtNorM-MD"}
    assert rs.configurations == [("UNI", "lora"), ("Virchow2", "linear_probe")]


# ------------------------------------------------------------------- 6. in a real browser
@pytest.mark.skipif(
    report_screenshot.chromium() is None,
    reason="no Chromium on PATH (apt-get install chromium); the page check above needs none",
)
def test_pages_in_a_headless_browser(tiny_reports, paper, tmp_path):
    """What Chromium renders: no raw markdown, no emoji, no character without an installed
    font; full-page screenshots are written."""
    results, ctx = paper
    paper_page = tmp_path / "paper.html"
    paper_page.write_text(report.to_html(results, ctx, load_deviations()), encoding="utf-8")
    pages = [paper_page, tiny_reports[1] / "claims.html"]
    browser = report_screenshot.chromium()
    problems = [p for page in pages for p in report_screenshot.check_page(page, tmp_path, browser)]
    assert problems == []
    for page in pages:
        with Image.open(tmp_path / f"{page.stem}.png") as shot:
            assert shot.width == report_screenshot.PAGE_WIDTH and shot.height > 3000
        assert (tmp_path / f"{page.stem}-01.png").is_file()


@pytest.mark.parametrize("dropped", [(), ("EfficientNetV2", "end_to_end"), ("UNI", "linear_probe")])
def test_forest_plot_lines_fall_between_the_strategies(monkeypatch, tmp_path, dropped):
    """The separating lines sit where the strategy changes, whichever rows a set lacks."""
    import dataclasses

    from harness.results import load_results_set

    paper = load_results_set("paper")
    rows = tuple(r for r in paper.rows if (r.model, r.method) != dropped)
    rs = dataclasses.replace(paper, rows=rows)
    ctx = cl.Context(rs)
    figures = []
    save = report.figures._save
    monkeypatch.setattr(
        report.figures, "_save", lambda fig, t, p: figures.append(fig) or save(fig, t, p)
    )
    results = cl.evaluate_all([c for c in cl.load_claims() if c.file == "table3.yaml"], ctx)
    assert report.forest_plot(results, ctx, tmp_path / "f.png") is not None
    ax = figures[-1].axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    n = len(labels)
    assert n == 17 - bool(dropped)
    lines = sorted(
        {round(line.get_ydata()[0], 2) for line in ax.lines if line.get_color() == "0.85"}
    )
    # label i (top to bottom) sits at y = n - 1 - i; a line between labels i-1 and i at n - i - 0.5
    between = [
        n - i - 0.5 for i in range(1, n) if labels[i].split(" (")[1] != labels[i - 1].split(" (")[1]
    ]
    assert lines == sorted(between) and len(lines) == 2, (labels, lines)
