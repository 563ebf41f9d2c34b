"""The training loop: each strategy learns, embedding cache, resumption, determinism, presets."""

from __future__ import annotations

import json
from argparse import Namespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st_
from paper_table3 import TABLE3

from harness import (
    config,
    embeddings,
    export,
    models,
    plan,
    runner,
    stats,
    trainer,
    transforms,
)
from harness.claims import Claim, Context, evaluate
from harness.results import load_results_set
from harness.store import Store

REFERENCE_CONFIGS = set(TABLE3)
QUICK = {
    "linear_probe": (("lr", 1e-2), ("max_epochs", 3)),
    "lora": (("lr", 3e-4), ("head_lr", 1e-2), ("max_epochs", 1)),
    "end_to_end": (("lr", 1e-3), ("max_epochs", 1)),
}


@pytest.fixture()
def task(synth_task):
    """The committed synthetic fixture through the real data layer and image cache (conftest)."""
    return synth_task


@pytest.fixture()
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("AMIBR_CACHE", str(tmp_path / "cache"))
    return tmp_path


def _cfg(key: str, method: str, seed: int = 0) -> config.RunConfig:
    return config.RunConfig(
        key, method, tier="smoke", data="synthetic", seed=seed, overrides=QUICK[method]
    )


def _results(store: Store, cfg: config.RunConfig, folds) -> list:
    out = []
    for f in folds:
        metrics, preds, _ = store.load_fold(cfg.hash, f)
        out.append((metrics, [(p["image"], p["prob_atypical"]) for p in preds]))
    return out


def test_task_from_synthetic_fixture(task) -> None:
    assert task.slide_overlaps == []
    assert set(task.tests) == {"synthetic:AMi-Br", "synthetic:AtNorM-Br", "synthetic:AtNorM-MD"}
    assert task.pool_images.dtype == torch.uint8 and task.pool_images.shape[1:] == (128, 128, 3)
    assert set(np.unique(task.pool_folds)) == {1, 2, 3, 4, 5}
    assert len(task.pool_labels) + len(task.tests["synthetic:AMi-Br"].labels) == 240


@pytest.mark.parametrize(
    "key,method",
    [("smoke-vit", "linear_probe"), ("smoke-vit", "lora"), ("smoke-resnet", "end_to_end")],
)
def test_fit_a_few_batches_learns(task, key, method) -> None:
    """Loss on a fixed small batch falls; trainable tensors move, frozen ones do not."""
    spec = models.get_spec(key)
    torch.manual_seed(0)
    backbone = models.load_backbone(key).model
    t_eval = transforms.Transform(spec, method, spec.img_size, train=False)
    idx = torch.arange(24)
    x, y = task.pool_images[idx], task.pool_labels[:24]
    if method == "linear_probe":
        with torch.no_grad():
            x = models.embed(backbone.eval(), spec, t_eval(x, torch.device("cpu")))
        model = torch.nn.Linear(x.shape[1], 1)
        forward = runner._forward_embeddings(torch.device("cpu"))
    else:
        model = models.attach_head(backbone)
        if method == "lora":
            model = models.wrap_lora(model)
        forward = runner._forward_images(t_eval, t_eval, torch.device("cpu"))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    lora = method == "lora"  # random-init backbone: small adapter steps, fast head
    hp = config.Hyper(
        lr=3e-4 if lora else 3e-3, head_lr=3e-2 if lora else None, max_epochs=8, early_stopping=100
    )
    result = trainer.fit(model, forward, x, y, x, y, hp, seed=0, device=torch.device("cpu"))
    losses = [h["loss"] for h in result.history]
    assert np.mean(losses[-2:]) < np.mean(losses[:2]), losses
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert changed and changed <= trainable
    if method == "lora":
        assert any("lora_A" in n for n in changed) and any("head" in n for n in changed)
        assert not any("lora" not in n and "head" not in n for n in changed)


def test_linear_probe_embeds_once_and_reuses_the_cache(task, cache_env) -> None:
    cfg = _cfg("smoke-vit", "linear_probe")
    first = runner.run_config(cfg, task, Store(cache_env / "a"), (1, 2, 3))
    n_images = len(task.pool_labels) + sum(len(t.labels) for t in task.tests.values())
    assert first.counters["backbone_forward_images"] == first.counters["unique_images"] == n_images
    before = embeddings.FORWARD_COUNTER["images"]
    second = runner.run_config(cfg, task, Store(cache_env / "b"), (1, 2, 3))
    assert embeddings.FORWARD_COUNTER["images"] == before
    assert second.counters["backbone_forward_images"] == 0
    assert second.counters["embedding_cache_hits"] == n_images
    assert _results(Store(cache_env / "a"), cfg, (1, 2, 3)) == _results(
        Store(cache_env / "b"), cfg, (1, 2, 3)
    )


def test_embedding_cache_key_tracks_weights_and_transform(cache_env) -> None:
    cache = embeddings.EmbeddingCache(cache_env)
    bb = models.load_backbone("smoke-vit")
    key = cache.key(bb, "t", 64, False)
    assert key != cache.key(bb, "t2", 64, False)
    assert key != cache.key(bb, "t", 64, True)
    other = models.Backbone(bb.model, bb.spec, "0" * 64, None)
    assert key != cache.key(other, "t", 64, False)


def test_interrupted_run_resumes_to_the_same_results(task, cache_env) -> None:
    cfg = _cfg("smoke-resnet", "end_to_end")
    whole = Store(cache_env / "whole")
    runner.run_config(cfg, task, whole, (1, 2))
    broken = Store(cache_env / "broken")
    with pytest.raises(KeyboardInterrupt, match="after fold 1"):
        runner.run_config(cfg, task, broken, (1, 2), fail_after_fold=1)
    assert broken.done_folds(cfg.hash) == [1]
    resumed = runner.run_config(cfg, task, broken, (1, 2))
    assert resumed.folds_skipped == [1] and resumed.folds_done == [2]
    assert _results(whole, cfg, (1, 2)) == _results(broken, cfg, (1, 2))


def test_same_seed_same_results_other_seed_differs(task, cache_env) -> None:
    runs = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        cfg = _cfg("smoke-vit", "lora", seed)
        runner.run_config(cfg, task, Store(cache_env / name), (1,))
        runs.append(_results(Store(cache_env / name), cfg, (1,)))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_presets() -> None:
    paper = config.hyperparameters("prov-gigapath", "linear_probe", "paper")
    ref = config.hyperparameters("prov-gigapath", "linear_probe", "reference-code")
    assert (paper.lr, paper.weight_decay, ref.lr, ref.weight_decay) == (5e-5, 1e-5, 1e-3, 1e-4)
    assert config.hyperparameters("uni", "lora", "paper").early_stopping == 15
    assert config.hyperparameters("uni", "lora", "reference-code").early_stopping == 10
    assert config.hyperparameters("uni", "linear_probe", "reference-code").early_stopping == 15
    hp = config.hyperparameters("swin-b", "end_to_end", "paper")
    assert (hp.max_epochs, hp.batch_size, hp.plateau_factor, hp.plateau_patience, hp.min_lr) == (
        100,
        8,
        0.5,
        3,
        1e-7,
    )
    with pytest.raises(ValueError):
        config.hyperparameters("uni", "lora", "no-such-preset")


def test_config_hash_keys_everything() -> None:
    base = config.RunConfig("uni", "lora")
    assert base.hash == config.RunConfig("uni", "lora").hash
    for other in (
        config.RunConfig("uni", "linear_probe"),
        config.RunConfig("uni", "lora", preset="reference-code"),
        config.RunConfig("uni", "lora", tier="smoke"),
        config.RunConfig("uni", "lora", seed=1),
    ):
        assert other.hash != base.hash
    with pytest.raises(ValueError, match="runs linear_probe, lora"):
        config.RunConfig("uni", "end_to_end")


def test_weighted_sampler_balances_classes() -> None:
    labels = np.array([0] * 10 + [1] * 90)
    w = trainer.class_weights(labels)
    assert torch.isclose(w[labels == 0].sum(), w[labels == 1].sum())
    with pytest.raises(ValueError, match="lacks a class"):
        trainer.class_weights(np.ones(5, dtype=int))


def test_metrics_treat_normal_as_positive() -> None:
    is_atypical = np.array([False, False, False, True])
    prob_atypical = np.array([0.1, 0.2, 0.6, 0.7])
    m = stats.fold_metrics(is_atypical, prob_atypical)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    assert m["auroc"] == 1.0 and m["pr_auc"] == 1.0


@settings(max_examples=60, deadline=None)
@given(
    st_.lists(st_.tuples(st_.booleans(), st_.integers(0, 20)), min_size=2, max_size=40).filter(
        lambda rows: 0 < sum(a for a, _ in rows) < len(rows)
    )
)
def test_fold_metrics_agree_with_sklearn(rows) -> None:
    """The harness's one metric definition equals sklearn's, ties and the 0.5 threshold included."""
    from sklearn.metrics import average_precision_score, balanced_accuracy_score, roc_auc_score

    is_atypical = np.array([a for a, _ in rows])
    prob_atypical = np.array([k / 20 for _, k in rows])
    normal, prob_normal = (~is_atypical).astype(int), 1.0 - prob_atypical
    m = stats.fold_metrics(is_atypical, prob_atypical)
    assert m["balanced_accuracy"] == pytest.approx(
        balanced_accuracy_score(normal, (prob_normal > 0.5).astype(int))
    )
    assert m["auroc"] == pytest.approx(roc_auc_score(normal, prob_normal))
    assert m["pr_auc"] == pytest.approx(average_precision_score(normal, prob_normal))


def test_fold_metrics_refuse_one_class() -> None:
    with pytest.raises(ValueError, match="both classes"):
        stats.fold_metrics(np.zeros(4, bool), np.full(4, 0.3))


def test_transforms() -> None:
    spec = models.get_spec("prov-gigapath")
    assert (
        "Resize(256, bicubic), CenterCrop(224)"
        in transforms.describe_transforms(spec, "linear_probe", 224)["eval"]
    )
    x = torch.full((2, 128, 128, 3), 255, dtype=torch.uint8)
    out = transforms.Transform(spec, "linear_probe", 224, train=False)(x, torch.device("cpu"))
    assert out.shape == (2, 3, 224, 224)
    assert torch.allclose(out[:, 0], torch.tensor((1 - 0.485) / 0.229))
    virchow = transforms.train_steps(models.get_spec("virchow"), "lora", 224)
    assert virchow[0] == "RandomResizedCrop(224, scale=(0.8,1))"
    assert transforms.train_steps(models.get_spec("h-optimus-1"), "lora", 224)[0] == "Resize(224)"
    torch.manual_seed(0)
    noisy = torch.randint(0, 255, (4, 128, 128, 3), dtype=torch.uint8)
    aug = transforms.Transform(models.get_spec("uni"), "lora", 224, train=True)
    same = noisy[:1].repeat(4, 1, 1, 1)
    out = aug(same, torch.device("cpu"))
    assert not torch.allclose(out[0], out[1])  # each image draws its own augmentation


def test_parse_config_and_folds() -> None:
    assert config.parse_config("uni:lora") == ("uni", "lora")
    assert config.parse_config("Vision Transformer|end_to_end") == ("vit-l16", "end_to_end")
    assert config.parse_config("virchow2:lp") == ("virchow2", "linear_probe")
    assert config.parse_folds("1-5") == [1, 2, 3, 4, 5] and config.parse_folds("1,3") == [1, 3]
    with pytest.raises(ValueError):
        config.parse_folds("0-6")
    with pytest.raises(ValueError):
        config.parse_config("uni")


def test_plan_lists_table3_with_reasons(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(models, "_hf_cache_dir", lambda: tmp_path / "hf")
    assert plan.cli_plan(Namespace(json=True, weights_dir=str(tmp_path))) == 0
    rows = json.loads(capsys.readouterr().out)
    paper = {(r["model"], r["method"]) for r in rows if r["in_paper"]}
    assert paper == REFERENCE_CONFIGS and len(rows) == 19
    uni = next(r for r in rows if r["config"] == "uni:lora")
    assert not uni["runnable"] and "weights of UNI (MahmoodLab/UNI)" in uni["reason"]
    if not torch.cuda.is_available():
        assert "a GPU" in uni["reason"]


def test_plan_shows_how_far_a_full_run_got(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(models, "_hf_cache_dir", lambda: tmp_path / "hf")
    store = Store(tmp_path / "full")
    cfg = config.RunConfig("uni", "lora")
    store.register(cfg.hash, cfg.describe())
    for fold in (1, 2):
        store.save_fold(cfg.hash, fold, [], [], info={})
    older = {**cfg.describe(), "registry_version": "0"}  # same label, another configuration
    store.register("0ld0ld0ld0ld0ld0", older)
    args = Namespace(json=True, weights_dir=None, store=str(store.root), preset="paper")
    assert plan.cli_plan(args) == 0
    rows = {r["config"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["uni:lora"]["folds_done"] == [1, 2] and rows["uni:lora"]["hash"] == cfg.hash
    assert rows["uni:lora"]["stale_hashes"] == ["0ld0ld0ld0ld0ld0"]
    assert rows["uni:linear_probe"]["folds_done"] == [] == rows["uni:linear_probe"]["stale_hashes"]
    args.json = False
    monkeypatch.setenv("COLUMNS", "250")
    assert plan.cli_plan(args) == 0
    assert "2/5, 1 stale" in capsys.readouterr().out


def test_cli_run_full_tier_refuses_cpu_without_asking(monkeypatch) -> None:
    from harness.paths import MissingInputError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = Namespace(
        config="efficientnetv2-m:e2e",
        folds="1",
        tier="full",
        preset="paper",
        store=None,
        device="auto",
        data_root=None,
        weights_dir=None,
    )
    with pytest.raises(MissingInputError, match="needs a GPU"):
        runner.cli_run(args)


def test_export_and_smoke_claims(task, cache_env) -> None:
    """A results set from the store; the smoke evaluators judge it and can fail."""
    store = Store(cache_env / "s")
    cfgs = [_cfg("smoke-vit", "linear_probe")]
    runner.run_config(cfgs[0], task, store, (1, 2))
    out = export.export_results(
        store,
        cfgs,
        cache_env / "s",
        name="t",
        tier="smoke",
        preset="paper",
        data="synthetic",
        counters={"slide_overlaps": 0},
    )
    rs = load_results_set(out)
    assert rs.manifest["configs"]["UNI|lora"]["status"] == "not run"
    assert "needs" in rs.manifest["configs"]["UNI|lora"]["reason"]
    assert rs.folds("smoke ViT-Ti/16", "linear_probe", "synthetic:AMi-Br") == [1, 2]
    judged = {}
    for cid, kind, params, expected in (
        (
            "passes",
            "run_counter",
            {"counter": "forward_passes_per_image", "method": "linear_probe"},
            1,
        ),
        ("slides", "run_counter", {"counter": "slide_overlaps"}, 0),
        ("above", "smoke_above_chance", {"method": "linear_probe", "metric": "auroc"}, 0.0),
        ("unreachable", "smoke_above_chance", {"method": "linear_probe", "metric": "auroc"}, 1.01),
    ):
        tol = {"rule": "abs", "value": 0} if kind == "smoke_above_chance" else {"rule": "exact"}
        claim = Claim(cid, cid, "-", "Smoke", kind, "run", tol, params, expected)
        judged[cid] = evaluate(claim, Context(results=rs), strict=True).verdict
    assert judged["passes"].status == "passed" and judged["passes"].observed == 1.0
    assert judged["slides"].status == "passed" and judged["slides"].observed == 0
    assert judged["above"].status == "passed" and 0.0 <= judged["above"].observed <= 1.0
    assert judged["unreachable"].status == "failed"
    on_paper = evaluate(claim, Context(results=load_results_set("paper")), strict=True)
    assert on_paper.status == "not run" and "smoke results set" in on_paper.verdict.reason


def test_train_plan_says_what_each_configuration_lacks(tmp_path, monkeypatch) -> None:
    """Without CUDA nothing trains, and every Table 3 configuration says why (never a pass)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("AMIBR_WEIGHTS", raising=False)  # a user's own weights must not matter here
    monkeypatch.setattr(models, "_hf_cache_dir", lambda: tmp_path / "empty-hf-cache")
    called = []
    monkeypatch.setattr(runner, "ensure_trained", lambda *a, **k: called.append(a))
    skipped = runner.train_plan(tmp_path / "full")
    assert called == [] and len(skipped) == 17
    assert all(why.startswith("needs a GPU") for why in skipped.values())
    assert "weights of UNI" in skipped[config.config_name("uni", "lora")]
