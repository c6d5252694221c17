"""A model card's YAML metadata, from the model's config.json and its run's summary (both plain dicts).

What the Hub reads from the card's header: ``license``, ``library_name: transformers``, ``pipeline_tag``, ``tags``,
``datasets``, ``base_model`` and the ``model-index`` results (one per numeric final metric, with its split).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCardData

CLASSIFIER_ARCHITECTURE = "GPTScratchForSequenceClassification"

# Metric keys of training_summary.json: "<split>_<metric>", or a bare metric name.
SPLITS = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}
# The training loop's bare "perplexity" is exp(val_loss).
BARE_METRIC_SPLITS = {"perplexity": "validation"}


def pipeline_tag(config: dict[str, Any]) -> str:
    return (
        "text-classification"
        if CLASSIFIER_ARCHITECTURE in (config.get("architectures") or [])
        else "text-generation"
    )


def is_hub_id(name: str) -> bool:
    """Whether ``name`` looks like a Hub repository id (``gpt2``, ``owner/name``) rather than a local path."""
    looks_like_id = re.fullmatch(r"\w[\w.-]*(/\w[\w.-]*)?", name) and not name.endswith((".", "-"))
    return bool(looks_like_id) and not Path(name).expanduser().exists()


def metric_rows(metrics: dict[str, Any]) -> list[tuple[str, str | None, str, float]]:
    """(key, split, metric type, value) for every finite number in ``metrics``, in the summary's order."""
    rows = []
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        prefix, _, rest = key.partition("_")
        split, metric = (
            (SPLITS[prefix], rest) if prefix in SPLITS and rest else (BARE_METRIC_SPLITS.get(key), key)
        )
        rows.append((key, split, metric, value))  # metric type: loss, accuracy, f1, perplexity, ...
    return rows


def hub_dataset_id(described: dict[str, Any]) -> str | None:
    """The Hub id of a run's data set when it was read from the Hub (the run recorded the commit it read)."""
    return described.get("dataset") if described.get("revision") else None


def build_card_data(
    config: dict[str, Any],
    summary: dict[str, Any] | None,
    model_name: str,
    license: str = "apache-2.0",
) -> ModelCardData:
    """The card's YAML metadata as ``ModelCardData``; ``model-index`` results for every numeric final metric."""
    summary = summary or {}
    tag = pipeline_tag(config)
    tags = ["gpt_scratch", "gpt2", "llms-from-scratch", "custom_code", tag]
    if summary.get("task") == "instruction":
        tags.append("instruction-tuned")
    # a Hub dataset by its id, so that the Hub links it; other data by name
    datasets = [hub_dataset_id(d) or d["name"] for d in summary.get("datasets") or [] if d.get("name")]
    base_model = summary.get("base_model")
    eval_results = [
        EvalResult(
            task_type=tag,
            dataset_type=datasets[0] if datasets else "unknown",
            dataset_name=datasets[0] if datasets else "unknown",
            dataset_split=split,
            metric_type=metric_type,
            metric_name=key,
            metric_value=value,
        )
        for key, split, metric_type, value in metric_rows(summary.get("metrics") or {})
    ]
    return ModelCardData(
        library_name="transformers",
        pipeline_tag=tag,
        license=license,
        tags=tags,
        datasets=datasets or None,
        base_model=base_model if isinstance(base_model, str) and is_hub_id(base_model) else None,
        model_name=model_name,
        eval_results=eval_results or None,
    )
