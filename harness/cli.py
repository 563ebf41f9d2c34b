"""The `amibr-bench` command. Argument parsing only: each subcommand hands its parsed
arguments to a `cli_*` function of the module that does the work, and returns its exit code."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from harness import __version__
from harness.paths import InputError


def _handler(module: str, function: str):
    def run(args: argparse.Namespace) -> int:
        return importlib.import_module(f"harness.{module}").__getattribute__(function)(args)

    return run


def _data_root(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-root",
        help="dataset folder (a clone of DeepMicroscopy/AMi-Br_Benchmark); default $AMIBR_DATA_ROOT",
    )


def _weights_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--weights-dir",
        help="folder with one sub-folder per foundation model (config.json + weights); "
        "default $AMIBR_WEIGHTS, then the offline Hugging Face cache",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amibr-bench",
        description="Check, claim by claim, the results of Banerjee et al., MELBA 2026:006.",
    )
    parser.add_argument("--version", action="version", version=f"amibr-bench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # --- data (harness.data, harness.synth) -------------------------------------------------
    data = sub.add_parser("data", help="verify the datasets or generate the synthetic fixture")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    verify = data_sub.add_parser(
        "verify", help="check the dataset tree and print the paper's Table 1 figures"
    )
    _data_root(verify)
    verify.add_argument("--json", action="store_true", help="print the figures as JSON")
    verify.set_defaults(func=_handler("data", "cli_verify"))
    synth = data_sub.add_parser(
        "synth", help="write a small synthetic dataset in the authors' layout"
    )
    synth.add_argument("--out", required=True, help="folder to create")
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(func=_handler("synth", "cli_synth"))

    # --- splits (harness.splits) --------------------------------------------------------------
    splits = sub.add_parser("splits", help="write the authors' 5 folds and the AMi-Br test split")
    _data_root(splits)
    splits.add_argument("--out", required=True, help="CSV file: image,label,slide,fold")
    splits.set_defaults(func=_handler("splits", "cli_splits"))

    # --- models (harness.models) --------------------------------------------------------------
    models = sub.add_parser("models", help="list every model, its parameter count and weights")
    _weights_dir(models)
    models.add_argument("--json", action="store_true")
    models.set_defaults(func=_handler("models", "cli_models"))

    # --- training (harness.runner, harness.plan) --------------------------------------------------
    run = sub.add_parser("run", help="train and evaluate one configuration of Table 3")
    run.add_argument("--config", required=True, help="configuration name (see `amibr-bench plan`)")
    run.add_argument("--folds", default="1-5", help="folds to run, e.g. 1-5 or 1,3")
    run.add_argument("--tier", choices=["smoke", "full"], default="full")
    run.add_argument("--preset", choices=["paper", "reference-code"], default="paper")
    run.add_argument("--store", help="results store folder (default runs/)")
    run.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    _data_root(run)
    _weights_dir(run)
    run.set_defaults(func=_handler("runner", "cli_run"))

    plan = sub.add_parser(
        "plan", help="list the configurations of the full protocol and how far a run got"
    )
    plan.add_argument("--json", action="store_true")
    plan.add_argument("--preset", choices=["paper", "reference-code"], default="paper")
    plan.add_argument("--store", help="full-tier store whose progress to show (default runs/full)")
    _weights_dir(plan)
    plan.set_defaults(func=_handler("plan", "cli_plan"))

    tput = sub.add_parser(
        "throughput",
        help="training and prediction images/s of full-size configurations on this machine",
    )
    tput.add_argument("--config", action="append", help="configuration (repeat); default: all")
    tput.add_argument("--all", action="store_true", help="every configuration of Table 3")
    tput.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    tput.add_argument("--batch", type=int, default=8, help="batch size (the protocol's is 8)")
    tput.add_argument("--steps", type=int, default=5, help="timed training steps")
    tput.add_argument("--json", help="also write the measurements to this JSON file")
    tput.add_argument(
        "--weights",
        choices=["random", "local"],
        default="random",
        help="random initialisation (no download needed) or the weights under --weights-dir",
    )
    _data_root(tput)
    _weights_dir(tput)
    tput.set_defaults(func=_handler("throughput", "cli_throughput"))

    smoke = sub.add_parser(
        "smoke", help="the whole pipeline on CPU in minutes, ending in the claim report"
    )
    smoke.add_argument("--store", help="results store folder (default runs/smoke)")
    smoke.add_argument(
        "--synthetic", action="store_true", help="use the synthetic fixture even if data exist"
    )
    _data_root(smoke)
    smoke.set_defaults(func=_handler("smoke", "cli_smoke"))

    # --- regression (harness.regression) -----------------------------------------------------
    reg = sub.add_parser(
        "regression",
        help="rerun the smoke tier on the synthetic fixture and compare it with the committed "
        "baseline (exit 1 on any change of metric, configuration hash or verdict)",
    )
    reg.add_argument("--baseline", help="baseline results set (default expected_results/baselines/"
                     "smoke-synthetic)")  # fmt: skip
    reg.add_argument("--out", help="where the new run goes (default ./runs/regression)")
    reg.add_argument(
        "--update-baseline",
        action="store_true",
        help="replace the baseline by the new run (needs --why)",
    )
    reg.add_argument("--why", help="with --update-baseline: why the numbers changed (recorded)")
    reg.set_defaults(func=_handler("regression", "cli_regression"))

    # --- experts (harness.experts) -------------------------------------------------------------
    experts = sub.add_parser(
        "experts",
        help="the experts' agreement (each against the consensus, Cohen's and Fleiss' kappa) "
        "and, with --results, the models placed among them",
    )
    _data_root(experts)
    experts.add_argument(
        "--results",
        help="a results set with per-image predictions (predictions.csv): score its models "
        "against the consensus and each expert",
    )
    experts.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    experts.add_argument(
        "--figure", metavar="FILE", help="also draw raters against the consensus (.png or .svg)"
    )
    experts.set_defaults(func=_handler("experts", "cli_experts"))

    # --- claims and report (harness.report) ---------------------------------------------------
    claims = sub.add_parser("claims", help="judge every claim of the paper against a results set")
    claims.add_argument(
        "--results", default="paper", help="'paper' (the authors' numbers) or a results-set folder"
    )
    claims.add_argument(
        "--format",
        choices=["text", "md", "json", "junit", "html"],
        help="one format only, printed unless --out or --out-dir is given: text (one line per "
        "claim), md or html (with a forest plot of Table 3 and, for sets with per-image "
        "predictions, ROC curves and prediction-level analyses), json, junit. Default: a short "
        "summary here, md, html and json in --out-dir",
    )
    claims.add_argument(
        "--out",
        metavar="FILE",
        help="write one report to FILE (format from --format or the suffix .md, .html, .json, "
        ".xml, .txt); '-' prints it",
    )
    claims.add_argument(
        "--out-dir",
        metavar="DIR",
        help="folder for claims.md, claims.html, claims.json and the figures "
        "(default ./reports/<results-set name>/)",
    )
    claims.add_argument(
        "--against",
        metavar="OLD",
        help="regression check: compare each claim's verdict with the one on results set OLD "
        "(exit 1 when any got worse, or a Table 3 mean fell by more than its fold spread)",
    )
    _data_root(claims)
    _weights_dir(claims)
    claims.set_defaults(func=_handler("report", "cli_claims"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not sys.stdout.isatty():
        os.environ.setdefault("COLUMNS", "160")  # rich tables in logs and CI: no squeezed columns
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        # Bad or missing input (data, weights, results, a configuration name): one clear line.
        # Anything else is a bug and keeps its traceback; AMIBR_DEBUG=1 shows it for these too.
        if os.environ.get("AMIBR_DEBUG"):
            raise
        print(f"amibr-bench: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
