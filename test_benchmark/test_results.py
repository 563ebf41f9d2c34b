"""Results sets: the paper set loads; every corruption gives ONE ResultsError naming the file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from harness import results, stats
from harness.results import (
    FOLD_COLUMNS,
    PRED_COLUMNS,
    SET_FILES,
    ResultsError,
    canonical_model,
    load_results_set,
    validate_fold_rows,
    validate_predictions,
    write_results_set,
)

SETS = ("AMi-Br", "AtNorM-Br")


def grid(models=("UNI", "Swin Transformer"), folds=(1, 2, 3)) -> list[dict]:
    """A small complete results grid: 2 configurations x 2 test sets x 3 folds."""
    methods = {"UNI": "lora", "Swin Transformer": "end_to_end"}
    return [
        {
            "model": m,
            "method": methods[m],
            "dataset": d,
            "fold": str(f),
            "balanced_accuracy": "0.75",
            "auroc": "0.85",
            "pr_auc": "",
        }
        for m in models
        for d in SETS
        for f in folds
    ]


def test_paper_set_loads_complete():
    rs = load_results_set("paper")
    assert rs.name == "paper" and len(rs.rows) == 255 and len(rs.configurations) == 17
    assert rs.values("Virchow2", "lora", "AMi-Br", "balanced_accuracy").mean() == pytest.approx(
        0.81356
    )
    assert rs.manifest["source"]["sha256"]


def test_model_keys_map_to_paper_names():
    assert canonical_model("virchow2") == "Virchow2"
    assert canonical_model("vit-l16") == "Vision Transformer"
    assert canonical_model("tiny-test-model") == "tiny-test-model"


CORRUPTIONS = {
    "drop_row": "lacks fold",
    "duplicate": "duplicate row",
    "text_metric": "is not a number",
    "big_metric": "outside [0, 1]",
    "negative_metric": "outside [0, 1]",
    "nan_metric": "outside [0, 1]",
    "empty_metric": "is empty",
    "bad_method": "unknown method",
    "bad_dataset": "unknown dataset",
    "bad_fold": "is not an integer",
    "drop_dataset": "has no rows for test set",
}


def corrupt(rows: list[dict], how: str, i: int) -> list[dict]:
    rows = [dict(r) for r in rows]
    r = rows[i % len(rows)]
    if how == "drop_row":
        rows.remove(r)
    elif how == "duplicate":
        rows.append(dict(r))
    elif how == "drop_dataset":
        rows = [x for x in rows if not (x["model"] == r["model"] and x["dataset"] == r["dataset"])]
    elif how == "bad_method":
        r["method"] = "full_finetune"
    elif how == "bad_dataset":
        r["dataset"] = "TUPAC16"
    elif how == "bad_fold":
        r["fold"] = "one"
    else:
        metric = "balanced_accuracy" if i % 2 else "auroc"
        r[metric] = {
            "text_metric": "n/a",
            "big_metric": "1.2",
            "negative_metric": "-0.1",
            "nan_metric": "nan",
            "empty_metric": "",
        }[how]
    return rows


@settings(max_examples=60, deadline=None)
@given(how=hs.sampled_from(sorted(CORRUPTIONS)), i=hs.integers(0, 1000))
def test_any_corruption_gives_one_clear_error(how, i):
    with pytest.raises(ResultsError) as err:
        validate_fold_rows(corrupt(grid(), how, i), "some/fold_metrics.csv")
    assert "some/fold_metrics.csv" in str(err.value)
    assert CORRUPTIONS[how] in str(err.value)


@settings(max_examples=40, deadline=None)
@given(keep=hs.sets(hs.integers(0, 5), min_size=1, max_size=5))
def test_random_holes_are_caught(keep):
    """Removing any strict subset of one configuration's rows is a hole unless whole folds go."""
    rows = grid()
    uni = [r for r in rows if r["model"] == "UNI"]
    kept = [r for j, r in enumerate(uni) if j in keep]
    folds = {f: {r["dataset"] for r in kept if r["fold"] == f} for f in "123"}
    complete = all(len(v) in (0, len(SETS)) for v in folds.values())
    candidate = [r for r in rows if r["model"] != "UNI"] + kept
    if complete:  # whole folds removed: a partial run, which is allowed
        assert validate_fold_rows(candidate)
    else:
        with pytest.raises(ResultsError, match="lacks fold|has no rows for test set"):
            validate_fold_rows(candidate)


def test_errors_are_listed_together():
    rows = corrupt(corrupt(grid(), "bad_method", 0), "text_metric", 5)
    with pytest.raises(ResultsError, match=r"2 problem\(s\)"):
        validate_fold_rows(rows, "x.csv")


def test_missing_columns_named(tmp_path):
    (tmp_path / "fold_metrics.csv").write_text(
        "model,method,dataset,fold,auroc\nUNI,lora,AMi-Br,1,0.8\n"
    )
    with pytest.raises(ResultsError, match="missing column.*balanced_accuracy") as err:
        load_results_set(tmp_path)
    assert str(tmp_path / "fold_metrics.csv") in str(err.value)


def test_missing_folder_and_file(tmp_path):
    with pytest.raises(ResultsError, match="does not exist"):
        load_results_set(tmp_path / "nowhere")
    with pytest.raises(ResultsError, match="fold_metrics.csv.*missing"):
        load_results_set(tmp_path)


def _preds(n: int = 4, step: float = 0.0) -> list[dict]:
    return [
        {
            "model": "UNI",
            "method": "lora",
            "dataset": "AMi-Br",
            "fold": 1,
            "image": f"i{k}.png",
            "label": "Atypical" if k % 2 else "Normal",
            "prob_atypical": 0.2 if not step else step * k,
        }
        for k in range(n)
    ]


def agreeing(rows: list[dict], preds: list[dict]) -> list[dict]:
    """The fold rows with each predicted fold's metrics recomputed from its predictions, as the
    trainers write them (predictions.csv and fold_metrics.csv must agree)."""
    rows = [dict(r) for r in rows]
    for r in rows:
        key = (r["model"], r["method"], r["dataset"], int(r["fold"]))
        cell = [p for p in preds if (p["model"], p["method"], p["dataset"], int(p["fold"])) == key]
        if cell:
            y = np.array([p["label"] == "Atypical" for p in cell])
            r.update(stats.fold_metrics(y, np.array([float(p["prob_atypical"]) for p in cell])))
    return rows


def test_write_then_load_round_trip(tmp_path):
    preds = _preds(6, step=0.1)
    out = write_results_set(
        tmp_path / "set",
        agreeing(grid(), preds),
        predictions=preds,
        manifest={"name": "mine", "configs": {"uni|lora": {"reason": "x"}}},
    )
    rs = load_results_set(out)
    assert rs.name == "mine" and len(rs.rows) == 12 and len(rs.predictions) == 6
    assert rs.manifest["harness_version"] and rs.manifest["created"]
    assert rs.config_entry("UNI", "lora") == {"reason": "x"}
    assert sorted(p.name for p in out.iterdir()) == [
        "fold_metrics.csv",
        "manifest.json",
        "predictions.csv",
    ]  # no temp files left
    with open(out / "fold_metrics.csv", newline="") as fh:
        assert tuple(csv.DictReader(fh).fieldnames) == FOLD_COLUMNS


def test_write_refuses_bad_rows_and_leaves_old_set(tmp_path):
    write_results_set(tmp_path, grid())
    before = (tmp_path / "fold_metrics.csv").read_text()
    with pytest.raises(ResultsError):
        write_results_set(tmp_path, corrupt(grid(), "duplicate", 3))
    assert (tmp_path / "fold_metrics.csv").read_text() == before


def test_an_export_interrupted_between_files_is_detected(tmp_path, monkeypatch):
    """The old set is fine; a crash after the new predictions.csv is in place (before the
    manifest) leaves a set that refuses to load, naming the file, instead of a silent mix."""
    write_results_set(
        tmp_path, agreeing(grid(), _preds(4)), predictions=_preds(4), manifest={"name": "old"}
    )
    assert len(load_results_set(tmp_path).predictions) == 4
    real = results.paths.atomic_write

    def crash_at_manifest(path, data):
        if Path(path).name == "manifest.json":
            raise KeyboardInterrupt("power cut")
        return real(path, data)

    monkeypatch.setattr(results.paths, "atomic_write", crash_at_manifest)
    with pytest.raises(KeyboardInterrupt):
        write_results_set(
            tmp_path, agreeing(grid(), _preds(6)), predictions=_preds(6), manifest={"name": "new"}
        )
    monkeypatch.undo()
    with pytest.raises(ResultsError, match=r"predictions.csv: does not match the sha256"):
        load_results_set(tmp_path)
    write_results_set(
        tmp_path, agreeing(grid(), _preds(6)), predictions=_preds(6), manifest={"name": "new"}
    )
    assert len(load_results_set(tmp_path).predictions) == 6


def test_hand_edits_and_strays_are_named(tmp_path):
    write_results_set(tmp_path, grid())
    metrics = tmp_path / "fold_metrics.csv"
    metrics.write_text(metrics.read_text().replace("0.75", "0.76", 1))
    with pytest.raises(ResultsError, match="fold_metrics.csv: does not match"):
        load_results_set(tmp_path)
    write_results_set(tmp_path, grid())
    (tmp_path / "predictions.csv").write_text("model\n")
    with pytest.raises(ResultsError, match="predictions.csv: not part of this results set"):
        load_results_set(tmp_path)


def test_keeping_old_predictions_keeps_them_in_the_digest(tmp_path):
    rows = agreeing(grid(), _preds(4))
    write_results_set(tmp_path, rows, predictions=_preds(4), manifest={"name": "kept"})
    write_results_set(tmp_path, rows)  # predictions and manifest kept
    rs = load_results_set(tmp_path)
    assert rs.name == "kept" and len(rs.predictions) == 4


def test_predictions_must_match_folds():
    rows = validate_fold_rows(grid())
    bad = [
        {
            "model": "UNI",
            "method": "lora",
            "dataset": "AMi-Br",
            "fold": "4",  # within 1-5, but not among the folds of fold_metrics.csv
            "image": "a.png",
            "label": "Normal",
            "prob_atypical": "0.2",
        }
    ]
    with pytest.raises(ResultsError, match="no such fold"):
        validate_predictions(bad, rows)
    bad[0].update(fold="1", label="Mitosis")
    with pytest.raises(ResultsError, match="label"):
        validate_predictions(bad, rows)


def test_bad_manifest(tmp_path):
    write_results_set(tmp_path, grid())
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ResultsError, match="manifest.json"):
        load_results_set(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"configs": []}))
    with pytest.raises(ResultsError, match="configs"):
        load_results_set(tmp_path)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(vals=hs.lists(hs.floats(0, 1, allow_nan=False), min_size=6, max_size=6))
def test_any_valid_numbers_are_accepted(vals):
    rows = grid(models=("UNI",))
    for r, v in zip(rows, vals, strict=True):
        r["auroc"] = repr(v)
    assert [x.auroc for x in validate_fold_rows(rows)] == vals


# ------------------------------------------------------------------- results sets at the edges
def hand_made_set(folder: Path, rows: list[dict], preds: list[dict] | None = None, bom=()):
    """A results set written by another tool: plain CSVs, no manifest (so no digests); the files
    named in `bom` start with a UTF-8 byte order mark, as spreadsheet programs write them."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"fold_metrics.csv": (FOLD_COLUMNS, rows), "predictions.csv": (PRED_COLUMNS, preds)}
    for name, (columns, content) in files.items():
        if content is not None:
            text = results._csv_text(columns, content)
            (folder / name).write_text(("\ufeff" if name in bom else "") + text, encoding="utf-8")
    return folder


@pytest.mark.parametrize("bom", [("fold_metrics.csv",), ("predictions.csv",), SET_FILES])
def test_a_byte_order_mark_is_read_like_the_data_csvs(tmp_path, bom):
    preds = _preds(6, step=0.1)
    folder = hand_made_set(tmp_path / "set", agreeing(grid(), preds), preds, bom=bom)
    rs = load_results_set(folder)
    assert len(rs.rows) == 12 and len(rs.predictions) == 6
    (folder / "manifest.json").write_text("\ufeff" + json.dumps({"name": "bom"}), "utf-8")
    assert load_results_set(folder).name == "bom"


def inverted(preds: list[dict]) -> list[dict]:
    return [{**p, "prob_atypical": 1.0 - float(p["prob_atypical"])} for p in preds]


def test_predictions_that_disagree_with_the_fold_metrics_are_refused(tmp_path):
    """prob_atypical -> 1 - prob_atypical: the ROC figure would contradict the claims judged on
    fold_metrics.csv. The error names both files, the row and both values."""
    preds = _preds(6, step=0.1)
    rows = agreeing(grid(), preds)
    folder = hand_made_set(tmp_path / "set", rows, inverted(preds))
    with pytest.raises(ResultsError) as err:
        load_results_set(folder)
    msg = str(err.value)
    line = 2 + next(i for i, r in enumerate(rows) if r["model"] == "UNI" and r["fold"] == "1")
    auroc = stats.fold_metrics(
        np.array([p["label"] == "Atypical" for p in preds]),
        1.0 - np.array([p["prob_atypical"] for p in preds]),
    )["auroc"]
    assert msg.startswith(f"{folder / 'predictions.csv'}: ")
    assert f"UNI | lora | AMi-Br | fold 1: auroc from its 6 predictions is {auroc:.4f}" in msg
    assert f"{folder / 'fold_metrics.csv'} line {line} says {rows[line - 2]['auroc']:.4f}" in msg
    with pytest.raises(ResultsError, match="auroc from its 6 predictions"):
        write_results_set(tmp_path / "w", rows, predictions=inverted(preds))
    assert not (tmp_path / "w").exists()  # nothing written
    write_results_set(tmp_path / "w", rows, predictions=preds)  # the agreeing set is fine


@pytest.mark.parametrize(
    ("metric", "delta", "ok"),
    [("balanced_accuracy", 0.0004, True), ("auroc", -0.0004, True), ("pr_auc", 0.0006, False)],
)
def test_fold_metrics_rounded_within_the_tolerance_still_agree(metric, delta, ok):
    preds = _preds(6, step=0.1)
    rows = agreeing(grid(), preds)
    first = next(r for r in rows if r["model"] == "UNI" and r["fold"] == "1")
    first[metric] = f"{first[metric] + delta:.6f}"
    folds = validate_fold_rows(rows)
    if ok:
        assert len(validate_predictions(preds, folds)) == 6
    else:
        with pytest.raises(ResultsError, match=f"{metric} from its 6 predictions"):
            validate_predictions(preds, folds)


def test_predictions_of_one_class_cannot_give_a_folds_metrics():
    preds = [p for p in _preds(6, step=0.1) if p["label"] == "Normal"]
    with pytest.raises(ResultsError, match="cannot give the metrics on fold_metrics.csv line"):
        validate_predictions(preds, validate_fold_rows(grid()))


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("Virchow 2", "Virchow2"),
        ("UNI2h", "UNI2-h"),
        ("Swin-Transformer", "Swin Transformer"),
        ("H-Optimus0", "H-Optimus-0"),
        ("prov-gigpath", "Prov-Gigapath"),
    ],
)
@pytest.mark.parametrize("where", ["fold_metrics.csv", "predictions.csv"])
def test_a_misspelt_model_is_named_with_the_closest_known_name(tmp_path, name, suggestion, where):
    preds = _preds(6, step=0.1)
    rows = agreeing(grid(), preds)
    for r in rows if where == "fold_metrics.csv" else preds:
        if r["model"] == "UNI":
            r["model"] = name
    folder = hand_made_set(tmp_path / "set", rows, preds)
    with pytest.raises(ResultsError) as err:
        load_results_set(folder)
    assert str(err.value).startswith(str(folder / where))
    assert f"unknown model {name!r} (did you mean {suggestion!r}?)" in str(err.value)


def test_an_unknown_model_lists_the_known_names():
    rows = [{**r, "model": "xq"} if r["model"] == "UNI" else r for r in grid()]
    with pytest.raises(ResultsError, match=r"line 2 and 5 more row\(s\): unknown model 'xq'") as e:
        validate_fold_rows(rows)
    assert "(known: " in str(e.value) and "Virchow2" in str(e.value)
    assert "1 problem(s)" in str(e.value)  # one line for the name, not one per row


def test_every_model_the_registry_exports_is_known():
    """Results sets the harness writes name models by the registry's display names."""
    from harness import models

    for key, spec in models.SPECS.items():
        assert results.is_known_model(spec.name) and results.is_known_model(key), key
        assert results.canonical_model(key) == spec.name


@pytest.mark.parametrize("fold", ["0", "6", "7", "-1", "10"])
@pytest.mark.parametrize("where", ["fold_metrics.csv", "predictions.csv"])
def test_folds_outside_the_protocols_five_are_refused(fold, where):
    preds = _preds(6, step=0.1)
    rows = agreeing(grid(), preds)
    for r in rows if where == "fold_metrics.csv" else preds:
        if r["model"] == "UNI" and r["fold"] in ("1", 1):
            r["fold"] = fold
    with pytest.raises(ResultsError, match=f"fold '{fold}' is not one of the protocol's folds 1-5"):
        validate_predictions(preds, validate_fold_rows(rows, where), where)


WRONG_MANIFESTS = {
    "configs": ({"configs": ["UNI|lora"]}, "field configs: "),
    "files": ({"files": "fold_metrics.csv"}, "field files: "),
    "settings": ({"configs": {"UNI|lora": {"settings": 8}}}, "field configs['UNI|lora'].settings"),
    "entry": ({"configs": {"UNI|lora": "done"}}, "field configs['UNI|lora']: "),
    "folds": ({"configs": {"UNI|lora": {"folds": "1-5"}}}, "field configs['UNI|lora'].folds"),
    "name": ({"name": 7}, "field name: "),
    "counters": ({"counters": [1, 2]}, "field counters: "),
    "notes": ({"notes": "a note"}, "field notes: "),
    "object": (["not", "an", "object"], "must hold a JSON object"),
}


@pytest.mark.parametrize("case", sorted(WRONG_MANIFESTS))
def test_manifest_fields_of_the_wrong_type_are_refused_at_load(tmp_path, capsys, case):
    """Refused when the set loads (InputError naming manifest.json and the field, exit 2 from
    the CLI), never an evaluator error halfway through the claims."""
    from harness import cli

    manifest, message = WRONG_MANIFESTS[case]
    folder = hand_made_set(tmp_path / "set", grid())
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ResultsError, match=r"manifest\.json: ") as err:
        load_results_set(folder)
    assert message in str(err.value)
    assert cli.main(["claims", "--results", str(folder), "--format", "json"]) == 2
    stderr = capsys.readouterr().err
    assert "manifest.json" in stderr and message in stderr and "Traceback" not in stderr
    with pytest.raises(ResultsError, match=r"manifest\.json: "):
        write_results_set(tmp_path / "w", grid(), manifest=manifest)
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("normal", range(1, 40))
def test_a_perfect_fold_exports_as_a_valid_row(tmp_path, normal):
    """Two atypical images above `normal` normal ones: every metric is 1 (up to float noise
    below) and the row validates
    (average precision summed 1 + 2e-16 for 9, 20 or 21 normal images, and the set was refused)."""
    y = np.r_[[True, True], [False] * normal]
    m = stats.fold_metrics(y, np.r_[[0.9, 0.8], np.linspace(0.1, 0.3, normal)])
    assert m["balanced_accuracy"] == m["auroc"] == 1.0 and 1.0 - 1e-12 < m["pr_auc"] <= 1.0
    row = {"model": "UNI", "method": "lora", "dataset": "AMi-Br", "fold": 1, **m}
    assert load_results_set(write_results_set(tmp_path, [row])).rows[0].pr_auc == m["pr_auc"]
