"""Accuracy, and precision / recall / F1 of the positive class, as an offline `evaluate` metric.

`evaluate.load("accuracy")` fetches its script from the Hub; this file is a self-contained
`evaluate` module instead (it imports only `datasets`, `evaluate` and `numpy`), so it works
with no network, either instantiated directly or loaded from its path:

    metric = evaluate.load(gpt_scratch.metrics.CLASSIFICATION_METRIC_PATH)
    metric.compute(predictions=[1, 0, 1], references=[1, 1, 1], positive_label=1)
"""

from __future__ import annotations

from collections.abc import Sequence

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """\
Accuracy over all classes, and precision, recall and F1 of one class (the positive class,
`positive_label`, 1 by default: `spam` in the book's spam set). A ratio with a zero
denominator (no positive predictions, or no positive references) is reported as 0.0.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted class ids.
    references (`list` of `int`): true class ids.
    positive_label (`int`): the class whose precision, recall and F1 are reported. Default 1.
Returns:
    accuracy, precision, recall, f1 (`float`), and num_examples (`int`).
"""


def _ratio(numerator: int, denominator: int) -> float:
    return float(numerator / denominator) if denominator else 0.0


class ClassificationMetric(evaluate.Metric):
    """Accuracy, and precision / recall / F1 of the positive class."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, positive_label: int = 1) -> dict[str, float]:
        predictions = np.asarray(predictions, dtype=np.int64)
        references = np.asarray(references, dtype=np.int64)
        if predictions.shape != references.shape:
            raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
        predicted_positive = predictions == positive_label
        actual_positive = references == positive_label
        true_positive = int(np.sum(predicted_positive & actual_positive))
        precision = _ratio(true_positive, int(np.sum(predicted_positive)))
        recall = _ratio(true_positive, int(np.sum(actual_positive)))
        return {
            "accuracy": _ratio(int(np.sum(predictions == references)), len(references)),
            "precision": precision,
            "recall": recall,
            "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
            "num_examples": len(references),
        }


def classification_metrics(
    predictions: Sequence[int], references: Sequence[int], positive_label: int = 1
) -> dict[str, float]:
    """Accuracy, precision, recall and F1 (of `positive_label`) of class-id predictions."""
    return ClassificationMetric().compute(
        predictions=list(predictions), references=list(references), positive_label=positive_label
    )
