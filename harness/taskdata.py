"""The data a run trains and tests on: the training pool with the authors' folds and the three
test sets, decoded once (records from harness.data, folds from harness.splits: the committed
authors' fold file, or a synthetic tree's own)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from harness import data, paths

LABEL_NORMAL = "Normal"
TEST_SETS = data.DATASETS

# --- data ---------------------------------------------------------------------------------------


@dataclass
class TestSet:
    images: torch.Tensor
    labels: np.ndarray  # 1 = Normal
    names: list[str]


@dataclass
class TaskData:
    """The training pool with its folds and the three test sets, decoded once."""

    kind: str  # real | synthetic
    pool_images: torch.Tensor
    pool_labels: np.ndarray
    pool_folds: np.ndarray
    pool_names: list[str]
    tests: dict[str, TestSet]
    slide_overlaps: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    folds_source: str = "authors"  # harness.splits.FOLDS_SOURCES
    folds_sha256: str = ""  # digest of the fold table (what a configuration's hash covers)

    @property
    def folds(self) -> dict[str, str]:
        """RunConfig keyword arguments that key a configuration to these folds."""
        return {"folds_source": self.folds_source, "folds_sha256": self.folds_sha256}


def _load_images(paths_: Sequence[Path]) -> torch.Tensor:
    from harness.imagecache import ImageCache

    arr = ImageCache(paths.cache_dir() / "images").load_many(list(paths_))
    return torch.from_numpy(np.ascontiguousarray(arr))


def _subsample(n_keep: int | None, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of a class-stratified random subset (all when n_keep is None or large)."""
    idx = np.arange(len(labels))
    if n_keep is None or n_keep >= len(labels):
        return idx
    keep = []
    for cls in np.unique(labels):
        members = idx[labels == cls]
        k = max(2, round(n_keep * len(members) / len(labels)))
        keep.extend(rng.choice(members, size=min(k, len(members)), replace=False))
    return np.sort(np.array(keep))


def load_task(
    root: Path,
    kind: str,
    subset: Mapping[str, int] | None = None,
    seed: int = 0,
    folds_source: str = "authors",
) -> TaskData:
    """Records and folds from the data layer, images from the decoded-image cache.

    folds_source: "authors" (the committed fold file, or a synthetic tree's own) or
    "sklearn-installed" (harness.splits.fold_assignment); InputError on a bad fold file."""
    from harness import splits

    subset = dict(subset or {})
    rng = np.random.default_rng(seed)
    records = {d: data.load_records(root, d) for d in TEST_SETS}
    by_name = {r.name: r for r in records["AMi-Br"]}
    assignment = splits.fold_assignment(root, folds_source)
    rows = splits.author_folds(root, assignment=assignment)
    overlaps = list(splits.slide_overlaps(rows))
    pool = [r for r in rows if r.fold != "test"]
    test_rows = [r for r in rows if r.fold == "test"]
    missing = [r.image for r in rows if Path(str(r.image)).name not in by_name]
    if missing:
        raise RuntimeError(f"{len(missing)} split rows name no AMi-Br image, e.g. {missing[:3]}")
    labels = np.array([int(r.label == LABEL_NORMAL) for r in pool])
    keep = _subsample(subset.get("train_pool"), labels, rng)
    pool = [pool[i] for i in keep]
    test_records = {
        "AMi-Br": [by_name[Path(str(r.image)).name] for r in test_rows],
        "AtNorM-Br": records["AtNorM-Br"],
        "AtNorM-MD": records["AtNorM-MD"],
    }
    paths_ = [by_name[Path(str(r.image)).name].path for r in pool]
    tests = {}
    sizes = [len(paths_)]
    chosen = {}
    for name, recs in test_records.items():
        y = np.array([int(r.label == LABEL_NORMAL) for r in recs])
        idx = _subsample(subset.get("test"), y, rng)
        chosen[name] = [recs[i] for i in idx]
        paths_ += [r.path for r in chosen[name]]
        sizes.append(len(idx))
    images = _load_images(paths_)
    parts = torch.split(images, sizes)
    for (name, recs), part in zip(chosen.items(), parts[1:], strict=True):
        tests[data.test_set_name(name, kind == "synthetic")] = TestSet(
            part, np.array([int(r.label == LABEL_NORMAL) for r in recs]), [r.name for r in recs]
        )
    notes = [f"folds: {assignment.describe()}"]
    if subset:
        notes.append(f"subset (class-stratified, seed {seed}): {subset}")
    return TaskData(
        kind,
        parts[0],
        np.array([int(r.label == LABEL_NORMAL) for r in pool]),
        np.array([int(r.fold) for r in pool]),
        [Path(str(r.image)).name for r in pool],
        tests,
        overlaps,
        notes,
        assignment.source,
        assignment.sha256,
    )
