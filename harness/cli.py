"""The `amibr-bench` command. Argument parsing only: each subcommand hands its parsed
arguments to a `cli_*` function of the module that does the work, and returns its exit code.

Every option that takes a value is checked while parsing (`type=` validators below), so a bad
option stops the command before any work, with one line naming it and exit code 2."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from pathlib import Path

from harness import __version__, paths
from harness.paths import InputError, RunFailed

EXIT_CODES = """exit codes:
  0  every verdict as expected (claims, smoke), or the command did what it was asked
  1  an unexpected verdict: a claim failed, a data tree has problems, a regression
  2  bad input: a missing or corrupt file, a wrong path, a bad option (one line says which)
  anything else is a bug in amibr-bench (it prints a traceback): please report it"""


class UsageError(InputError):
    """A bad command line; `prog` is the (sub)command it was given to."""

    def __init__(self, prog: str, message: str):
        self.prog = prog
        super().__init__(message)


class _Parser(argparse.ArgumentParser):
    """argparse, except that a bad command line is one line and exit code 2 (via `main`), not a
    usage block; subcommands' parsers are of this class too."""

    def error(self, message: str):  # type: ignore[override]
        # "argument --folds: --folds must ..." (a check that names its option): name it once
        raise UsageError(self.prog, re.sub(r"^(argument (\S+): )\2:? ", r"\1", message))


def _checked(check, *args, **kwargs):
    """An argparse `type=` that runs `check(text, ...)` (which raises InputError on bad input) and
    keeps the text: argparse then names the option in front of the check's one-line message."""

    def convert(text: str) -> str:
        try:
            check(text, *args, **kwargs)
        except InputError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    convert.__name__ = getattr(check, "__name__", "value")
    return convert


def _integer(minimum: int):
    def at_least(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    return at_least


def _config_name(text: str) -> None:
    from harness.config import parse_config

    parse_config(text)


def _folds(text: str) -> None:
    from harness.config import parse_folds

    parse_folds(text)


def _device(text: str) -> None:
    from harness.runner import resolve_device

    resolve_device(text)


def _text(text: str) -> None:
    if not text.strip():
        raise InputError(f"{text!r}: must not be blank")


def _report_format(text: str) -> None:
    # harness.report.FORMATS, imported only when --format is given (the claims command imports
    # the report package anyway; other commands, and --help, stay light)
    from harness.report import FORMATS

    if text not in FORMATS:
        raise InputError(f"{text!r} is not a report format (one of: {', '.join(FORMATS)})")


def _results_set(text: str) -> None:
    if text != "paper":
        paths.input_dir(text)


def _existing_file(text: str) -> None:
    path = Path(text).expanduser()
    if path.is_dir():
        raise InputError(f"{path} is a folder, expected a file")
    if not path.is_file():
        raise InputError(f"{path} does not exist")


def _key_value(text: str) -> None:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise InputError(f"{text!r}: expected KEY=VALUE, e.g. qos=high")


def _number(minimum: float, strict: bool):
    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value != value or value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(
                f"must be {'more than' if strict else 'at least'} {minimum:g}, not {text}"
            )
        return value

    return convert


def _register_models(argv: list[str] | None) -> None:
    """A user's models (`--models FILE`, else $AMIBR_MODELS) join the registry before the command
    line is parsed, so configuration names such as `my-fm:lora` validate like the paper's."""
    pre = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    pre.add_argument("--models", type=MODELS_FILE)
    try:
        known, _ = pre.parse_known_args(sys.argv[1:] if argv is None else argv)
    except (argparse.ArgumentError, SystemExit):
        return  # the real parser reports the bad --models value in one line
    if known.models or os.environ.get("AMIBR_MODELS"):
        from harness.userfile import use_models_file

        use_models_file(known.models)


# One validator per kind of value; every option that takes a value uses one of them.
WRITABLE_DIR = _checked(paths.writable_dir)
OUTPUT_FILE = _checked(paths.output_file)
STORE_TO_READ = _checked(paths.input_dir, must_exist=False)
DATA_ROOT = _checked(paths.data_root)
WEIGHTS_DIR = _checked(paths.weights_dir)
RESULTS_SET = _checked(_results_set)
REPORT_FORMAT = _checked(_report_format)
TEXT = _checked(_text)
CONFIG = _checked(_config_name)
FOLDS = _checked(_folds)
DEVICE = _checked(_device)
MODELS_FILE = _checked(_existing_file)
EXISTING_FILE = MODELS_FILE
REPORT_FILE = _checked(lambda text: None if text == "-" else paths.output_file(text))
KEY_VALUE = _checked(_key_value)
POSITIVE = _integer(1)
NON_NEGATIVE = _integer(0)
NON_NEGATIVE_NUMBER = _number(0, strict=False)
POSITIVE_NUMBER = _number(0, strict=True)

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
        type=DATA_ROOT,
        help="dataset folder (a clone of DeepMicroscopy/AMi-Br_Benchmark); default $AMIBR_DATA_ROOT",
    )


def _weights_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--weights-dir",
        type=WEIGHTS_DIR,
        help="folder with one sub-folder per foundation model (config.json + weights); "
        "default $AMIBR_WEIGHTS, then the offline Hugging Face cache",
    )


def _folds_source(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--folds-source",
        choices=["authors", "sklearn-installed"],
        default="authors",
        help="authors: the authors' folds from the committed file (default); sklearn-installed: "
        "the authors' call drawn by the installed scikit-learn, which from 1.8 on gives other "
        "folds (recorded in the configuration)",
    )


def add_models_option(p: argparse.ArgumentParser) -> None:
    """`--models FILE`: a user's own models (harness.userfile), registered before the command
    runs (`main`); any subcommand that lists, plans, trains or judges models adds it."""
    p.add_argument(
        "--models",
        metavar="FILE",
        type=MODELS_FILE,
        help="YAML file with your own models (README 'Your own model'); default $AMIBR_MODELS",
    )


def _training_options(p: argparse.ArgumentParser) -> None:
    """The options `run` and `launch` share (the same store, the same configuration hashes)."""
    p.add_argument("--folds", default="1-5", type=FOLDS, help="folds to run, e.g. 1-5 or 1,3")
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
    p.add_argument("--store", type=WRITABLE_DIR, help="results store folder (default runs/<tier>)")
    p.add_argument("--device", default="auto", type=DEVICE, help="auto, cpu or cuda[:N]")
    _folds_source(p)
    _data_root(p)
    _weights_dir(p)
    add_models_option(p)


def _launch_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executor", choices=["local", "slurm", "debug"], default="local")
    p.add_argument(
        "--parallel",
        type=POSITIVE,
        help="jobs at once (local: default every GPU slot, GPUs x --jobs-per-gpu, or 1 on a "
        "CPU; slurm: the array's parallelism)",
    )
    p.add_argument(
        "--jobs-per-gpu",
        type=POSITIVE,
        default=1,
        help="local executor: folds sharing one GPU (choose from `throughput`'s peak memory)",
    )
    p.add_argument("--dry-run", action="store_true", help="list the jobs and their cost only")
    p.add_argument(
        "--logs", type=WRITABLE_DIR, help="submitit's job folder (default <store>/launch-logs)"
    )
    p.add_argument("--no-wait", action="store_true", help="slurm: submit and return")
    p.add_argument(
        "--checkpoint-interval",
        type=NON_NEGATIVE_NUMBER,
        default=0.0,
        help="minutes between a fold's resumable checkpoints (at an epoch's end; 0: every epoch)",
    )
    p.add_argument(
        "--throughput",
        type=EXISTING_FILE,
        help="recorded `throughput --json` file for --dry-run (default <store>/throughput.json)",
    )
    p.add_argument(
        "--assume-tflops",
        type=POSITIVE_NUMBER,
        help="--dry-run estimates: sustained TFLOP/s of one GPU (default by precision: "
        "fp32 15, tf32 60, bf16 120)",
    )
    slurm = p.add_argument_group("slurm (passed to sbatch through submitit)")
    slurm.add_argument("--partition", type=TEXT)
    slurm.add_argument(
        "--time", type=TEXT, help="per job, e.g. 12:00:00 or 2-00:00:00 (default 24:00:00)"
    )
    slurm.add_argument("--gpus-per-node", type=POSITIVE, default=1)
    slurm.add_argument("--cpus-per-task", type=POSITIVE)
    slurm.add_argument("--mem", type=TEXT, help="per job, e.g. 64G")
    slurm.add_argument("--account", type=TEXT)
    slurm.add_argument(
        "--slurm-extra",
        action="append",
        type=KEY_VALUE,
        metavar="KEY=VALUE",
        help="any other sbatch option, e.g. --slurm-extra qos=high (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="amibr-bench",
        description="Check, claim by claim, the results of Banerjee et al., MELBA 2026:006.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    synth.add_argument("--out", required=True, type=WRITABLE_DIR, help="folder to create")
    synth.add_argument("--seed", type=NON_NEGATIVE, default=0, help="random seed (0 or more)")
    synth.set_defaults(func=_handler("synth", "cli_synth"))

    # --- splits (harness.splits) --------------------------------------------------------------
    splits = sub.add_parser(
        "splits", help="show (and with --out write) the authors' 5 folds and the AMi-Br test split"
    )
    _data_root(splits)
    splits.add_argument(
        "--out", type=OUTPUT_FILE, help="also write a CSV file: image,label,slide,fold"
    )
    _folds_source(splits)
    splits.set_defaults(func=_handler("splits", "cli_splits"))

    # --- models (harness.models) --------------------------------------------------------------
    models = sub.add_parser("models", help="list every model, its parameter count and weights")
    _weights_dir(models)
    add_models_option(models)
    models.add_argument("--json", action="store_true")
    models.set_defaults(func=_handler("models", "cli_models"))

    # --- training (harness.runner, harness.launch, harness.plan) ------------------------------------
    run = sub.add_parser("run", help="train and evaluate one configuration of Table 3")
    run.add_argument(
        "--config", required=True, type=CONFIG, help="configuration name (see `amibr-bench plan`)"
    )
    _training_options(run)
    run.set_defaults(func=_handler("runner", "cli_run"))

    launch = sub.add_parser(
        "launch",
        help="train the plan (or chosen configurations) as one job per (configuration, fold) "
        "through submitit: local processes, a Slurm job array, or in-process (debug)",
    )
    launch.add_argument(
        "--config",
        action="append",
        type=CONFIG,
        help="configuration (repeat); default: the 17 of Table 3",
    )
    _training_options(launch)
    _launch_options(launch)
    launch.set_defaults(func=_handler("launch", "cli_launch"))

    plan = sub.add_parser(
        "plan", help="list the configurations of the full protocol and how far a run got"
    )
    plan.add_argument("--json", action="store_true")
    plan.add_argument("--preset", choices=PRESETS, default="paper")
    plan.add_argument(
        "--store",
        type=STORE_TO_READ,
        help="full-tier store whose progress to show (default runs/full)",
    )
    _weights_dir(plan)
    add_models_option(plan)
    plan.set_defaults(func=_handler("plan", "cli_plan"))

    tput = sub.add_parser(
        "throughput",
        help="training and prediction images/s of full-size configurations on this machine",
    )
    which = tput.add_mutually_exclusive_group()
    which.add_argument(
        "--config", action="append", type=CONFIG, help="configuration (repeat); default: all"
    )
    which.add_argument("--all", action="store_true", help="every configuration of Table 3")
    tput.add_argument("--device", default="auto", type=DEVICE, help="auto, cpu or cuda[:N]")
    tput.add_argument("--batch", type=POSITIVE, default=8, help="batch size (the protocol's is 8)")
    tput.add_argument("--steps", type=POSITIVE, default=5, help="timed training steps")
    tput.add_argument(
        "--json", type=OUTPUT_FILE, help="also write the measurements to this JSON file"
    )
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
    smoke.add_argument(
        "--store", type=WRITABLE_DIR, help="results store folder (default runs/smoke)"
    )
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
    reg.add_argument(
        "--baseline",
        type=STORE_TO_READ,
        help="baseline results set (default expected_results/baselines/smoke-synthetic)",
    )
    reg.add_argument(
        "--out", type=WRITABLE_DIR, help="where the new run goes (default ./runs/regression)"
    )
    reg.add_argument(
        "--update-baseline",
        action="store_true",
        help="replace the baseline by the new run (needs --why)",
    )
    reg.add_argument(
        "--why", type=TEXT, help="with --update-baseline: why the numbers changed (recorded)"
    )
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
        type=RESULTS_SET,
        help="a results set with per-image predictions (predictions.csv): score its models "
        "against the consensus and each expert",
    )
    experts.add_argument(
        "--json", metavar="FILE", type=OUTPUT_FILE, help="also write the figures as JSON"
    )
    experts.add_argument(
        "--figure",
        metavar="FILE",
        type=OUTPUT_FILE,
        help="also draw raters against the consensus (.png or .svg)",
    )
    add_models_option(experts)
    experts.set_defaults(func=_handler("experts", "cli_experts"))

    # --- claims and report (harness.report) ---------------------------------------------------
    claims_help = "judge every claim of the paper against a results set"
    claims = sub.add_parser(
        "claims",
        help=claims_help,
        description=f"{claims_help.capitalize()}. Exit status: 0 = every verdict as expected; "
        "1 = an unexpected verdict (a failure, a known contradiction that passed, or a claim the "
        "harness could not judge; with --against, a claim that got worse; with --add, a claim "
        "whose verdict changes); 2 = bad input (a results set, claim registry, path or option).",
    )
    claims.add_argument(
        "--results",
        default="paper",
        type=RESULTS_SET,
        help="'paper' (the authors' numbers) or a results-set folder",
    )
    claims.add_argument(
        "--format",
        type=REPORT_FORMAT,
        metavar="FORMAT",
        help="one format only, printed unless --out or --out-dir is given: text (one line per "
        "claim), md or html (with a forest plot of Table 3 and, for sets with per-image "
        "predictions, ROC curves and prediction-level analyses), json, junit. Default: a short "
        "summary here, md, html and json in --out-dir",
    )
    claims.add_argument(
        "--out",
        metavar="FILE",
        type=REPORT_FILE,
        help="write one report to FILE (format from --format or the suffix .md, .html, .json, "
        ".xml, .txt); '-' prints it",
    )
    claims.add_argument(
        "--out-dir",
        metavar="DIR",
        type=WRITABLE_DIR,
        help="folder for claims.md, claims.html, claims.json and the figures "
        "(default ./reports/<results-set name>/)",
    )
    second = claims.add_mutually_exclusive_group()
    second.add_argument(
        "--against",
        metavar="OLD",
        type=RESULTS_SET,
        help="regression check: compare each claim's verdict with the one on results set OLD "
        "(exit 1 when any got worse, or a Table 3 mean fell by more than its fold spread)",
    )
    second.add_argument(
        "--add",
        metavar="SET",
        action="append",
        type=RESULTS_SET,
        help="does my model change a conclusion? add results set SET's rows to --results (a "
        "configuration both hold takes SET's rows; repeat to add several) and list each claim "
        "whose verdict or observed value changes, the paper's comparisons first (text; md or "
        "json with --format/--out; --out-dir also writes the merged set's full report). Exit 1 "
        "when a verdict changes",
    )
    _data_root(claims)
    _weights_dir(claims)
    add_models_option(claims)
    claims.set_defaults(func=_handler("report", "cli_claims"))
    return parser


# Commands that write results: the option naming the folder, and the folder written without it.
DEFAULT_FOLDERS = {
    "run": ("store", lambda: paths.REPO_ROOT / "runs"),
    "smoke": ("store", lambda: paths.REPO_ROOT / "runs"),
    "regression": ("out", lambda: Path.cwd() / "runs"),
}


def _check_defaults(args: argparse.Namespace) -> None:
    """Folders that no option named: $AMIBR_DATA_ROOT and $AMIBR_WEIGHTS must be folders when
    set; a command that writes results must be able to write in its default folder and in the
    cache (decoded images, embeddings)."""
    if hasattr(args, "data_root") and not args.data_root:
        paths.data_root(required=False)
    if hasattr(args, "weights_dir") and not args.weights_dir:
        paths.weights_dir()
    if args.command in DEFAULT_FOLDERS:
        option, default = DEFAULT_FOLDERS[args.command]
        if not getattr(args, option):
            paths.writable_dir(default(), f"default --{option} folder")
        paths.cache_dir()


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit code (0, 1, or 2 for bad input: see EXIT_CODES)."""
    if not sys.stdout.isatty():
        os.environ.setdefault("COLUMNS", "160")  # rich tables in logs and CI: no squeezed columns
    try:
        _register_models(argv)
        args = build_parser().parse_args(argv)
        _check_defaults(args)
        return int(args.func(args) or 0)
    except (InputError, RunFailed) as exc:
        # Bad or missing input (data, weights, results, a configuration name), or a run that
        # failed for a reason the user can act on (non-finite numbers): one clear line.
        # Anything else is a bug and keeps its traceback; AMIBR_DEBUG=1 shows it for these too.
        if os.environ.get("AMIBR_DEBUG"):
            raise
        prog = exc.prog if isinstance(exc, UsageError) else "amibr-bench"
        print(f"{prog}: {paths.one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
