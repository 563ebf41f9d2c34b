"""The dataset claims of expected_results/dataset.yaml: well formed, never judged on a synthetic
tree (its figures are made up: "not run", never "failed"), and judged by the claims engine on a
tree in the public layout, where they must be able to say "failed" (the synthetic fixture's
figures, with its SYNTHETIC marker removed, stand in for a tree that disagrees with the paper)."""

from __future__ import annotations

import csv
import shutil

import pytest
import yaml

from harness import claims as cl
from harness import data, paths, splits, stats

CLAIMS_FILE = paths.EXPECTED_RESULTS / "dataset.yaml"
CLAIMS = yaml.safe_load(CLAIMS_FILE.read_text(encoding="utf-8"))["claims"]
KINDS = cl.data_kinds()


def unmarked_copy(synth_root, folder):
    """The synthetic fixture without its SYNTHETIC marker: a tree the engine judges."""
    shutil.copytree(synth_root, folder)
    (folder / data.SYNTHETIC_MARKER).unlink()
    return folder


@pytest.fixture(scope="module")
def unmarked_root(synth_root, tmp_path_factory):
    return unmarked_copy(synth_root, tmp_path_factory.mktemp("unmarked") / "data")


def _judge(raw: dict, root) -> cl.ClaimResult:
    """The claims engine's verdict on one dataset claim (a plain dict as in the YAML)."""
    claim = cl.Claim(
        raw["id"],
        raw.get("statement", "-"),
        raw.get("source", "-"),
        raw.get("section", "-"),
        raw["kind"],
        raw.get("needs", "data"),
        raw["tolerance"],
        raw["params"],
        raw["expected"],
    )
    return cl.evaluate(claim, cl.Context(data_root=root), strict=True)


def test_claims_file_is_well_formed(synth_root, unmarked_root):
    ids = [c["id"] for c in CLAIMS]
    assert len(ids) == len(set(ids)), "duplicate claim ids"
    figs = data.table1(synth_root)
    for c in CLAIMS:
        assert {"id", "statement", "source", "section", "kind", "needs", "expected"} <= set(c)
        assert c["kind"] in KINDS and c["needs"] == "data", c["id"]
        assert c["tolerance"]["rule"] in ("exact", "printed"), c["id"]
        if c["kind"] == "dataset_figure":
            # every field exists (a typo would otherwise only show up with the real data)
            data._lookup(figs[c["params"]["dataset"]], c["params"]["field"])
        # the engine judges them on any public-layout tree; on this one the figures differ
        result = _judge(c, unmarked_root)
        assert result.status in ("passed", "failed"), (c["id"], result.verdict)


@pytest.mark.parametrize("claim", CLAIMS, ids=[c["id"] for c in CLAIMS])
def test_dataset_claims_are_not_run_on_a_synthetic_tree(synth_root, claim):
    """Never "failed" (nor "passed") on made-up figures: "not run", saying why."""
    result = _judge(claim, synth_root)
    assert result.status == stats.NOT_RUN and not result.unexpected
    assert f"{synth_root} is a synthetic tree" in result.verdict.reason


def test_every_kind_that_reads_the_data_tree_needs_data():
    """The synthetic-tree rule sits on needs: data; a data-reading kind without it is refused."""
    assert {c["kind"] for c in CLAIMS} == set(cl.data_kinds())
    for kind in cl.data_kinds():
        raw = {**CLAIMS[0], "kind": kind, "needs": "results"}
        with pytest.raises(
            cl.RegistryError, match=f"kind '{kind}' has needs 'data', not 'results'"
        ):
            cl._claim_from(raw, CLAIMS_FILE, 1)
    raw = {**CLAIMS[0], "kind": "table_cell", "needs": "data"}
    with pytest.raises(cl.RegistryError, match="kind 'table_cell' has needs 'results', not 'data'"):
        cl._claim_from(raw, CLAIMS_FILE, 1)


@pytest.mark.parametrize(
    ("observed", "expected", "tolerance", "ok"),
    [
        (22.3655, 22.4, {"rule": "printed", "decimals": 1}, True),
        (22.3499, 22.4, {"rule": "printed", "decimals": 1}, False),
        (22.2043, 22, {"rule": "printed", "decimals": 0}, True),
        (22.6, 22, {"rule": "printed", "decimals": 0}, False),
        (17.1582, 17.16, {"rule": "printed", "decimals": 2}, True),
        (17.1582, 17.15, {"rule": "printed", "decimals": 2}, False),
        (3720, 3720, {"rule": "exact"}, True),
        (3719, 3720, {"rule": "exact"}, False),
        (["TUPAC16", "MIDOG21"], ["TUPAC16", "MIDOG21"], {"rule": "exact"}, True),
        (["MIDOG21"], ["TUPAC16", "MIDOG21"], {"rule": "exact"}, False),
        (True, True, None, True),
        (False, True, None, False),
        (None, 3, {"rule": "exact"}, False),
        (10.0, 10.4, {"rule": "abs", "value": 0.5}, True),
        (10.0, 10.4, {"rule": "rel", "value": 0.01}, False),
    ],
)
def test_within_tolerance(observed, expected, tolerance, ok):
    assert stats.within_tolerance(observed, expected, tolerance) is ok


def test_unknown_rule_or_field_is_an_error(synth_root):
    with pytest.raises(ValueError, match="fold_spread"):
        stats.within_tolerance(1, 1, {"rule": "fold_spread"})
    with pytest.raises(KeyError, match="nope"):
        data.figure(synth_root, "AMi-Br", "nope")


def test_figure_claim_on_a_tree_that_differs(unmarked_root):
    figs = data.table1(unmarked_root)
    claim = {
        "id": "t",
        "kind": "dataset_figure",
        "params": {"dataset": "AMi-Br", "field": "source_counts.MIDOG21"},
        "expected": figs["AMi-Br"]["source_counts"]["MIDOG21"],
        "tolerance": {"rule": "exact"},
    }
    assert _judge(claim, unmarked_root).status == "passed"
    assert _judge({**claim, "expected": claim["expected"] + 1}, unmarked_root).status == "failed"


def test_slide_disjoint_claim_fails_when_a_slide_is_shared(synth_root, unmarked_root, tmp_path):
    claim = {
        "id": "t",
        "kind": "slide_disjoint",
        "params": {"dataset": "AMi-Br", "between": "test"},
        "expected": True,
        "tolerance": {"rule": "exact"},
    }
    assert _judge(claim, unmarked_root).status == "passed"
    # move one training figure onto a test slide, consistently in both CSVs
    root = unmarked_copy(synth_root, tmp_path / "data")
    records = data.load_records(root, "AMi-Br")
    test_slide = next(r.slide for r in records if r.split == "test")
    victim = next(r for r in records if r.split == "train")
    for name, key in ((data.AMIBR_CSV, None), (data.TRAIN_CSV, "dataset_uid")):
        with (root / name).open(newline="") as fh:
            rows = list(csv.reader(fh))
        header = rows[0]
        for row in rows[1:]:
            image = row[header.index(key)] if key else None
            if key is None:
                image = f"{row[header.index('dataset')]}_{row[header.index('uid')]}.png"
            if image == victim.name:
                row[header.index("slide")] = test_slide
        with (root / name).open("w", newline="") as fh:
            csv.writer(fh, lineterminator="\n").writerows(rows)
    splits.write_synthetic_folds(root)  # the tree's folds, redrawn for its new train split
    assert data.verify(root) == []
    assert _judge(claim, root).status == "failed"
    claim["params"]["between"] = "folds"
    assert _judge(claim, root).status == "passed"
