"""Faults a run must refuse or name (issue 8): a class missing from a test set or fold, and
non-finite embeddings, logits or loss. One line and exit 2 from the CLI, nothing half-written."""

from __future__ import annotations

import csv
import shutil
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch

from harness import cli, config, data, embeddings, models, runner, smoke, splits, taskdata, trainer
from harness.store import Store

QUICK = {
    "linear_probe": (("lr", 1e-2), ("max_epochs", 2)),
    "end_to_end": (("lr", 1e-3), ("max_epochs", 1)),
}


@pytest.fixture()
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("AMIBR_CACHE", str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture()
def tree(synth_root, tmp_path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(synth_root, root)
    return root


def _error_line(capsys) -> str:
    """The CLI's one error line (the run command also prints its configuration first)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("amibr-bench: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --- a class missing -------------------------------------------------------------------------


def _rewrite_csv(path: Path, keep=lambda row: True, change=lambda row: row) -> None:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        header, rows = reader.fieldnames, list(reader)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(change(dict(r)) for r in rows if keep(r))


def _empty_atnorm_br_atypical(root: Path):
    for png in (root / "AtNorM-Br" / "Atypical").iterdir():
        png.unlink()
    return (
        root / "AtNorM-Br" / "Atypical",
        "AtNorM-Br holds no Atypical",
        "test set synthetic:AtNorM-Br",
    )


def _atnorm_md_without_normal(root: Path):
    shutil.rmtree(root / "AtNorM-MD" / "Normal")
    (root / "AtNorM-MD" / "Normal").mkdir()
    _rewrite_csv(root / data.VOTES_CSV, keep=lambda r: r["Majority"] != "Normal")
    return (
        root / "AtNorM-MD" / "Normal",
        "AtNorM-MD holds no Normal",
        "test set synthetic:AtNorM-MD",
    )


def _amibr_test_split_without_atypical(root: Path):
    gone = {
        r.name
        for r in data.load_records(root, "AMi-Br")
        if r.split == "test" and r.label == "Atypical"
    }
    for name in gone:
        (root / "AMi-Br" / "Atypical" / name).unlink()
    _rewrite_csv(root / data.AMIBR_CSV, keep=lambda r: f"{r['dataset']}_{r['uid']}.png" not in gone)
    return root / data.TRAIN_CSV, "test split", "test set synthetic:AMi-Br"


def _folds_without_atypical(root: Path):
    """Every atypical training figure on one slide: StratifiedGroupKFold keeps a slide in one
    fold, so the other folds' validation splits hold no atypical figure."""
    atypical = {r.name for r in data.load_records(root, "AMi-Br") if r.label == "Atypical"}

    def one_slide(row):
        name = row.get("dataset_uid") or f"{row['dataset']}_{row['uid']}.png"
        return {**row, "slide": "all-atypical.tiff"} if name in atypical else row

    for name in (data.AMIBR_CSV, data.TRAIN_CSV):
        _rewrite_csv(root / name, change=one_slide)
    splits.write_synthetic_folds(root)  # the tree's own folds, drawn again over the new slides
    return root / data.TRAIN_CSV, "validation split", "validation split"


MISSING_CLASS = {
    "atnorm-br-empty-atypical-folder": _empty_atnorm_br_atypical,
    "atnorm-md-without-normal": _atnorm_md_without_normal,
    "amibr-test-split-without-atypical": _amibr_test_split_without_atypical,
    "folds-without-atypical": _folds_without_atypical,
}


@pytest.mark.parametrize("case", list(MISSING_CLASS))
def test_verify_reports_a_missing_class(tree, case, capsys) -> None:
    path, fragment, _ = MISSING_CLASS[case](tree)
    problems = data.verify(tree)
    assert problems, "a tree with a test set or fold lacking a class is not sound"
    assert all(p.path == path for p in problems), "\n".join(map(str, problems))
    assert fragment in problems[0].message and "both classes" in problems[0].message
    assert cli.main(["data", "verify", "--data-root", str(tree)]) == 1
    assert capsys.readouterr().out.splitlines() == [str(p) for p in problems]


def _cli_run(tree: Path, store: Path) -> int:
    return cli.main(
        ["run", "--config", "smoke-resnet:e2e", "--tier", "smoke", "--device", "cpu"]
        + ["--data-root", str(tree), "--store", str(store)]
    )


def _full_tier(tree: Path, store: Path) -> None:
    task = taskdata.load_task(tree, "synthetic")
    runner.ensure_trained("smoke-resnet", "end_to_end", store_dir=store, device="cpu", task=task)


def _smoke_job(tree: Path, store: Path) -> None:
    smoke.cli_smoke(Namespace(store=str(store), synthetic=False, data_root=str(tree)))


@pytest.mark.parametrize("entry", ["run", "full-tier", "smoke-job"])
@pytest.mark.parametrize("case", list(MISSING_CLASS))
def test_runs_refuse_a_missing_class_before_training(
    tree, cache_env, case, entry, monkeypatch, capsys
) -> None:
    _, _, fragment = MISSING_CLASS[case](tree)

    def no_training(*_a, **_k):
        raise AssertionError("trained before checking the classes")

    monkeypatch.setattr(runner, "fit", no_training)
    store = cache_env / "store"
    if entry == "run":
        assert _cli_run(tree, store) == 2
        line = _error_line(capsys)
        assert fragment.split(":")[-1] in line and "both classes" in line
    else:
        with pytest.raises(runner.MissingClassError, match=fragment.split(":")[-1]):
            (_full_tier if entry == "full-tier" else _smoke_job)(tree, store)
    assert not list(store.glob("**/result.json")) and not list(store.glob("**/config.json"))


def test_class_gaps_name_the_test_set_and_fold(synth_root, cache_env) -> None:
    task = taskdata.load_task(synth_root, "synthetic")
    assert runner.class_gaps(task, (1, 2, 3, 4, 5)) == []
    task.pool_labels = np.where(task.pool_folds == 3, 1, task.pool_labels)  # fold 3: no atypical
    task.tests["synthetic:AtNorM-MD"].labels = np.zeros_like(
        task.tests["synthetic:AtNorM-MD"].labels
    )
    gaps = runner.class_gaps(task, (1, 3))
    assert gaps == [
        f"test set synthetic:AtNorM-MD ({len(task.tests['synthetic:AtNorM-MD'].labels)} images) "
        "holds no Normal image",
        f"fold 3: the validation split ({int((task.pool_folds == 3).sum())} images) holds no "
        "Atypical image",
    ]


# --- non-finite numbers ----------------------------------------------------------------------


def _cfg(key: str, method: str) -> config.RunConfig:
    return config.RunConfig(key, method, tier="smoke", data="synthetic", overrides=QUICK[method])


def _nan_embed(monkeypatch) -> None:
    real = models.embed
    monkeypatch.setattr(models, "embed", lambda m, s, x: real(m, s, x) * torch.tensor(float("nan")))


def _nan_logits(monkeypatch) -> None:
    real = models.logits
    monkeypatch.setattr(models, "logits", lambda m, x: real(m, x) + float("nan"))


def _nan_loss(monkeypatch) -> None:
    class NanLoss(torch.nn.BCEWithLogitsLoss):
        def forward(self, logits, target):
            return super().forward(logits, target) * float("nan")

    monkeypatch.setattr(torch.nn, "BCEWithLogitsLoss", NanLoss)


NON_FINITE = {  # what goes wrong -> (configuration, how, message fragments)
    "embeddings": (("smoke-vit", "linear_probe"), _nan_embed, ("folds 1 (", "embeddings")),
    "logits": (("smoke-resnet", "end_to_end"), _nan_logits, ("fold 1", "logits")),
    "loss": (("smoke-vit", "linear_probe"), _nan_loss, ("fold 1", "loss")),
}


@pytest.mark.parametrize("what", list(NON_FINITE))
def test_non_finite_numbers_stop_the_fold_and_are_never_stored(
    synth_task, cache_env, what, monkeypatch
) -> None:
    (key, method), poison, fragments = NON_FINITE[what]
    cfg = _cfg(key, method)
    store = Store(cache_env / "store")
    cache = embeddings.EmbeddingCache(cache_env / "emb")
    with monkeypatch.context() as mp:
        poison(mp)
        with pytest.raises(trainer.NonFiniteError) as info:
            runner.run_config(cfg, synth_task, store, (1,), embedding_cache=cache)
    message = str(info.value)
    assert info.value.what == what
    assert message.startswith(f"{cfg.spec.name} {method}, ")
    assert all(f in message for f in fragments) and "likely cause: " in message
    assert store.done_folds(cfg.hash) == []
    if what == "embeddings":
        assert not list(cache.root.glob("*.npz"))
    report = runner.run_config(cfg, synth_task, store, (1,), embedding_cache=cache)  # healthy again
    assert report.folds_done == [1] and store.done_folds(cfg.hash) == [1]
    if method == "linear_probe":  # nothing non-finite was cached: the rerun is clean
        emb = np.load(next(cache.root.glob("*.npz")))["emb"]
        assert np.isfinite(emb).all()


def test_cli_reports_non_finite_numbers_in_one_line(synth_root, cache_env, monkeypatch, capsys):
    _nan_embed(monkeypatch)
    code = cli.main(
        ["run", "--config", "smoke-vit:lp", "--tier", "smoke", "--device", "cpu", "--folds", "1"]
        + ["--data-root", str(synth_root), "--store", str(cache_env / "store")]
    )
    line = _error_line(capsys)
    assert code == 2 and "non-finite embeddings" in line and "linear_probe, folds 1 " in line
    assert embeddings.FP32_HINT in line
    assert not list((cache_env / "store").glob("**/result.json"))


def test_a_poisoned_cache_entry_is_recomputed(cache_env) -> None:
    """Rows an older version cached non-finite are misses, never served."""
    cache = embeddings.EmbeddingCache(cache_env / "emb")
    images = torch.arange(3 * 4, dtype=torch.float32).reshape(3, 4)
    hashes = ["a", "b", "c"]
    cache.get("k", hashes, images, lambda x: x)
    with np.load(cache.root / "k.npz") as npz:
        table = {"hashes": npz["hashes"], "emb": npz["emb"].copy()}
    table["emb"][1] = np.inf
    np.savez(cache.root / "k.npz", **table)
    emb, stats = cache.get("k", hashes, images, lambda x: x)
    assert stats["computed"] == 1 and torch.equal(emb, images)


def test_embedding_hint_names_fp16_autocast_only_when_it_was_used() -> None:
    err = trainer.NonFiniteError("embeddings", "2 of 8 values")
    err.locate(model="UNI", hint=embeddings.FP16_HINT)
    err.locate(model="UNI linear_probe", fold="folds 1-5", hint="ignored: the inner one stays")
    assert str(err) == (
        "UNI linear_probe, folds 1-5: non-finite embeddings (2 of 8 values); likely cause: "
        "fp16 overflow under autocast; try --preset paper (fp32 embeddings); nothing of it was "
        "stored"
    )
    assert isinstance(err, trainer.paths.RunFailed) and not isinstance(err, ValueError)


def test_full_tier_plan_goes_on_after_a_failed_configuration(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(runner, "missing_for", lambda *a, **k: [])
    trained = []

    def ensure(key, method, **_kw):
        if key == "uni":
            raise trainer.NonFiniteError("embeddings", "1 of 4 values", model="UNI")
        trained.append((key, method))

    monkeypatch.setattr(runner, "ensure_trained", ensure)
    skipped = runner.train_plan(tmp_path / "full", device="cpu")
    assert set(skipped) == {"uni:linear_probe", "uni:lora"}
    assert all(why.startswith("failed: UNI: non-finite embeddings") for why in skipped.values())
    assert len(trained) == 15


@pytest.mark.gpu
def test_fp16_overflow_under_autocast_is_named_on_cuda() -> None:
    """A real overflow: patch-embedding weights so large that fp16 (max 65504) overflows while
    fp32 does not. Under autocast the embeddings are refused with the fp16 hint."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device: torch.cuda.is_available() is False on this machine")
    backbone = models.load_backbone("smoke-vit")
    with torch.no_grad():
        backbone.model.patch_embed.proj.weight.mul_(1e6)
    spec, device = backbone.spec, torch.device("cuda")
    images = torch.randint(0, 255, (4, 128, 128, 3), dtype=torch.uint8)
    transform = embeddings.Transform(spec, "linear_probe", spec.img_size, train=False)
    fp32 = embeddings.compute_embeddings(backbone, images, transform, device, autocast=False)
    assert torch.isfinite(fp32).all()
    with pytest.raises(trainer.NonFiniteError, match="fp16 overflow under autocast"):
        embeddings.compute_embeddings(backbone, images, transform, device, autocast=True)
