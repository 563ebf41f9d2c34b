"""Every source a claim or a deviation cites exists, every relative link of the documentation
resolves, and no user-facing text points at a path that only exists on a developer's machine.

A source (expected_results/README.md, "Sources") is a `;`-separated list of references, each a
place in the paper (`Abstract`, `§4.3`, `Table 3`, `Figure 2`, optionally followed by a note in
parentheses) or a repository file as a path from the root, optionally with a GitHub-style heading
anchor (`docs/PROTOCOL.md#optimisation`).
"""

from __future__ import annotations

import argparse
import functools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import paths
from harness.claims import load_claims, load_deviations
from harness.cli import build_parser

REPO = paths.REPO_ROOT

# What a source may cite of the paper (MELBA 2026:006): its numbered sections, tables, figures.
PAPER_SECTIONS = frozenset(
    {"1", "2", "2.1", "2.2", "2.3", "3", "3.1", "3.2", "3.2.1", "3.2.2"}
    | {"4", "4.1", "4.2", "4.3", "5", "6"}
)
PAPER_TABLES = frozenset({"1", "2", "3", "4"})
PAPER_FIGURES = frozenset({"1", "2"})

_NOTE = re.compile(r"\s*\([^()]*\)$")  # a trailing "(...)" note: "§4 (slide-level stratification)"
_PAPER = re.compile(r"^(?:Abstract|§(?P<section>\d+(?:\.\d+)*)|(?P<kind>Table|Figure) (?P<n>\d+))$")
_REPO_PATH = re.compile(r"^(?P<path>/?[\w.-]+(?:/[\w.-]+)*/?)(?:#(?P<anchor>[\w-]+))?$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(?P<text>.+?)\s*#*\s*$")
_LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")

# Paths that exist only on the developers' machines: the shared reference folder, the workspace,
# home directories, and any relative path into the shared checkout next to this one.
DEVELOPER_PATH = re.compile(
    r"/work/|\.\./shared\b|\bshared/reference\b|/home/[^/\s`]+|/Users/[^/\s`]+|/root/"
)


# ------------------------------------------------------------------------------------ helpers
def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation except '-' and '_' dropped, spaces
    turned into '-' (markdown code and emphasis marks are punctuation, so they vanish too)."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def markdown_anchors(path: Path) -> set[str]:
    """The anchors of every heading of a markdown file (outside code fences); a repeated slug
    gets '-1', '-2', ... as on GitHub."""
    seen: dict[str, int] = {}
    anchors: set[str] = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        m = None if fenced else _HEADING.match(line)
        if m:
            slug = github_slug(m["text"])
            anchors.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
            seen[slug] = seen.get(slug, 0) + 1
    return anchors


def target_problem(target: str, base: Path) -> str | None:
    """Why `target` (a path relative to `base`, optionally '#anchor') names no repository file
    or heading; None when it does."""
    path, _, anchor = target.partition("#")
    file = (base / path).resolve() if path else base
    if not file.is_relative_to(REPO):
        return f"{target!r} points outside the repository"
    if not file.exists():
        return f"{target!r}: no such file in the repository"
    if anchor:
        if file.suffix != ".md":
            return f"{target!r}: an anchor needs a markdown file"
        if anchor not in markdown_anchors(file):
            return f"{target!r}: {file.relative_to(REPO)} has no heading with anchor #{anchor}"
    return None


def source_problems(source: str) -> list[str]:
    """Every reference of a source that cites nothing real (empty list: all resolve)."""
    parts = [p.strip() for p in str(source or "").split(";")]
    if not any(parts):
        return ["the source is empty"]
    problems = []
    for part in parts:
        ref = _NOTE.sub("", part)
        paper = _PAPER.match(ref)
        if paper:
            if paper["section"] and paper["section"] not in PAPER_SECTIONS:
                problems.append(f"{part!r}: the paper has no section §{paper['section']}")
            kind = paper["kind"]
            allowed = PAPER_TABLES if kind == "Table" else PAPER_FIGURES
            if kind and paper["n"] not in allowed:
                problems.append(f"{part!r}: the paper has no {kind} {paper['n']}")
            continue
        if _REPO_PATH.match(ref) and ("/" in ref or "." in ref):
            problem = target_problem(ref, REPO)
            if problem:
                problems.append(problem)
            continue
        problems.append(
            f"{part!r} is neither a place in the paper (Abstract, §N, Table N, Figure N) nor a "
            "repository file (path from the root, optionally #anchor)"
        )
    return problems


@functools.cache
def claims() -> tuple:
    """The claim registry, read once for this module (reading it takes about a second)."""
    return tuple(load_claims())


def claim_files() -> list[str]:
    return sorted({c.file for c in claims()})


def user_facing_files() -> list[Path]:
    """The documentation a user reads: README, docs/, the claim registry and its results set."""
    files = [REPO / "README.md", REPO / "fixtures" / "README.md"]
    files += sorted((REPO / "docs").glob("*.md"))
    files += sorted((REPO / "expected_results").glob("*.md"))
    files += sorted((REPO / "expected_results").glob("*.yaml"))
    files += [REPO / "expected_results" / "paper" / "manifest.json"]
    return [f for f in files if f.is_file()]


def markdown_files() -> list[Path]:
    return [f for f in user_facing_files() if f.suffix == ".md"]


def parsers(parser: argparse.ArgumentParser, name: str) -> Iterator[tuple[str, object]]:
    """(command line, parser) of the program and of every subcommand, nested ones included."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, subparser in action.choices.items():
                yield from parsers(subparser, f"{name} {sub}")


def link_problems(doc: Path) -> list[str]:
    """'file:line: problem' for every relative markdown link of `doc` that names no repository
    file or heading (links with a scheme, such as https:, are not checked)."""
    problems = []
    fenced = False
    for n, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), start=1):
        if _FENCE.match(line):
            fenced = not fenced
        if fenced:
            continue
        for m in _LINK.finditer(line):
            target = m["target"]
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue
            if target.startswith("#"):
                ok = target[1:] in markdown_anchors(doc)
                problem = None if ok else f"{target!r}: no heading with that anchor"
            else:
                problem = target_problem(target, doc.parent)
            if problem:
                problems.append(
                    f"{_rel(doc) if doc.is_relative_to(REPO) else doc.name}:{n}: {problem}"
                )
    return problems


def developer_paths(text: str, where: str) -> list[str]:
    """'where:line: text' for every line of `text` that mentions a developer-only path."""
    return [
        f"{where}:{n}: {line.strip()}"
        for n, line in enumerate(text.splitlines(), start=1)
        if DEVELOPER_PATH.search(line)
    ]


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


# ------------------------------------------------------------------------- the checker itself
@pytest.mark.parametrize(
    "heading, slug",
    [
        ("Optimisation", "optimisation"),
        ("Labels, loss and metrics", "labels-loss-and-metrics"),
        ("Results-set format (`harness.results`)", "results-set-format-harnessresults"),
        ("Assumptions (the report repeats them)", "assumptions-the-report-repeats-them"),
        ("`expected_results/` — the claim registry", "expected_results--the-claim-registry"),
        (
            "Data layer contract (`harness.data`, `harness.splits`)",
            "data-layer-contract-harnessdata-harnesssplits",
        ),
    ],
)
def test_github_slug(heading: str, slug: str) -> None:
    assert github_slug(heading) == slug


def test_markdown_anchors_number_repeats_and_skip_code(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text("# Top\n## Part\n```\n# not a heading\n```\n## Part\n### Part\n", "utf-8")
    assert markdown_anchors(doc) == {"top", "part", "part-1", "part-2"}


def test_broken_links_are_found(tmp_path: Path) -> None:
    fake = tmp_path / "x.md"
    fake.write_text(
        "# Title\n[ok](#title) [web](https://example.org/x)\n[gone](#nope)\n"
        "```\n[in code](#ignored)\n```\n[out](../../nowhere.md)\n",
        "utf-8",
    )
    found = link_problems(fake)
    assert [f.split(": ", 1)[0] for f in found] == ["x.md:3", "x.md:7"], found
    assert "no heading with that anchor" in found[0]
    assert "points outside the repository" in found[1]


@pytest.mark.parametrize(
    "source",
    [
        "Table 3",
        "Table 3; §5",
        "Abstract; §5",
        "§3.1; §4 (slide-level stratification); docs/PROTOCOL.md#data-and-folds",
        "docs/PROTOCOL.md#optimisation",
        "docs/MODELS.md#lora",
        "expected_results/README.md#tolerance-rules",
        "README.md",
        "Figure 2",
    ],
)
def test_sources_that_resolve_are_accepted(source: str) -> None:
    assert source_problems(source) == []


@pytest.mark.parametrize(
    "source, problem",
    [
        ("§3.1; §4; PROTOCOL.md", "'PROTOCOL.md': no such file"),  # the developers' copy
        ("§3.2.1; PROTOCOL.md (linear probes)", "'PROTOCOL.md': no such file"),
        ("docs/NOPE.md", "'docs/NOPE.md': no such file"),
        ("docs/PROTOCOL.md#no-such-heading", "has no heading with anchor #no-such-heading"),
        ("docs/ARCHITECTURE.md#errors-x", "has no heading with anchor #errors-x"),
        ("harness/models.py#specs", "an anchor needs a markdown file"),
        ("../shared/reference/PROTOCOL.md", "points outside the repository"),
        ("/work/shared/reference/MODELS.md", "points outside the repository"),
        ("smoke tier (pipeline check)", "is neither a place in the paper"),
        ("§7", "no section §7"),
        ("§4.4", "no section §4.4"),
        ("Table 5", "no Table 5"),
        ("Figure 3", "no Figure 3"),
        ("Table 3;", "is neither"),
        ("", "the source is empty"),
    ],
)
def test_sources_that_cite_nothing_are_rejected(source: str, problem: str) -> None:
    problems = source_problems(source)
    assert problems, f"{source!r} was accepted"
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize(
    "line",
    [
        "see /work/shared/reference/PROTOCOL.md",
        "the copy in ../shared/reference/MODELS.md",
        "the harness looks in `../shared/data/amibr-benchmark`",
        "fold_metrics.csv = shared/reference/reference_fold_metrics.csv",
        "export AMIBR_WEIGHTS=/home/alice/weights",
        "data in /Users/bob/amibr",
    ],
)
def test_developer_paths_are_caught(line: str) -> None:
    assert developer_paths(f"first line\n{line}\n", "f.md") == [f"f.md:2: {line.strip()}"]


@pytest.mark.parametrize(
    "line",
    [
        "falls back to a sibling `shared/data/amibr-benchmark` folder (where CI keeps its copy)",
        "git clone https://github.com/DeepMicroscopy/AMi-Br_Benchmark",
        "$AMIBR_WEIGHTS/MahmoodLab/UNI/model.safetensors",
        "writes results sets to `runs/smoke/`",
    ],
)
def test_user_paths_are_not_caught(line: str) -> None:
    assert developer_paths(line, "f.md") == []


# ------------------------------------------------------------------------------ the repository
@pytest.mark.parametrize("file", claim_files())
def test_every_claim_source_exists(file: str) -> None:
    problems = [
        f"{file}, claim {c.id}: {p}"
        for c in claims()
        if c.file == file
        for p in source_problems(c.source)
    ]
    assert not problems, "\n".join(problems)


def test_every_deviation_cites_an_existing_source() -> None:
    deviations = load_deviations()
    assert deviations
    problems = [
        f"deviations.yaml, deviation {d['id']}: {p}"
        for d in deviations
        for p in source_problems(d.get("source", ""))
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", markdown_files(), ids=_rel)
def test_every_relative_link_resolves(doc: Path) -> None:
    problems = link_problems(doc)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("file", user_facing_files(), ids=_rel)
def test_user_facing_text_names_no_developer_path(file: Path) -> None:
    found = developer_paths(file.read_text(encoding="utf-8"), _rel(file))
    assert not found, "developer-only paths in user-facing text:\n" + "\n".join(found)


def test_cli_help_names_no_developer_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # no wrapping inside a path
    helps = list(parsers(build_parser(), "amibr-bench"))
    assert len(helps) > 5
    found = [hit for name, p in helps for hit in developer_paths(p.format_help(), f"{name} --help")]
    assert not found, "developer-only paths in --help:\n" + "\n".join(found)
