"""Table 3 of the paper, row by row in the paper's order, as (result name, method): the fact the
registry-derived lists (plan, claims, results names) are checked against. Written from the paper,
never derived from harness code."""

from __future__ import annotations

FOUNDATION_ROWS = (
    "UNI",
    "UNI2-h",
    "Virchow",
    "Virchow2",
    "Prov-Gigapath",
    "H-Optimus-0",
    "H-Optimus-1",
)
TABLE3 = (
    ("EfficientNetV2", "end_to_end"),
    ("Vision Transformer", "end_to_end"),
    ("Swin Transformer", "end_to_end"),
    *((model, method) for method in ("linear_probe", "lora") for model in FOUNDATION_ROWS),
)
