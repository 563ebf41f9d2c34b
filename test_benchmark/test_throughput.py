"""`amibr-bench throughput`: what it measures and how it turns rates into hours (no timing asserts)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from harness import cli, data, models, throughput

TINY = replace(
    models.get_spec("uni"),
    key="tiny-uni",
    name="tiny UNI",
    kwargs=(("img_size", 224), ("patch_size", 16), ("embed_dim", 32), ("depth", 1),
            ("num_heads", 2), ("init_values", 1e-5)),
    embed_dim=32,
    backbone_params=None,
    weights_repo="test-org/tiny-uni",
)  # fmt: skip


@pytest.fixture()
def tiny():
    with models.registered(TINY) as spec:
        yield spec


@pytest.mark.parametrize("method", ["linear_probe", "lora"])
def test_measure_reports_rates_and_trainable_parameters(tiny, method) -> None:
    row = throughput.measure(tiny.key, method, batch=2, steps=2)
    assert row["config"] == f"tiny-uni:{method}" and row["img_size"] == 224
    assert row["weights"] == "random" and row["infer_images_per_s"] > 0
    if method == "linear_probe":
        assert row["train_images_per_s"] is None
        assert row["trainable_params"] == 32 + 1  # Linear(embedding, 1)
    else:
        rate = row["train_images_per_s"]  # a busy machine may hide two steps in the noise
        assert rate > 0 if rate else "raise --steps" in row["not_measured"]["train_images_per_s"]
        wrapped = models.wrap_lora(models.attach_head(models.build_backbone(tiny.key)))
        trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
        assert row["trainable_params"] == trainable < 20_000


def test_config_hours() -> None:
    row = {"train_images_per_s": 8.0, "infer_images_per_s": 20.0}
    # per epoch: 80 / 8 + 20 / 20 = 11 s; 10 epochs + 40 test images / 20 = 112 s a fold
    assert throughput.config_hours(row, pool=100, tests=40, epochs=10) == pytest.approx(
        5 * 112 / 3600
    )
    lp = {"train_images_per_s": None, "infer_images_per_s": 10.0}
    assert throughput.config_hours(lp, pool=100, tests=40, epochs=100) == pytest.approx(14 / 3600)


@pytest.mark.realdata
def test_cli_writes_json_and_estimates_from_the_data(tiny, data_root, tmp_path, capsys) -> None:
    out = tmp_path / "tp.json"
    code = cli.main(
        ["throughput", "--config", "tiny-uni:lp", "--device", "cpu", "--batch", "2",
         "--steps", "1", "--json", str(out), "--data-root", str(data_root)]
    )  # fmt: skip
    assert code == 0
    (row,) = json.loads(out.read_text())
    pool, tests = throughput._data_sizes(data_root)
    every_image = sum(len(data.load_records(data_root, d)) for d in data.DATASETS)
    assert pool + tests == every_image and pool > tests / 2  # the AMi-Br pool + three test sets
    expected = (pool + tests) / row["infer_images_per_s"] / 3600
    assert row["hours_5_folds_at_epochs"]["100"] == pytest.approx(expected, abs=0.006)
    assert "tiny-uni:linear_probe" in capsys.readouterr().out


def test_local_weights_missing_is_one_clear_error(tiny, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(models, "_hf_cache_dir", lambda: tmp_path / "hf")
    code = cli.main(
        ["throughput", "--config", "tiny-uni:lora", "--weights", "local", "--device", "cpu",
         "--weights-dir", str(tmp_path)]
    )  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "weights of tiny UNI" in err and "test-org/tiny-uni" in err


def _scripted_clock(monkeypatch, seconds: list[float]) -> None:
    """Replace the stopwatch: each timed call runs and then 'took' the next scripted seconds."""
    script = iter(seconds)

    def timed(fn, device):
        fn()
        return next(script, 1.0)

    monkeypatch.setattr(throughput, "_timed", timed)


# (short run, long run, prediction warm-up, prediction) seconds: the two training runs are
# differenced
UNMEASURABLE = {
    "long run faster than the short one": ([2.0, 1.9, 0.1, 0.5], ["train_images_per_s"]),
    "equal runs": ([2.0, 2.0, 0.1, 0.5], ["train_images_per_s"]),
    "difference within the noise": ([2.0, 2.0 + 2e-8, 0.1, 0.5], ["train_images_per_s"]),
    "prediction took no time": ([1.0, 2.0, 0.1, 0.0], ["infer_images_per_s"]),
}


@pytest.mark.parametrize("case", sorted(UNMEASURABLE))
def test_a_rate_the_clock_cannot_give_is_not_measured(tiny, monkeypatch, tmp_path, capsys, case):
    """A figure like 2,000,000,000 img/s (two runs of nearly equal length) is never printed."""
    seconds, missing = UNMEASURABLE[case]
    _scripted_clock(monkeypatch, seconds)
    row = throughput.measure(tiny.key, "lora", batch=2, steps=1)
    assert sorted(row["not_measured"]) == missing
    for field in ("train_images_per_s", "infer_images_per_s"):
        assert (row[field] is None) == (field in missing)
    assert throughput.config_hours(row, pool=100, tests=40, epochs=10) is None

    _scripted_clock(monkeypatch, seconds)
    monkeypatch.setattr(throughput, "_data_sizes", lambda root: (100, 40))
    out = tmp_path / "tp.json"
    code = cli.main(
        ["throughput", "--config", "tiny-uni:lora", "--device", "cpu", "--batch", "2",
         "--steps", "1", "--json", str(out)]
    )  # fmt: skip
    assert code == 0
    (saved,) = json.loads(out.read_text())
    assert all(saved[f] is None and saved["not_measured"][f] for f in missing)
    assert "hours_5_folds_at_epochs" not in saved
    text = " ".join(capsys.readouterr().out.split())  # the table wraps long cells
    assert "not measured (" in text


def test_measured_rates_come_from_the_difference_of_the_two_runs(tiny, monkeypatch) -> None:
    _scripted_clock(monkeypatch, [1.0, 3.0, 0.1, 0.5])  # short, long, warm-up, prediction
    row = throughput.measure(tiny.key, "lora", batch=2, steps=4)
    assert row["not_measured"] == {}
    assert row["train_images_per_s"] == pytest.approx(4 * 2 / (3.0 - 1.0))
    assert row["infer_images_per_s"] == pytest.approx(2 * (1 + 4) / 0.5)
