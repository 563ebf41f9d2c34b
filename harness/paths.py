"""Where things live: data root, weights, caches, outputs. Flags win over environment variables.

Outputs (runs/, reports/, .cache/) go under the current working directory, never into the
installed package; the claim registry (expected_results/) and the synthetic fixture
(fixtures/synthetic) are package data of `harness`."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent  # the source checkout (not in an install)


def _shipped(name: str) -> Path:
    """The checkout's top-level folder `name`, else the copy a wheel installs as harness/<name>."""
    checkout = REPO_ROOT / name
    return checkout if checkout.is_dir() else Path(__file__).resolve().parent / name


EXPECTED_RESULTS = _shipped("expected_results")  # the claim registry and the `paper` set
FIXTURES = _shipped("fixtures")
SYNTHETIC_FIXTURE = FIXTURES / "synthetic"  # the smoke tier's synthetic tree

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


def one_line(exc: BaseException | str) -> str:
    """An error's message on one line: a message listing several problems on several lines
    (a library's, or a long list) keeps every line, joined with '; '."""
    text = ""
    for line in (part.strip() for part in str(exc).splitlines()):
        if line:
            text += line if not text else (" " if text.endswith(":") else "; ") + line
    return text


class RunFailed(RuntimeError):
    """A run stopped for a reason its one-line message explains and the user can act on (e.g.
    non-finite numbers: another preset, precision or learning rate). Not bad input and not a
    harness bug: the CLI prints the line and exits 2, as for InputError (docs/ARCHITECTURE.md)."""


def data_root(flag: str | os.PathLike | None = None, *, required: bool = True) -> Path | None:
    """The dataset root: --data-root, else $AMIBR_DATA_ROOT, else ../shared/data/amibr-benchmark.

    Raises MissingInputError when it is absent (and `required`), InputError when it is a file."""
    if flag:
        root = Path(flag).expanduser()
        source = what = "--data-root"
    elif os.environ.get(DATA_ENV):
        root = Path(os.environ[DATA_ENV]).expanduser()
        source = what = f"${DATA_ENV}"
    else:
        root = SHARED_DATA
        source, what = "the default location", "data root"
    input_dir(root, what, must_exist=False)
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
    """The folder holding foundation-model weights: --weights-dir, else $AMIBR_WEIGHTS.

    Raises MissingInputError when the folder named is absent, InputError when it is a file."""
    value = flag or os.environ.get(WEIGHTS_ENV)
    if not value:
        return None
    path = Path(value).expanduser().resolve()
    source = "--weights-dir" if flag else f"${WEIGHTS_ENV}"
    input_dir(path, source, must_exist=False)
    if not path.is_dir():
        raise MissingInputError(f"weights folder {path} (from {source}) does not exist")
    return path


def output_dir(name: str) -> Path:
    """Default home of an output folder (runs, reports): under the current working directory."""
    return Path.cwd() / name


def cache_dir(flag: str | os.PathLike | None = None) -> Path:
    """Decoded images and embeddings are cached here (never inside the data root): the flag, else
    $AMIBR_CACHE, else .cache/ in the current working directory. Created when absent; raises
    InputError when it is a file or cannot be written in."""
    value = flag or os.environ.get(CACHE_ENV)
    path = Path(value).expanduser() if value else output_dir(".cache")
    writable_dir(path, "cache folder" if flag or not value else f"${CACHE_ENV}")
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


# --- checks of paths the user supplied (each raises InputError naming the path) -----------------


def _kind(path: Path) -> str | None:
    """'folder', 'file', 'dangling symlink', another kind of entry, or None when absent."""
    if path.is_dir():
        return "folder"
    if path.is_file():
        return "file"
    if path.is_symlink():
        return "dangling symlink"
    if os.path.lexists(path):
        return "special file (not a regular file or folder)"
    return None


def _named(what: str, path: Path) -> str:
    return f"{what} {path}" if what else str(path)


def _nearest(path: Path) -> Path:
    """`path`, or its nearest ancestor that exists."""
    while _kind(path) is None and path.parent != path:
        path = path.parent
    return path


def _not_a_folder(path: Path, named: Path) -> tuple[Path, str | None]:
    """(nearest existing of `path` and its ancestors, why it is no folder or None); the message
    names that entry unless it is `named`."""
    existing = _nearest(path)
    kind = _kind(existing)
    if kind == "folder":
        return existing, None
    where = "" if existing == named else f"{existing} "
    return existing, f"{where}is a {kind}, expected a folder"


def _folder_problem(path: Path, named: Path) -> str | None:
    """Why no file can be written in folder `path` (made if absent), or None; the message names
    the offending entry unless it is `named`. Creates nothing: the nearest existing ancestor must
    be a folder in which a probe file can be created."""
    existing, problem = _not_a_folder(path, named)
    if problem:
        return problem
    where = "" if existing == named else f" in {existing}"
    effective = os.access in os.supports_effective_ids
    if not os.access(existing, os.W_OK | os.X_OK, effective_ids=effective):
        return f"cannot write{where} (permission denied)"
    try:  # os.access trusts the mode bits; root, read-only mounts and ACLs need a real write
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".amibr-write-probe.")
    except OSError as exc:
        return f"cannot write{where} ({exc.strerror or exc})"
    os.close(fd)
    os.unlink(probe)
    return None


def writable_dir(path: str | os.PathLike, what: str = "") -> Path:
    """Check that the harness can write files in folder `path` (created later if absent).

    `what` names the option or variable the path came from (e.g. "--store", "$AMIBR_CACHE").
    Raises InputError naming it and the path: a file (or a file above it) where a folder is
    expected, or a folder this process cannot write in (read-only, permissions). Creates nothing."""
    path = Path(path).expanduser()
    problem = _folder_problem(path, path)
    if problem:
        raise InputError(f"{_named(what, path)}: {problem}")
    return path


def output_file(path: str | os.PathLike, what: str = "") -> Path:
    """Check that the harness can (atomically) write file `path`: not a folder or other non-file,
    in a folder it can write in. Raises InputError naming `what` and the path; creates nothing."""
    path = Path(path).expanduser()
    kind = _kind(path)
    problem = (
        f"is a {kind}, expected a file"
        if kind not in (None, "file")
        else _folder_problem(path.parent, path)
    )
    if problem:
        raise InputError(f"{_named(what, path)}: {problem}")
    return path


def input_dir(path: str | os.PathLike, what: str = "", *, must_exist: bool = True) -> Path:
    """Check that `path` is a folder to read from (or absent, when `must_exist` is False).
    Raises MissingInputError when it is absent, InputError when it is a file or a broken link."""
    path = Path(path).expanduser()
    existing, problem = _not_a_folder(path, path)
    if problem:
        raise InputError(f"{_named(what, path)}: {problem}")
    if existing != path and must_exist:
        raise MissingInputError(f"{_named(what, path)}: does not exist")
    return path


def atomic_write(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write a file so that readers see the old one or the whole new one, never half of it."""
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
