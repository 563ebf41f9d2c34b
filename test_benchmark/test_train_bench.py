"""Throughput of the smoke models on this machine (pytest-benchmark): numbers, never asserts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness import config, embeddings, models, runner, trainer, transforms


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randint(0, 255, (64, 128, 128, 3), dtype=torch.uint8)


@pytest.mark.parametrize("key,method", [("smoke-resnet", "end_to_end"), ("smoke-vit", "lora")])
def test_bench_training_images_per_s(benchmark, images, key, method) -> None:
    spec = models.get_spec(key)
    torch.manual_seed(0)
    model = models.attach_head(models.load_backbone(key).model)
    if method == "lora":
        model = models.wrap_lora(model)
    t_train = transforms.Transform(spec, method, spec.img_size, train=True)
    forward = runner._forward_images(t_train, t_train, torch.device("cpu"))
    hp = config.Hyper(lr=1e-4, max_epochs=1)
    labels = np.arange(len(images)) % 2

    def one_pass() -> None:  # 64 images, batch 8, augmentation included
        trainer.fit(
            model,
            forward,
            images,
            labels,
            images[:8],
            labels[:8],
            hp,
            seed=0,
            device=torch.device("cpu"),
            stop_after_steps=8,
        )

    benchmark.pedantic(one_pass, rounds=3, iterations=1, warmup_rounds=1)
    if benchmark.stats:
        benchmark.extra_info["images_per_s"] = round(64 / benchmark.stats["mean"], 1)


@pytest.mark.parametrize("key", ["smoke-vit", "smoke-resnet"])
def test_bench_inference_images_per_s(benchmark, images, key) -> None:
    spec = models.get_spec(key)
    backbone = models.load_backbone(key)
    t_eval = transforms.Transform(spec, "linear_probe", spec.img_size, train=False)

    def embed_all() -> None:
        embeddings.compute_embeddings(backbone, images, t_eval, torch.device("cpu"), autocast=False)

    benchmark.pedantic(embed_all, rounds=3, iterations=1, warmup_rounds=1)
    if benchmark.stats:
        benchmark.extra_info["images_per_s"] = round(64 / benchmark.stats["mean"], 1)
