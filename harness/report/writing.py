"""Writing reports: one format (`render`), the default set of files (`write_reports`), and
where `amibr-bench claims` puts them (`write_requested`)."""

from __future__ import annotations

import contextlib
import html
import json
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from harness import paths
from harness.claims import (
    ClaimResult,
    Context,
    load_deviations,
)
from harness.report.common import (
    DEFAULT_FORMATS,
    FORMATS,
    REPORT_STEM,
    SUFFIXES,
    report_header,
    set_description,
    summary_counts,
)
from harness.report.figures import (
    draw_figures,
)
from harness.report.html import (
    blocks_html,
    html_page,
    to_html,
)
from harness.report.markdown import (
    blocks_md,
    to_markdown,
)
from harness.report.plain import (
    to_json,
    to_junit,
    to_summary,
    to_text,
)
from harness.report.sections import (
    analyses_blocks,
    prediction_analyses,
)


# ------------------------------------------------------------------------------ writing
def _format_text(
    fmt: str, results: list[ClaimResult], ctx: Context, analyses: dict | None, figures: dict
) -> str:
    if fmt == "json":
        return to_json(results, ctx, analyses)
    if fmt == "junit":
        return to_junit(results, ctx)
    if fmt == "text":
        return to_text(results, ctx)
    if fmt == "md":
        plots = {k: p.name for k, p in figures.items()}
        return to_markdown(results, ctx, load_deviations(), plots, analyses)
    if fmt == "html":
        pngs = {k: p.read_bytes() for k, p in figures.items()}
        return to_html(results, ctx, load_deviations(), pngs, analyses)
    raise ValueError(f"unknown format {fmt!r} ({', '.join(FORMATS)})")


def render(
    results: list[ClaimResult], ctx: Context, fmt: str = "md", out: Path | None = None
) -> str:
    """The report text in one format; with `out`, also writes it. md with `out` draws its figures
    beside the file, as <stem>-<name>.png, and links them; html embeds its figures, drawn in a
    temporary folder, so that `out` is the only file written. ValueError for an unknown format."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} ({', '.join(FORMATS)})")
    analyses = prediction_analyses(ctx) if fmt in DEFAULT_FORMATS else None
    with tempfile.TemporaryDirectory() as tmp:
        figures = {}
        if fmt == "html" or (fmt == "md" and out is not None):
            folder, stem = (out.parent, out.stem) if fmt == "md" else (Path(tmp), "r")
            figures = draw_figures(results, ctx, analyses, folder, stem)
        text = _format_text(fmt, results, ctx, analyses, figures)
    if out is not None:
        paths.atomic_write(out, text)
    return text


def write_reports(
    results: list[ClaimResult],
    ctx: Context,
    folder: Path,
    formats: tuple[str, ...] = DEFAULT_FORMATS,
    stem: str = REPORT_STEM,
) -> list[Path]:
    """Write each format to folder/<stem><suffix> (figures once, as <stem>-<name>.png beside
    them); the analyses are computed once. Returns the written report files."""
    folder = Path(folder)
    analyses = prediction_analyses(ctx) if set(formats) & set(DEFAULT_FORMATS) else None
    figures = (
        draw_figures(results, ctx, analyses, folder, stem) if {"md", "html"} & set(formats) else {}
    )
    written = []
    for fmt in formats:
        text = _format_text(fmt, results, ctx, analyses, figures)
        written.append(paths.atomic_write(folder / f"{stem}{SUFFIXES[fmt]}", text))
    return written


def analyses_report(ctx: Context, folder: Path, stem: str) -> list[Path]:
    """The prediction-level analyses of one results set on their own (no claims), as md, html
    and json in `folder` (the smoke job's real-data subset, whose claims are not judged)."""
    folder = Path(folder)
    analyses = prediction_analyses(ctx)
    figures = draw_figures([], ctx, analyses, folder, stem)
    name, protocol = set_description(ctx)
    title = (
        f"Prediction-level analyses of results set {ctx.results.name if ctx.results else 'none'}"
    )
    blocks = [("p", f"Results set: {name}. Produced by: {protocol}."),
              ("figure", "roc"), *analyses_blocks(analyses)]  # fmt: skip
    md = "\n".join([f"# {title}", "", *blocks_md(blocks, {k: p.name for k, p in figures.items()})])
    pngs = {k: p.read_bytes() for k, p in figures.items()}
    page = html_page(title, [f"<h1>{html.escape(title)}</h1>", *blocks_html(blocks, pngs)])
    doc = {**report_header([], ctx), "analyses": analyses}
    doc.pop("summary")
    texts = {
        ".md": md,
        ".html": page,
        ".json": json.dumps(doc, indent=2, ensure_ascii=False) + "\n",
    }
    return [paths.atomic_write(folder / f"{stem}{suffix}", text) for suffix, text in texts.items()]


# ----------------------------------------------------------------------- command line
def format_of(path: str) -> str:
    """The report format a file name asks for (.md, .html, .json, .xml = junit, .txt = text);
    InputError naming --out otherwise."""
    suffix = Path(path).suffix.lower()
    by_suffix = {v: k for k, v in SUFFIXES.items()} | {".htm": "html", ".markdown": "md"}
    if suffix not in by_suffix:
        raise paths.InputError(
            f"--out {path}: cannot tell the report format from the suffix "
            f"{suffix or '(none)'!r}; give --format ({', '.join(FORMATS)})"
        )
    return by_suffix[suffix]


def default_folder(ctx: Context) -> Path:
    """./reports/<results-set name>/ in the current directory."""
    name = ctx.results.name if ctx.results else "none"
    return Path.cwd() / "reports" / (re.sub(r"[^\w.-]+", "-", name).strip(".-") or "results")


@contextlib.contextmanager
def writing_to(target) -> Iterator[None]:
    """A report that cannot be written where the user said (--out, --out-dir) is bad input:
    a file system refusal becomes one InputError line naming the path (exit 2), not a bug."""
    try:
        yield
    except OSError as exc:
        raise paths.InputError(
            f"{exc.filename or target}: cannot write the report there ({exc.strerror or exc})"
        ) from exc


def write_requested(args, results: list[ClaimResult], ctx: Context) -> None:
    """Where `amibr-bench claims` puts the report.

    Default: the short summary (`to_summary`) on standard output, md, html and json in --out-dir
    (default ./reports/<set>/). `--format X` alone prints X; `--out FILE` writes one format
    (--format, else the file's suffix); `--out -` prints it (md unless --format)."""
    fmt = getattr(args, "format", None)
    out = getattr(args, "out", None)
    out_dir = getattr(args, "out_dir", None)
    if out and out_dir:
        raise paths.InputError("--out and --out-dir: give one of them")
    if out == "-" or (fmt and not out and not out_dir):
        sys.stdout.write(render(results, ctx, fmt or "md"))
        return
    if out:
        path = Path(out)
        fmt = fmt or format_of(out)
        with writing_to(path):
            render(results, ctx, fmt, path)
        print(f"claim report ({summary_counts(results)[1]}) written to {path}")
        return
    folder = Path(out_dir) if out_dir else default_folder(ctx)
    formats = (fmt,) if fmt else DEFAULT_FORMATS
    with writing_to(folder):
        written = write_reports(results, ctx, folder, formats)
    sys.stdout.write(to_summary(results, ctx, written))
