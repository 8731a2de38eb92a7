"""Evaluation: official-convention scoring of predictions, bootstrap intervals, leakage guard,
results files, run comparison and reports."""

from mmfuse.errors import CoverageError
from mmfuse.evaluation.bootstrap import Interval, bootstrap_ci, paired_bootstrap
from mmfuse.evaluation.leakage import LeakageWarning, check_leakage
from mmfuse.evaluation.results import config_hash, read_rows, score_predictions, summarize

__all__ = [
    "CoverageError", "Interval", "LeakageWarning", "bootstrap_ci", "check_leakage", "config_hash",
    "paired_bootstrap", "read_rows", "score_predictions", "summarize",
]
