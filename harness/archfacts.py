"""Architecture facts (parameter counts, attributes, what trains under LoRA), computed once per
timm, peft and torch version and kept on disk.

Judging the paper's architecture claims needs each model built on the meta device; building ten
timm architectures 27 times took about 10 s of a 10.6 s `claims --results paper`. The facts
depend only on the registry entry and the library versions, so they are memoised in
`<cache>/architecture/<versions>.json`, keyed by the fact, the model and its registry digest: a
changed entry or another timm/peft/torch is a miss, and the model is built again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from harness import paths

LIBRARIES = ("torch", "timm", "peft")


def _versions() -> str:
    out = []
    for dist in LIBRARIES:
        try:
            out.append(f"{dist}-{metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            out.append(f"{dist}-absent")
    return "_".join(out)


def cache_file(cache_dir: Path | None = None) -> Path:
    """`<cache>/architecture/torch-X_timm-Y_peft-Z.json` for the installed versions."""
    return (cache_dir or paths.cache_dir()) / "architecture" / f"{_versions()}.json"


class ArchFacts:
    """A JSON memo of architecture facts: `get(fact, model, digest, compute)`.

    Values must be JSON-serialisable (ints, strings, lists, dicts). An unreadable cache file is
    a miss (it is rewritten); a cache folder that cannot be written is tolerated (facts are then
    recomputed next time), since the facts are always recomputable."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or cache_file()
        self._table: dict[str, Any] | None = None
        self._dirty = False

    def _load(self) -> dict[str, Any]:
        if self._table is None:
            try:
                table = json.loads(self.path.read_text(encoding="utf-8"))
                self._table = table if isinstance(table, dict) else {}
            except (OSError, ValueError):
                self._table = {}
        return self._table

    def get(self, fact: str, model: str, digest: str, compute: Callable[[], Any]) -> Any:
        key = f"{fact}|{model}|{digest}"
        table = self._load()
        if key not in table:
            value = compute()
            json.dumps(value)  # a fact that cannot be stored is a bug of the caller
            table[key] = value
            self._dirty = True
        return table[key]

    def save(self) -> None:
        """Write the memo if anything was added (atomically; silently skipped when read-only)."""
        if not self._dirty or self._table is None:
            return
        try:
            paths.atomic_write(self.path, json.dumps(self._table, indent=1, sort_keys=True))
            self._dirty = False
        except OSError:
            pass
