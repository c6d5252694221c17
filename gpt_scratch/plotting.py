"""The book's training plots (chapters 5 and 6), drawn with matplotlib's file-only Agg backend.

`plot_losses` is chapter 5's `plot_losses`: training and validation loss against the optimizer step, with a second
x-axis on top for the tokens seen. `plot_values` is chapter 6's `plot_values`, for any metric (e.g. accuracy).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed (servers, CI)
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def plot_values(
    steps: Sequence[float],
    tokens_seen: Sequence[float],
    train_values: Sequence[float],
    val_values: Sequence[float] | None,
    path: str | os.PathLike,
    label: str = "loss",
    x_label: str = "Steps",
    x2_label: str = "Tokens seen",
) -> Path:
    """Training (solid) and validation (dotted) `label` against `steps`, `tokens_seen` on a second x-axis; a PNG."""
    if not (len(steps) == len(tokens_seen) == len(train_values)):
        raise ValueError(
            f"plot_values: steps ({len(steps)}), tokens_seen ({len(tokens_seen)}) and train_values "
            f"({len(train_values)}) must have the same length"
        )
    fig, ax1 = plt.subplots(figsize=(5, 3))
    ax1.plot(steps, train_values, label=f"Training {label}")
    if val_values is not None and any(v == v for v in val_values):  # not all NaN
        ax1.plot(steps, val_values, linestyle="-.", label=f"Validation {label}")
    ax1.set_xlabel(x_label)
    ax1.set_ylabel(label.capitalize())
    ax1.legend(loc="upper right")
    ax1.xaxis.set_major_locator(MaxNLocator(integer=True))  # integer steps only

    ax2 = ax1.twiny()  # a second x-axis that shares the y-axis
    ax2.plot(tokens_seen, train_values, alpha=0)  # invisible: aligns the ticks
    ax2.set_xlabel(x2_label)

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_losses(
    steps: Sequence[float],
    tokens_seen: Sequence[float],
    train_losses: Sequence[float],
    val_losses: Sequence[float] | None,
    path: str | os.PathLike = "loss.png",
) -> Path:
    """Chapter 5's loss plot: training and validation loss against steps and tokens seen."""
    return plot_values(steps, tokens_seen, train_losses, val_losses, path, label="loss")
