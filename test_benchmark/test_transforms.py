"""Input normalisation per preset: the paper's text (each model's own statistics) against the
authors' Virchow/Virchow2 LoRA scripts (mean = std = 0.5), deviation virchow-lora-normalisation."""

from __future__ import annotations

import pytest
import torch

from harness import config, models, plan, transforms


@pytest.mark.parametrize("key,method", plan.PAPER_PLAN)
def test_paper_preset_uses_each_models_own_statistics(key, method) -> None:
    spec = models.get_spec(key)
    assert transforms.normalisation(spec, method, "paper") == (tuple(spec.mean), tuple(spec.std))


@pytest.mark.parametrize("key,method", plan.PAPER_PLAN)
def test_reference_code_halves_only_virchow_lora(key, method) -> None:
    spec = models.get_spec(key)
    half = key in ("virchow", "virchow2") and method == "lora"
    want = (transforms.HALF, transforms.HALF) if half else (tuple(spec.mean), tuple(spec.std))
    assert transforms.normalisation(spec, method, "reference-code") == want
    text = config.RunConfig(key, method, "reference-code").describe()["transforms"]
    assert ("mean=(0.5, 0.5, 0.5)" in text["eval"]) is half


@pytest.mark.parametrize("preset", config.PRESETS)
def test_the_transform_applies_the_presets_statistics(preset) -> None:
    spec = models.get_spec("virchow2")
    x = torch.full((1, 224, 224, 3), 204, dtype=torch.uint8)  # 0.8 after scaling
    out = transforms.Transform(spec, "lora", 224, train=False, preset=preset)(
        x, torch.device("cpu")
    )
    mean, std = transforms.normalisation(spec, "lora", preset)
    expected = (0.8 - torch.tensor(mean)) / torch.tensor(std)
    assert torch.allclose(out[0, :, 0, 0], expected.float(), atol=1e-5)
    if preset == "reference-code":
        assert torch.allclose(out[0, :, 0, 0], torch.full((3,), 0.6), atol=1e-5)
