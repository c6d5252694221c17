"""Metrics that work offline: local `evaluate` modules and plain functions over them."""

from pathlib import Path

from gpt_scratch.metrics.classification import ClassificationMetric, classification_metrics

# Path for `evaluate.load(CLASSIFICATION_METRIC_PATH)`: the module file itself, no Hub needed.
CLASSIFICATION_METRIC_PATH = str(Path(__file__).with_name("classification.py"))

__all__ = ["CLASSIFICATION_METRIC_PATH", "ClassificationMetric", "classification_metrics"]
