"""Results sets: the paper set loads; every corruption gives ONE ResultsError naming the file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from harness import results
from harness.results import (
    FOLD_COLUMNS,
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


def test_write_then_load_round_trip(tmp_path):
    preds = _preds(6, step=0.1)
    out = write_results_set(
        tmp_path / "set",
        grid(),
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
    write_results_set(tmp_path, grid(), predictions=_preds(4), manifest={"name": "old"})
    assert len(load_results_set(tmp_path).predictions) == 4
    real = results.paths.atomic_write

    def crash_at_manifest(path, data):
        if Path(path).name == "manifest.json":
            raise KeyboardInterrupt("power cut")
        return real(path, data)

    monkeypatch.setattr(results.paths, "atomic_write", crash_at_manifest)
    with pytest.raises(KeyboardInterrupt):
        write_results_set(tmp_path, grid(), predictions=_preds(6), manifest={"name": "new"})
    monkeypatch.undo()
    with pytest.raises(ResultsError, match=r"predictions.csv: does not match the sha256"):
        load_results_set(tmp_path)
    write_results_set(tmp_path, grid(), predictions=_preds(6), manifest={"name": "new"})
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
    write_results_set(tmp_path, grid(), predictions=_preds(4), manifest={"name": "kept"})
    write_results_set(tmp_path, grid())  # predictions and manifest kept
    rs = load_results_set(tmp_path)
    assert rs.name == "kept" and len(rs.predictions) == 4


def test_predictions_must_match_folds():
    rows = validate_fold_rows(grid())
    bad = [
        {
            "model": "UNI",
            "method": "lora",
            "dataset": "AMi-Br",
            "fold": "9",
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
