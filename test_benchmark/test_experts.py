"""The experts' agreement (harness.experts) against hand-computed answers and an independent
computation straight from the vote files (csv module + textbook formulas, no harness code)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness import cli, data, experts, stats
from harness.results import ResultsError, write_results_set

# --------------------------------------------------------------------------- hand example
# Six images, three experts (1 = atypical). Consensus = majority: a, b, e atypical.
#        a  b  c  d  e  f
E1 = [1, 1, 1, 0, 0, 0]
E2 = [1, 1, 0, 0, 1, 0]
E3 = [1, 0, 0, 0, 1, 1]


def hand_table() -> experts.VoteTable:
    votes = np.array([E1, E2, E3], dtype=bool).T
    return experts.VoteTable(
        "AMi-Br", "hand", Path("votes.csv"), ("e1", "e2", "e3"), "majority",
        tuple("abcdef"), votes, np.array([1, 1, 0, 0, 1, 0], dtype=bool),
    )  # fmt: skip


def test_kappas_hand_computed():
    # po = 4/6, both raters 1/2 atypical: pe = 1/2, kappa = (2/3 - 1/2) / (1/2) = 1/3
    assert experts.cohen_kappa([1, 1, 0, 0, 1, 0], [1, 0, 0, 0, 1, 1]) == pytest.approx(1 / 3)
    # P_i = 1, 1, 1/3, 1/3; P = 2/3; p = (1/2, 1/2), Pe = 1/2; kappa = 1/3
    votes = [[1, 1, 1], [0, 0, 0], [1, 1, 0], [1, 0, 0]]
    assert experts.fleiss_kappa(votes) == pytest.approx(1 / 3)
    assert experts.cohen_kappa([1, 1], [1, 1]) is None  # one class: undefined, not 0 or 1


def test_agreement_hand_example():
    out = experts.agreement(hand_table())
    by = {r["expert"]: r for r in out["vs_consensus"]}
    # e1: TP a,b; FN e; FP c; TN d,f -> sensitivity = specificity = 2/3
    assert (by["e1"]["tp"], by["e1"]["fn"], by["e1"]["fp"], by["e1"]["tn"]) == (2, 1, 1, 2)
    assert by["e1"]["balanced_accuracy"] == pytest.approx(2 / 3)
    assert by["e2"]["balanced_accuracy"] == 1.0  # e2 votes the consensus
    assert by["e3"]["sensitivity"] == pytest.approx(2 / 3)
    assert by["e3"]["specificity"] == pytest.approx(2 / 3)
    loo = {r["expert"]: r for r in out["vs_others"]}
    # e1 vs e2+e3: ties at b, f; on a, c, d, e the others say 1, 0, 0, 1 and e1 says 1, 1, 0, 0
    assert (loo["e1"]["n"], loo["e1"]["ties_left_out"]) == (4, 2)
    assert loo["e1"]["balanced_accuracy"] == pytest.approx(0.5)
    # e2 vs e1+e3: they agree only on a (1) and d (0), where e2 votes 1 and 0
    assert (loo["e2"]["n"], loo["e2"]["ties_left_out"], loo["e2"]["balanced_accuracy"]) == (
        2,
        4,
        1.0,
    )
    # e3 vs e1+e2: defined on a, b, d, f (1, 1, 0, 0); e3 says 1, 0, 0, 1
    assert loo["e3"]["balanced_accuracy"] == pytest.approx(0.5)
    kappas = {(k["a"], k["b"]): k["kappa"] for k in out["cohen_kappa"]}
    assert kappas == pytest.approx({("e1", "e2"): 1 / 3, ("e1", "e3"): -1 / 3, ("e2", "e3"): 1 / 3})
    assert out["mean_cohen_kappa"] == pytest.approx(1 / 9)
    # P_i = 1, 1/3, 1/3, 1, 1/3, 1/3 -> P = 5/9; Pe = 1/2 -> (5/9 - 1/2) / (1/2) = 1/9
    assert out["fleiss_kappa"] == pytest.approx(1 / 9)
    assert (out["unanimous_n"], out["consensus_vs_votes_mismatches"]) == (2, 0)
    # e1 as rater against e3's labels: e3 = 1 on a, e, f (e1 finds a): sens 1/3;
    # e3 = 0 on b, c, d (e1 says 0 on d): spec 1/3
    assert out["pairwise_balanced_accuracy"]["e1"]["e3"] == pytest.approx(1 / 3)
    split = {r["expert"]: r["split"] for r in out["vs_consensus_by_votes"]}
    # split images b, c, e, f (consensus 1, 0, 1, 0); e1 says 1, 1, 0, 0
    assert split["e1"]["balanced_accuracy"] == pytest.approx(0.5) and split["e1"]["n"] == 4


# --------------------------------------------------------------- independent computation
def _read(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        return list(csv.DictReader(fh))


def independent(root: Path) -> dict:
    """Every figure of `agreement` recomputed from the CSV files with textbook formulas."""
    amibr = _read(root / "AMI-BR.csv")
    train = {r["dataset_uid"] for r in _read(root / "amibr_train_split.csv")}
    md = _read(root / "AtNorM-MD_expert_votes.csv")
    ami_cols = ["expert1_atypical", "expert2_atypical", "expert3_atypical"]
    md_cols = [f"Expert_{i}" for i in range(1, 6)]
    test = [r for r in amibr if f"{r['dataset']}_{r['uid']}.png" not in train]
    tables = {
        ("AMi-Br", "test split"): ([[r[c] == "True" for c in ami_cols] for r in test],
                                   [r["majority_atypical"] == "True" for r in test], ami_cols),
        ("AMi-Br", "all"): ([[r[c] == "True" for c in ami_cols] for r in amibr],
                            [r["majority_atypical"] == "True" for r in amibr], ami_cols),
        ("AtNorM-MD", "all"): ([[r[c] == "Atypical" for c in md_cols] for r in md],
                               [r["Majority"] == "Atypical" for r in md], md_cols),
    }  # fmt: skip
    out = {}
    for key, (votes, consensus, cols) in tables.items():
        v, c = np.array(votes, int), np.array(consensus, int)
        n, k = v.shape

        def rates(ref, lab):
            sens = ((lab == 1) & (ref == 1)).sum() / (ref == 1).sum()
            spec = ((lab == 0) & (ref == 0)).sum() / (ref == 0).sum()
            return (sens + spec) / 2, sens, spec

        def kappa(a, b):
            po = (a == b).mean()
            pe = a.mean() * b.mean() + (1 - a.mean()) * (1 - b.mean())
            return (po - pe) / (1 - pe)

        loo = {}
        for j, col in enumerate(cols):
            yes = np.delete(v, j, axis=1).sum(axis=1)
            keep = 2 * yes != k - 1
            loo[col] = (*rates((2 * yes > k - 1)[keep].astype(int), v[keep, j]), int(keep.sum()))
        ones = v.sum(axis=1)
        p_i = (ones**2 + (k - ones) ** 2 - k) / (k * (k - 1))
        p1 = ones.sum() / (n * k)
        pe = p1**2 + (1 - p1) ** 2
        out[key] = {
            "n": n,
            "consensus": {col: rates(c, v[:, j]) for j, col in enumerate(cols)},
            "others": loo,
            "kappa": {
                (a, b): kappa(v[:, i], v[:, j])
                for i, a in enumerate(cols)
                for j, b in enumerate(cols)
                if i < j
            },  # fmt: skip
            "fleiss": (p_i.mean() - pe) / (1 - pe),
            "unanimous": int(((ones == 0) | (ones == k)).sum()),
        }
    return out


def check_against_independent(root: Path) -> dict:
    summary = experts.expert_summary(root)
    expected = independent(root)
    prefix = "synthetic:" if data.is_synthetic(root) else ""
    got = {(a["dataset"].removeprefix(prefix), a["subset"]): a for a in summary["agreement"]}
    assert set(got) == set(expected)
    for key, exp in expected.items():
        a = got[key]
        assert a["n_images"] == exp["n"] and a["unanimous_n"] == exp["unanimous"]
        for r in a["vs_consensus"]:
            metrics = (r["balanced_accuracy"], r["sensitivity"], r["specificity"])
            assert metrics == pytest.approx(exp["consensus"][r["expert"]], abs=1e-12), key
        for r in a["vs_others"]:
            metrics = (r["balanced_accuracy"], r["sensitivity"], r["specificity"], r["n"])
            assert metrics == pytest.approx(exp["others"][r["expert"]], abs=1e-12), key
        kappas = {(k["a"], k["b"]): k["kappa"] for k in a["cohen_kappa"]}
        assert kappas == pytest.approx(exp["kappa"], abs=1e-12)
        assert a["fleiss_kappa"] == pytest.approx(exp["fleiss"], abs=1e-12)
        assert a["consensus_vs_votes_mismatches"] == 0
    return got


def test_synthetic_fixture_against_independent_computation(synth_root):
    got = check_against_independent(synth_root)
    assert all(a["dataset"].startswith("synthetic:") for a in got.values())


@pytest.mark.realdata
def test_real_data_against_independent_computation(data_root):
    got = check_against_independent(data_root)
    # Table 1 / §2.1: all three experts agree on 2,908 (78.2 %), all five on 1,466 (69.6 %)
    assert got[("AMi-Br", "all")]["unanimous_n"] == 2908
    assert got[("AtNorM-MD", "all")]["unanimous_n"] == 1466
    assert (got[("AMi-Br", "all")]["n_images"], got[("AMi-Br", "test split")]["n_images"]) == (
        3720,
        826,
    )


# ------------------------------------------------------------------------ models
def _model_set(tmp_path: Path, table: experts.VoteTable, dataset: str | None = None,
               images=None, flip_label: bool = False) -> Path:  # fmt: skip
    """Fold 1 copies expert 1's votes (0.9 / 0.1), fold 2 the consensus (0.8 / 0.3): the
    ensemble (0.85, 0.6, 0.45, 0.2) then calls exactly expert 1's atypical figures atypical."""
    e1, cons = table.votes[:, 0], table.consensus
    probs = {1: np.where(e1, 0.9, 0.1), 2: np.where(cons, 0.8, 0.3)}
    labels = ~cons if flip_label else cons
    rows, preds = [], []
    for fold, p in probs.items():
        rows.append({"model": "UNI", "method": "lora", "dataset": dataset or table.dataset,
                     "fold": fold, **stats.fold_metrics(labels, p)})  # fmt: skip
        preds += [
            {"model": "UNI", "method": "lora", "dataset": dataset or table.dataset, "fold": fold,
             "image": name, "label": "Atypical" if y else "Normal", "prob_atypical": float(q)}
            for name, y, q in zip(images or table.images, labels, p, strict=True)
        ]  # fmt: skip
    return write_results_set(tmp_path / "set", rows, predictions=preds, manifest={"name": "m"})


def _ba(ref, lab) -> float:
    ref, lab = np.asarray(ref, bool), np.asarray(lab, bool)
    return ((lab & ref).sum() / ref.sum() + (~lab & ~ref).sum() / (~ref).sum()) / 2


@pytest.fixture(scope="module")
def synth_test_split(synth_root):
    tables = experts.load_vote_tables(synth_root)
    return next(t for t in tables if t.dataset == "synthetic:AMi-Br" and t.subset == "test split")


def test_models_placed_among_experts(synth_root, synth_test_split, tmp_path):
    t = synth_test_split
    summary = experts.expert_summary(synth_root, _model_set(tmp_path, t))
    (comp,) = summary["comparisons"]
    (m,) = comp["models"]
    e1, cons = t.votes[:, 0], t.consensus
    assert comp["n_images"] == len(t.images) and summary["skipped"] == []
    assert m["ensemble"]["vs"]["expert1_atypical"] == 1.0
    assert m["ensemble"]["vs"]["consensus"] == pytest.approx(_ba(cons, e1))
    assert m["fold_mean"]["vs"]["expert1_atypical"] == pytest.approx((1 + _ba(e1, cons)) / 2)
    assert m["fold_mean"]["vs"]["expert3_atypical"] == pytest.approx(
        (_ba(t.votes[:, 2], e1) + _ba(t.votes[:, 2], cons)) / 2
    )
    split = ~(t.votes.all(axis=1) | ~t.votes.any(axis=1))
    assert m["fold_mean"]["unanimous"]["balanced_accuracy"] == 1.0
    assert m["fold_mean"]["split"]["balanced_accuracy"] == pytest.approx(
        (_ba(cons[split], e1[split]) + 1) / 2
    )
    assert m["fold_mean"]["split"]["n"] == int(split.sum())
    # the experts beside the model: the same images, the same figures as the vote-only table
    alone = next(a for a in summary["agreement"] if a["subset"] == "test split")
    assert comp["experts"]["vs_consensus"] == alone["vs_consensus"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dataset": "AMi-Br"}, "no predictions on a test set with expert votes"),
        ({"flip_label": True}, "carry another label than majority_atypical"),
        ({"images": "unknown"}, "predicted image(s) are not in"),
    ],
)
def test_predictions_that_do_not_fit_the_votes_are_refused(
    synth_root, synth_test_split, tmp_path, kwargs, message
):
    if kwargs.get("images") == "unknown":
        kwargs = {"images": ["nosuch.png", *synth_test_split.images[1:]]}
    folder = _model_set(tmp_path, synth_test_split, **kwargs)
    with pytest.raises(ResultsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        experts.expert_summary(synth_root, folder)


# --------------------------------------------------------------------------- command line
def _run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_prints_every_expert_and_the_kappas(synth_root, synth_test_split, tmp_path, capsys):
    results = _model_set(tmp_path, synth_test_split)
    code, out, err = _run(capsys, "experts", "--data-root", synth_root, "--results", results,
                          "--json", tmp_path / "e.json", "--figure", tmp_path / "e.svg")  # fmt: skip
    assert code == 0, err
    for text in ("synthetic data: synthetic:AMi-Br (test split)", "synthetic:AtNorM-MD (all)",
                 "expert3_atypical", "Expert_5", "Fleiss' kappa", "UNI (lora) ensemble"):  # fmt: skip
        assert text in out
    saved = json.loads((tmp_path / "e.json").read_text())
    assert saved["data"] == "synthetic" and saved["results"] == "m"
    assert b"<svg" in (tmp_path / "e.svg").read_bytes()[:400]


def _rewrite(path: Path, change) -> None:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    rows = change(rows)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _set(column, value):
    return lambda rows: [{**rows[0], column: value}, *rows[1:]]


def _drop(column):
    return lambda rows: [{k: v for k, v in r.items() if k != column} for r in rows]


BAD_INPUT = [
    ("AMI-BR.csv", None, "AMI-BR.csv: missing file"),
    ("AtNorM-MD_expert_votes.csv", None, "AtNorM-MD_expert_votes.csv: missing file"),
    ("AMI-BR.csv", _drop("expert2_atypical"), "missing column(s) expert2_atypical"),
    ("AMI-BR.csv", _set("expert3_atypical", "maybe"), "expert3_atypical not True/False"),
    ("AtNorM-MD_expert_votes.csv", _set("Expert_4", "Unsure"), "Expert_4 not Atypical/Normal"),
    ("AtNorM-MD_expert_votes.csv", _drop("Majority"), "missing column(s) Majority"),
]


@pytest.mark.parametrize(("name", "change", "message"), BAD_INPUT)
def test_bad_vote_file_is_one_line_naming_file_and_column(
    synth_root, tmp_path, capsys, name, change, message
):
    root = tmp_path / "data"
    shutil.copytree(synth_root, root)
    if change is None:
        (root / name).unlink()
    else:
        _rewrite(root / name, change)
    out_json = tmp_path / "out" / "e.json"
    code, _, err = _run(capsys, "experts", "--data-root", root, "--json", out_json)
    assert code == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and str(root / name) in err and message in err
    assert not out_json.parent.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--results", "paper"], "holds no per-image predictions"),
        (["--results", "/no/such/set"], "/no/such/set"),
        (["--figure", "e.pdf"], "e.pdf: unknown figure format"),
    ],
)
def test_bad_options_are_one_line(synth_root, tmp_path, capsys, extra, message):
    out_json = tmp_path / "e.json"
    code, _, err = _run(capsys, "experts", "--data-root", synth_root, "--json", out_json, *extra)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out_json.exists()


def test_unwritable_output_is_one_line(synth_root, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, _, err = _run(capsys, "experts", "--data-root", synth_root, "--json", blocker / "e.json")
    assert code == 2 and "is a file, expected a folder" in err and str(blocker) in err
    assert len(err.strip().splitlines()) == 1
