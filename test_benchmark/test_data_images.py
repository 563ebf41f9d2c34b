"""Images that must never decode: PNGs whose image data is cut short or overlong, whatever PIL's
process-wide ImageFile.LOAD_TRUNCATED_IMAGES says (any library in the process may set it), and,
in `data verify`, symbolic links that point nowhere or out of the data root."""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from pathlib import Path

import pytest
from PIL import ImageFile

from harness import cli, data
from harness.imagecache import ImageCache


def _chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        out.append((png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return out


def _png(chunks: list[tuple[bytes, bytes]]) -> bytes:
    """A PNG of these chunks, each with a correct CRC: only the image data itself is wrong."""
    body = b"".join(
        struct.pack(">I", len(payload)) + kind + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
        for kind, payload in chunks
    )  # fmt: skip
    return data._PNG_SIGNATURE + body


def _rebuilt(png: bytes, idat: bytes | None) -> bytes:
    """The same PNG with its IDAT chunks replaced by one holding `idat` (None: no IDAT)."""
    chunks = _chunks(png)
    head = [c for c in chunks if c[0] not in (b"IDAT", b"IEND")]
    return _png([*head, *([(b"IDAT", idat)] if idat is not None else []), (b"IEND", b"")])


def _stream(png: bytes) -> bytes:
    return b"".join(payload for kind, payload in _chunks(png) if kind == b"IDAT")


def _unterminated(raw: bytes) -> bytes:
    packer = zlib.compressobj()
    return packer.compress(raw) + packer.flush(zlib.Z_SYNC_FLUSH)  # every byte, no end marker


ROW = 1 + 128 * 3  # one filtered scanline of a 128 px RGB image: filter byte + pixels


def _rows(png: bytes) -> bytes:
    return zlib.decompress(_stream(png))


DAMAGE = {  # name -> (new IDAT content from the intact PNG, what the problem says)
    "half of the compressed stream": (
        lambda png: _stream(png)[: len(_stream(png)) // 2], "truncated PNG"
    ),
    "a complete stream of half the rows": (
        lambda png: zlib.compress(_rows(png)[: 64 * ROW]), "truncated PNG"
    ),
    "every row but no end of stream": (lambda png: _unterminated(_rows(png)), "truncated PNG"),
    "one row too many": (lambda png: zlib.compress(_rows(png) + bytes(ROW)), "corrupt PNG"),
    "no image data": (lambda png: None, "no IDAT chunk"),
}  # fmt: skip


@pytest.fixture(scope="module")
def png_bytes(synth_root) -> bytes:
    return data.load_records(synth_root, "AMi-Br")[0].path.read_bytes()


@pytest.fixture(params=[True, False], ids=["LOAD_TRUNCATED_IMAGES", "PIL default"])
def pil_flag(request, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", request.param)
    return request.param


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_incomplete_image_data_is_refused_whatever_pil_is_told(png_bytes, pil_flag, damage):
    change, says = DAMAGE[damage]
    broken = _rebuilt(png_bytes, change(png_bytes))
    with pytest.raises(data.DataError, match=says) as info:
        data.decode_png(broken, "x/cut.png")
    assert str(info.value).startswith("x/cut.png: ")


def test_the_rebuilt_png_is_otherwise_intact(png_bytes) -> None:
    """The helpers above change only the image data: an intact stream rebuilt so decodes."""
    again = _rebuilt(png_bytes, zlib.compress(_rows(png_bytes)))
    assert (data.decode_png(again, "a.png") == data.decode_png(png_bytes, "b.png")).all()


@pytest.fixture
def tree(synth_root, tmp_path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(synth_root, root)
    return root


def _an_image(root: Path) -> Path:
    return next(r.path for r in data.load_records(root, "AtNorM-Br") if r.label == "Normal")


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_cache_and_verify_refuse_incomplete_images(tree, tmp_path, monkeypatch, damage):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    change, says = DAMAGE[damage]
    path = _an_image(tree)
    path.write_bytes(_rebuilt(path.read_bytes(), change(path.read_bytes())))
    with pytest.raises(data.DataError, match=says):
        ImageCache(tmp_path / "cache").get(path)
    problems = data.verify(tree)
    assert [(p.path, says in p.message) for p in problems] == [(path, True)]


def _dangling(root: Path, tmp_path: Path) -> tuple[Path, str]:
    path = _an_image(root)
    path.unlink()
    path.symlink_to(tmp_path / "gone.png")
    return path, "dangling symlink"


def _leaving(root: Path, tmp_path: Path) -> tuple[Path, str]:
    path = _an_image(root)
    outside = tmp_path / "outside.png"
    shutil.move(path, outside)
    path.symlink_to(outside)
    return path, "symlink leaving the data root"


def _leaving_relative(root: Path, tmp_path: Path) -> tuple[Path, str]:
    path = _an_image(root)
    outside = tmp_path / "outside.png"
    shutil.move(path, outside)
    path.symlink_to(os.path.relpath(outside, path.parent))
    return path, "symlink leaving the data root"


LINKS = {"dangling": _dangling, "absolute, out of the tree": _leaving}
LINKS["relative, out of the tree"] = _leaving_relative


@pytest.mark.parametrize("case", sorted(LINKS))
def test_verify_names_symlinks_that_leave_the_tree_or_point_nowhere(tree, tmp_path, capsys, case):
    path, says = LINKS[case](tree, tmp_path)
    problems = data.verify(tree)
    assert [(p.path, says in p.message) for p in problems] == [(path, True)], problems
    assert cli.main(["data", "verify", "--data-root", str(tree)]) == 1
    assert capsys.readouterr().out.splitlines() == [str(problems[0])]


def test_symlinks_inside_the_tree_are_sound(tree) -> None:
    path = _an_image(tree)
    elsewhere = tree / "originals" / path.name
    elsewhere.parent.mkdir()
    shutil.move(path, elsewhere)
    path.symlink_to(os.path.relpath(elsewhere, path.parent))
    linked_root = tree.parent / "linked-root"
    linked_root.symlink_to(tree)  # the root itself may be reached through a link
    assert data.verify(tree) == [] and data.verify(linked_root) == []
