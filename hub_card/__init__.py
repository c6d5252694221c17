"""hub_card: the model card of a saved transformers folder, as its own package (it imports nothing of gpt_scratch).

    write_model_card(folder, summary=summary, dataset_urls={"the-verdict": "https://..."})  # -> folder/README.md
    problems = check_card(folder / "README.md")                                            # [] when the Hub takes it

``metadata``: the YAML header (license, ``library_name: transformers``, ``pipeline_tag``, tags, datasets,
``base_model``, the ``model-index`` results). ``render``: the card from config.json and the run's summary (a plain
dict) through ``model_card_template.md``. ``check``: what the Hub would reject.
"""

from hub_card.check import check_card
from hub_card.metadata import build_card_data
from hub_card.render import render_model_card, write_model_card

__all__ = ["build_card_data", "check_card", "render_model_card", "write_model_card"]
