"""Accuracy, and precision / recall / F1 (of the positive class, or macro-averaged), as an offline `evaluate` metric.

`evaluate.load("accuracy")` fetches its script from the Hub; this file is a self-contained
`evaluate` module instead (it imports only `datasets`, `evaluate` and `numpy`), so it works
with no network, either instantiated directly or loaded from its path:

    metric = evaluate.load(gpt_scratch.metrics.CLASSIFICATION_METRIC_PATH)
    metric.compute(predictions=[1, 0, 1], references=[1, 1, 1], positive_label=1)
    metric.compute(predictions=[2, 0, 1], references=[2, 1, 1], num_labels=3)  # macro + per class
"""

from __future__ import annotations

from collections.abc import Sequence

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """\
Accuracy over all classes. With two classes, precision, recall and F1 of one class (the positive class,
`positive_label`, 1 by default: `spam` in the book's spam set). With `num_labels` > 2, precision, recall and F1
of every class 0..num_labels-1 (`precision_per_class`, ...) and their unweighted means (`precision_macro`,
`recall_macro`, `f1_macro`, as scikit-learn's `average="macro"`: the macro F1 is the mean of the per-class F1s).
A ratio with a zero denominator (no predictions, or no references, of a class) is reported as 0.0.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted class ids.
    references (`list` of `int`): true class ids.
    positive_label (`int`): with two classes, the class whose precision, recall and F1 are reported. Default 1.
    num_labels (`int`): the number of classes; more than 2 reports macro averages and per-class figures.
Returns:
    accuracy, num_examples, and precision, recall, f1 (two classes) or precision_macro, recall_macro, f1_macro
    and precision_per_class, recall_per_class, f1_per_class (lists, one value per class id).
"""


def _ratio(numerator: int, denominator: int) -> float:
    return float(numerator / denominator) if denominator else 0.0


def _one_class(predictions: np.ndarray, references: np.ndarray, label: int) -> tuple[float, float, float]:
    """Precision, recall and F1 of `label` against all other classes."""
    predicted, actual = predictions == label, references == label
    true_positive = int(np.sum(predicted & actual))
    precision = _ratio(true_positive, int(np.sum(predicted)))
    recall = _ratio(true_positive, int(np.sum(actual)))
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


class ClassificationMetric(evaluate.Metric):
    """Accuracy, and precision / recall / F1 of the positive class (two classes) or macro and per class (more)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(
        self, predictions, references, positive_label: int = 1, num_labels: int = 2
    ) -> dict[str, float | list[float]]:
        predictions = np.asarray(predictions, dtype=np.int64)
        references = np.asarray(references, dtype=np.int64)
        if predictions.shape != references.shape:
            raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
        result: dict = {
            "accuracy": _ratio(int(np.sum(predictions == references)), len(references)),
            "num_examples": len(references),
        }
        if num_labels <= 2:
            precision, recall, f1 = _one_class(predictions, references, positive_label)
            return result | {"precision": precision, "recall": recall, "f1": f1}
        per_class = [_one_class(predictions, references, label) for label in range(num_labels)]
        for i, name in enumerate(("precision", "recall", "f1")):
            values = [figures[i] for figures in per_class]
            result[f"{name}_macro"] = float(np.mean(values))
            result[f"{name}_per_class"] = values
        return result


def classification_metrics(
    predictions: Sequence[int], references: Sequence[int], positive_label: int = 1, num_labels: int = 2
) -> dict[str, float | list[float]]:
    """Accuracy, and precision, recall and F1 of `positive_label` (two classes) or macro-averaged with per-class
    lists (`num_labels` > 2), of class-id predictions."""
    return ClassificationMetric().compute(
        predictions=list(predictions),
        references=list(references),
        positive_label=positive_label,
        num_labels=num_labels,
    )
