"""Model registry: exact architectures (meta device), LoRA wrap, strict weights loading."""

from __future__ import annotations

import json
import re
from argparse import Namespace
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from paper_table3 import TABLE3
from safetensors.torch import save_file

from harness import models
from harness.models import StrictLoadError, WeightsMissing
from harness.paths import MissingInputError

# MODELS.md: backbone parameters without a head; LoRA trainable parameters with the 1-logit head.
BACKBONE_PARAMS = {
    "uni": 303_350_784,
    "uni2-h": 681_394_176,
    "virchow": 631_229_184,
    "virchow2": 631_239_424,
    "prov-gigapath": 1_134_953_984,
    "h-optimus-0": 1_134_774_272,
    "h-optimus-1": 1_134_774_272,
    "h0-mini": 85_739_520,
}
LORA_TRAINABLE = {
    "uni": 3_161_089,
    "uni2-h": 4_737_121,
    "virchow": 5_261_153,
    "virchow2": 5_261_153,
    "prov-gigapath": 7_884_289,
    "h-optimus-0": 7_882_849,
    "h-optimus-1": 7_882_849,
    "h0-mini": 1_191_265,
}
EMBED_DIMS = {
    "uni": 1024,
    "uni2-h": 1536,
    "virchow": 2560,
    "virchow2": 2560,
    "prov-gigapath": 1536,
    "h-optimus-0": 1536,
    "h-optimus-1": 1536,
    "h0-mini": 1536,
}
# MODELS.md, in millions, rounded to 0.01M: (1-logit head, 1000-class head)
BASELINE_MILLIONS = {
    "vit-l16": (303.30, 304.33),
    "swin-b": (86.74, 87.77),
    "efficientnetv2-m": (52.86, 54.14),
}
RESULT_NAMES = {name for name, _ in TABLE3}


def test_registry_covers_the_paper() -> None:
    assert set(models.FOUNDATION) == set(BACKBONE_PARAMS)
    assert set(models.BASELINES) == set(BASELINE_MILLIONS)
    names = {models.get_spec(k).name for k in models.FOUNDATION + models.BASELINES}
    assert names == RESULT_NAMES | {"H0-mini"}


@pytest.mark.parametrize("key", sorted(BACKBONE_PARAMS))
def test_foundation_parameter_counts_exact(key: str) -> None:
    assert models.parameter_count(key) == BACKBONE_PARAMS[key]
    assert models.get_spec(key).backbone_params == BACKBONE_PARAMS[key]


@pytest.mark.parametrize("key", sorted(BASELINE_MILLIONS))
def test_baseline_parameter_counts(key: str) -> None:
    one, thousand = BASELINE_MILLIONS[key]
    assert round(models.parameter_count(key, "1-logit") / 1e6, 2) == one
    assert round(models.parameter_count(key, "imagenet-1000") / 1e6, 2) == thousand


def test_vit_l16_is_not_the_papers_86_6m() -> None:
    """§4.1's 86.6M is ViT-B/16's count; the registry builds ViT-L/16 as the script does."""
    assert models.parameter_count("vit-l16", "1-logit") > 300e6


def test_parameter_count_rejects_unknown_head() -> None:
    with pytest.raises(ValueError, match="head must be one of"):
        models.parameter_count("uni", "2-logit")


@pytest.mark.parametrize("key", sorted(EMBED_DIMS))
def test_embedding_dims_on_meta(key: str) -> None:
    spec = models.get_spec(key)
    with torch.device("meta"):
        model = models.build_backbone(key)
        tokens = model.forward_features(torch.empty(1, 3, 224, 224))
        emb = models.embed(model, spec, torch.empty(2, 3, 224, 224))
    assert emb.shape == (2, EMBED_DIMS[key]) == (2, spec.embed_dim)
    patches = 256 if key != "uni" and key != "prov-gigapath" else 196
    assert tokens.shape[1] - model.num_prefix_tokens == patches
    registers = {"uni2-h": 8, "virchow2": 4, "h-optimus-0": 4, "h-optimus-1": 4, "h0-mini": 4}
    assert model.num_prefix_tokens == 1 + registers.get(key, 0)


def test_normalisations() -> None:
    hopt = ((0.707223, 0.578729, 0.703617), (0.211883, 0.230117, 0.177517))
    for key in ("h-optimus-0", "h-optimus-1", "h0-mini"):
        spec = models.get_spec(key)
        assert (spec.mean, spec.std) == hopt
    for key in ("uni", "uni2-h", "virchow", "virchow2", "prov-gigapath", *models.BASELINES):
        spec = models.get_spec(key)
        assert (spec.mean, spec.std) == models.IMAGENET
    assert models.get_spec("prov-gigapath").eval_resize == "resize256-crop224"


@pytest.mark.parametrize("key", sorted(LORA_TRAINABLE))
def test_lora_wraps_exactly_the_intended_modules(key: str) -> None:
    """Full-size architectures on meta: qkv/proj/fc1/fc2 of every block + patch_embed.proj."""
    with torch.device("meta"):
        model = models.wrap_lora(models.attach_head(models.build_backbone(key)))
    depth = len(model.base_model.model.blocks)
    expected = {"patch_embed.proj"} | {
        f"blocks.{i}.{m}"
        for i in range(depth)
        for m in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
    }
    assert set(models.lora_wrapped_modules(model)) == expected
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(re.search(r"lora_[AB]|modules_to_save\.default\.", n) for n in trainable)
    assert any("head.modules_to_save" in n for n in trainable)
    count = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert count == LORA_TRAINABLE[key] == models.lora_trainable_count(key)
    conv = [m for n, m in model.named_modules() if n.endswith("patch_embed.proj")]
    assert type(conv[0]).__name__ == "Conv2d" and type(conv[0]).__module__.startswith("peft")


def test_lora_config_is_the_papers() -> None:
    assert models.LORA_CONFIG == {
        "r": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.3,
        "target_modules": ["qkv", "proj", "fc1", "fc2"],
        "bias": "none",
        "modules_to_save": ["head"],
    }


def test_lora_on_efficientnet_raises() -> None:
    with torch.device("meta"), pytest.raises(ValueError):
        models.wrap_lora(models.attach_head(models.build_backbone("efficientnetv2-m")))


def test_cls_token_logit_for_per_token_heads() -> None:
    """Virchow-style heads (global_pool='') classify every token; the CLS token's logit is used."""
    tiny = replace(
        models.get_spec("virchow2"),
        key="tiny-virchow2",
        kwargs=(
            *models.get_spec("virchow2").kwargs,
            ("depth", 1),
            ("embed_dim", 32),
            ("num_heads", 2),
            ("img_size", 28),
        ),
    )
    with models.registered(tiny):
        torch.manual_seed(0)
        model = models.attach_head(models.build_backbone("tiny-virchow2")).eval()
        x = torch.randn(3, 3, 28, 28)
        tokens = model.forward_features(x)
        assert torch.allclose(models.logits(model, x), model.head(tokens[:, 0]).squeeze(-1))
        emb = models.embed(model, tiny, x)
        manual = torch.cat([tokens[:, 0], tokens[:, 5:].mean(1)], -1)  # CLS, 4 registers skipped
        assert torch.allclose(emb, manual)
        assert not torch.allclose(emb, torch.cat([tokens[:, 0], tokens[:, 1:].mean(1)], -1))


# --- weights -------------------------------------------------------------------------------------

TINY = models.ModelSpec(
    "tiny-test-vit",
    "tiny",
    "foundation",
    "vit_tiny_patch16_224",
    (("img_size", 32), ("depth", 1), ("embed_dim", 16), ("num_heads", 2), ("init_values", 1e-5)),
    *models.IMAGENET,
    "cls",
    16,
    None,
    "test-org/tiny-vit",
    methods=("linear_probe", "lora"),
)


@pytest.fixture()
def tiny():
    with models.registered(TINY) as spec:
        yield spec


def _state(seed: int = 1) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {k: v.clone() for k, v in models.build_backbone(TINY.key).state_dict().items()}


def _write(folder: Path, state, fmt: str = "safetensors", arch: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"architecture": arch or TINY.arch}))
    if fmt == "safetensors":
        save_file(state, str(folder / "model.safetensors"))
        return folder / "model.safetensors"
    torch.save(state, folder / "pytorch_model.bin")
    return folder / "pytorch_model.bin"


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_weights_load_strictly_from_weights_dir(tiny, tmp_path, monkeypatch, fmt) -> None:
    monkeypatch.setattr(models, "_hf_cache_dir", lambda: tmp_path / "empty-hf")
    monkeypatch.setenv("AMIBR_CACHE", str(tmp_path / "cache"))
    state = _state()
    path = _write(tmp_path / "w" / "test-org" / "tiny-vit", state, fmt)
    assert models.weights_present(TINY.key, tmp_path / "w") is True
    loaded = models.load_backbone(TINY.key, tmp_path / "w")
    assert loaded.weights_path == str(path)
    assert len(loaded.weights_hash) == 64
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_weights_load_from_offline_hf_cache(tiny, tmp_path, monkeypatch) -> None:
    """The HF cache layout (models--org--name/snapshots/<rev>/...) found without any download."""
    repo = tmp_path / "hf" / "models--test-org--tiny-vit"
    rev = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    _write(repo / "snapshots" / rev, _state(2))
    monkeypatch.setattr(models, "_hf_cache_dir", lambda: tmp_path / "hf")
    monkeypatch.setenv("AMIBR_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AMIBR_WEIGHTS", raising=False)
    loc = models.find_weights(TINY.key)
    assert loc.source == "hf-cache"
    loaded = models.load_backbone(TINY.key)
    assert torch.equal(loaded.model.cls_token, _state(2)["cls_token"])


def test_missing_weights_name_folder_and_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(models, "_hf_cache_dir", lambda: tmp_path / "hf")
    with pytest.raises(MissingInputError, match="does not exist"):
        models.load_backbone("uni", tmp_path / "no-such-folder")
    (tmp_path / "w").mkdir()
    with pytest.raises(WeightsMissing) as err:
        models.load_backbone("uni", tmp_path / "w")
    text = str(err.value)
    assert str(tmp_path / "w" / "MahmoodLab" / "UNI") in text
    assert "model.safetensors" in text and "pytorch_model.bin" in text
    assert str(tmp_path / "hf") in text and "MahmoodLab/UNI" in text
    assert models.weights_present("uni", tmp_path / "w") is False
    assert models.weights_present("efficientnetv2-m", tmp_path / "w") is None


@pytest.mark.parametrize("damage", ["missing", "extra", "shape"])
def test_strict_loading_rejects_mismatched_checkpoint(tiny, tmp_path, monkeypatch, damage):
    monkeypatch.setattr(models, "_hf_cache_dir", lambda: tmp_path / "hf")
    state = _state()
    if damage == "missing":
        del state["blocks.0.ls1.gamma"]  # the LayerScale weights timm drops when non-strict
        pattern = r"missing keys: blocks\.0\.ls1\.gamma"
    elif damage == "extra":
        state["blocks.0.extra"] = torch.zeros(3)
        pattern = r"unexpected keys: blocks\.0\.extra"
    else:
        state["cls_token"] = torch.zeros(1, 1, 17)
        pattern = r"shape mismatches: cls_token"
    _write(tmp_path / "w" / "test-org" / "tiny-vit", state)
    with pytest.raises(StrictLoadError, match=pattern):
        models.load_backbone(TINY.key, tmp_path / "w")


def test_config_architecture_mismatch_is_rejected(tiny, tmp_path, monkeypatch) -> None:
    _write(tmp_path / "w" / "test-org" / "tiny-vit", _state(), arch="vit_small_patch16_224")
    with pytest.raises(StrictLoadError, match="vit_small_patch16_224"):
        models.load_backbone(TINY.key, tmp_path / "w")


def test_random_init_models_are_seeded() -> None:
    a = models.load_backbone("smoke-resnet", seed=3)
    b = models.load_backbone("smoke-resnet", seed=3)
    assert a.weights_hash == "random-init:3" and a.weights_path is None
    for (k, v), w in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert torch.equal(v, w), k


def test_cli_models_json(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(models, "_hf_cache_dir", lambda: tmp_path / "hf")
    assert models.cli_models(Namespace(weights_dir=str(tmp_path), json=True)) == 0
    rows = {r["key"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) >= set(BACKBONE_PARAMS) | set(BASELINE_MILLIONS)
    assert rows["uni"]["parameters"] == 303_350_784 and rows["uni"]["weights"] == "missing"
    assert rows["h0-mini"]["lora_trainable"] == 1_191_265
    assert rows["efficientnetv2-m"]["weights"] == "not needed"


def test_spec_digest_changes_with_the_registry() -> None:
    spec = models.get_spec("uni")
    assert spec.digest() != replace(spec, mean=(0.5, 0.5, 0.5)).digest()


# --- weights that are not what they claim to be: each refused naming the file ----------------


def _hf_repo(base: Path, revs: list[str], main: str | None) -> Path:
    """An offline Hugging Face cache entry of the tiny model, one snapshot per revision."""
    repo = base / "models--test-org--tiny-vit"
    for i, rev in enumerate(revs):
        _write(repo / "snapshots" / rev, _state(10 + i))
    if main is not None:
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(main)
    return repo


@pytest.fixture()
def weights_env(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(models, "_hf_cache_dir", lambda: tmp_path / "hf")
    monkeypatch.setenv("AMIBR_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AMIBR_WEIGHTS", raising=False)
    return tmp_path


def _config_text(text: str):
    def damage(folder: Path) -> Path:
        (folder / "config.json").write_text(text)
        return folder / "config.json"

    return damage


def _folder_instead(name: str):
    def damage(folder: Path) -> Path:
        (folder / name).unlink()
        (folder / name).mkdir()
        return folder / name

    return damage


def _int_weight(folder: Path) -> Path:
    state = _state()
    state["blocks.0.mlp.fc1.weight"] = torch.ones_like(state["blocks.0.mlp.fc1.weight"]).long()
    save_file(state, str(folder / "model.safetensors"))
    return folder / "model.safetensors"


def _bool_bias(folder: Path) -> Path:
    state = _state()
    state["norm.bias"] = torch.ones_like(state["norm.bias"], dtype=torch.bool)
    save_file(state, str(folder / "model.safetensors"))
    return folder / "model.safetensors"


BAD_WEIGHTS = {
    "config.json is not JSON": (_config_text("{'architecture': 'vit"), "not a readable JSON"),
    "config.json is a list": (_config_text('["vit"]'), "a JSON object, found list"),
    "config.json is a string": (_config_text('"vit"'), "a JSON object, found str"),
    "config.json is a folder": (_folder_instead("config.json"), "is a folder, expected a file"),
    "weights file is a folder": (
        _folder_instead("model.safetensors"), "is a folder, expected a file"
    ),
    "int64 Linear weight": (
        _int_weight, "dtype mismatches: blocks.0.mlp.fc1.weight: checkpoint torch.int64"
    ),
    "bool LayerNorm bias": (_bool_bias, "checkpoint torch.bool vs model torch.float32"),
}  # fmt: skip


@pytest.mark.parametrize("where", ["weights-dir", "hf-cache"])
@pytest.mark.parametrize("case", sorted(BAD_WEIGHTS))
def test_bad_weights_are_refused_naming_the_file(weights_env, where, case) -> None:
    damage, says = BAD_WEIGHTS[case]
    if where == "weights-dir":
        folder = weights_env / "w" / "test-org" / "tiny-vit"
        _write(folder, _state())
    else:
        folder = _hf_repo(weights_env / "hf", ["a" * 40], "a" * 40) / "snapshots" / ("a" * 40)
    culprit = damage(folder)
    with pytest.raises(StrictLoadError) as err:
        models.load_backbone(TINY.key, weights_env / "w" if where == "weights-dir" else None)
    assert str(culprit) in str(err.value) and says in str(err.value)


def test_half_precision_weights_still_load(weights_env) -> None:
    """Float weights stored in another float precision are not a dtype mismatch."""
    state = {k: v.half() for k, v in _state().items()}
    _write(weights_env / "w" / "test-org" / "tiny-vit", state)
    loaded = models.load_backbone(TINY.key, weights_env / "w")
    assert torch.equal(loaded.model.cls_token, state["cls_token"].float())


def test_hf_cache_without_refs_main_uses_its_only_snapshot(weights_env) -> None:
    _hf_repo(weights_env / "hf", ["b" * 40], main=None)
    loc = models.find_weights(TINY.key)
    assert loc.source == "hf-cache" and loc.path.parent.name == "b" * 40
    loaded = models.load_backbone(TINY.key)
    assert torch.equal(loaded.model.cls_token, _state(10)["cls_token"])


@pytest.mark.parametrize("main", [None, "c" * 40])
def test_hf_cache_with_several_snapshots_needs_refs_main(weights_env, main) -> None:
    """Without refs/main (or with one naming no snapshot here) the snapshot is ambiguous: the
    message names refs/main and lists the snapshots."""
    revs = ["a" * 40, "b" * 40]
    repo = _hf_repo(weights_env / "hf", revs, main)
    with pytest.raises(WeightsMissing) as err:
        models.find_weights(TINY.key)
    text = str(err.value)
    assert str(repo / "refs" / "main") in text and all(rev in text for rev in revs)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revs[1] + "\n")
    assert models.find_weights(TINY.key).path.parent.name == revs[1]


def test_bad_weights_exit_2_from_the_cli(weights_env, capsys) -> None:
    """The same kinds through the command line: one line naming the file, exit 2."""
    from harness import cli

    folder = weights_env / "w" / "test-org" / "tiny-vit"
    _write(folder, _state())
    _int_weight(folder)
    code = cli.main(
        ["throughput", "--config", f"{TINY.key}:lp", "--weights", "local", "--device", "cpu",
         "--weights-dir", str(weights_env / "w"), "--batch", "1", "--steps", "1"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("amibr-bench")]
    assert str(folder / "model.safetensors") in line and "int64" in line
