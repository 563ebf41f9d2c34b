"""amibr-bench: claim-by-claim reproduction of Banerjee et al., MELBA 2026:006.

Data flows one way: data -> splits -> models -> train -> results -> claims -> report.
"""

__version__ = "0.4.0"

PAPER = {
    "title": (
        "Benchmarking Deep Learning and Vision Foundation Models for Atypical vs. Normal "
        "Mitosis Classification with Cross-Dataset Evaluation"
    ),
    "venue": "MELBA 2026:006",
    "arxiv": "2506.21444v3",
    "doi": "10.59275/j.melba.2026-6c1g1",
}
