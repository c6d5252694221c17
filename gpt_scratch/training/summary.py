"""What a run leaves beside its weights: metrics.jsonl/.csv, the plots, training_summary.json and the card.

The summary is plain data (task, base model, datasets, hyperparameters, final metrics, counts); the model card
(`hub_card`) is rendered from it.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from gpt_scratch.hub import write_card
from gpt_scratch.plotting import plot_losses, plot_values
from gpt_scratch.training.checkpointing import TrainState, record_run_files

SUMMARY_FILE = "training_summary.json"


def write_summary(output_dir: str | os.PathLike, summary: dict[str, Any]) -> Path:
    """Write training_summary.json, then the model card (README.md, rendered by `hub_card`) from it."""
    path = Path(output_dir) / SUMMARY_FILE
    tmp = path.with_name(f".{SUMMARY_FILE}.tmp")
    tmp.write_text(json.dumps(json_ready(summary), indent=2, default=str, allow_nan=False) + "\n")
    os.replace(tmp, path)  # whole or not at all
    write_card(output_dir, summary=json.loads(path.read_text()))
    record_run_files(output_dir)
    return path


def update_summary(
    output_dir: str | os.PathLike, metrics: dict[str, Any] | None = None, **fields: Any
) -> dict:
    """Merge metrics measured after `train` (e.g. a judge score) into training_summary.json and re-render."""
    path = Path(output_dir) / SUMMARY_FILE
    summary = json.loads(path.read_text())
    summary["metrics"].update(metrics or {})
    summary.update(fields)
    write_summary(output_dir, summary)
    return summary


def _summary(
    task, base_model, datasets, hyperparameters, final, state: TrainState, model, steps_per_epoch, start
):
    parameters = list(model.parameters())
    return {
        "task": task.name,
        "base_model": base_model,
        "datasets": list(datasets or []),
        "hyperparameters": hyperparameters,
        "metrics": final,
        "tokens_seen": int(state.tokens_seen),
        "steps": int(state.step),
        "epochs": round(state.step / steps_per_epoch, 4) if steps_per_epoch else None,  # None: a stream
        "wall_time_s": round(state.wall_time_s, 3),
        "total_time_s": round(time.time() - start, 3),
        "parameters": {
            "total": sum(p.numel() for p in parameters),
            "trainable": sum(p.numel() for p in parameters if p.requires_grad),
        },
        "plots": [],
    }


def _plot_history(history: list[dict[str, Any]], output_dir: Path) -> list[str]:
    if not history:
        return []
    steps = [r["step"] for r in history]
    tokens = [r["tokens_seen"] for r in history]
    column = lambda key: [r.get(key, float("nan")) for r in history]  # noqa: E731
    plots = [
        plot_losses(steps, tokens, column("train_loss"), column("val_loss"), output_dir / "loss.png").name
    ]
    for key in sorted(history[-1]):
        if key.startswith("train_") and key != "train_loss":
            metric = key.removeprefix("train_")
            path = output_dir / f"{metric}.png"
            plots.append(
                plot_values(steps, tokens, column(key), column(f"val_{metric}"), path, label=metric).name
            )
    return plots


def _write_metric_logs(output_dir: Path, records: list[dict[str, Any]], rewrite: bool = False) -> None:
    """Append records to metrics.jsonl (rewrite=True: replace the file) and rewrite metrics.csv from it."""
    jsonl = output_dir / "metrics.jsonl"
    with jsonl.open("w" if rewrite else "a") as f:
        for record in records:
            f.write(json.dumps(json_ready(record), allow_nan=False) + "\n")
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with (output_dir / "metrics.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    record_run_files(output_dir)


def json_ready(value: Any) -> Any:
    """`value` with every NaN or infinity as None: JSON has no NaN (json.dumps would write an invalid file)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def format_losses(metrics: dict[str, float]) -> str:
    """'train loss 1.234, val loss 2.345' for the losses `metrics` has (a run without validation has none)."""
    return ", ".join(
        f"{name} loss {metrics[f'{name}_loss']:.3f}" for name in ("train", "val") if f"{name}_loss" in metrics
    )


def _format_record(r: dict[str, Any]) -> str:
    """The book's line, "Ep 1 (Step 000000): Train loss 9.817, Val loss 9.924", plus tokens and speed."""
    metrics = ", ".join(
        f"{k.replace('_', ' ').capitalize()} {v:.3f}"
        for k, v in r.items()
        if k.startswith(("train_", "val_")) and isinstance(v, float)
    )
    return (
        f"Ep {r['epoch']} (Step {r['step'] - 1:06d}): {metrics}, "
        f"Tokens seen {r['tokens_seen']:,}, {r['tokens_per_s']:,.0f} tokens/s"
    )


def _flat_scalars(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Trackers (TensorBoard's hparams) accept only scalars: flatten nested dicts, stringify the rest."""
    flat = {}
    for k, v in d.items():
        if isinstance(v, dict):
            flat |= _flat_scalars(v, f"{prefix}{k}.")
        elif isinstance(v, (int, float, str, bool)):
            flat[f"{prefix}{k}"] = v
        elif v is not None:
            flat[f"{prefix}{k}"] = str(v)
    return flat
