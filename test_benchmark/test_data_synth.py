"""The synthetic fixture: regenerable bit for bit, in the authors' exact layout, small, and with
a class difference a tiny model learns at 32 px."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from harness import cli, data, splits, synth
from harness.imagecache import ImageCache

TINY = synth.Sizes(  # the smallest that leaves both classes in every fold for seeds 0-11
    amibr_slides=15,
    amibr_total=90,
    amibr_atypical=30,
    br_total=8,
    br_atypical=2,
    md_total=8,
    md_atypical=2,
)


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def regenerated(synth_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("regen") / "synthetic"
    assert cli.main(["data", "synth", "--out", str(out), "--seed", "0"]) == 0
    return out


def test_regenerating_gives_the_committed_fixture(synth_root, regenerated):
    assert _files(regenerated) == _files(synth_root)
    for name in (data.AMIBR_CSV, data.TRAIN_CSV, data.VOTES_CSV):
        assert (regenerated / name).read_bytes() == (synth_root / name).read_bytes(), name
    for rel in _files(synth_root):
        if rel.endswith(".png"):
            a = data.read_image(synth_root / rel)
            b = data.read_image(regenerated / rel)
            assert np.array_equal(a, b), rel


def test_another_seed_gives_another_dataset(tmp_path):
    a = synth.generate(tmp_path / "s1", seed=1, sizes=TINY)
    b = synth.generate(tmp_path / "s2", seed=2, sizes=TINY)
    assert data.verify(a) == [] and data.verify(b) == []
    assert (a / data.AMIBR_CSV).read_bytes() != (b / data.AMIBR_CSV).read_bytes()


def test_fixture_is_small_and_verifies(synth_root):
    size = sum(p.stat().st_size for p in synth_root.rglob("*") if p.is_file())
    assert size < 3_000_000
    assert data.verify(synth_root) == []


def test_fixture_shape(synth_root):
    figs = data.table1(synth_root)
    sizes = synth.Sizes()
    amibr = figs["AMi-Br"]
    assert (amibr["total"], amibr["atypical"]) == (sizes.amibr_total, sizes.amibr_atypical)
    assert amibr["slides"] == sizes.amibr_slides
    assert 18 <= amibr["test_share_pct"] <= 26
    assert set(amibr["sources"]) == {"TUPAC16", "MIDOG21"}
    assert 0 < amibr["agreement_n"] < amibr["total"]  # some expert disagreement, as in the paper
    assert 0 < figs["AtNorM-MD"]["agreement_n"] < figs["AtNorM-MD"]["total"]
    assert (figs["AtNorM-Br"]["total"], figs["AtNorM-Br"]["atypical"]) == (
        sizes.br_total,
        sizes.br_atypical,
    )
    assert (figs["AtNorM-MD"]["total"], figs["AtNorM-MD"]["atypical"]) == (
        sizes.md_total,
        sizes.md_atypical,
    )
    rows = splits.author_folds(synth_root)
    assert splits.slide_overlaps(rows) == []
    for k in range(1, 6):
        _train, val, _test = splits.fold_sets(rows, k)
        assert {r.label for r in val} == set(data.LABELS)


def _header(path: Path) -> list[str]:
    with path.open(newline="") as fh:
        return next(csv.reader(fh))


@pytest.mark.realdata
def test_layout_is_the_authors(synth_root, data_root):
    for name in (data.AMIBR_CSV, data.TRAIN_CSV, data.VOTES_CSV):
        assert _header(synth_root / name) == _header(data_root / name), name
    for ds in data.DATASETS:
        assert sorted(p.name for p in (synth_root / ds).iterdir()) == sorted(
            p.name for p in (data_root / ds).iterdir()
        )
    real_dirs = {p.name for p in data_root.iterdir() if p.is_dir()}
    assert {p.name for p in synth_root.iterdir() if p.is_dir()} == real_dirs


def test_refuses_to_replace_a_foreign_folder(tmp_path, capsys):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "thesis.tex").write_text("precious")
    assert cli.main(["data", "synth", "--out", str(target)]) == 1
    assert "refusing" in capsys.readouterr().err
    assert (target / "thesis.tex").read_text() == "precious"


def test_replaces_an_earlier_synthetic_tree_whole(tmp_path):
    out = synth.generate(tmp_path / "d", seed=3, sizes=TINY)
    stale = out / "AMi-Br" / "Normal" / "MIDOG21_999999.png"
    stale.write_bytes(b"stale")
    synth.generate(out, seed=3, sizes=TINY)
    assert not stale.exists() and data.verify(out) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no temporary folders left


def test_images_differ_between_classes_at_32px(synth_root):
    # atypical figures are scattered: their dark pixels spread further from the centre
    def spread(record) -> float:
        img = data.read_image(record.path).astype(float).mean(axis=2)
        small = img.reshape(32, 4, 32, 4).mean(axis=(1, 3))
        ys, xs = np.nonzero(small < 110)
        return float(np.mean((ys - 15.5) ** 2 + (xs - 15.5) ** 2)) if len(ys) else 0.0

    records = data.load_records(synth_root, "AMi-Br")
    aty = np.mean([spread(r) for r in records if r.label == "Atypical"])
    nor = np.mean([spread(r) for r in records if r.label == "Normal"])
    assert aty > 2 * nor


@pytest.fixture
def one_thread():
    """Tiny tensors: extra threads only add overhead on a 2-core machine (restored after)."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(before)


@pytest.mark.slow
def test_tiny_cnn_learns_the_classes(synth_root, tmp_path, one_thread):
    torch = one_thread
    from sklearn.metrics import balanced_accuracy_score

    torch.manual_seed(0)
    nn, functional = torch.nn, torch.nn.functional
    cache = ImageCache(tmp_path / "cache")
    records = data.load_records(synth_root, "AMi-Br")

    def tensors(recs):
        x = torch.from_numpy(cache.load_many(recs)).permute(0, 3, 1, 2).float() / 255
        x = functional.interpolate(x, size=(32, 32), mode="bilinear", antialias=True)
        return x, torch.tensor([r.label == "Atypical" for r in recs], dtype=torch.float32)

    x, y = tensors([r for r in records if r.split == "train"])
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 1),
    )
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    weight = torch.where(y > 0, (1 - y).sum() / y.sum(), torch.ones(()))
    for _epoch in range(10):
        order = torch.randperm(len(y))
        for i in range(0, len(y), 16):
            b = order[i : i + 16]
            loss = functional.binary_cross_entropy_with_logits(
                net(x[b]).squeeze(1), y[b], weight=weight[b]
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    for ds in data.DATASETS:
        recs = [r for r in data.load_records(synth_root, ds) if r.split != "train"]
        xt, yt = tensors(recs)
        with torch.no_grad():
            pred = (net(xt).squeeze(1) > 0).numpy()
        assert balanced_accuracy_score(yt.numpy(), pred) >= 0.8, ds


@pytest.mark.parametrize("dataset", ["AMi-Br", "AtNorM-Br", "AtNorM-MD"])
def test_a_synthetic_test_set_name_is_made_and_read_in_one_place(dataset):
    """'synthetic:<name>' is written by data.test_set_name and recognised by
    data.is_synthetic_test_set, and by nothing else (a results set, a merge, the experts)."""
    from harness import data

    name = data.test_set_name(dataset, synthetic=True)
    assert name == data.SYNTHETIC_PREFIX + dataset and data.is_synthetic_test_set(name)
    assert data.test_set_name(dataset, synthetic=False) == dataset
    assert not data.is_synthetic_test_set(dataset)
    assert not data.is_synthetic_test_set(data.SYNTHETIC_PREFIX)
