"""The command line on bad input: one line naming the file or option and the problem, exit 2,
no traceback, nothing written. Internal errors keep their traceback (they are bugs)."""

from __future__ import annotations

import re
import shutil

import pytest

from harness import cli, paths


def _run(capsys, *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--config", "uni-lora"], "must read MODEL:METHOD"),
        (["run", "--config", "nosuch:lora"], "unknown model 'nosuch'"),
        (["run", "--config", "uni:sideways"], "method 'sideways'"),
        (
            ["run", "--config", "uni:lora", "--folds", "x"],
            "argument --folds: must name folds in 1..5",
        ),
        (
            ["run", "--config", "uni:lora", "--folds", "0-6"],
            "argument --folds: must name folds in 1..5",
        ),
        (["models", "--weights-dir", "/no/such/weights"], "/no/such/weights"),
        (["claims", "--results", "/no/such/results"], "/no/such/results"),
        (["data", "verify", "--data-root", "/no/such/data"], "/no/such/data"),
        (["splits", "--data-root", "/no/such/data", "--out", "x.csv"], "/no/such/data"),
        (["smoke", "--data-root", "/no/such/data"], "/no/such/data"),
    ],
)
def test_bad_input_is_one_clear_line(capsys, argv, message):
    code, err = _run(capsys, *argv)
    assert code == 2
    assert re.match(r"amibr-bench( [a-z]+)*: ", err) and message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 4


def test_unreadable_weights_file_names_the_file(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "w" / "MahmoodLab" / "UNI"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"this is not a safetensors file")
    monkeypatch.setenv(paths.WEIGHTS_ENV, str(tmp_path / "w"))
    from harness import models

    with pytest.raises(models.StrictLoadError, match="model.safetensors: cannot read"):
        models.load_backbone("uni")


def test_splits_leave_nothing_behind_on_bad_data(synth_root, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(synth_root, root)
    (root / "amibr_train_split.csv").write_text("wrong,columns\n1,2\n")
    out = tmp_path / "out" / "folds.csv"
    code, err = _run(capsys, "splits", "--data-root", str(root), "--out", str(out))
    assert code in (1, 2) and "amibr_train_split.csv" in err
    leftovers = list(out.parent.glob("*")) if out.parent.exists() else []
    assert leftovers == [], f"half-written files left behind: {leftovers}"


def test_written_files_get_a_normal_mode(tmp_path):
    import os

    umask = os.umask(0)
    os.umask(umask)
    written = paths.atomic_write(tmp_path / "f.txt", "x")
    assert written.stat().st_mode & 0o777 == 0o666 & ~umask, "the mode of any new file, not 0600"
