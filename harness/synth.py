"""A small synthetic dataset in exactly the authors' layout (`fixtures/synthetic` is its output).

Every part of the pipeline (verify, folds, caches, training, claims) runs on it without the real
data. Normal figures are one compact dark ellipse, atypical ones several scattered dark blobs, on
a pink H&E-like background; the difference survives downscaling to 32 px, so a tiny model learns
it in a few epochs. The images use only IEEE-exact arithmetic (no transcendental functions), so
regenerating with the same seed gives the same pixels on any machine.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from harness import data, splits

SIZE = 128
_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)

AMIBR_HEADER = (
    "",
    "slide",
    "dataset",
    "uid",
    "x",
    "y",
    "expert1_label",
    "expert2_label",
    "expert1_atypical",
    "expert2_atypical",
    "expert3_atypical",
    "majority_atypical",
)
TRAIN_HEADER = (
    "Unnamed: 0",
    "slide",
    "dataset",
    "uid",
    "final_label",
    "dataset_uid",
    "x",
    "y",
    "expert1_label",
    "expert2_label",
    "expert1_atypical",
    "expert2_atypical",
    "expert3_atypical",
    "majority_atypical",
)
AMF_SUBTYPES = ("AMF segregation", "AMF multipolar", "AMF bipolar assymetric", "AMF other")
NMF_SUBTYPES = ("NMF prometaphase", "NMF metaphase", "NMF anaphase-telophase", "NMF ring shape")


@dataclass(frozen=True)
class Sizes:
    """How many figures each synthetic set holds (defaults: the committed fixture)."""

    amibr_slides: int = 30
    amibr_total: int = 240
    amibr_atypical: int = 60
    amibr_test_share: float = 0.22
    br_total: int = 60
    br_atypical: int = 10
    md_total: int = 80
    md_atypical: int = 8


# Stain per domain: background, tissue (eosin), chromatin; the held-out sets are shifted a little.
_STAINS = {
    "AMi-Br": ((236, 214, 226), (214, 150, 186), (62, 34, 104)),
    "AtNorM-Br": ((228, 206, 222), (200, 136, 180), (54, 30, 92)),
    "AtNorM-MD": ((238, 220, 224), (220, 160, 176), (70, 40, 96)),
}


# ---------------------------------------------------------------------------------------------
# Images


def _unit_vector(rng: np.random.Generator) -> tuple[float, float]:
    """A random direction by rejection sampling (sqrt is exact in IEEE, cos/sin are not)."""
    while True:
        u, v = rng.random() * 2 - 1, rng.random() * 2 - 1
        r2 = u * u + v * v
        if 0.01 < r2 <= 1.0:
            r = float(np.sqrt(r2))
            return u / r, v / r


def _upsample(grid: np.ndarray) -> np.ndarray:
    """Bilinear upsampling of a coarse grid to SIZE x SIZE (arithmetic only)."""
    n = grid.shape[0]
    pos = (np.arange(SIZE, dtype=np.float64) + 0.5) * (n - 1) / SIZE
    i0 = np.minimum(pos.astype(np.int64), n - 2)
    t = pos - i0
    rows = grid[i0] * (1 - t)[:, None] + grid[i0 + 1] * t[:, None]
    return rows[:, i0] * (1 - t)[None, :] + rows[:, i0 + 1] * t[None, :]


def _ellipse_alpha(cx, cy, a, b, direction, edge=0.35) -> np.ndarray:
    """Soft-edged ellipse coverage in [0, 1] (smoothstep of the normalised radius)."""
    c, s = direction
    dx, dy = _XX - cx, _YY - cy
    u = (dx * c + dy * s) / a
    v = (-dx * s + dy * c) / b
    t = np.clip((1.0 - (u * u + v * v)) / edge, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _blend(img: np.ndarray, alpha: np.ndarray, color) -> None:
    img *= 1.0 - alpha[..., None]
    img += alpha[..., None] * np.asarray(color, dtype=np.float64)


def render(rng: np.random.Generator, atypical: bool, dataset: str) -> np.ndarray:
    """One 128x128 RGB mitotic-figure patch."""
    background, tissue, chromatin = (np.asarray(c, dtype=np.float64) for c in _STAINS[dataset])
    jitter = (rng.random(3) - 0.5) * 16.0
    # tissue density in 8 flat levels: smooth gradients would cost ~3x more PNG bytes
    density = np.floor(_upsample(rng.random((6, 6))) * 8.0) / 8.0
    img = background + density[..., None] * (tissue - background) + jitter
    # pale interphase nuclei around the figure, away from the centre
    for _ in range(int(rng.integers(2, 6))):
        d = _unit_vector(rng)
        r = 34 + rng.random() * 26
        cx, cy = SIZE / 2 + d[0] * r, SIZE / 2 + d[1] * r
        a = 7 + rng.random() * 5
        alpha = _ellipse_alpha(cx, cy, a, a * (0.6 + rng.random() * 0.3), _unit_vector(rng))
        _blend(img, alpha * 0.55, (150, 110, 175))
    shade = chromatin + (rng.random(3) - 0.5) * 24.0
    cx, cy = SIZE / 2 + (rng.random() - 0.5) * 8, SIZE / 2 + (rng.random() - 0.5) * 8
    if atypical:
        # several scattered, irregular clumps (lagging chromosomes, multipolar spindles)
        for _ in range(int(rng.integers(4, 8))):
            d = _unit_vector(rng)
            r = 10 + rng.random() * 16
            a = 4.0 + rng.random() * 3.0
            alpha = _ellipse_alpha(
                cx + d[0] * r, cy + d[1] * r, a, a * (0.6 + rng.random() * 0.4), _unit_vector(rng)
            )
            _blend(img, alpha, shade)
    else:
        # one compact dark figure (prometaphase clump or metaphase plate)
        a = 9 + rng.random() * 5
        b = a * (0.5 + rng.random() * 0.35)
        _blend(img, _ellipse_alpha(cx, cy, a, b, _unit_vector(rng)), shade)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode="RGB").save(buffer, format="PNG", compress_level=9)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# Layout


def _votes(rng: np.random.Generator, atypical: bool, n: int, agree: float) -> list[bool]:
    """n expert votes whose majority is the label; all agree with probability `agree`."""
    votes = [atypical] * n
    if rng.random() >= agree:
        dissent = int(rng.integers(1, (n - 1) // 2 + 1))
        for i in rng.permutation(n)[:dissent]:
            votes[int(i)] = not atypical
    return votes


def _subtype(rng: np.random.Generator, atypical: bool) -> str:
    names = AMF_SUBTYPES if atypical else NMF_SUBTYPES
    return names[int(rng.integers(len(names)))]


def _write_csv(path: Path, header, rows) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _amibr(out: Path, rng: np.random.Generator, sizes: Sizes) -> None:
    n_slides = sizes.amibr_slides
    # slide sizes: 1 + a multinomial share of the rest, so every slide holds a figure
    weights = 0.5 + rng.random(n_slides)
    per_slide = 1 + rng.multinomial(sizes.amibr_total - n_slides, weights / weights.sum())
    half = n_slides // 2
    midog = sorted(int(k) for k in rng.choice(np.arange(1, 200), half, replace=False))
    tupac = sorted(int(k) for k in rng.choice(np.arange(1, 74), n_slides - half, replace=False))
    slides = [("MIDOG21", f"{k:03d}.tiff") for k in midog] + [
        ("TUPAC16", f"{k:02d}.tif") for k in tupac
    ]
    atypical = np.zeros(sizes.amibr_total, dtype=bool)
    atypical[rng.choice(sizes.amibr_total, sizes.amibr_atypical, replace=False)] = True

    # test split: whole slides, drawn until about 22% of the figures are held out; drawn again
    # (rarely, on tiny trees) until the test split and the training pool both hold both classes
    target = round(sizes.amibr_test_share * sizes.amibr_total)
    first = np.concatenate([[0], np.cumsum(per_slide)])
    for _attempt in range(1000):
        test_slides, held = set(), 0
        for i in rng.permutation(n_slides):
            if held + per_slide[i] <= target + 2:
                test_slides.add(int(i))
                held += int(per_slide[i])
            if held >= target - 2:
                break
        in_test = np.zeros(sizes.amibr_total, dtype=bool)
        for i in test_slides:
            in_test[first[i] : first[i + 1]] = True
        if all(len(set(atypical[part])) == 2 for part in (in_test, ~in_test)):
            break

    rows, train_rows, figure = [], [], 0
    uid = {"MIDOG21": int(rng.integers(1, 20)), "TUPAC16": int(rng.integers(1, 20))}
    for s, (source, slide) in enumerate(slides):
        for _ in range(int(per_slide[s])):
            aty = bool(atypical[figure])
            figure += 1
            uid[source] += int(rng.integers(1, 4))
            votes = _votes(rng, aty, 3, agree=0.78)
            x, y = int(rng.integers(100, 20000)), int(rng.integers(100, 20000))
            labels = [_subtype(rng, v) for v in votes[:2]]
            name = f"{source}_{uid[source]}.png"
            label = data.LABELS[0] if aty else data.LABELS[1]
            index = len(rows)
            flags = [str(v) for v in votes]
            rows.append([index, slide, source, uid[source], x, y, *labels, *flags, str(aty)])
            if s not in test_slides:
                train_rows.append(
                    [
                        index,
                        slide,
                        source,
                        uid[source],
                        label,
                        name,
                        x,
                        y,
                        *labels,
                        *flags,
                        str(aty),
                    ]
                )
            image = render(rng, aty, "AMi-Br")
            (out / "AMi-Br" / label / name).write_bytes(_png_bytes(image))
    _write_csv(out / data.AMIBR_CSV, AMIBR_HEADER, rows)
    _write_csv(out / data.TRAIN_CSV, TRAIN_HEADER, train_rows)


def _numbered(out: Path, rng: np.random.Generator, dataset: str, total: int, n_aty: int):
    """AtNorM-style sets: images named 1.png..N.png, classes interleaved at random."""
    atypical = np.zeros(total, dtype=bool)
    atypical[rng.choice(total, n_aty, replace=False)] = True
    for i in range(total):
        label = data.LABELS[0] if atypical[i] else data.LABELS[1]
        image = render(rng, bool(atypical[i]), dataset)
        (out / dataset / label / f"{i + 1}.png").write_bytes(_png_bytes(image))
    return atypical


def _atnorm_md(out: Path, rng: np.random.Generator, sizes: Sizes) -> None:
    atypical = _numbered(out, rng, "AtNorM-MD", sizes.md_total, sizes.md_atypical)
    rows = []
    for i, aty in enumerate(atypical):
        votes = _votes(rng, bool(aty), 5, agree=0.70)
        names = [data.LABELS[0] if v else data.LABELS[1] for v in votes]
        rows.append([f"{i + 1}.png", *names, data.LABELS[0] if aty else data.LABELS[1]])
    _write_csv(out / data.VOTES_CSV, data.VOTES_COLUMNS, rows)


LAYOUT = (
    *data.DATASETS,
    data.AMIBR_CSV,
    data.TRAIN_CSV,
    data.VOTES_CSV,
    data.SYNTHETIC_MARKER,
    splits.SYNTHETIC_FOLDS,
)


def generate(out: str | os.PathLike, seed: int = 0, sizes: Sizes | None = None) -> Path:
    """Write the synthetic dataset to `out`, replacing an earlier one as a whole (never half)."""
    sizes = sizes or Sizes()
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise FileExistsError(f"{out} exists and is not a folder")
        foreign = sorted(p.name for p in out.iterdir() if p.name not in LAYOUT)
        if foreign:
            raise FileExistsError(
                f"{out} holds files that are not a dataset tree ({', '.join(foreign[:5])}); "
                "refusing to replace it"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for ds in data.DATASETS:
            for label in data.LABELS:
                (tmp / ds / label).mkdir(parents=True)
        seeds = np.random.SeedSequence(seed).spawn(3)
        _amibr(tmp, np.random.default_rng(seeds[0]), sizes)
        _numbered(
            tmp, np.random.default_rng(seeds[1]), "AtNorM-Br", sizes.br_total, sizes.br_atypical
        )
        _atnorm_md(tmp, np.random.default_rng(seeds[2]), sizes)
        (tmp / data.SYNTHETIC_MARKER).write_text(
            f"Synthetic dataset written by `amibr-bench data synth --seed {seed}`; not real data.\n"
        )
        # Its own folds, drawn once now (they are not the authors' images; harness.splits).
        splits.write_synthetic_folds(tmp)
        problems = data.verify(tmp)
        if problems:  # a generator bug must never leave a broken fixture behind
            raise RuntimeError("synthetic dataset fails verification: " + str(problems[0]))
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / "tree")
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def cli_synth(args) -> int:
    """`amibr-bench data synth --out DIR [--seed N]`."""
    try:
        out = generate(args.out, seed=args.seed)
    except (FileExistsError, RuntimeError) as exc:
        print(f"amibr-bench: {exc}", file=sys.stderr)
        return 1
    figs = data.table1(out)
    print(f"wrote {out} (seed {args.seed})")
    print(data.format_table1(figs))
    return 0
