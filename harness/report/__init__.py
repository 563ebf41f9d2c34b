"""The claim-by-claim report: a short terminal summary, markdown, HTML, JSON and JUnit XML.

Written for a pathologist as much as for an engineer: every row reads "the paper says ..., we
observe ..., verdict", grouped by the paper's sections, with the deviation ledger at the end.
For a results set with per-image predictions (`predictions.csv`), md, html and json add the
prediction-level analyses of `harness.analysis` and `harness.experts` (models among the experts,
fold ensemble vs fold mean, calibration, sensitivity and specificity of the atypical class):
reported, never judged, since the paper states no number for them.

`amibr-bench claims` prints `to_summary` and writes md, html and json into one folder
(`write_reports`); `render` makes one format. Figures are drawn to be read at their natural size
in the HTML page (`analysis.FIGURE_DPI`, text of at least `analysis.MIN_FONT_PT` points).
"""

from __future__ import annotations

from harness.report.command import (
    cli_claims,
)
from harness.report.common import (
    BADGE,
    DEFAULT_FORMATS,
    FORMATS,
    HOW_TO_READ,
    ICON,
    REPORT_STEM,
    SECTION_ORDER,
    SUFFIXES,
    VERDICT_WORDS,
    cell_text,
    claim_sections,
    format_expected,
    jsonable,
    md_escape,
    report_header,
    result_dict,
    self_reference,
    set_description,
    set_label,
    summary_counts,
    tally,
)
from harness.report.compare import (
    CHANGES,
    STANDING,
    WORSE,
    cli_compare,
    compare,
    comparison_text,
)
from harness.report.figures import (
    FIGURES,
    FPR_GRID,
    STRATEGY_COLOURS,
    TOP_FIGURES,
    VERDICT_COLOURS,
    draw_figures,
    forest_plot,
    mean_roc,
    roc_plot,
)
from harness.report.html import (
    badge,
    blocks_html,
    html_page,
    inline_html,
    to_html,
)
from harness.report.markdown import (
    blocks_md,
    to_markdown,
)
from harness.report.plain import (
    SUMMARY_LISTED,
    to_json,
    to_junit,
    to_summary,
    to_text,
)
from harness.report.sections import (
    Marked,
    analyses_blocks,
    experts_analysis,
    precision_blocks,
    precision_check,
    precision_summary_line,
    prediction_analyses,
    summary_blocks,
    table3_blocks,
)
from harness.report.writing import (
    analyses_report,
    default_folder,
    format_of,
    render,
    write_reports,
    write_requested,
    writing_to,
)

__all__ = [
    "BADGE",
    "CHANGES",
    "DEFAULT_FORMATS",
    "FIGURES",
    "FORMATS",
    "FPR_GRID",
    "HOW_TO_READ",
    "ICON",
    "Marked",
    "REPORT_STEM",
    "SECTION_ORDER",
    "STANDING",
    "STRATEGY_COLOURS",
    "SUFFIXES",
    "SUMMARY_LISTED",
    "TOP_FIGURES",
    "VERDICT_COLOURS",
    "VERDICT_WORDS",
    "WORSE",
    "analyses_blocks",
    "analyses_report",
    "badge",
    "blocks_html",
    "blocks_md",
    "cell_text",
    "claim_sections",
    "cli_claims",
    "cli_compare",
    "compare",
    "comparison_text",
    "default_folder",
    "draw_figures",
    "experts_analysis",
    "forest_plot",
    "format_expected",
    "format_of",
    "html_page",
    "inline_html",
    "jsonable",
    "md_escape",
    "mean_roc",
    "precision_blocks",
    "precision_check",
    "precision_summary_line",
    "prediction_analyses",
    "render",
    "report_header",
    "result_dict",
    "roc_plot",
    "self_reference",
    "set_description",
    "set_label",
    "summary_blocks",
    "summary_counts",
    "table3_blocks",
    "tally",
    "to_html",
    "to_json",
    "to_junit",
    "to_markdown",
    "to_summary",
    "to_text",
    "write_reports",
    "write_requested",
    "writing_to",
]
