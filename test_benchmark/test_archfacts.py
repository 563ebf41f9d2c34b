"""Architecture facts are memoised on disk per torch/timm/peft version: a second judging of the
architecture claims builds no model (harness.models is not even imported), gives the same
verdicts, and a changed registry entry or LoRA setting is a miss."""

from __future__ import annotations

import sys

import pytest

from harness import archfacts, claims, registry

ARCH_KINDS = ("parameter_count", "parameter_similarity", "architecture_property", "lora_trainable")


@pytest.fixture
def arch_claims():
    chosen = [c for c in claims.load_claims() if c.kind in ARCH_KINDS]
    keys = {c.kind for c in chosen}
    assert keys == set(ARCH_KINDS), keys  # the memo serves every architecture claim kind
    return chosen


def _judge(arch_claims, monkeypatch, tmp_path):
    monkeypatch.setenv("AMIBR_CACHE", str(tmp_path / "cache"))
    ctx = claims.build_context(None)
    return [(r.claim.id, r.status, r.verdict.reason) for r in claims.evaluate_all(arch_claims, ctx)]


def test_second_judging_builds_no_model(arch_claims, monkeypatch, tmp_path) -> None:
    first = _judge(arch_claims, monkeypatch, tmp_path)
    assert archfacts.cache_file(tmp_path / "cache").is_file()
    monkeypatch.setitem(sys.modules, "harness.models", None)  # any import of it now fails
    monkeypatch.setitem(sys.modules, "timm", None)
    assert _judge(arch_claims, monkeypatch, tmp_path) == first


def test_a_changed_entry_or_lora_setting_is_a_miss(arch_claims, monkeypatch, tmp_path) -> None:
    _judge(arch_claims, monkeypatch, tmp_path)
    monkeypatch.setitem(sys.modules, "harness.models", None)
    monkeypatch.setitem(registry.LORA_CONFIG, "r", 4)  # LoRA facts must be recomputed
    with_error = _judge(arch_claims, monkeypatch, tmp_path)
    lora = [
        row
        for row in with_error
        if row[0] in {c.id for c in arch_claims if c.kind == "lora_trainable"}
    ]
    assert lora and all("ERROR" in reason for _, _, reason in lora)  # it tried to build again
    others = [row for row in with_error if row not in lora]
    assert all("ERROR" not in reason for _, _, reason in others)


def test_an_unreadable_memo_is_a_miss(tmp_path) -> None:
    path = tmp_path / "facts.json"
    path.write_text("{not json")
    memo = archfacts.ArchFacts(path)
    assert memo.get("parameters:None", "uni", "d", lambda: 7) == 7
    memo.save()
    assert archfacts.ArchFacts(path).get("parameters:None", "uni", "d", lambda: 8) == 7
