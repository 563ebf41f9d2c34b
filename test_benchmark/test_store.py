"""Results store: atomic fold folders, completion markers, stale configurations."""

from __future__ import annotations

import json

import pytest
import torch

from harness.store import Store, StoreError

ROW = {
    "model": "UNI",
    "method": "lora",
    "dataset": "AMi-Br",
    "fold": 1,
    "balanced_accuracy": 0.8,
    "auroc": 0.9,
    "pr_auc": float("nan"),
}
PRED = {
    "model": "UNI",
    "method": "lora",
    "dataset": "AMi-Br",
    "fold": 1,
    "image": "a.png",
    "label": "Normal",
    "prob_atypical": 0.25,
}


def test_fold_round_trip(tmp_path) -> None:
    store = Store(tmp_path)
    store.register("h1", {"label": "UNI|lora|paper|full|real"})
    assert not store.is_done("h1", 1)
    store.save_fold("h1", 1, [ROW], [PRED], state={"w": torch.ones(2)}, info={"best_epoch": 3})
    assert store.is_done("h1", 1) and store.done_folds("h1") == [1]
    metrics, preds, info = store.load_fold("h1", 1)
    assert metrics[0]["auroc"] == 0.9 and info == {"best_epoch": 3}
    assert preds[0]["image"] == "a.png" and float(preds[0]["prob_atypical"]) == 0.25
    assert (store.fold_dir("h1", 1) / "best.safetensors").is_file()
    assert not list(store.config_dir("h1").glob(".*tmp"))


def test_leftover_without_marker_is_not_done(tmp_path) -> None:
    """A crash mid-write leaves a temporary folder or a folder without result.json: not done."""
    store = Store(tmp_path)
    (store.config_dir("h") / ".fold-1.999.tmp").mkdir(parents=True)
    (store.fold_dir("h", 2)).mkdir(parents=True)
    (store.fold_dir("h", 2) / "predictions.csv").write_text("partial")
    assert store.done_folds("h") == []
    store.save_fold("h", 2, [ROW], [PRED])
    assert store.done_folds("h") == [2]


def test_register_refuses_a_different_config_under_one_hash(tmp_path) -> None:
    store = Store(tmp_path)
    store.register("h", {"a": 1})
    store.register("h", {"a": 1})
    with pytest.raises(StoreError, match="different configuration"):
        store.register("h", {"a": 2})


def test_stale_configurations(tmp_path) -> None:
    store = Store(tmp_path)
    store.register("old", {"label": "UNI|lora|paper|full|real"})
    store.register("new", {"label": "UNI|lora|paper|full|real"})
    store.register("other", {"label": "UNI|linear_probe|paper|full|real"})
    assert store.stale({"UNI|lora|paper|full|real": "new"}) == {"UNI|lora|paper|full|real": ["old"]}
    assert json.loads((store.config_dir("old") / "config.json").read_text())["label"]
