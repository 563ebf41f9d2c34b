"""Where a results set came from: harness version and commit, library versions, device, precision.

Every results set the harness writes records this in its manifest (`provenance`), and the
regression check (`harness.regression`) lists the fields that differ between two sets, so a
changed number can be traced to a changed dependency, device or precision.
"""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from harness import __version__, paths

# Distributions whose versions can change a number (pip names).
LIBRARIES = ("torch", "torchvision", "timm", "peft", "scikit-learn", "numpy", "scipy")
FIELDS = ("harness_version", "git_commit", "python", *LIBRARIES, "device", "precision")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def git_commit() -> str | None:
    """The checkout's commit (with '+dirty' when tracked files changed); None outside git."""
    try:
        head = subprocess.run(
            ["git", "-C", str(paths.REPO_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(paths.REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head or None


def device_name(device: str | None) -> str:
    """A readable device name: the GPU's own name for cuda devices, else the CPU's."""
    if device and device.startswith("cuda"):
        try:
            import torch

            return torch.cuda.get_device_name(device)
        except (RuntimeError, AssertionError, ValueError):
            return device
    return f"cpu ({platform.machine()}, {platform.processor() or 'unknown processor'})"


def collect(device: str | None = None, precision: str | None = None) -> dict[str, Any]:
    """The provenance of a results set written now.

    Returns a dict with keys `FIELDS` (str or None): versions as pip reports them, `device` as
    `device_name` gives it, `precision` as recorded by the run (e.g. "fp32")."""
    out: dict[str, Any] = {
        "harness_version": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
    }
    out.update({lib: _version(lib) for lib in LIBRARIES})
    out["device"] = device_name(device) if device else None
    out["precision"] = precision
    return out


def differences(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> list[str]:
    """The provenance fields that differ between two sets, as 'field: A -> B' lines (a set that
    records no provenance reads as 'unrecorded')."""
    a, b = dict(a or {}), dict(b or {})
    out = []
    for key in [*FIELDS, *sorted((set(a) | set(b)) - set(FIELDS))]:
        left, right = a.get(key, "unrecorded"), b.get(key, "unrecorded")
        if left != right:
            out.append(f"{key}: {left} -> {right}")
    return out
