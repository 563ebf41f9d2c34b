"""`python -m harness.gpucheck`: its CPU-side plumbing (`--device cpu --tiny`); no timing asserts."""

from __future__ import annotations

import json
import os

import pytest
import torch

from harness import gpucheck, paths, throughput


@pytest.fixture()
def out(tmp_path, monkeypatch):
    monkeypatch.setenv("AMIBR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "gpucheck"


def test_without_cuda_it_says_it_needs_one(out, monkeypatch, capsys) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpucheck.main(["--out", str(out)]) == 2
    assert "gpucheck: needs a CUDA device" in capsys.readouterr().err
    assert not out.exists()
    assert gpucheck.main(["--device", "cpu", "--out", str(out)]) == 2  # cpu only with --tiny


def test_tiny_cpu_run_records_each_measurement_and_survives_a_failure(out, monkeypatch) -> None:
    real = throughput.measure

    def flaky(key, method, **kw):
        if key == "smoke-vit":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(key, method, **kw)

    monkeypatch.setattr(throughput, "measure", flaky)
    code = gpucheck.main(["--device", "cpu", "--tiny", "--out", str(out), "--jobs", "1",
                          "--configs", "smoke-resnet:e2e,smoke-vit:lora"])  # fmt: skip
    assert code == 1  # a step failed: recorded, not fatal
    report = json.loads((out / "gpucheck.json").read_text())
    assert [r["status"] for r in report["rehearsals"]] == ["skipped"] * 3
    got = {(m["config"], m["precision"]): m for m in report["measurements"]}
    assert set(got) == {(c, p) for c in ("smoke-resnet:e2e", "smoke-vit:lora")
                        for p in ("fp32", "bf16")}  # fmt: skip
    for p in ("fp32", "bf16"):
        ok, bad = got[("smoke-resnet:e2e", p)], got[("smoke-vit:lora", p)]
        assert ok["status"] == "ok" and ok["per_job"][0]["precision"] == p
        assert ok["train_images_per_s_total"] > 0 and ok["hours_5_folds_per_job"]["100"] > 0
        assert bad["status"] == "failed" and "CUDA out of memory" in bad["reason"]
    md = (out / "gpucheck.md").read_text()
    assert "| smoke-resnet:e2e | bf16 | 1 |" in md and "failed: torch.OutOfMemoryError" in md


@pytest.mark.slow
def test_tiny_cpu_run_shares_the_device_between_processes(out, monkeypatch) -> None:
    here = [str(paths.REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, here)))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    code = gpucheck.main(["--device", "cpu", "--tiny", "--out", str(out), "--jobs", "2",
                          "--precisions", "bf16", "--configs", "smoke-resnet:e2e"])  # fmt: skip
    assert code == 0
    (m,) = json.loads((out / "gpucheck.json").read_text())["measurements"]
    assert m["status"] == "ok" and m["jobs"] == 2 and len(m["per_job"]) == 2
    assert m["train_images_per_s_total"] == pytest.approx(
        sum(r["train_images_per_s"] for r in m["per_job"]), abs=0.02
    )


@pytest.mark.slow
def test_rehearsals_run_at_once_one_per_preset(tmp_path) -> None:
    probe = tmp_path / "test_probe.py"
    probe.write_text(
        "import os\n\n\ndef test_preset():\n"
        "    assert os.environ['AMIBR_REHEARSAL_DEVICE'] == 'cpu'\n"
        "    assert os.environ['AMIBR_PRESET'] == 'paper'\n"
    )
    entries = gpucheck.rehearse(["paper", "fast"], "cpu", tmp_path, 300.0, test_file=str(probe))
    assert [(e["preset"], e["status"]) for e in entries] == [
        ("paper", "passed"),
        ("fast", "failed"),
    ]
    assert "1 passed" in entries[0]["summary"] and "1 failed" in entries[1]["summary"]
    assert (tmp_path / "rehearsal-paper.xml").is_file()
