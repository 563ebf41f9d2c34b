"""Decoded-image cache: every PNG is decoded once, then training epochs read uint8 arrays.

Entries are keyed by a hash of the file's bytes, not its path, so a changed file can never be
served stale pixels and the same image under two paths is stored once. A corrupt image raises
DataError naming it; it is never skipped.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from harness import data, paths

# Part of every key: bump it when decoding changes so that old entries are no longer found.
KEY_VERSION = b"amibr-imagecache-v1"


def file_key(content: bytes) -> str:
    """The store key of one image file's bytes (blake2b, 160 bits)."""
    return hashlib.blake2b(content, digest_size=20, key=KEY_VERSION).hexdigest()


def _as_path(item) -> Path:
    return Path(item.path if hasattr(item, "path") else item)


class ImageCache:
    """A folder of `<key[:2]>/<key>.npy` files, one 128x128x3 uint8 array per distinct image."""

    def __init__(self, directory: str | os.PathLike | None = None):
        if directory is None:
            directory = paths.cache_dir() / "images"
        self.directory = Path(directory)
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()

    def entry(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.npy"

    def _read_entry(self, entry: Path) -> np.ndarray | None:
        """A stored array, or None when absent or damaged (the cache is derived data)."""
        try:
            array = np.load(entry, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if array.shape != data.IMAGE_SHAPE or array.dtype != np.uint8:
            return None
        return array

    def _write_entry(self, entry: Path, array: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        paths.atomic_write(entry, buffer.getvalue())  # concurrent writers store identical bytes

    def get(self, path) -> np.ndarray:
        """The decoded image at `path` (a path or a Record), decoding it only on a cache miss."""
        path = _as_path(path)
        try:
            content = path.read_bytes()
        except OSError as exc:
            raise data.DataError(path, f"unreadable file ({exc.strerror or exc})") from exc
        entry = self.entry(file_key(content))
        array = self._read_entry(entry)
        hit = array is not None
        if not hit:
            array = data.decode_png(content, path)
            self._write_entry(entry, array)
        with self._lock:
            if hit:
                self.hits += 1
            else:
                self.misses += 1
        return array

    def load_many(self, items: Iterable, workers: int | None = None) -> np.ndarray:
        """All images (paths or Records) as one N x 128 x 128 x 3 uint8 array, in input order."""
        items = [_as_path(i) for i in items]
        out = np.empty((len(items), *data.IMAGE_SHAPE), dtype=np.uint8)
        if not items:
            return out

        def fill(i: int) -> None:
            out[i] = self.get(items[i])

        workers = workers or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(fill, range(len(items))):
                pass  # re-raises the first DataError in input order
        return out

    def warm(self, items: Iterable, workers: int | None = None) -> int:
        """Decode every image not yet stored; returns how many were new."""
        before = self.misses
        self.load_many(items, workers)
        return self.misses - before
