"""Every option of every subcommand, walked from the parser itself: a bad value is one line naming
the option and the value, exit code 2, before any work and with nothing written; a bad command
line (unknown option, missing or conflicting options) is one line too. Read-only folders are
checked in a child process that cannot bypass permissions (the tests may run as root)."""

from __future__ import annotations

import argparse
import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness import cli, paths

# The smallest valid command line of each subcommand: a bad value is put in front of it.
BASE = {
    ("data", "verify"): [],
    ("data", "synth"): ["--out", "{tmp}/synth"],
    ("splits",): ["--out", "{tmp}/folds.csv"],
    ("models",): [],
    ("run",): ["--config", "smoke-vit:lp"],
    ("plan",): [],
    ("throughput",): [],
    ("smoke",): [],
    ("claims",): [],
    ("regression",): [],
    ("launch",): ["--dry-run", "--tier", "smoke"],
    ("experts",): [],
}

_FILE, _DIR = "{tmp}/a-file", "{tmp}/a-folder"
_UNDER_FILE = "{tmp}/a-file/below"
_FOLDER_KINDS = [
    (_FILE, "is a file, expected a folder"),
    (_UNDER_FILE, "a-file is a file, expected a folder"),
]
BAD = {  # validator -> (bad value, what the one line must say besides the option and the value)
    cli.WRITABLE_DIR: _FOLDER_KINDS,
    cli.OUTPUT_FILE: [
        (_DIR, "is a folder, expected a file"),
        (_UNDER_FILE, "a-file is a file, expected a folder"),
    ],
    cli.STORE_TO_READ: _FOLDER_KINDS,
    cli.DATA_ROOT: [*_FOLDER_KINDS, ("{tmp}/absent", "does not exist")],
    cli.WEIGHTS_DIR: [*_FOLDER_KINDS, ("{tmp}/absent", "does not exist")],
    cli.RESULTS_SET: [*_FOLDER_KINDS, ("{tmp}/absent", "does not exist")],
    cli.TEXT: [("  ", "must not be blank")],
    cli.CONFIG: [
        ("smoke-resnet:lora", "runs end_to_end, not lora"),
        ("uni:e2e", "runs linear_probe and lora, not end_to_end"),
        ("nosuch:lp", "unknown model 'nosuch'"),
        ("uni", "must read MODEL:METHOD"),
    ],
    cli.FOLDS: [
        ("1-10000000000", "folds in 1..5"),
        ("0", "folds in 1..5"),
        ("5-1", "folds in 1..5"),
        ("1,x", "folds in 1..5"),
    ],
    cli.DEVICE: [
        ("gpu", "expected auto, cpu, cuda or cuda:N"),
        ("xpu", "xpu is not supported"),
        ("mps", "mps is not supported"),
        ("cpu:1", "cpu is not supported"),
        (f"cuda:{torch.cuda.device_count() + 7}", "cuda"),
    ],
    cli.MODELS_FILE: [(_DIR, "is a folder, expected a file"), ("{tmp}/absent", "does not exist")],
    cli.REPORT_FILE: [
        (_DIR, "is a folder, expected a file"),
        (_UNDER_FILE, "a-file is a file, expected a folder"),
    ],
    cli.KEY_VALUE: [("qos", "expected KEY=VALUE"), ("=high", "expected KEY=VALUE")],
    cli.REPORT_FORMAT: [("pdf", "is not a report format (one of: text, md, json, junit, html)")],
    cli.NON_NEGATIVE_NUMBER: [("-1", "at least 0"), ("nan", "at least 0"), ("x", "not a number")],
    cli.POSITIVE_NUMBER: [("0", "more than 0"), ("-2", "more than 0"), ("x", "not a number")],
    cli.POSITIVE: [("0", "at least 1"), ("-3", "at least 1"), ("many", "not a whole number")],
    cli.NON_NEGATIVE: [("-1", "at least 0"), ("1.5", "not a whole number")],
}


def _leaves(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """(subcommand words, parser) of every runnable subcommand."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from _leaves(sub, (*prefix, name))


def _value_options():
    """(subcommand words, option, action) of every option that takes a value."""
    for words, parser in _leaves(cli.build_parser()):
        for action in parser._actions:
            if action.option_strings and action.nargs != 0:
                yield words, action.option_strings[0], action


def _cases():
    for words, option, action in _value_options():
        if action.choices is not None:
            name = f"{' '.join(words)} {option} nonsense"
            yield pytest.param(words, option, "nonsense", "invalid choice", id=name)
            continue
        for value, says in BAD.get(action.type, []):
            yield pytest.param(words, option, value, says, id=f"{' '.join(words)} {option} {value}")


def test_every_subcommand_and_option_is_covered() -> None:
    """A new subcommand, or an option whose value nothing checks, fails here first."""
    assert {words for words, _ in _leaves(cli.build_parser())} == set(BASE)
    unchecked = [
        f"{' '.join(words)} {option}"
        for words, option, action in _value_options()
        if action.choices is None and action.type not in BAD
    ]
    assert unchecked == []


@pytest.fixture()
def sandbox(tmp_path, monkeypatch):
    """A folder with a file and a folder in it; commands must never start (they would fail the
    test by running), and the cache is kept inside so that nothing else is touched."""
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "a-folder").mkdir()
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))

    def must_not_run(module, function):
        def run(args):
            raise AssertionError(f"{module}.{function} ran although an option was bad")

        return run

    monkeypatch.setattr(cli, "_handler", must_not_run)
    return tmp_path


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(("words", "option", "value", "says"), list(_cases()))
def test_bad_option_value_is_one_line_and_exit_2(sandbox, capsys, words, option, value, says):
    value = value.format(tmp=sandbox)
    base = [v.format(tmp=sandbox) for v in BASE[words]]
    before = _listing(sandbox)
    code = cli.main([*words, f"{option}={value}", *base])
    out, err = capsys.readouterr()
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"amibr-bench {' '.join(words)}: argument {option}")
    assert value in lines[0] and says in lines[0], lines[0]
    assert _listing(sandbox) == before, "a rejected command wrote something"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["throughput", "--all", "--config", "uni:lp"], "not allowed with argument"),
        (["claims", "--add", "paper", "--against", "paper"], "not allowed with argument"),
        (["run"], "the following arguments are required: --config"),
        (["run", "--config", "smoke-vit:lp", "--no-such-option"], "unrecognized arguments"),
        (["sideways"], "invalid choice: 'sideways'"),
        ([], "the following arguments are required: COMMAND"),
        (["data"], "the following arguments are required: ACTION"),
        (["models", "--json=yes"], "ignored explicit argument"),
    ],
)
def test_command_line_misuse_is_one_line_and_exit_2(sandbox, capsys, argv, says):
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and says in err, err


def test_parse_folds_never_builds_a_huge_range(monkeypatch) -> None:
    """'1-10000000000' used to build a list of ten billion folds before checking them."""
    from harness import config

    def small_range(*args):
        assert len(range(*args)) <= 5, f"range{args} is not a list of folds"
        return range(*args)

    monkeypatch.setattr(config, "range", small_range, raising=False)
    for text in ("1-10000000000", "1-99999999999999999999", "3-10000000000,1"):
        with pytest.raises(paths.InputError, match="--folds"):
            config.parse_folds(text)
    assert config.parse_folds("4-5,1, 2") == [1, 2, 4, 5]


@pytest.mark.parametrize("words", sorted(BASE))
def test_every_help_exits_0(capsys, words) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main([*words, "--help"])
    assert stop.value.code == 0 and "usage: amibr-bench" in capsys.readouterr().out


def test_top_level_help_states_the_exit_codes(capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    for line in ("0  every verdict as expected", "1  an unexpected verdict", "2  bad input"):
        assert line in text
    assert "traceback" in text and "bug" in text


# --- folders this process cannot write in ----------------------------------------------------

CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, PR_CAPBSET_DROP = 1, 2, 24


def _without_permission_override() -> None:
    """In the child: give up root's power to ignore permissions (chmod binds it from then on)."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _child(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *argv],
        preexec_fn=_without_permission_override,
        env={**os.environ, "PYTHONPATH": str(paths.REPO_ROOT), "OMP_NUM_THREADS": "1", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture()
def read_only(tmp_path):
    """A folder (mode 0555) that the child processes below cannot write in."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        probe = _child(["-c", f"open({str(folder / 'probe')!r}, 'w')"], {})
    except OSError as exc:
        pytest.skip(f"cannot start a child without root's permission override here: {exc}")
    if probe.returncode == 0:
        why = "root whose CAP_DAC_OVERRIDE cannot be dropped"
        pytest.skip(f"a child can still write in a 0555 folder here ({why}): nothing to test with")
    yield folder
    folder.chmod(0o755)


def _writes():
    """Every option naming something the command writes, with a valid rest of the line."""
    for words, option, action in _value_options():
        if action.type in (cli.WRITABLE_DIR, cli.OUTPUT_FILE):
            yield pytest.param(words, option, id=f"{' '.join(words)} {option}")


@pytest.mark.parametrize(("words", "option"), list(_writes()))
def test_read_only_output_is_refused_before_any_work(read_only, tmp_path, words, option):
    target = read_only / "target"
    base = [v.format(tmp=tmp_path) for v in BASE[words]]
    argv = [*words, option, str(target), *base, "--data-root", str(paths.SYNTHETIC_FIXTURE)]
    if words == ("run",):
        argv += ["--tier", "smoke", "--device", "cpu"]
    done = _child(["-m", "harness.cli", *argv], {paths.CACHE_ENV: str(tmp_path / "cache")})
    assert done.returncode == 2, done.stderr[-2000:]
    line = done.stderr.strip()
    assert "\n" not in line and f"argument {option}" in line and str(read_only) in line, line
    assert "permission denied" in line.lower(), line
    assert list(read_only.iterdir()) == []


@pytest.mark.parametrize("case", ["$AMIBR_CACHE", "default --store folder"])
def test_read_only_cache_or_default_store_is_refused_before_training(read_only, tmp_path, case):
    """The folders no option names: the cache ($AMIBR_CACHE) and the default store (runs/).
    (`smoke` reads both as `run` does, and its child starts without importing torch.)"""
    argv = ["smoke", "--synthetic"]
    env = {paths.CACHE_ENV: str(read_only / "cache")}
    if case == "default --store folder":  # a checkout whose runs/ cannot be written
        env = {paths.CACHE_ENV: str(tmp_path / "cache")}
        code = (
            "import sys; from harness import cli, paths; "
            f"paths.REPO_ROOT = __import__('pathlib').Path({str(read_only)!r}); "
            f"sys.exit(cli.main({argv!r}))"
        )
        done = _child(["-c", code], env)
    else:
        done = _child(["-m", "harness.cli", *argv, "--store", str(tmp_path / "store")], env)
    assert done.returncode == 2, done.stderr[-2000:]
    line = done.stderr.strip()
    assert "\n" not in line and line.startswith(f"amibr-bench: {case} {read_only}"), line
    assert "permission denied" in line.lower(), line
    assert list(read_only.iterdir()) == [] and not (tmp_path / "store").exists()


# --- the same kinds through environment variables (no option to check them while parsing) ------

ENV_FOLDERS = {  # variable -> a command that reads it
    paths.CACHE_ENV: ["run", "--config", "smoke-vit:lp", "--tier", "smoke", "--device", "cpu"],
    paths.DATA_ENV: ["data", "verify"],
    paths.WEIGHTS_ENV: ["models"],
}


@pytest.mark.parametrize("variable", sorted(ENV_FOLDERS))
@pytest.mark.parametrize("where", ["a-file", "a-file/below"])
def test_a_file_where_an_environment_folder_belongs(sandbox, monkeypatch, capsys, variable, where):
    monkeypatch.setenv(variable, str(sandbox / where))
    before = _listing(sandbox)
    code = cli.main(ENV_FOLDERS[variable])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    culprit = "is a file" if where == "a-file" else f"{sandbox / 'a-file'} is a file"
    assert f"${variable} {sandbox / where}: {culprit}, expected a folder" in err, err
    assert _listing(sandbox) == before


@pytest.mark.parametrize("error", ["InputError", "ResultsError", "RunFailed"])
def test_a_message_listing_several_problems_is_printed_on_one_line(capsys, monkeypatch, error):
    """Whatever an error lists (several bad rows, a library's multi-line text), the user gets one
    line, every problem kept, and exit 2."""
    from harness import paths, results

    cls = {
        "InputError": paths.InputError,
        "ResultsError": results.ResultsError,
        "RunFailed": paths.RunFailed,
    }[error]

    def fail(args):
        raise cls("x.csv: 2 problem(s):\n  line 2: bad fold\n\n  line 3: bad metric")

    monkeypatch.setattr(cli, "_check_defaults", fail)  # raised inside main, as a command would
    code = cli.main(["models"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err == "amibr-bench: x.csv: 2 problem(s): line 2: bad fold; line 3: bad metric\n"


def test_a_results_set_with_several_bad_rows_is_one_line(tmp_path, capsys):
    """The results loader lists every problem of a file on the line that names it."""
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "fold_metrics.csv").write_text(
        "model,method,dataset,fold,balanced_accuracy,auroc,pr_auc\n"
        "UNI,lora,AMi-Br,9,0.5,0.5,0.5\n"
        "UNI,lora,AMi-Br,1,2.0,0.5,0.5\n",
        encoding="utf-8",
    )
    code = cli.main(["claims", "--results", str(folder), "--format", "text"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "fold_metrics.csv" in err and "problem(s)" in err


def test_claims_takes_the_formats_of_the_report_package(monkeypatch) -> None:
    """`claims --format` accepts what harness.report.FORMATS lists (no second list to keep)."""
    from harness import report

    monkeypatch.setattr(report, "FORMATS", (*report.FORMATS, "tex"))
    args = cli.build_parser().parse_args(["claims", "--format", "tex"])
    assert args.format == "tex"
