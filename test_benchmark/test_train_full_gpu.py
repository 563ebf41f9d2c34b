"""Full tier: trains the paper's 17 configurations into runs/full (`nox -s full_gpu`).

Needs a CUDA device, the datasets and each foundation model's weights; every test skips with
what is missing. `full_run` is a session fixture, and the store keeps each finished
(configuration, fold), so each one trains once: claim tests can depend on the fixture."""

from __future__ import annotations

import os

import pytest
import torch

from harness import config, models, paths, plan, runner, taskdata
from harness.results import load_results_set

pytestmark = pytest.mark.gpu

FULL_STORE = paths.output_dir("runs") / "full"


@pytest.fixture(scope="session")
def full_task(data_root):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device: torch.cuda.is_available() is False on this machine")
    return taskdata.load_task(data_root, "real")


@pytest.fixture(scope="session")
def full_run(full_task, data_root):
    """key, method -> results-set folder, training on first use (cached for the session)."""
    done: dict[tuple[str, str], object] = {}
    weights = paths.weights_dir()

    def run(key: str, method: str):
        lacks = plan.missing_for(key, weights)
        if lacks:
            pytest.skip(f"{key}:{method} {plan.not_run_reason(lacks)}")
        if (key, method) not in done:
            done[(key, method)] = runner.ensure_trained(
                key,
                method,
                store_dir=FULL_STORE,
                data_root=data_root,
                weights_dir=weights,
                preset=os.environ.get("AMIBR_PRESET", "paper"),
                task=full_task,
            )
        return load_results_set(done[(key, method)])

    return run


@pytest.mark.parametrize(
    "key,method", plan.PAPER_PLAN, ids=[config.config_name(k, m) for k, m in plan.PAPER_PLAN]
)
def test_full_configuration_trains_and_evaluates(full_run, key, method) -> None:
    rs = full_run(key, method)
    name = models.get_spec(key).name
    for dataset in taskdata.TEST_SETS:
        assert rs.folds(name, method, dataset) == [1, 2, 3, 4, 5]
        assert len(rs.values(name, method, dataset, "auroc")) == 5
    entry = rs.config_entry(name, method)
    assert entry["status"] == "done" and entry["settings"]["tier"] == "full"
