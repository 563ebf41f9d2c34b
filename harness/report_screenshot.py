"""Check the HTML claim report as a reader sees it: no raw markdown, no glyph a font lacks.

Two levels:

* `html_problems(page)` (always available, used by the test suite): parses the page with
  `html.parser` and lists every text node that still shows markdown syntax (backticks, `**`,
  `[text](link)`) and every character that is an emoji (or an emoji variation selector) or
  that DejaVu Sans, the fallback font of the page, does not cover.
* `python -m harness.report_screenshot [--results SET ...] [--out DIR] [PAGE.html ...]`:
  renders the HTML report of each results set (default: `paper`), opens each page in headless
  Chromium, writes a full-page screenshot (and tiles of it, for viewing) to DIR, and checks the
  page Chromium rendered (`--dump-dom`) as above, plus every character against the fonts this
  machine has (fontconfig `fc-list`). Prints one line per problem; exit 0 when there is none,
  1 when there are problems, 2 when Chromium is missing or a results set is bad.

Chromium is not a dependency of the harness: on Debian, `apt-get install chromium`.
"""

from __future__ import annotations

import argparse
import functools
import re
import shutil
import subprocess
import sys
import tempfile
import unicodedata
from html.parser import HTMLParser
from pathlib import Path

from harness import paths

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PAGE_WIDTH = 1400  # CSS pixels: the report's widest layout (its max-width)
TILE_HEIGHT = 1800  # screenshot tiles, for viewers that shrink tall images
MAX_HEIGHT = 60000  # pixels; Chromium's screenshots fail beyond about 65,000
_MD_SYNTAX = (
    ("a backtick", re.compile(r"`")),
    ("markdown bold '**'", re.compile(r"\*\*")),
    ("a markdown link", re.compile(r"\[[^\]\n]+\]\([^)\s]+\)")),
)
# Emoji and pictograph blocks, and the selectors that turn a character into an emoji: they
# need an emoji font, which a reader's machine (or CI's) may lack.
EMOJI_RANGES = (
    (0x1F000, 0x1FAFF),  # mahjong .. symbols and pictographs extended-A
    (0x2600, 0x27BF),  # miscellaneous symbols, dingbats
    (0x2B00, 0x2BFF),  # miscellaneous symbols and arrows (e.g. the up arrow emoji)
    (0xFE00, 0xFE0F),  # variation selectors
    (0x200D, 0x200D),  # zero-width joiner
    (0x20E3, 0x20E3),  # combining enclosing keycap
)
_SKIP_TAGS = {"style", "script"}


def is_emoji(ch: str) -> bool:
    """True for characters in EMOJI_RANGES."""
    return any(lo <= ord(ch) <= hi for lo, hi in EMOJI_RANGES)


@functools.cache
def dejavu_chars() -> frozenset[int]:
    """Code points DejaVu Sans covers (the copy matplotlib ships, read with fontTools)."""
    from fontTools.ttLib import TTFont
    from matplotlib import font_manager

    path = font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans"))
    return frozenset(TTFont(path).getBestCmap())


class _Texts(HTMLParser):
    """Collects the text nodes of a page (not inside style/script), with their tag."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.texts: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs) -> None:
        if tag not in ("br", "img", "meta", "link", "hr", "input"):
            self.stack.append(tag)

    def handle_endtag(self, tag) -> None:
        if tag in self.stack:
            while self.stack.pop() != tag:
                pass

    def handle_data(self, data) -> None:
        if data.strip() and not _SKIP_TAGS & set(self.stack):
            self.texts.append((self.stack[-1] if self.stack else "", data))


def text_nodes(page: str) -> list[tuple[str, str]]:
    """(enclosing tag, text) of every non-blank text node outside style and script."""
    parser = _Texts()
    parser.feed(page)
    parser.close()
    return parser.texts


def _char_name(ch: str) -> str:
    return f"U+{ord(ch):04X} {unicodedata.name(ch, '?')}"


def html_problems(page: str) -> list[str]:
    """Every raw-markdown text node and every character a reader may see as a missing glyph:
    one line each ("<tag> text: problem"), empty when the page is clean."""
    problems = []
    covered = dejavu_chars()
    for tag, text in text_nodes(page):
        short = " ".join(text.split())[:80]
        for what, pattern in _MD_SYNTAX:
            if pattern.search(text):
                problems.append(f"<{tag}> {short!r}: raw markdown ({what})")
        for ch in sorted(set(text)):
            if ch.isspace() or ord(ch) < 0x80:
                continue
            if is_emoji(ch):
                problems.append(f"<{tag}> {short!r}: emoji {_char_name(ch)}")
            elif ord(ch) not in covered:
                problems.append(f"<{tag}> {short!r}: {_char_name(ch)} is not in DejaVu Sans")
    return problems


# ------------------------------------------------------------------------------ browser
def chromium() -> str | None:
    """The Chromium (or Chrome) executable on PATH, or None."""
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


def _run_browser(browser: str, *args: str, timeout: int = 120) -> str:
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{Path(browser).name} failed ({done.returncode}): {done.stderr[-500:]}")
    return done.stdout


def rendered_dom(page: Path, browser: str) -> str:
    """The page as Chromium parsed and laid it out (`--dump-dom`)."""
    return _run_browser(browser, "--dump-dom", page.resolve().as_uri())


def page_height(dom: str) -> int:
    """A screenshot height that holds the whole page: a generous estimate from its length."""
    rows = dom.count("<tr") + dom.count("<li") + dom.count("<p")
    images = len(re.findall(r"<img", dom))
    return min(MAX_HEIGHT, 1200 + 34 * rows + 1300 * images)


def screenshot(page: Path, png: Path, browser: str, height: int) -> Path:
    """A full-page, PAGE_WIDTH-wide screenshot of `page` (blank space below the page cut off;
    taken again taller when the page reached the bottom edge), with TILE_HEIGHT tiles beside
    it as <name>-01.png, <name>-02.png, ..."""
    png.parent.mkdir(parents=True, exist_ok=True)
    while True:
        _run_browser(
            browser,
            f"--window-size={PAGE_WIDTH},{height}",
            "--force-device-scale-factor=1",
            f"--screenshot={png.resolve()}",
            page.resolve().as_uri(),
        )
        if _trim(png) or height >= MAX_HEIGHT:
            return png
        height = min(MAX_HEIGHT, int(height * 1.6))


def _trim(png: Path) -> bool:
    """Cut the blank band below the page's end and write the tiles; False (nothing written)
    when the page runs to the bottom edge, i.e. the screenshot was too short."""
    from PIL import Image, ImageChops

    with Image.open(png) as img:
        img = img.convert("RGB")
    box = ImageChops.difference(img, Image.new("RGB", img.size, "white")).getbbox()
    bottom = box[3] if box else 0
    if bottom >= img.height - 2 and img.height < MAX_HEIGHT:
        return False
    img = img.crop((0, 0, img.width, min(img.height, bottom + 40)))
    img.save(png)
    for old in png.parent.glob(f"{png.stem}-[0-9][0-9].png"):
        old.unlink()
    for i, top in enumerate(range(0, img.height, TILE_HEIGHT), start=1):
        tile = img.crop((0, top, img.width, min(img.height, top + TILE_HEIGHT)))
        tile.save(png.with_name(f"{png.stem}-{i:02d}.png"))
    return True


def fonts_lacking(chars: set[str]) -> list[str]:
    """Characters no installed font covers (fontconfig), as 'U+XXXX NAME' lines."""
    if not shutil.which("fc-list"):
        return []
    missing = []
    for ch in sorted(chars):
        found = subprocess.run(
            ["fc-list", f":charset={ord(ch):x}", "family"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        if not found:
            missing.append(_char_name(ch))
    return missing


def check_page(page: Path, out: Path, browser: str) -> list[str]:
    """Screenshot `page` into `out` and list what a reader would see wrong (see module doc)."""
    dom = rendered_dom(page, browser)
    problems = [f"{page.name}: {p}" for p in html_problems(dom)]
    chars = {ch for _, text in text_nodes(dom) for ch in text if ord(ch) >= 0x80}
    problems += [f"{page.name}: no installed font has {c}" for c in fonts_lacking(chars)]
    screenshot(page, out / f"{page.stem}.png", browser, page_height(dom))
    return problems


def _render_set(spec: str, folder: Path, data_root: str | None) -> Path:
    from harness import report
    from harness.claims import build_context, evaluate_all, load_claims

    ctx = build_context(spec, data_root, None)
    name = ctx.results.name if ctx.results else "none"
    (page,) = report.write_reports(
        evaluate_all(load_claims(), ctx), ctx, folder / name, ("html",), stem=name
    )
    return page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.report_screenshot",
        description="Screenshot HTML claim reports in headless Chromium and check them.",
    )
    parser.add_argument("pages", nargs="*", type=Path, help="HTML pages to check")
    parser.add_argument(
        "--results", action="append", help="render this results set's HTML report (repeat)"
    )
    parser.add_argument("--data-root", help="the public datasets (for expert votes)")
    parser.add_argument("--out", type=Path, default=Path("reports/screenshots"))
    args = parser.parse_args(argv)
    browser = chromium()
    if browser is None:
        print(f"no Chromium on PATH (looked for {', '.join(CHROMIUM_NAMES)})", file=sys.stderr)
        return 2
    pages = list(args.pages)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for spec in args.results or ([] if pages else ["paper"]):
                pages.append(_render_set(spec, Path(tmp), args.data_root))
        except paths.InputError as exc:
            print(f"report_screenshot: {exc}", file=sys.stderr)
            return 2
        problems = [p for page in pages for p in check_page(page, args.out, browser)]
    for line in problems:
        print(line)
    print(f"{len(pages)} page(s), {len(problems)} problem(s); screenshots in {args.out}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
