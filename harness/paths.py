"""Where things live: data root, weights, caches, outputs. Flags win over environment variables.

Outputs (runs/, reports/, .cache/) go under the current working directory, never into the
installed package; the claim registry (expected_results/) is package data of `harness`."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent  # the source checkout (not in an install)


def _expected_results() -> Path:
    """The checkout's expected_results/, else the copy a wheel installs as harness/expected_results."""
    checkout = REPO_ROOT / "expected_results"
    return checkout if checkout.is_dir() else Path(__file__).resolve().parent / "expected_results"


EXPECTED_RESULTS = _expected_results()
FIXTURES = REPO_ROOT / "fixtures"
SYNTHETIC_FIXTURE = FIXTURES / "synthetic"

DATA_ENV = "AMIBR_DATA_ROOT"
WEIGHTS_ENV = "AMIBR_WEIGHTS"
CACHE_ENV = "AMIBR_CACHE"
MODELS_ENV = "AMIBR_MODELS"  # a user's models file (harness.userfile), as --models FILE

# Where the read-only shared checkout keeps the authors' datasets (dev machines and CI).
SHARED_DATA = REPO_ROOT.parent / "shared" / "data" / "amibr-benchmark"


class InputError(ValueError):
    """Bad user input (a file, a folder, an option): the CLI prints its one-line message."""


class MissingInputError(InputError):
    """An input the user must supply (data, weights, results) is absent; the message says what."""


def data_root(flag: str | os.PathLike | None = None, *, required: bool = True) -> Path | None:
    """The dataset root: --data-root, else $AMIBR_DATA_ROOT, else ../shared/data/amibr-benchmark."""
    if flag:
        root = Path(flag).expanduser()
        source = "--data-root"
    elif os.environ.get(DATA_ENV):
        root = Path(os.environ[DATA_ENV]).expanduser()
        source = f"${DATA_ENV}"
    else:
        root = SHARED_DATA
        source = "the default location"
    if root.is_dir():
        return root.resolve()
    if required:
        raise MissingInputError(
            f"data root {root} (from {source}) does not exist: clone "
            "https://github.com/DeepMicroscopy/AMi-Br_Benchmark and pass its folder with "
            f"--data-root or ${DATA_ENV}"
        )
    return None


def weights_dir(flag: str | os.PathLike | None = None) -> Path | None:
    """The folder holding foundation-model weights: --weights-dir, else $AMIBR_WEIGHTS."""
    value = flag or os.environ.get(WEIGHTS_ENV)
    if not value:
        return None
    path = Path(value).expanduser().resolve()
    if not path.is_dir():
        source = "--weights-dir" if flag else f"${WEIGHTS_ENV}"
        raise MissingInputError(f"weights folder {path} (from {source}) does not exist")
    return path


def output_dir(name: str) -> Path:
    """Default home of an output folder (runs, reports): under the current working directory."""
    return Path.cwd() / name


def cache_dir(flag: str | os.PathLike | None = None) -> Path:
    """Decoded images and embeddings are cached here (never inside the data root): `flag` or
    $AMIBR_CACHE, else .cache/ in the current working directory."""
    value = flag or os.environ.get(CACHE_ENV)
    path = Path(value).expanduser() if value else output_dir(".cache")
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def atomic_write(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write a file so that readers see the old one or the whole new one, never half of it."""
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
