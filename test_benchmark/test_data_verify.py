"""`data verify` and the records: the real tree is sound, and every defect of a tree is reported
as exactly one line naming the file, never as a crash."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from harness import cli, data

# ---------------------------------------------------------------------------------------------
# real data (PNGs decoded once per session, in `real_problems`)


@pytest.fixture(scope="module")
def real_problems(data_root):
    return data.verify(data_root)


@pytest.mark.realdata
def test_real_tree_is_sound(real_problems):
    assert real_problems == [], "\n".join(str(p) for p in real_problems[:20])


@pytest.mark.realdata
def test_real_records_agree_with_folders_and_csvs(data_root):
    for ds in data.DATASETS:
        records = data.load_records(data_root, ds)
        on_disk = Counter(
            lab
            for lab in data.LABELS
            for n in os.listdir(data_root / ds / lab)
            if n.endswith(".png")
        )
        assert Counter(r.label for r in records) == on_disk, ds
        assert len({r.name for r in records}) == len(records), ds
        assert all(r.path.is_file() and r.path.parent.name == r.label for r in records), ds
    amibr = data.load_records(data_root, "AMi-Br")
    with (data_root / data.TRAIN_CSV).open(newline="") as fh:
        train = {row["dataset_uid"] for row in csv.DictReader(fh)}
    assert {r.name for r in amibr if r.split == "train"} == train
    assert {r.source for r in amibr} == {"TUPAC16", "MIDOG21"}
    assert all(r.name.startswith(f"{r.source}_") for r in amibr)
    assert all(r.slide and len(r.votes) == 3 for r in amibr)
    md = data.load_records(data_root, "AtNorM-MD")
    assert all(len(r.votes) == 5 and r.source == "MIDOG++" and r.slide is None for r in md)
    br = data.load_records(data_root, "AtNorM-Br")
    assert all(r.votes is None and r.slide is None and r.source == "TCGA" for r in br)


@pytest.mark.realdata
def test_real_table1_is_consistent_with_records(data_root):
    figs = data.table1(data_root)
    for ds, f in figs.items():
        records = data.load_records(data_root, ds)
        assert f["total"] == len(records) == f["atypical"] + f["normal"]
        assert f["amf_rate_pct"] == pytest.approx(100 * f["atypical"] / f["total"])
        if f["agreement_n"] is not None:
            unanimous = sum(len(set(r.votes)) == 1 for r in records)
            assert f["agreement_n"] == unanimous
    amibr = figs["AMi-Br"]
    assert sum(amibr["source_counts"].values()) == amibr["total"]
    assert amibr["test_n"] + amibr["train_n"] == amibr["total"]
    assert figs["AtNorM-Br"]["agreement_n"] is None


# ---------------------------------------------------------------------------------------------
# the synthetic fixture


def test_synthetic_tree_is_sound(synth_root):
    assert data.verify(synth_root) == []


def test_cli_verify_prints_table1(synth_root, capsys):
    assert cli.main(["data", "verify", "--data-root", str(synth_root)]) == 0
    out = capsys.readouterr().out
    figs = data.table1(synth_root)
    assert "Total MFs" in out and "AMF rate" in out
    for ds in data.DATASETS:
        assert ds in out and f"{figs[ds]['total']:,}" in out


def test_cli_verify_json(synth_root, capsys):
    assert cli.main(["data", "verify", "--data-root", str(synth_root), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["ok"] is True
    assert payload["datasets"] == json.loads(json.dumps(data.table1(synth_root)))


def test_cli_verify_missing_root(tmp_path, capsys):
    assert cli.main(["data", "verify", "--data-root", str(tmp_path / "absent")]) == 2
    assert "absent" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# broken copies: each defect is one problem naming the file


@pytest.fixture
def tree(synth_root, tmp_path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(synth_root, root)
    return root


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def _write_rows(path: Path, header, rows) -> None:
    with path.open("w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows([header, *rows])


def _first(root: Path, ds: str, label: str, split: str | None = None) -> Path:
    records = data.load_records(root, ds)
    return next(r.path for r in records if r.label == label and split in (None, r.split))


def _png(path: Path, mode: str, size: int) -> None:
    Image.new(mode, (size, size), 128).save(path, format="PNG")


def _delete_image(root):
    path = _first(root, "AMi-Br", "Atypical", "train")
    path.unlink()
    return path, "missing image"


def _extra_image(root):
    src = _first(root, "AtNorM-MD", "Normal")
    extra = src.parent / "9999.png"
    shutil.copy(src, extra)
    return extra, "extra image"


def _corrupt_bytes(root):
    path = _first(root, "AMi-Br", "Normal")
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    return path, "corrupt PNG"


def _truncate(root):
    path = _first(root, "AtNorM-Br", "Normal")
    path.write_bytes(path.read_bytes()[:500])
    return path, "truncated"


def _empty_file(root):
    path = _first(root, "AtNorM-Br", "Atypical")
    path.write_bytes(b"")
    return path, "empty file"


def _not_png(root):
    path = _first(root, "AMi-Br", "Normal", "test")
    buffer = io.BytesIO()
    Image.new("RGB", (128, 128)).save(buffer, format="JPEG")
    path.write_bytes(buffer.getvalue())
    return path, "not a PNG"


def _grayscale(root):
    path = _first(root, "AMi-Br", "Normal")
    _png(path, "L", 128)
    return path, "mode L"


def _rgba(root):
    path = _first(root, "AtNorM-MD", "Atypical")
    _png(path, "RGBA", 128)
    return path, "mode RGBA"


def _small(root):
    path = _first(root, "AtNorM-MD", "Normal")
    _png(path, "RGB", 64)
    return path, "size 64x64"


def _flip_amibr_label(root):
    csv_path = root / data.AMIBR_CSV
    header, rows = _rows(csv_path)
    col = header.index("majority_atypical")
    rows[3][col] = "True" if rows[3][col] == "False" else "False"
    _write_rows(csv_path, header, rows)
    name = f"{rows[3][header.index('dataset')]}_{rows[3][header.index('uid')]}.png"
    (image,) = (root / "AMi-Br").glob(f"*/{name}")
    return image, "label disagrees"


def _flip_train_label(root):
    csv_path = root / data.TRAIN_CSV
    header, rows = _rows(csv_path)
    col = header.index("final_label")
    rows[5][col] = "Atypical" if rows[5][col] == "Normal" else "Normal"
    _write_rows(csv_path, header, rows)
    return csv_path, "final_label"


def _flip_md_majority(root):
    csv_path = root / data.VOTES_CSV
    header, rows = _rows(csv_path)
    col = header.index("Majority")
    rows[0][col] = "Atypical" if rows[0][col] == "Normal" else "Normal"
    _write_rows(csv_path, header, rows)
    (image,) = (root / "AtNorM-MD").glob(f"*/{rows[0][0]}")
    return image, "label disagrees"


def _move_to_other_folder(root):
    path = _first(root, "AMi-Br", "Normal", "train")
    moved = root / "AMi-Br" / "Atypical" / path.name
    path.rename(moved)
    return moved, "label disagrees"


def _duplicate_across_folders(root):
    src = _first(root, "AtNorM-Br", "Atypical")
    dup = root / "AtNorM-Br" / "Normal" / src.name
    shutil.copy(src, dup)
    return dup, "duplicated name"


def _duplicate_csv_row(root):
    csv_path = root / data.AMIBR_CSV
    header, rows = _rows(csv_path)
    _write_rows(csv_path, header, [*rows, rows[7]])
    return csv_path, "listed twice"


def _duplicate_train_row(root):
    csv_path = root / data.TRAIN_CSV
    header, rows = _rows(csv_path)
    _write_rows(csv_path, header, [*rows[:10], rows[2], *rows[10:]])
    return csv_path, "listed twice"


def _drop_column(csv_name, column):
    def mutate(root):
        csv_path = root / csv_name
        header, rows = _rows(csv_path)
        i = header.index(column)
        _write_rows(csv_path, header[:i] + header[i + 1 :], [r[:i] + r[i + 1 :] for r in rows])
        return csv_path, f"missing column(s) {column}"

    return mutate


def _bad_vote_value(root):
    csv_path = root / data.AMIBR_CSV
    header, rows = _rows(csv_path)
    rows[1][header.index("expert2_atypical")] = "maybe"
    _write_rows(csv_path, header, rows)
    return csv_path, "expert2_atypical not True/False"


def _remove_folder(ds, label):
    def mutate(root):
        folder = root / ds / label
        shutil.rmtree(folder)
        return folder, "missing folder"

    return mutate


def _remove_dataset(root):
    shutil.rmtree(root / "AtNorM-MD")
    return root / "AtNorM-MD", "missing folder"


def _remove_csv(root):
    (root / data.VOTES_CSV).unlink()
    return root / data.VOTES_CSV, "missing file"


def _stray_file(root):
    path = root / "AMi-Br" / "Normal" / "notes.txt"
    path.write_text("x")
    return path, "unexpected entry"


BROKEN = {
    "missing-image": _delete_image,
    "extra-image": _extra_image,
    "corrupt-bytes": _corrupt_bytes,
    "truncated-png": _truncate,
    "empty-file": _empty_file,
    "jpeg-named-png": _not_png,
    "grayscale-png": _grayscale,
    "rgba-png": _rgba,
    "64x64-png": _small,
    "amibr-label-flipped": _flip_amibr_label,
    "train-label-flipped": _flip_train_label,
    "md-majority-flipped": _flip_md_majority,
    "image-in-wrong-folder": _move_to_other_folder,
    "name-in-both-folders": _duplicate_across_folders,
    "amibr-csv-row-twice": _duplicate_csv_row,
    "train-csv-row-twice": _duplicate_train_row,
    "amibr-column-dropped": _drop_column(data.AMIBR_CSV, "majority_atypical"),
    "train-column-dropped": _drop_column(data.TRAIN_CSV, "final_label"),
    "votes-column-dropped": _drop_column(data.VOTES_CSV, "Majority"),
    "bad-vote-value": _bad_vote_value,
    "amibr-folder-removed": _remove_folder("AMi-Br", "Atypical"),
    "br-folder-removed": _remove_folder("AtNorM-Br", "Normal"),
    "dataset-removed": _remove_dataset,
    "votes-csv-removed": _remove_csv,
    "stray-file": _stray_file,
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_each_defect_is_one_problem_naming_the_file(tree, case, capsys):
    path, fragment = BROKEN[case](tree)
    problems = data.verify(tree)
    assert len(problems) == 1, "\n".join(map(str, problems))
    assert problems[0].path == path
    assert fragment in problems[0].message
    assert cli.main(["data", "verify", "--data-root", str(tree)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == [str(problems[0])]


def test_several_defects_are_all_reported(tree):
    # _grayscale and _small look up records, so they run before the tree is broken
    paths = {_grayscale(tree)[0], _small(tree)[0], _delete_image(tree)[0]}
    paths.add(_flip_train_label(tree)[0])
    problems = data.verify(tree)
    assert {p.path for p in problems} == paths


def test_load_records_raises_naming_the_file(tree):
    path, _ = _delete_image(tree)
    with pytest.raises(data.DataError) as info:
        data.load_records(tree, "AMi-Br")
    assert isinstance(info.value, ValueError)
    assert str(path) in str(info.value) and info.value.path == path
    _stray_file(tree)
    with pytest.raises(data.DataError, match="1 more problem"):
        data.load_records(tree, "AMi-Br")
    assert data.load_records(tree, "AtNorM-Br")  # other datasets are unaffected


def test_table1_refuses_a_broken_tree(tree):
    _flip_md_majority(tree)
    with pytest.raises(data.DataError, match="AtNorM-MD"):
        data.table1(tree)


def test_unknown_dataset_is_an_error(synth_root):
    with pytest.raises(ValueError, match="AtNorM-Br"):
        data.load_records(synth_root, "MIDOG")


def test_cli_json_lists_problems(tree, capsys):
    path, _ = _small(tree)
    assert cli.main(["data", "verify", "--data-root", str(tree), "--json"]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert payload["ok"] is False
    assert [p["path"] for p in payload["problems"]] == [str(path)]


# ---------------------------------------------------------------------------------------------
# any damage to a PNG is reported, never a crash


@pytest.fixture(scope="module")
def png_bytes(synth_root) -> bytes:
    return data.load_records(synth_root, "AMi-Br")[0].path.read_bytes()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(choice=st.data())
def test_random_byte_corruption_is_always_reported(png_bytes, choice):
    raw = bytearray(png_bytes)
    positions = choice.draw(st.sets(st.integers(0, len(raw) - 1), min_size=1, max_size=6))
    for pos in positions:
        raw[pos] ^= choice.draw(st.integers(1, 255))
    with pytest.raises(data.DataError) as info:
        data.decode_png(bytes(raw), "x/broken.png")
    assert str(info.value).startswith("x/broken.png: ")


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cut=st.integers(min_value=0, max_value=10**6))
def test_random_truncation_is_always_reported(png_bytes, cut):
    cut = cut % len(png_bytes)
    with pytest.raises(data.DataError, match="x/cut.png"):
        data.decode_png(png_bytes[:cut], "x/cut.png")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(junk=st.binary(min_size=0, max_size=400))
def test_random_garbage_is_reported(junk, tmp_path):
    path = tmp_path / "junk.png"
    path.write_bytes(junk)
    problem = data.check_image(path)
    assert problem is not None and problem.path == path


def test_every_single_byte_flip_is_reported(png_bytes):
    # PIL alone decodes about 1% of these without complaint (IEND, ancillary chunks, some IDAT)
    missed = []
    for pos in range(len(png_bytes)):
        raw = bytearray(png_bytes)
        raw[pos] ^= 0x01
        try:
            data.decode_png(bytes(raw), "flip.png")
        except data.DataError:
            continue
        missed.append(pos)
    assert missed == []
    with pytest.raises(data.DataError, match="stray bytes"):
        data.decode_png(png_bytes + b"junk", "tail.png")


def test_intact_png_decodes_to_its_pixels(png_bytes):
    expected = np.asarray(Image.open(io.BytesIO(png_bytes)).convert("RGB"))
    assert np.array_equal(data.decode_png(png_bytes, "ok.png"), expected)
