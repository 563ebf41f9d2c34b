"""Sessions: tests (CPU suite), smoke (main job), full_gpu (paper protocol), gpu_check (GPU
acceptance in minutes), regression, claims, bench, lint, folds (the committed authors' folds
regenerated under scikit-learn 1.7.2)."""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests"]

PYTHON = None  # the interpreter nox runs under (3.11 here)


def _install(session: nox.Session, extras: str = "test") -> None:
    session.install("-e", f".[{extras}]")


def _data_root() -> Path | None:
    """The public datasets, where the harness looks for them by default (None when absent)."""
    root = Path(
        os.environ.get("AMIBR_DATA_ROOT")
        or Path(__file__).parent.parent / "shared" / "data" / "amibr-benchmark"
    )
    return root if root.is_dir() else None


def _require_cuda(session: nox.Session) -> None:
    has_cuda = session.run(
        "python", "-c", "import torch; print(int(torch.cuda.is_available()))", silent=True
    )
    if not has_cuda or has_cuda.strip() != "1":
        session.skip("needs a CUDA device: torch.cuda.is_available() is False on this machine")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole CPU suite (claims against the paper's numbers included), then, where the data
    are, the `folds` check: the authors' folds regenerated under scikit-learn 1.7.2."""
    _install(session)
    session.run("pytest", "--benchmark-disable", *session.posargs)
    if _data_root() is not None:
        session.notify("folds")


@nox.session(python=PYTHON)
def smoke(session: nox.Session) -> None:
    """The main job: the whole pipeline on CPU in minutes, ending in the claim report."""
    _install(session)
    session.run("amibr-bench", "smoke", *session.posargs)


@nox.session(python=PYTHON)
def full_gpu(session: nox.Session) -> None:
    """The paper's protocol at full scale; needs a CUDA device and the foundation-model weights."""
    _install(session)
    _require_cuda(session)
    session.run("amibr-bench", "plan")
    # Preflight, a few minutes: the whole plan with shrunken models on this GPU (both presets),
    # then each configuration's throughput at full size, recorded beside the results.
    for preset in ("paper", "reference-code"):
        session.run(
            "pytest",
            "test_benchmark/test_full_rehearsal.py",
            "--benchmark-disable",
            env={"AMIBR_REHEARSAL_DEVICE": "cuda", "AMIBR_PRESET": preset},
        )
    session.run("amibr-bench", "throughput", "--all", "--json", "runs/full/throughput.json")
    # The claim tests train what they judge (each configuration and fold once, reused across runs),
    # then the GPU tests check every configuration finished all five folds.
    session.run(
        "pytest",
        "test_benchmark",
        "-m",
        "claims or gpu",
        "--results",
        "runs/full",
        "--train-full",
        "--benchmark-disable",
        *session.posargs,
    )
    session.run(
        "amibr-bench", "claims", "--results", "runs/full", "--out", "runs/full/report/claims.md"
    )


@nox.session(python=PYTHON)
def regression(session: nox.Session) -> None:
    """CI regression on model changes: the smoke tier against expected_results/baselines/
    (`-- --update-baseline --why TEXT` to accept a deliberate change)."""
    _install(session)
    session.run("amibr-bench", "regression", *session.posargs)


@nox.session(python=PYTHON)
def gpu_check(session: nox.Session) -> None:
    """GPU acceptance in under 8 minutes, from the checkout alone: the plan rehearsed on CUDA
    (paper, reference-code, fast), images/s, peak memory and 5-fold hours of three full-size
    configurations in fp32 and bf16, alone and 4 to a GPU -> runs/gpucheck/gpucheck.{json,md}."""
    _install(session)
    _require_cuda(session)
    session.run("python", "-m", "harness.gpucheck", "--out", "runs/gpucheck", *session.posargs)


@nox.session(python=PYTHON)
def claims(session: nox.Session) -> None:
    """Claim tests against a results set: `nox -s claims -- --results PATH`."""
    _install(session)
    session.run("pytest", "test_benchmark", "-m", "claims", "--benchmark-disable", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Speed and memory benchmarks (pytest-benchmark); numbers, never pass/fail on time."""
    _install(session)
    session.run(
        "pytest", "test_benchmark", "-m", "slow or not slow", "--benchmark-only", *session.posargs
    )


@nox.session(python=PYTHON)
def folds(session: nox.Session) -> None:
    """The authors' folds regenerated under the scikit-learn they used (1.7.x; 1.8 changed the
    draw) in a venv of their own, compared byte for byte with the committed
    expected_results/splits/amibr_author_folds.csv; fails with the count of differing rows.
    Needs the data: `nox -s folds -- --data-root DIR` (default $AMIBR_DATA_ROOT)."""
    if _data_root() is None and "--data-root" not in session.posargs:
        session.skip("needs the public datasets: --data-root DIR or $AMIBR_DATA_ROOT")
    session.install("scikit-learn==1.7.2", "numpy")
    session.run("python", "-m", "harness.foldfile", "--check", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.5")
    session.run("ruff", "check", "harness", "test_benchmark", "noxfile.py", "fixtures")
