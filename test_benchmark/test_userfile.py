"""A user's own model from a YAML models file: validation (one line naming file, entry, field),
strict weights loading, the `models` listing, and a run through trainers, store and results set."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from harness import cli, config, models, plan, registry, results, userfile
from harness.paths import MODELS_ENV

TINY_ARGS = {"img_size": 32, "depth": 1, "embed_dim": 16, "num_heads": 2, "num_classes": 0}
ENTRY = {
    "key": "my-fm",
    "name": "MyFM",
    "architecture": "vit_tiny_patch16_224",
    "model_args": TINY_ARGS,
    "weights": "weights/my-fm/model.safetensors",
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "embedding": "cls+mean-patch",
    "methods": ["linear_probe", "lora"],
}


def _tiny_state(seed: int = 0) -> dict[str, torch.Tensor]:
    import timm

    torch.manual_seed(seed)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **TINY_ARGS)
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def write_models_file(folder: Path, *entries: dict, weights: bool = True) -> Path:
    """A models file in `folder` (weights relative to it) and, unless told not to, the weights."""
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / "models.yaml"
    file.write_text(yaml.safe_dump({"models": list(entries or [ENTRY])}, sort_keys=False))
    if weights:
        target = folder / ENTRY["weights"]
        target.parent.mkdir(parents=True, exist_ok=True)
        save_file(_tiny_state(), str(target))
    return file


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    """Weights hashes and embeddings are cached under tmp_path, not in the checkout."""
    monkeypatch.setenv("AMIBR_CACHE", str(tmp_path / "cache"))


@pytest.fixture()
def no_user_models():
    """Whatever a test registers is gone afterwards (cli.main registers for its process)."""
    with registry.user_models([]):
        yield


def test_a_models_file_becomes_a_registry_entry(tmp_path, no_user_models) -> None:
    file = write_models_file(tmp_path / "project")
    (spec,) = userfile.load_models_file(file)
    assert (spec.key, spec.name, spec.family, spec.arch) == (
        "my-fm",
        "MyFM",
        "user",
        "vit_tiny_patch16_224",
    )
    assert spec.embedding == "cls+mean_patch" and spec.embed_dim == 2 * 16
    assert spec.img_size == 32 and spec.lora_augment == "uni" and spec.lora_targets is None
    assert spec.weights_file == str(tmp_path / "project" / ENTRY["weights"])
    assert "num_classes" not in dict(spec.kwargs)  # the harness adds num_classes=0 itself
    registry.use_user_models([spec])
    assert plan.configurations()[-2:] == (("my-fm", "linear_probe"), ("my-fm", "lora"))
    assert results.canonical_model("MYFM") == "MyFM"
    loaded = models.load_backbone("my-fm")  # strict, through the paper models' loader
    assert all(torch.equal(v, _tiny_state()[k]) for k, v in loaded.model.state_dict().items())
    assert spec.describe()["weights_sha256"] == loaded.weights_hash
    with torch.no_grad():
        emb = models.embed(loaded.model.eval(), spec, torch.zeros(2, 3, 32, 32))
    assert emb.shape == (2, spec.embed_dim)
    wrapped = models.wrap_lora(models.attach_head(models.build_backbone("my-fm")), spec)
    assert {n.rsplit(".", 1)[-1] for n in models.lora_wrapped_modules(wrapped)} == {
        "qkv",
        "proj",
        "fc1",
        "fc2",
    }


def test_user_lora_targets_and_recipes(tmp_path, no_user_models) -> None:
    entry = ENTRY | {"key": "mine", "embedding": "mean-patch", "lora_targets": ["qkv"]}
    (spec,) = userfile.load_models_file(write_models_file(tmp_path, entry, weights=False))
    assert spec.embed_dim == 16 and spec.lora_targets == ("qkv",)
    with registry.user_models([spec]):
        wrapped = models.wrap_lora(models.attach_head(models.build_backbone("mine")), spec)
        assert {n.rsplit(".", 1)[-1] for n in models.lora_wrapped_modules(wrapped)} == {"qkv"}
        assert config.RunConfig("mine", "lora").describe()["lora"]["target_modules"] == ["qkv"]
    assert registry.get_spec("uni").lora_targets is None  # the paper's models are untouched


def test_weights_load_strictly_and_missing_weights_name_the_file(tmp_path, no_user_models):
    file = write_models_file(tmp_path, weights=False)
    registry.use_user_models(userfile.load_models_file(file))
    with pytest.raises(models.WeightsMissing, match=r"model\.safetensors does not exist"):
        models.load_backbone("my-fm")
    state = _tiny_state()
    del state["norm.bias"]
    target = tmp_path / ENTRY["weights"]
    target.parent.mkdir(parents=True)
    save_file(state, str(target))
    with pytest.raises(models.StrictLoadError, match="missing keys: norm.bias"):
        models.load_backbone("my-fm")


BAD = {
    "misspelt field": (
        lambda e: {**{k: v for k, v in e.items() if k != "architecture"}, "architecure": "x"},
        "model 'my-fm' (entry 1): unknown field 'architecure' (did you mean 'architecture'?)",
    ),
    "missing field": (
        lambda e: {k: v for k, v in e.items() if k != "weights"},
        "field 'weights' is required",
    ),
    "unknown architecture": (
        lambda e: e | {"architecture": "vit_tiny_patch16_244"},
        "field 'architecture': 'vit_tiny_patch16_244' is not a timm architecture "
        "(did you mean 'vit_tiny_patch16_224'?)",
    ),
    "paper key": (lambda e: e | {"key": "uni"}, "field 'key': key 'uni' is taken"),
    "paper name": (lambda e: e | {"name": "Virchow2"}, "field 'name': name 'Virchow2' is taken"),
    "bad method": (lambda e: e | {"methods": ["lp"]}, "field 'methods.0'"),
    "bad recipe": (lambda e: e | {"embedding": "gap"}, "field 'embedding'"),
    "bad key": (lambda e: e | {"key": "My FM"}, "field 'key'"),
    "cls of a CNN": (
        lambda e: e | {"architecture": "resnet10t", "model_args": {}, "embedding": "cls"},
        "field 'embedding': resnet10t gives no token sequence",
    ),
    "LoRA without targets": (
        lambda e: e | {"architecture": "resnet10t", "model_args": {}, "embedding": "pooled"},
        "field 'methods': LoRA targets qkv, proj, fc1, fc2 name no linear layer",
    ),
    "download asked": (
        lambda e: e | {"model_args": TINY_ARGS | {"pretrained": True}},
        "field 'model_args': pretrained may not be set",
    ),
    "other head": (
        lambda e: e | {"model_args": TINY_ARGS | {"num_classes": 2}},
        "field 'model_args': num_classes must be 0",
    ),
    "timm refuses": (
        lambda e: e | {"model_args": TINY_ARGS | {"embed_dim": 15}},
        "field 'model_args': timm cannot build vit_tiny_patch16_224",
    ),
    "size mismatch": (lambda e: e | {"img_size": 64}, "field 'img_size': 64 differs"),
    "bad std": (lambda e: e | {"std": [0.2, 0.0, 0.2]}, "field 'std'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_models_file_is_one_line_naming_file_entry_field(tmp_path, capsys, case):
    change, message = BAD[case]
    file = write_models_file(tmp_path, change(dict(ENTRY)), weights=False)
    code = cli.main(["models", "--models", str(file), "--json"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"amibr-bench: {file}: ") and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not any(s.user for s in registry.SPECS.values())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: [\n  - key: a\n", "not a readable YAML file"),
        ("- key: a\n", "must hold a mapping with a 'models' list"),
        ("modles: []\n", "unknown field 'modles' (did you mean 'models'?)"),
        ("models: []\n", "field 'models'"),
    ],
)
def test_malformed_models_file(tmp_path, capsys, text, message) -> None:
    file = tmp_path / "m.yaml"
    file.write_text(text)
    assert cli.main(["plan", "--models", str(file), "--json"]) == 2
    err = capsys.readouterr().err
    assert str(file) in err and message in err and len(err.strip().splitlines()) == 1


def test_two_entries_may_not_share_a_key(tmp_path, capsys) -> None:
    file = write_models_file(tmp_path, ENTRY, ENTRY | {"name": "Other"}, weights=False)
    assert cli.main(["models", "--models", str(file), "--json"]) == 2
    assert "(entry 2): field 'key': 'my-fm' is already used by entry 1" in capsys.readouterr().err


def test_models_lists_the_user_model_from_the_environment(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(models, "_hf_cache_dir", lambda: tmp_path / "hf")
    monkeypatch.setenv(MODELS_ENV, str(write_models_file(tmp_path / "p")))
    for key in set(registry.SPECS) - {"uni"}:  # keep the listing quick: no giant meta builds
        monkeypatch.delitem(registry.SPECS, key)
    with registry.user_models([]):
        assert cli.main(["models", "--json"]) == 0
    rows = {r["key"]: r for r in json.loads(capsys.readouterr().out)}
    expected = sum(p.numel() for p in _tiny_state().values())  # no buffers in this ViT
    mine = rows["my-fm"]
    assert mine["parameters"] == expected and mine["weights"] == "present"
    assert mine["family"] == "user" and mine["in_paper"] == [] and mine["embedding_dim"] == 32
    assert rows["uni"]["in_paper"] == ["linear_probe", "lora"]


def test_a_user_model_runs_into_the_results_set(tmp_path, capsys, monkeypatch, synth_root):
    """run --models FILE: trainer, store and exported results set; the set loads without FILE."""
    file = write_models_file(tmp_path / "p")
    store = tmp_path / "runs"
    argv = ["run", "--models", str(file), "--config", "MyFM:lp", "--tier", "smoke"]
    argv += ["--data-root", str(synth_root), "--device", "cpu", "--folds", "1"]
    argv += ["--store", str(store)]
    with registry.user_models([]):
        assert cli.main(argv) == 0, capsys.readouterr().err
    assert not any(s.user for s in registry.SPECS.values())
    rs = results.load_results_set(store)  # no --models: the manifest describes MyFM
    assert rs.configurations == [("MyFM", "linear_probe")]
    assert rs.folds("MyFM", "linear_probe", "synthetic:AMi-Br") == [1]
    entry = rs.config_entry("MyFM", "linear_probe")
    assert entry["settings"]["model"]["family"] == "user"
    assert entry["settings"]["model"]["weights_sha256"] == models.file_hash(
        tmp_path / "p" / ENTRY["weights"]
    )
    assert rs.predictions_for("MyFM", "linear_probe", "synthetic:AMi-Br")[1][2].size > 0


@pytest.mark.parametrize("command", ["models", "plan", "run", "launch", "claims", "experts"])
def test_every_command_that_names_models_takes_a_models_file(tmp_path, capsys, command):
    """The issue's list: each of these commands has --models (so `--help` shows it and a valid
    file is accepted), and a broken file is refused in one line naming it, before anything runs."""
    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    options = {o for a in sub.choices[command]._actions for o in a.option_strings}
    assert "--models" in options, f"`amibr-bench {command}` has no --models option"
    file = tmp_path / "m.yaml"
    file.write_text("modles: []\n")
    assert cli.main([command, "--models", str(file)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"amibr-bench: {file}: ") and "did you mean 'models'" in err, err
    assert len(err.strip().splitlines()) == 1
