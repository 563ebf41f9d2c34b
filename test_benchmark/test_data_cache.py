"""The decoded-image cache: same pixels as PIL, no decoding once warm, keyed by content, and a
corrupt image is an error naming it, never a skipped row."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from harness import data
from harness.imagecache import ImageCache, file_key


@pytest.fixture(scope="module")
def records(synth_root):
    return data.load_records(synth_root, "AMi-Br")[:40]


def _pil(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_load_many_gives_the_decoded_pixels(records, tmp_path):
    cache = ImageCache(tmp_path / "cache")
    batch = cache.load_many(records)
    assert batch.shape == (len(records), 128, 128, 3) and batch.dtype == np.uint8
    for array, record in zip(batch, records, strict=True):
        assert np.array_equal(array, _pil(record.path))
    assert (cache.hits, cache.misses) == (0, len(records))


def test_warm_cache_never_decodes(records, tmp_path, monkeypatch):
    cache = ImageCache(tmp_path / "cache")
    assert cache.warm(records) == len(records)
    cold = cache.load_many(records)

    def no_decoding(*_args):
        raise AssertionError("a PNG was decoded although the cache is warm")

    monkeypatch.setattr(data, "decode_png", no_decoding)
    fresh = ImageCache(tmp_path / "cache")  # a new process sees the same store
    warm = fresh.load_many([r.path for r in records])
    assert np.array_equal(warm, cold)
    assert (fresh.hits, fresh.misses) == (len(records), 0)
    assert fresh.warm(records) == 0


def test_entries_are_keyed_by_content(records, tmp_path):
    cache = ImageCache(tmp_path / "cache")
    a, b = records[0].path, records[1].path
    copy = tmp_path / "copy.png"
    shutil.copy(a, copy)
    cache.get(a)
    cache.get(copy)
    assert cache.misses == 1 and cache.hits == 1  # same bytes, one entry
    shutil.copy(b, copy)  # the file at that path changes: its pixels must change too
    assert np.array_equal(cache.get(copy), _pil(b))
    assert cache.entry(file_key(a.read_bytes())).is_file()
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 2


def test_damaged_entry_is_decoded_again(records, tmp_path):
    cache = ImageCache(tmp_path / "cache")
    path = records[0].path
    expected = cache.get(path)
    entry = cache.entry(file_key(path.read_bytes()))
    entry.write_bytes(b"not an array")
    assert np.array_equal(cache.get(path), expected)
    np.save(entry, np.zeros((4, 4), dtype=np.uint8))
    assert np.array_equal(ImageCache(tmp_path / "cache").get(path), expected)


def test_corrupt_image_raises_naming_it(records, tmp_path):
    broken = tmp_path / "broken.png"
    raw = bytearray(records[0].path.read_bytes())
    raw[200] ^= 0x55
    broken.write_bytes(bytes(raw))
    cache = ImageCache(tmp_path / "cache")
    paths = [r.path for r in records[:5]] + [broken] + [r.path for r in records[5:10]]
    with pytest.raises(data.DataError) as info:
        cache.load_many(paths)
    assert info.value.path == broken and str(broken) in str(info.value)
    with pytest.raises(data.DataError, match="missing.png"):
        cache.get(tmp_path / "missing.png")
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_empty_list(tmp_path):
    assert ImageCache(tmp_path).load_many([]).shape == (0, 128, 128, 3)


def test_key_is_stable_and_content_only():
    assert file_key(b"abc") == file_key(b"abc") != file_key(b"abd")
    assert len(file_key(b"")) == 40


# ---------------------------------------------------------------------------------------------
# benchmarks (nox -s bench); under --benchmark-disable each runs once as a plain test


@pytest.fixture(scope="module")
def all_synthetic(synth_root):
    return [r.path for ds in data.DATASETS for r in data.load_records(synth_root, ds)]


@pytest.mark.slow
def test_bench_cold_load(benchmark, all_synthetic, tmp_path_factory):
    def fresh():
        return (ImageCache(tmp_path_factory.mktemp("cold")), all_synthetic), {}

    batch = benchmark.pedantic(lambda c, p: c.load_many(p), setup=fresh, rounds=3)
    assert batch.shape[0] == len(all_synthetic)


@pytest.mark.slow
def test_bench_warm_load(benchmark, all_synthetic, tmp_path):
    cache = ImageCache(tmp_path / "cache")
    cache.warm(all_synthetic)
    batch = benchmark(cache.load_many, all_synthetic)
    assert batch.shape[0] == len(all_synthetic) and cache.misses == len(all_synthetic)
