"""The `amibr-bench` command. Argument parsing only: each subcommand hands its parsed
arguments to a `cli_*` function of the module that does the work, and returns its exit code."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from harness import __version__
from harness.paths import InputError

# harness.config's vocabularies, repeated so that parsing needs no torch import (a test keeps
# them equal to config.PRESETS / config.PRECISIONS)
PRESETS = ("paper", "reference-code", "fast")
PRECISIONS = ("fp32", "tf32", "bf16")


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


def _training_options(p: argparse.ArgumentParser) -> None:
    """The options `run` and `launch` share (the same store, the same configuration hashes)."""
    p.add_argument("--folds", default="1-5", help="folds to run, e.g. 1-5 or 1,3")
    p.add_argument("--tier", choices=["smoke", "full"], default="full")
    p.add_argument(
        "--preset",
        choices=PRESETS,
        default="paper",
        help="paper (the text), reference-code (the authors' scripts) or fast (paper settings "
        "with bf16 autocast, TF32, fused Adam, channels_last for CNNs)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="fp32, tf32 or bf16 (recorded and hashed); default: the preset's (fp32 for paper "
        "and reference-code, as the authors trained; bf16 for fast)",
    )
    p.add_argument("--store", help="results store folder (default runs/<tier>)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    _data_root(p)
    _weights_dir(p)


def _launch_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executor", choices=["local", "slurm", "debug"], default="local")
    p.add_argument(
        "--parallel",
        type=int,
        help="jobs at once (local: default every GPU slot, GPUs x --jobs-per-gpu, or 1 on a "
        "CPU; slurm: the array's parallelism)",
    )
    p.add_argument(
        "--jobs-per-gpu",
        type=int,
        default=1,
        help="local executor: folds sharing one GPU (choose from `throughput`'s peak memory)",
    )
    p.add_argument("--dry-run", action="store_true", help="list the jobs and their cost only")
    p.add_argument("--logs", help="submitit's job folder (default <store>/launch-logs)")
    p.add_argument("--no-wait", action="store_true", help="slurm: submit and return")
    p.add_argument(
        "--checkpoint-interval",
        type=float,
        default=0.0,
        help="minutes between a fold's resumable checkpoints (at an epoch's end; 0: every epoch)",
    )
    p.add_argument(
        "--throughput",
        help="recorded `throughput --json` file for --dry-run (default <store>/throughput.json)",
    )
    p.add_argument(
        "--assume-tflops",
        type=float,
        help="--dry-run estimates: sustained TFLOP/s of one GPU (default by precision: "
        "fp32 15, tf32 60, bf16 120)",
    )
    slurm = p.add_argument_group("slurm (passed to sbatch through submitit)")
    slurm.add_argument("--partition")
    slurm.add_argument("--time", help="per job, e.g. 12:00:00 or 2-00:00:00 (default 24:00:00)")
    slurm.add_argument("--gpus-per-node", type=int, default=1)
    slurm.add_argument("--cpus-per-task", type=int)
    slurm.add_argument("--mem", help="per job, e.g. 64G")
    slurm.add_argument("--account")
    slurm.add_argument(
        "--slurm-extra",
        action="append",
        metavar="KEY=VALUE",
        help="any other sbatch option, e.g. --slurm-extra qos=high (repeatable)",
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

    # --- training (harness.runner, harness.launch, harness.plan) ------------------------------------
    run = sub.add_parser("run", help="train and evaluate one configuration of Table 3")
    run.add_argument("--config", required=True, help="configuration name (see `amibr-bench plan`)")
    _training_options(run)
    run.set_defaults(func=_handler("runner", "cli_run"))

    launch = sub.add_parser(
        "launch",
        help="train the plan (or chosen configurations) as one job per (configuration, fold) "
        "through submitit: local processes, a Slurm job array, or in-process (debug)",
    )
    launch.add_argument(
        "--config", action="append", help="configuration (repeat); default: the 17 of Table 3"
    )
    _training_options(launch)
    _launch_options(launch)
    launch.set_defaults(func=_handler("launch", "cli_launch"))

    plan = sub.add_parser(
        "plan", help="list the configurations of the full protocol and how far a run got"
    )
    plan.add_argument("--json", action="store_true")
    plan.add_argument("--preset", choices=PRESETS, default="paper")
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

    # --- claims and report (harness.report) ---------------------------------------------------
    claims = sub.add_parser("claims", help="judge every claim of the paper against a results set")
    claims.add_argument(
        "--results", default="paper", help="'paper' (the authors' numbers) or a results-set folder"
    )
    claims.add_argument(
        "--format",
        choices=["text", "md", "json", "junit", "html"],
        default="md",
        help="text: one line per claim for a terminal; md/html with a forest plot of Table 3 "
        "and, where the set has per-image predictions, ROC curves as in Figure 2",
    )
    claims.add_argument("--out", help="write the report here instead of standard output")
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
