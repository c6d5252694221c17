"""Checking a model card before it goes to the Hub: it is there, its YAML header parses, it names transformers."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import ModelCard


def check_card(readme: str | Path) -> list[str]:
    """The problems of the card at ``readme`` (a folder's README.md), each a sentence naming it; [] when fine."""
    readme = Path(readme)
    if not readme.is_file():
        return ["README.md (model card) is missing: push with --write-card, or hub_card.write_model_card"]
    try:
        card = ModelCard.load(readme)
    except Exception as error:  # yaml errors, bad model-index: the Hub would reject the card
        return [f"README.md metadata cannot be parsed: {error}"]
    if not card.data.to_dict():
        return ["README.md has no metadata header (--- yaml ---)"]
    if card.data.library_name != "transformers":
        return [f"README.md library_name is {card.data.library_name!r}, expected 'transformers'"]
    return []
