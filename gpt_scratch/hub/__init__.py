"""The Hugging Face Hub side of a saved folder: its model card (the ``hub_card`` package) and the upload (``push``).

``write_card(folder)`` renders the card with ``hub_card`` from the folder's ``config.json`` and, for a training run,
its ``training_summary.json``, handing it the corpora's public addresses as data. ``push.push_folder(folder,
repo_id)`` validates the folder (``hub_card.check_card`` for its card) and uploads it (``gpt-scratch push``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def write_card(folder: str | os.PathLike, **options: Any) -> Path:
    """``hub_card.write_model_card`` with the addresses of the corpora gpt_scratch knows by name."""
    from gpt_scratch.data.corpora import CORPORA
    from hub_card import write_model_card

    dataset_urls = {name: corpus.url for name, corpus in CORPORA.items()}
    return write_model_card(folder, dataset_urls=dataset_urls, **options)
