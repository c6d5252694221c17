"""The Hugging Face Hub side of a saved folder: its model card (``card``) and the upload (``push``).

``card.write_model_card(folder)`` fills ``model_card_template.md`` from the folder's ``config.json`` and, for a
training run, its ``training_summary.json``: Hub metadata (license, tags, datasets, base model, model-index
results) and the architecture, data checksums, hyperparameters, metrics, loss plot and how to load the model.
``push.push_folder(folder, repo_id)`` validates the folder and uploads it (``gpt-scratch push``).
"""
