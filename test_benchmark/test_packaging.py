"""The wheel carries every module, the claim registry, the synthetic fixture and py.typed;
installed (not editable), the package finds its expected_results and its fixture and writes its
outputs under the current directory."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from harness import paths

SOURCES = ("pyproject.toml", "README.md", "harness", "expected_results", "fixtures")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("needs setuptools in this environment to build the wheel offline")
    src = tmp_path_factory.mktemp("src")  # build outside the checkout: no build/ or egg-info
    for name in SOURCES:
        origin = paths.REPO_ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, src / name)
    out = tmp_path_factory.mktemp("dist")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    done = subprocess.run([*cmd, "-w", str(out), str(src)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (whl,) = out.glob("amibr_bench-*.whl")
    return whl


def test_wheel_contains_every_module_the_claim_registry_and_py_typed(wheel) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"harness/expected_results/{p.relative_to(paths.EXPECTED_RESULTS).as_posix()}"
        for p in paths.EXPECTED_RESULTS.rglob("*")
        if p.is_file() and p.suffix in (".yaml", ".md", ".csv", ".json")
    }
    assert "harness/expected_results/paper/fold_metrics.csv" in expected
    assert expected <= names, sorted(expected - names)
    assert "harness/py.typed" in names
    fixture = {
        f"harness/{p.relative_to(paths.REPO_ROOT).as_posix()}"
        for p in paths.SYNTHETIC_FIXTURE.rglob("*")
        if p.is_file()
    }
    assert len(fixture) > 300 and fixture <= names, sorted(fixture - names)[:5]
    modules = {
        p.relative_to(paths.REPO_ROOT).as_posix()
        for p in (paths.REPO_ROOT / "harness").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert modules <= names, f"modules missing from the wheel: {sorted(modules - names)}"


def test_installed_package_loads_the_paper_set_and_writes_to_cwd(wheel, tmp_path) -> None:
    site = tmp_path / "site"
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q"]
    done = subprocess.run([*cmd, "--target", str(site), str(wheel)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    work = tmp_path / "work"
    work.mkdir()
    probe = (
        "import harness, harness.paths as p, harness.results as r, harness.claims as c;"
        "print(harness.__file__); print(p.EXPECTED_RESULTS);"
        "s = r.load_results_set('paper'); print(len(s.configurations), len(c.load_claims()));"
        "print(p.cache_dir())"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", paths.CACHE_ENV)}
    # -S: no .pth files, so an editable install of the checkout cannot answer for a module the
    # wheel lacks; the dependencies come from this environment's site-packages, after the wheel.
    env["PYTHONPATH"] = os.pathsep.join([str(site), sysconfig.get_paths()["purelib"]])
    probe += ";import harness.claimkinds as k, harness.report as rp; print(k.__file__, rp.__file__)"
    probe += ";print(p.SYNTHETIC_FIXTURE, len(list(p.SYNTHETIC_FIXTURE.rglob('*.png'))))"
    done = subprocess.run(
        [sys.executable, "-S", "-c", probe], cwd=work, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    module, expected, counts, cache, subpackages, fixture = done.stdout.split("\n")[:6]
    where, pngs = fixture.rsplit(" ", 1)
    assert Path(where) == site / "harness/fixtures/synthetic" and int(pngs) > 300
    assert all(Path(f).is_relative_to(site) for f in subpackages.split()), subpackages
    assert Path(module).is_relative_to(site) and Path(expected) == site / "harness/expected_results"
    configs, claims = map(int, counts.split())
    assert configs == 17 and claims > 300
    assert Path(cache) == work / ".cache"
