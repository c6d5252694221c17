"""hub_card: the model card (README.md) of every folder that gpt_scratch saves, rendered with huggingface_hub.

``write_model_card(folder)`` fills ``model_card_template.md`` from the folder's ``config.json`` and, for a training
run, its ``training_summary.json``: Hub metadata (license, tags, datasets, base model, model-index results) and
the architecture, data checksums, hyperparameters, metrics, loss plot and how to load the model.
"""

from .render import build_card_data, render_model_card, write_model_card

__all__ = ["build_card_data", "render_model_card", "write_model_card"]
