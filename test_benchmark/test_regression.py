"""The CI regression check: an unchanged tree reproduces its baseline bit for bit; a recipe change
is caught, with the configuration and the changed setting named."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from harness import config, paths, provenance, regression, smoke
from harness.results import load_results_set

pytestmark = pytest.mark.slow


def _one_config():
    cfg, _ = smoke.smoke_configs("synthetic")[0]  # Smoke-ViT linear probe: seconds on the CPU
    return [(cfg, (1,))]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("regression") / "baseline"
    return regression.run_smoke(out, _one_config())


def test_an_unchanged_rerun_is_bit_identical(baseline, tmp_path) -> None:
    new = regression.run_smoke(tmp_path / "new", _one_config())
    cmp = regression.compare_sets(load_results_set(new), load_results_set(baseline))
    assert not cmp.changed, cmp.text()
    assert "unchanged" in cmp.text()
    recorded = load_results_set(new).manifest["provenance"]  # every exported set carries it
    assert set(provenance.FIELDS) <= set(recorded) and recorded["precision"] == "fp32"
    assert recorded["torch"] and recorded["device"].startswith("cpu")


def test_a_recipe_change_fails_naming_the_configuration(baseline, tmp_path, monkeypatch) -> None:
    cfg, folds = _one_config()[0]
    before = cfg.hash
    protocol = config.hyperparameters
    monkeypatch.setattr(
        config,
        "hyperparameters",
        lambda key, method, preset: replace(protocol(key, method, preset), weight_decay=1e-2),
    )
    assert cfg.hash != before  # the same configuration, a changed recipe
    new = regression.run_smoke(tmp_path / "new", [(cfg, folds)])
    cmp = regression.compare_sets(load_results_set(new), load_results_set(baseline), claims=False)
    assert cmp.changed
    [line] = cmp.configs
    assert line.startswith(f"{cfg.spec.name}|{cfg.method}") and "hyper.weight_decay" in line


def test_a_changed_metric_is_listed_exactly(baseline, tmp_path) -> None:
    from harness.results import write_results_set

    rs = load_results_set(baseline)
    first = rs.rows[0]
    rows = [replace(first, auroc=first.auroc * (1 - 1e-12)), *rs.rows[1:]]
    write_results_set(tmp_path / "edited", rows, manifest=rs.manifest | {"files": None})
    cmp = regression.compare_sets(load_results_set(tmp_path / "edited"), rs, claims=False)
    assert cmp.changed and len(cmp.metrics) == 1 and "auroc" in cmp.metrics[0]


def test_settings_diff_names_nested_keys_and_ignores_timing() -> None:
    old = {"hyper": {"lr": 1e-3, "batch_size": 8}, "fold_seconds": [1.0], "preset": "paper"}
    new = {"hyper": {"lr": 2e-3, "batch_size": 8}, "fold_seconds": [9.0], "precision": "bf16"}
    assert regression.settings_diff(old, new) == ["hyper.lr", "precision", "preset"]


def test_provenance_differences() -> None:
    a = provenance.collect("cpu", "fp32")
    assert set(provenance.FIELDS) <= set(a)
    assert provenance.differences(a, dict(a)) == []
    b = dict(a, torch="0.0", precision="bf16")
    assert provenance.differences(a, b) == [
        f"torch: {a['torch']} -> 0.0",
        "precision: fp32 -> bf16",
    ]
    assert provenance.differences(None, {"torch": "1"}) == ["torch: unrecorded -> 1"]


def test_update_baseline_needs_a_reason_and_records_it(baseline, tmp_path) -> None:
    with pytest.raises(paths.InputError, match="--why"):
        regression.update_baseline(baseline, tmp_path / "b", "  ")
    assert not (tmp_path / "b").exists()
    regression.update_baseline(baseline, tmp_path / "b", "new recipe for Smoke-ViT")
    history = (tmp_path / "b" / regression.HISTORY).read_text()
    assert "new recipe for Smoke-ViT" in history
    rs = load_results_set(tmp_path / "b")
    assert rs.manifest["baseline_reason"] == "new recipe for Smoke-ViT"
    assert not regression.compare_sets(rs, load_results_set(baseline), claims=False).changed


@pytest.mark.parametrize("process_threads", [1, 2, 3])
def test_the_rerun_trains_at_a_fixed_thread_count(tmp_path, monkeypatch, process_threads) -> None:
    """CPU numbers are bit-identical only at one thread count (2 threads instead of 1 flipped an
    image of the smoke ResNet), so the rerun trains at regression.THREADS whatever the machine or
    the process says, and restores the process's setting afterwards."""
    import torch

    from harness import runner

    seen = []
    monkeypatch.setattr(runner, "run_config", lambda *a, **k: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    torch.set_num_threads(process_threads)
    try:
        with pytest.raises(paths.InputError, match="finished no fold"):
            regression.run_smoke(tmp_path / "new", _one_config())
        assert seen == [regression.THREADS]
        assert torch.get_num_threads() == process_threads
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("change", ["metric", "removed", "added"])
def test_a_change_in_the_fast_runs_is_a_change(baseline, change) -> None:
    """The fast runs a set carries (fast_fold_metrics.csv) are compared as exactly as its rows:
    a changed metric, or a variant added or removed, exits 1."""
    rs = load_results_set(baseline)
    fast = {"paper/bf16": rs.rows}
    base = replace(rs, fast={} if change == "added" else fast)
    if change == "metric":
        first = rs.rows[0]
        new = replace(
            rs, fast={"paper/bf16": (replace(first, auroc=first.auroc / 2), *rs.rows[1:])}
        )
    else:
        new = replace(rs, fast={} if change == "removed" else fast)
    cmp = regression.compare_sets(new, base, claims=False)
    assert (
        cmp.changed and len(cmp.metrics) == 1 and cmp.metrics[0].startswith("fast run paper/bf16")
    )
    assert not regression.compare_sets(base, base, claims=False).changed
