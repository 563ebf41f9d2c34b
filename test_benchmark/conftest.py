"""Shared test options and fixtures. Real-data tests skip, with the reason, when the data root is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness import paths

pytest_plugins = ["harness.pytest_plugin"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--data-root",
        default=None,
        help="the public datasets (default $AMIBR_DATA_ROOT, then a sibling shared/data/amibr-benchmark folder)",
    )


@pytest.fixture(scope="session")
def data_root(request: pytest.FixtureRequest) -> Path:
    """The authors' datasets; tests that need them skip with a reason when they are absent."""
    flag = request.config.getoption("--data-root")
    root = paths.data_root(flag, required=False)
    if root is None:
        where = flag or os.environ.get(paths.DATA_ENV) or paths.SHARED_DATA
        pytest.skip(f"needs the public datasets at {where} (--data-root or ${paths.DATA_ENV})")
    return root


@pytest.fixture(scope="session")
def synth_root() -> Path:
    """The committed synthetic dataset (fixtures/synthetic), same layout as the real one."""
    root = paths.SYNTHETIC_FIXTURE
    if not root.is_dir():
        pytest.fail(f"{root} is missing: regenerate it with `amibr-bench data synth --out {root}`")
    return root


@pytest.fixture(scope="session")
def synth_task(synth_root, tmp_path_factory):
    """The synthetic fixture through the real data layer and image cache, decoded once (read it,
    never change it: tests share it)."""
    from harness import taskdata

    mp = pytest.MonkeyPatch()
    mp.setenv(paths.CACHE_ENV, str(tmp_path_factory.mktemp("cache")))
    yield taskdata.load_task(synth_root, "synthetic")
    mp.undo()


@pytest.fixture()
def quick_registry(monkeypatch):
    """The claim registry without the architecture claims (they build models on the meta device
    and read no results set), as `amibr-bench claims` loads it in this test."""
    from harness import claims, report

    registry = [c for c in claims.load_claims() if c.needs != "architecture"]
    monkeypatch.setattr(report.command, "load_claims", lambda: registry)
    return registry
