"""Broken state on disk, two writers, and a store holding several configurations (issue 8).

Damage to a store or cache file is a miss (trained or computed again) or is named, never a crash;
two processes running one configuration into one store train each fold once; the store's
results set holds every configuration run into it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from harness import cli, config, embeddings, export, models, paths, runner
from harness.results import load_results_set
from harness.store import Store, StoreError

LP = (("lr", 1e-2), ("max_epochs", 2))
CFG = config.RunConfig("smoke-vit", "linear_probe", tier="smoke", data="synthetic", overrides=LP)
PAPER = config.RunConfig("uni", "lora")  # a Table 3 configuration, so `plan` shows its folds


@pytest.fixture(scope="module")
def emb_cache(tmp_path_factory) -> embeddings.EmbeddingCache:
    return embeddings.EmbeddingCache(tmp_path_factory.mktemp("embeddings"))


@pytest.fixture(scope="module")
def pristine(synth_task, emb_cache, tmp_path_factory) -> Path:
    """A store with two finished folds of a trained smoke configuration and of a Table 3 one."""
    root = tmp_path_factory.mktemp("store") / "store"
    store = Store(root)
    runner.run_config(CFG, synth_task, store, (1, 2), embedding_cache=emb_cache)
    store.register(PAPER.hash, PAPER.describe())
    metrics, preds, _ = store.load_fold(CFG.hash, 1)
    for fold in (1, 2):
        store.save_fold(PAPER.hash, fold, metrics, preds, state={"w": torch.ones(3)}, info={})
    return root


@pytest.fixture()
def damaged_store(pristine, tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("AMIBR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(models, "_hf_cache_dir", lambda: tmp_path / "hf")
    root = tmp_path / "store"
    shutil.copytree(pristine, root)
    return root


# --- kinds of damage ---------------------------------------------------------------------------


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage(path: Path) -> None:  # same size: only the content says it is wrong
    path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _delete(path: Path) -> None:
    path.unlink()


def _wrong_json_type(path: Path) -> None:
    if path.name == "result.json":
        path.write_text(json.dumps({"fold": "1", "metrics": {"auroc": 1}, "info": []}))
    else:
        path.write_text(json.dumps(["a", "list", "not", "an", "object"]))


DAMAGE = {
    "truncated": _truncate,
    "garbage": _garbage,
    "empty": _empty,
    "deleted": _delete,
    "wrong-json-type": _wrong_json_type,
}
STORE_FILES = {  # file -> the damages that apply to it
    "result.json": list(DAMAGE),
    "config.json": list(DAMAGE),
    "predictions.csv": ["truncated", "garbage", "empty", "deleted"],
    "best.safetensors": ["truncated", "garbage", "empty", "deleted"],
}


def _target(store: Store, cfg_hash: str, name: str) -> Path:
    folder = store.config_dir(cfg_hash) if name == "config.json" else store.fold_dir(cfg_hash, 1)
    return folder / name


@pytest.mark.parametrize("name,damage", [(n, d) for n, kinds in STORE_FILES.items() for d in kinds])
def test_a_damaged_store_file_is_redone_or_named_never_a_crash(
    damaged_store, synth_task, emb_cache, name, damage, capsys
) -> None:
    store = Store(damaged_store)
    for h in (CFG.hash, PAPER.hash):
        DAMAGE[damage](_target(store, h, name))
    if name == "config.json":
        assert CFG.hash not in store.configs() and PAPER.hash not in store.configs()
        assert str(_target(store, CFG.hash, name)) in store.damaged_configs()
        assert store.done_folds(CFG.hash) == [1, 2]
    else:
        assert store.done_folds(CFG.hash) == [2] and list(store.damaged_folds(CFG.hash)) == [1]
        with pytest.raises(StoreError, match=str(store.fold_dir(CFG.hash, 1))):
            store.load_fold(CFG.hash, 1)

    # `plan --store` shows how far the store got, whatever the damage
    args = ["plan", "--json", "--store", str(damaged_store)]
    assert cli.main(args) == 0
    row = {r["config"]: r for r in json.loads(capsys.readouterr().out)}["uni:lora"]
    assert row["folds_done"] == ([1, 2] if name == "config.json" else [2])
    assert list(row["damaged_folds"]) == ([] if name == "config.json" else ["1"])
    assert cli.main(args[:1] + args[2:]) == 0
    assert "damaged" in capsys.readouterr().out or name == "config.json"

    # the next run redoes exactly what was damaged, and the store exports whole again
    report = runner.run_config(CFG, synth_task, store, (1, 2), embedding_cache=emb_cache)
    assert report.folds_done == ([] if name == "config.json" else [1])
    assert store.done_folds(CFG.hash) == [1, 2] and CFG.hash in store.configs()
    exported, _notes = export.current_configs(store, tier="smoke", preset="paper", data="synthetic")
    assert [c.hash for c in exported] == [CFG.hash]
    out = export.export_results(
        store, exported, damaged_store, name="t", tier="smoke", preset="paper", data="synthetic"
    )
    rs = load_results_set(out)
    assert rs.folds(CFG.spec.name, "linear_probe", "synthetic:AMi-Br") == [1, 2]


def test_a_fold_folder_that_is_not_a_fold_is_ignored(tmp_path) -> None:
    store = Store(tmp_path)
    for junk in ("fold-1-2", "fold-", "fold-x"):
        (store.config_dir("h") / junk / "result.json").parent.mkdir(parents=True)
    (store.config_dir("h") / "fold-3").write_text("a file, not a folder")
    assert store.done_folds("h") == [] and store.damaged_folds("h") == {3: "fold-3 is not a folder"}
    store.save_fold("h", 3, [], [])
    assert store.done_folds("h") == [3] and store.damaged_folds("h") == {}


def test_plan_tolerates_stray_files_in_a_store(tmp_path, capsys) -> None:
    store = tmp_path / "store"
    (store / "configs").mkdir(parents=True)
    (store / "configs" / "abc").write_text("a file where a configuration folder belongs")
    assert cli.main(["plan", "--json", "--store", str(store)]) == 0
    assert json.loads(capsys.readouterr().out)[0]["folds_done"] == []


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "deleted", "wrong-arrays"])
def test_a_damaged_embedding_cache_entry_is_a_miss(tmp_path, damage) -> None:
    cache = embeddings.EmbeddingCache(tmp_path)
    images = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    hashes = ["a", "b", "c"]
    calls = []

    def compute(x):
        calls.append(len(x))
        return x

    cache.get("k", hashes, images, compute)
    entry = tmp_path / "k.npz"
    if damage == "wrong-arrays":
        np.savez(entry, hashes=np.array(hashes), emb=np.zeros(3))  # 1-D: not one row per image
    else:
        DAMAGE[damage](entry)
    emb, stats = cache.get("k", hashes, images, compute)
    assert calls == [3, 3] and stats["computed"] == 3 and torch.equal(emb, images)
    again, stats = cache.get("k", hashes, images, compute)  # the rewritten entry is whole
    assert stats["cache_hits"] == 3 and torch.equal(again, images) and calls == [3, 3]


# --- two writers, one store --------------------------------------------------------------------

WORKER = r"""
import json, sys, time
from pathlib import Path
from harness import config, embeddings, runner, taskdata
from harness.store import Store

root, store_dir, sync, me = sys.argv[1:5]
task = taskdata.load_task(Path(root), "synthetic")
cfg = config.RunConfig("smoke-vit", "linear_probe", tier="smoke", data="synthetic",
                       overrides=(("lr", 1e-2), ("max_epochs", 2)))
Path(sync, "ready-" + me).touch()
while not Path(sync, "go").exists():
    time.sleep(0.01)
before = embeddings.FORWARD_COUNTER["images"]
report = runner.run_config(cfg, task, Store(store_dir), (1, 2, 3), device="cpu")
print(json.dumps({"trained": report.folds_done, "reused": report.folds_skipped,
                  "embedded": embeddings.FORWARD_COUNTER["images"] - before}))
"""


def test_two_processes_train_each_fold_once(synth_root, tmp_path, synth_task) -> None:
    """Two identical runs started together into one store (and one embedding cache): each fold
    is trained by one of them, each embedding computed once; the store holds every fold."""
    sync = tmp_path / "sync"
    sync.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(paths.REPO_ROOT),
        "AMIBR_CACHE": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "1",
    }
    store_dir = tmp_path / "store"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(synth_root), str(store_dir), str(sync), str(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    deadline = time.monotonic() + 300
    while len(list(sync.glob("ready-*"))) < 2:
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), [
            p.communicate() for p in procs if p.poll() is not None
        ]
        time.sleep(0.05)
    (sync / "go").touch()
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert sorted(f for r in reports for f in r["trained"]) == [1, 2, 3]
    assert all(sorted(r["trained"] + r["reused"]) == [1, 2, 3] for r in reports)
    n_images = len(synth_task.pool_labels) + sum(len(t.labels) for t in synth_task.tests.values())
    assert sum(r["embedded"] for r in reports) == n_images
    assert Store(store_dir).done_folds(CFG.hash) == [1, 2, 3]


def test_fold_lock_excludes_another_process(tmp_path) -> None:
    store = Store(tmp_path)
    probe = (
        "import sys; from filelock import FileLock, Timeout\n"
        "try:\n    FileLock(sys.argv[1]).acquire(timeout=0); print('acquired')\n"
        "except Timeout:\n    print('busy')"
    )
    path = store.config_dir("h") / ".fold-1.lock"

    def other() -> str:
        cmd = [sys.executable, "-c", probe, str(path)]
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()

    with store.fold_lock("h", 1), store.fold_lock("h", 1):  # re-entrant in one process
        assert other() == "busy"
        store.save_fold("h", 1, [], [])  # save_fold takes the same lock: no deadlock
    assert other() == "acquired" and store.done_folds("h") == [1]


# --- a store holding several configurations ----------------------------------------------------


def test_run_exports_every_configuration_of_the_store(synth_root, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AMIBR_CACHE", str(tmp_path / "cache"))
    store = tmp_path / "store"
    for name in ("smoke-vit:lp", "smoke-resnet:e2e"):
        code = cli.main(
            ["run", "--config", name, "--tier", "smoke", "--device", "cpu", "--folds", "1"]
            + ["--data-root", str(synth_root), "--store", str(store)]
        )
        assert code == 0
    rs = load_results_set(store)
    assert set(rs.configurations) == {
        ("smoke ViT-Ti/16", "linear_probe"),
        ("smoke ResNet10-T", "end_to_end"),
    }
    assert {(r.model, r.fold) for r in rs.rows} == {
        ("smoke ViT-Ti/16", 1),
        ("smoke ResNet10-T", 1),
    }
    statuses = {k: v["status"] for k, v in rs.manifest["configs"].items()}
    assert statuses["smoke ViT-Ti/16|linear_probe"] == statuses["smoke ResNet10-T|end_to_end"]
    assert statuses["smoke ViT-Ti/16|linear_probe"] == "done"


def test_current_configs_leave_out_other_tiers_and_stale_hashes(tmp_path) -> None:
    store = Store(tmp_path)
    other = config.RunConfig("uni", "lora", preset="reference-code")
    for cfg in (PAPER, other):
        store.register(cfg.hash, cfg.describe())
        store.save_fold(cfg.hash, 1, [], [])
    store.register("0ld0ld0ld0ld0ld0", {**PAPER.describe(), "registry_version": "0"})
    store.save_fold("0ld0ld0ld0ld0ld0", 1, [], [])
    assert export.config_from_description(PAPER.describe()).hash == PAPER.hash
    got, notes = export.current_configs(store, tier="full", preset="paper", data="real")
    assert [c.hash for c in got] == [PAPER.hash]
    assert notes == [
        f"the store also holds {other.label} (hash {other.hash}), not in this results set"
    ]
