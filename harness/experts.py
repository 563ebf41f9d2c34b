"""Inter-rater agreement of the experts, and models placed among them (`amibr-bench experts`).

The paper stresses low inter-rater agreement (Abstract; §2.1: all three AMi-Br experts agree on
78.2 % of the figures, all five AtNorM-MD experts on 69.6 %; Table 1), and the data carry every
expert's vote: `AMI-BR.csv` (expert1_atypical .. expert3_atypical, majority_atypical) and
`AtNorM-MD_expert_votes.csv` (Expert_1 .. Expert_5, Majority). From the votes alone:

* each expert against the consensus label (the majority column, which `harness.data` checks
  against the class folder and the majority of the votes): balanced accuracy, sensitivity and
  specificity of the atypical class (atypical = positive), with scikit-learn;
* each expert against the majority of the OTHER experts (leave-one-out consensus; `TIE_RULE`);
* pairwise Cohen's kappa (scikit-learn) and Fleiss' kappa (statsmodels).

With a results set holding per-image predictions, each model (fold mean and fold ensemble,
threshold 0.5 as in `harness.analysis`) is scored against the consensus and against every single
expert, beside the experts' own figures, and on unanimous and split votes separately.

AMi-Br is analysed on its test split (the images not in amibr_train_split.csv, the split the
models are tested on) and on all 3,720 figures. Bad input (a missing vote file, missing columns,
a vote that is not True/False or Atypical/Normal) raises `harness.data.DataError` naming the
file and the column; predictions that do not fit the votes raise `ResultsError`.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from harness import analysis, data, paths
from harness.results import ResultsError, ResultsSet, load_results_set

VOTED = {  # dataset -> (vote file, one column per expert, consensus column)
    "AMi-Br": (data.AMIBR_CSV, data.AMIBR_VOTE_COLUMNS, data.AMIBR_COLUMNS[-1]),
    "AtNorM-MD": (data.VOTES_CSV, data.MD_VOTE_COLUMNS, data.VOTES_COLUMNS[-1]),
}
SUBSETS = {"AMi-Br": ("test split", "all"), "AtNorM-MD": ("all",)}
TIE_RULE = (
    "leave-one-out consensus = the majority of the other experts' votes; where they split "
    "evenly (AMi-Br: the other two disagree; AtNorM-MD: two against two) there is no "
    "leave-one-out label and the image is left out of that expert's comparison (count shown)"
)
RATER_METRICS = ("balanced_accuracy", "sensitivity", "specificity")


@dataclass(frozen=True)
class VoteTable:
    """Every expert's vote on the images of one dataset (or its AMi-Br test split).

    `dataset`: the test set's name as results sets spell it ("synthetic:AMi-Br" on a synthetic
    tree); `votes`: bool array (n_images, n_experts), True = atypical; `consensus`: bool (n,),
    the dataset's label (True = Atypical); `experts`: the vote columns, in file order.
    """

    dataset: str
    subset: str
    vote_file: Path
    experts: tuple[str, ...]
    consensus_column: str
    images: tuple[str, ...]
    votes: np.ndarray
    consensus: np.ndarray

    @property
    def title(self) -> str:
        return f"{self.dataset} ({self.subset}, {len(self.images):,} images)"

    def restrict(self, images, subset: str) -> VoteTable:
        """The same votes on `images` (names, in that order)."""
        index = {name: i for i, name in enumerate(self.images)}
        rows = np.array([index[name] for name in images], dtype=int)
        return replace(
            self,
            subset=subset,
            images=tuple(images),
            votes=self.votes[rows],
            consensus=self.consensus[rows],
        )


def load_vote_tables(root: str | os.PathLike) -> list[VoteTable]:
    """AMi-Br's test split, all of AMi-Br, and AtNorM-MD, from the authors' vote files.

    Uses `harness.data.load_records`, which checks the files against the class folders (a
    majority column that disagrees with the folder or with the votes is refused) and raises
    DataError naming the file and column on bad input.
    """
    root = Path(root)
    synthetic = data.is_synthetic(root)
    tables = []
    for dataset, (vote_file, experts, consensus_column) in VOTED.items():
        records = data.load_records(root, dataset)  # every record of these sets has its votes
        for subset in SUBSETS[dataset]:
            chosen = [r for r in records if subset == "all" or r.split == "test"]
            tables.append(
                VoteTable(
                    data.test_set_name(dataset, synthetic),
                    subset,
                    root / vote_file,
                    experts,
                    consensus_column,
                    tuple(r.name for r in chosen),
                    np.array([r.votes for r in chosen], dtype=bool).reshape(-1, len(experts)),
                    np.array([r.label == data.LABELS[0] for r in chosen], dtype=bool),
                )
            )
    return tables


# -------------------------------------------------------------------------------- statistics
def _subsets(votes: np.ndarray) -> dict[str, np.ndarray]:
    """Masks (n,) of the images where every expert voted alike ("unanimous") and the rest."""
    unanimous = votes.all(axis=1) | ~votes.any(axis=1)
    return {"unanimous": unanimous, "split": ~unanimous}


def _number(value) -> float | None:
    value = float(value)
    return None if np.isnan(value) else value


def rater_metrics(reference, labels) -> dict:
    """One rater's hard labels against a reference labelling, atypical = positive (sklearn).

    Inputs: bool arrays (n,), True = atypical. Returns balanced_accuracy, sensitivity and
    specificity of the atypical class (None where the reference lacks the class they need), the
    confusion counts tp, fp, fn, tn, and n.
    """
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix, recall_score

    ref = np.asarray(reference, bool)
    lab = np.asarray(labels, bool)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(ref, lab, labels=[False, True]).ravel())
    has_pos, has_neg = bool(ref.any()), bool(not ref.all())
    return {
        "balanced_accuracy": _number(balanced_accuracy_score(ref, lab))
        if has_pos and has_neg
        else None,
        "sensitivity": _number(recall_score(ref, lab, pos_label=True)) if has_pos else None,
        "specificity": _number(recall_score(ref, lab, pos_label=False)) if has_neg else None,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "n": int(ref.size),
    }


def leave_one_out(votes: np.ndarray, expert: int) -> tuple[np.ndarray, np.ndarray]:
    """The majority of the other experts' votes, and where it is defined (see TIE_RULE).

    votes: bool (n, k); returns (label bool (n,), defined bool (n,)); an even split of the k-1
    other experts is undefined."""
    others = np.delete(np.asarray(votes, bool), expert, axis=1)
    atypical = 2 * others.sum(axis=1)
    return atypical > others.shape[1], atypical != others.shape[1]


def cohen_kappa(a, b) -> float | None:
    """Cohen's kappa of two raters' bool labels (sklearn); None when undefined (one class)."""
    from sklearn.metrics import cohen_kappa_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _number(cohen_kappa_score(a, b, labels=[False, True]))


def fleiss_kappa(votes) -> float | None:
    """Fleiss' kappa of bool votes (n images, k raters) (statsmodels); None when undefined."""
    from statsmodels.stats.inter_rater import aggregate_raters
    from statsmodels.stats.inter_rater import fleiss_kappa as _fleiss

    counts, _ = aggregate_raters(np.asarray(votes, bool).astype(int), n_cat=2)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _number(_fleiss(counts, method="fleiss"))


def agreement(table: VoteTable) -> dict:
    """Everything the votes alone say about one table (plain data; see the module docstring).

    Keys: dataset, subset, vote_file, consensus_column, experts, n_images, n_atypical,
    consensus_vs_votes_mismatches (images whose consensus label is not the majority of the
    votes; 0 when the data layer accepted the file), unanimous_n, unanimous_pct,
    vs_consensus / vs_others (one `rater_metrics` dict per expert, vs_others with the images
    left out as ties), pairwise_balanced_accuracy {rater: {reference expert: value}},
    vs_consensus_by_votes (per expert, `rater_metrics` on the
    unanimous and on the split images), cohen_kappa [{a, b, kappa}], mean_cohen_kappa, fleiss_kappa, tie_rule.
    """
    votes, consensus = table.votes, table.consensus
    n, k = votes.shape
    unanimous = _subsets(votes)["unanimous"]
    vs_others = []
    for j, expert in enumerate(table.experts):
        label, defined = leave_one_out(votes, j)
        others = [e for i, e in enumerate(table.experts) if i != j]
        vs_others.append(
            {
                "expert": expert,
                "reference": f"majority of {', '.join(others)}",
                "ties_left_out": int((~defined).sum()),
                **rater_metrics(label[defined], votes[defined, j]),
            }
        )
    kappas = [
        {
            "a": table.experts[i],
            "b": table.experts[j],
            "kappa": cohen_kappa(votes[:, i], votes[:, j]),
        }
        for i in range(k)
        for j in range(i + 1, k)
    ]
    defined_kappas = [c["kappa"] for c in kappas if c["kappa"] is not None]
    return {
        "dataset": table.dataset,
        "subset": table.subset,
        "vote_file": str(table.vote_file),
        "consensus_column": table.consensus_column,
        "experts": list(table.experts),
        "n_images": n,
        "n_atypical": int(consensus.sum()),
        "consensus_vs_votes_mismatches": int(((2 * votes.sum(axis=1) > k) != consensus).sum()),
        "unanimous_n": int(unanimous.sum()),
        "unanimous_pct": 100.0 * float(unanimous.mean()) if n else None,
        "vs_consensus": [
            {"expert": e, **rater_metrics(consensus, votes[:, j])}
            for j, e in enumerate(table.experts)
        ],
        "vs_consensus_by_votes": [
            {
                "expert": e,
                **{
                    name: rater_metrics(consensus[mask], votes[mask, j])
                    for name, mask in _subsets(votes).items()
                },
            }
            for j, e in enumerate(table.experts)
        ],  # fmt: skip
        "vs_others": vs_others,
        "pairwise_balanced_accuracy": {
            a: {
                b: rater_metrics(votes[:, j], votes[:, i])["balanced_accuracy"]
                for j, b in enumerate(table.experts)
                if j != i
            }  # fmt: skip
            for i, a in enumerate(table.experts)
        },
        "cohen_kappa": kappas,
        "mean_cohen_kappa": float(np.mean(defined_kappas)) if defined_kappas else None,
        "fleiss_kappa": fleiss_kappa(votes),
        "tie_rule": TIE_RULE,
    }


# ------------------------------------------------------------------------------ models
def _score(table: VoteTable, labels: np.ndarray) -> dict:
    """A rater's labels against the consensus, each expert, and on unanimous / split votes."""
    out = {"vs": {"consensus": rater_metrics(table.consensus, labels)["balanced_accuracy"]}}
    for j, expert in enumerate(table.experts):
        out["vs"][expert] = rater_metrics(table.votes[:, j], labels)["balanced_accuracy"]
    for name, mask in _subsets(table.votes).items():
        out[name] = rater_metrics(table.consensus[mask], labels[mask])
    return out


def _mean_scores(scores: list[dict]) -> dict:
    """The mean over folds of `_score` results (None where any fold is undefined)."""

    def mean(values):
        values = list(values)
        return None if any(v is None for v in values) else float(np.mean(values))

    out = {"vs": {ref: mean(s["vs"][ref] for s in scores) for ref in scores[0]["vs"]}}
    for name in ("unanimous", "split"):
        out[name] = {m: mean(s[name][m] for s in scores) for m in RATER_METRICS}
        out[name]["n"] = scores[0][name]["n"]
    return out


def models_vs_experts(results: ResultsSet, tables: list[VoteTable]) -> tuple[list[dict], list]:
    """Each model of `results` against the consensus and each expert, beside the experts.

    Returns (comparisons, skipped): one comparison per test set with votes and per set of
    predicted images: {dataset, n_images, experts: agreement(...) on those images, models:
    [{model, method, folds, fold_mean: {...}, ensemble: {...}}]} where each of fold_mean /
    ensemble holds "vs" {"consensus" | expert: balanced accuracy} and "unanimous" / "split"
    (`rater_metrics` against the consensus on the images where all experts agree / not).
    Models call an image atypical when prob_atypical >= 0.5 (`analysis.THRESHOLD`).
    `skipped` names the test sets without votes. Raises ResultsError when a predicted image is
    not in the vote file or its label differs from the consensus.
    """
    full = {t.dataset: t for t in tables if t.subset == "all"}
    source = analysis.predictions_file(results)
    groups: dict[tuple[str, tuple[str, ...]], list[analysis.Cell]] = {}
    skipped = []
    for cell in analysis.prediction_cells(results):
        if cell.dataset not in full:
            if cell.dataset not in skipped:
                skipped.append(cell.dataset)
            continue
        table = full[cell.dataset]
        index = {name: i for i, name in enumerate(table.images)}
        unknown = [name for name in cell.images if name not in index]
        where = f"{source}: {cell.model} | {cell.method} | {cell.dataset}"
        if unknown:
            raise ResultsError(
                f"{where}: {len(unknown)} predicted image(s) are not in {table.vote_file} "
                f"(e.g. {unknown[0]}); are the predictions from another data tree?"
            )
        wrong = [n for n, y in zip(cell.images, cell.is_atypical, strict=True)
                 if bool(table.consensus[index[n]]) != bool(y)]  # fmt: skip
        if wrong:
            raise ResultsError(
                f"{where}: {len(wrong)} image(s) carry another label than "
                f"{table.consensus_column} of {table.vote_file} (e.g. {wrong[0]})"
            )
        groups.setdefault((cell.dataset, cell.images), []).append(cell)
    if not groups and skipped:
        have = ", ".join(sorted(full))
        raise ResultsError(
            f"{source}: no predictions on a test set with expert votes ({have}); the set "
            f"predicts {', '.join(skipped)} (real and synthetic test sets never match)"
        )
    comparisons = []
    for (dataset, images), cells in groups.items():
        table = full[dataset].restrict(images, "predicted images")
        models = []
        for cell in cells:
            folds = [_score(table, p >= analysis.THRESHOLD) for p in cell.probs]
            models.append(
                {
                    "model": cell.model,
                    "method": cell.method,
                    "folds": list(cell.folds),
                    "fold_mean": _mean_scores(folds),
                    "ensemble": _score(table, cell.ensemble >= analysis.THRESHOLD),
                }
            )
        comparisons.append(
            {
                "dataset": dataset,
                "n_images": len(images),
                "experts": agreement(table),
                "models": models,
            }
        )
    return comparisons, skipped


def expert_summary(root: str | os.PathLike, results: str | os.PathLike | None = None) -> dict:
    """What `amibr-bench experts` prints, as plain data (the --json file).

    Keys: data_root, data ("real" | "synthetic"), threshold, tie_rule, agreement (one
    `agreement` dict per vote table), and with a results set: results, comparisons and
    skipped (see `models_vs_experts`). Raises DataError / ResultsError on bad input.
    """
    root = Path(root)
    tables = load_vote_tables(root)
    summary = {
        "data_root": str(root),
        "data": "synthetic" if data.is_synthetic(root) else "real",
        "threshold": analysis.THRESHOLD,
        "tie_rule": TIE_RULE,
        "agreement": [agreement(t) for t in tables],
    }
    if results is not None:
        rs = load_results_set(results)
        comparisons, skipped = models_vs_experts(rs, tables)
        summary.update(results=rs.name, comparisons=comparisons, skipped=skipped)
    return summary


# ------------------------------------------------------------------------------- figure
def experts_figure(summary: dict, path: str | os.PathLike) -> Path:
    """Balanced accuracy against the consensus, models placed among the experts.

    One panel per comparison (with a results set) or per vote table; one row per rater: each
    expert against the consensus (filled circle) and against the majority of the other experts
    (open circle), each model's fold mean (filled triangle) and fold ensemble (open triangle).
    Text is at least `analysis.MIN_FONT_PT` points and the figure at most
    `analysis.MAX_FIGURE_PX` pixels wide at `analysis.FIGURE_DPI`, so it reads at its natural
    size in the HTML report. Written atomically as PNG or SVG (by suffix) via
    `analysis.save_figure`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from harness.claims import config_label

    panels = summary.get("comparisons") or [
        {"experts": a, "models": []} for a in summary["agreement"]
    ]
    styles = {  # marker, filled, colour
        "expert vs consensus": ("o", True, "tab:blue"),
        "expert vs the other experts": ("o", False, "tab:blue"),
        "model, fold mean": ("^", True, "tab:orange"),
        "model, fold ensemble": ("^", False, "tab:orange"),
    }
    rows_of = []
    for panel in panels:
        agree = panel["experts"]
        rows = [
            (f"expert {_short(c['expert'])}",
             {"expert vs consensus": c["balanced_accuracy"],
              "expert vs the other experts": o["balanced_accuracy"]})
            for c, o in zip(agree["vs_consensus"], agree["vs_others"], strict=True)
        ]  # fmt: skip
        rows += [
            (config_label(m["model"], m["method"]),
             {"model, fold mean": m["fold_mean"]["vs"]["consensus"],
              "model, fold ensemble": m["ensemble"]["vs"]["consensus"]})
            for m in panel["models"]
        ]  # fmt: skip
        rows_of.append(rows)
    n_rows = max(len(r) for r in rows_of)
    width = min(analysis.MAX_FIGURE_PX / analysis.FIGURE_DPI, 4.6 * len(panels))
    fig, axes = plt.subplots(
        1, len(panels), figsize=(width, 1.9 + 0.3 * n_rows), squeeze=False, layout="constrained"
    )
    for ax, panel, rows in zip(axes[0], panels, rows_of, strict=True):
        agree = panel["experts"]
        ys = np.arange(len(rows))[::-1]
        for y, (_, values) in zip(ys, rows, strict=True):
            for kind, value in values.items():
                if value is None:
                    continue
                marker, filled, colour = styles[kind]
                ax.plot(value, y, marker, ms=7, color=colour,
                        markerfacecolor=colour if filled else "white", label=kind)  # fmt: skip
        ax.set_yticks(ys, [name for name, _ in rows])
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.set_xlabel("balanced accuracy")
        ax.set_title(f"{agree['dataset']}\n{agree['subset']}, n={agree['n_images']:,}")
        ax.grid(axis="x", alpha=0.3)
    handles = {}
    for ax in axes[0]:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    order = [k for k in styles if k in handles]
    fig.legend([handles[k] for k in order], order, loc="outside lower center",
               ncol=len(order) if width >= 8 else 2, fontsize=analysis.MIN_FONT_PT,
               frameon=False)  # fmt: skip
    data_kind = "synthetic data: " if summary.get("data") == "synthetic" else ""
    fig.suptitle(
        f"{data_kind}raters against the consensus label (atypical = positive; models at "
        "threshold 0.5)",
        fontsize=10,
    )
    return analysis.save_figure(fig, path)


# ---------------------------------------------------------------------------------- CLI
def _fmt(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _short(expert: str) -> str:
    """expert2_atypical -> E2, Expert_3 -> E3 (for kappa pairs on one line)."""
    digits = "".join(c for c in expert if c.isdigit())
    return f"E{digits}" if digits else expert


def _print_agreement(console, agree: dict, prefix: str) -> None:
    from rich.table import Table

    table = Table(
        title=f"{prefix}{agree['dataset']} ({agree['subset']}): {agree['n_images']:,} images, "
        f"{agree['n_atypical']:,} atypical; each expert against the consensus "
        f"({agree['consensus_column']}) and against the majority of the other experts",
        title_justify="left",
    )
    for col in (
        "expert",
        "BA",
        "sens.",
        "spec.",
        "BA vs others",
        "sens.",
        "spec.",
        "images (ties left out)",
    ):
        table.add_column(col, justify="left" if col == "expert" else "right")
    for cons, loo in zip(agree["vs_consensus"], agree["vs_others"], strict=True):
        table.add_row(
            cons["expert"],
            *(_fmt(cons[m]) for m in RATER_METRICS),
            *(_fmt(loo[m]) for m in RATER_METRICS),
            f"{loo['n']:,} ({loo['ties_left_out']:,})",
        )
    console.print(table)
    pairs = ", ".join(
        f"{_short(c['a'])}-{_short(c['b'])} {_fmt(c['kappa'], 3)}" for c in agree["cohen_kappa"]
    )
    mismatch = agree["consensus_vs_votes_mismatches"]
    console.print(
        f"  Cohen's kappa: {pairs}; mean {_fmt(agree['mean_cohen_kappa'], 3)}. "
        f"Fleiss' kappa: {_fmt(agree['fleiss_kappa'], 3)}. All experts agree on "
        f"{agree['unanimous_n']:,} of {agree['n_images']:,} ({_fmt(agree['unanimous_pct'], 1)}%).\n"
        f"  Consensus = {agree['consensus_column']} column = class folder = majority of the "
        + ("votes on every image." if mismatch == 0 else f"votes EXCEPT on {mismatch} image(s)."),
        highlight=False,
    )


def _print_comparison(console, comp: dict, prefix: str) -> None:
    from rich.table import Table

    agree = comp["experts"]
    experts = agree["experts"]
    table = Table(
        title=f"{prefix}{comp['dataset']}: balanced accuracy against each labelling "
        f"({comp['n_images']:,} predicted images; models at threshold 0.5; unanimous / split "
        "= images where all experts agree / not, scored against the consensus)",
        title_justify="left",
    )
    table.add_column("rater")
    for col in ("consensus", *experts, "unanimous BA", "split BA", "split sens.", "split spec."):
        table.add_column(_short(col) if col in experts else col, justify="right")
    for i, expert in enumerate(experts):
        cons = agree["vs_consensus"][i]
        others = agree["pairwise_balanced_accuracy"][expert]
        by_votes = agree["vs_consensus_by_votes"][i]
        table.add_row(
            f"expert {_short(expert)}",
            _fmt(cons["balanced_accuracy"]),
            *(_fmt(others.get(e)) if e != expert else "-" for e in experts),
            _fmt(by_votes["unanimous"]["balanced_accuracy"]),
            *(_fmt(by_votes["split"][k]) for k in RATER_METRICS),
        )
    for m in comp["models"]:
        for kind, label in (("fold_mean", "fold mean"), ("ensemble", "ensemble")):
            s = m[kind]
            table.add_row(
                f"{m['model']} ({m['method'].replace('_', ' ')}) {label}",
                _fmt(s["vs"]["consensus"]),
                *(_fmt(s["vs"][e]) for e in experts),
                _fmt(s["unanimous"]["balanced_accuracy"]),
                *(_fmt(s["split"][k]) for k in RATER_METRICS),
            )
    console.print(table)


def cli_experts(args) -> int:
    """`amibr-bench experts`: the experts' agreement (and models among them); exit 0 or 2."""
    from rich.console import Console

    if getattr(args, "figure", None):
        analysis.figure_format(args.figure)  # refuse a bad option before anything is written
    root = paths.data_root(getattr(args, "data_root", None))
    summary = expert_summary(root, getattr(args, "results", None))
    console = Console()
    prefix = "synthetic data: " if summary["data"] == "synthetic" else ""
    for agree in summary["agreement"]:
        _print_agreement(console, agree, prefix)
    console.print(f"Ties: {TIE_RULE}.", highlight=False)
    for comp in summary.get("comparisons", []):
        _print_comparison(console, comp, prefix)
    for dataset in summary.get("skipped", []):
        console.print(f"{dataset}: no expert votes to compare models with (one annotator)")
    try:
        if getattr(args, "json", None):
            paths.atomic_write(args.json, json.dumps(summary, indent=2) + "\n")
            console.print(f"written: {args.json}")
        if getattr(args, "figure", None):
            console.print(f"written: {experts_figure(summary, args.figure)}")
    except OSError as exc:
        raise paths.InputError(
            f"{exc.filename or args.json}: cannot write ({exc.strerror})"
        ) from exc
    return 0
