"""The model card (README.md) of a saved folder, rendered from the model's config and its run's summary.

``write_model_card(folder)`` reads ``config.json`` and, when the folder came from a training run,
``training_summary.json`` (or takes ``summary`` as a dict); it builds the Hub metadata (``metadata.build_card_data``)
and renders ``model_card_template.md`` with ``ModelCard.from_template``. A folder saved by hand (no summary) gets a
card with what ``config.json`` says. The corpora's public addresses come in as data (``dataset_urls``).
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard

from hub_card.metadata import build_card_data, hub_dataset_id, pipeline_tag

TEMPLATE_PATH = Path(__file__).with_name("model_card_template.md")
SUMMARY_FILE = "training_summary.json"
# Run settings that describe the machine, not the training (a local path must not reach a public card).
HIDDEN_HYPERPARAMETERS = {"output_dir", "resume", "progress_bar", "log_with", "num_workers"}
ALPACA_PROMPT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
    "\\n\\n### Instruction:\\nRewrite the sentence using a simile.\\n\\n### Input:\\nThe car is very fast."
    "\\n\\n### Response:\\n"
)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; a clear error naming the file otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def count_parameters(weights: Path) -> int | None:
    """Number of values stored in a ``.safetensors`` file (from its header alone), or None if unreadable."""
    try:
        with weights.open("rb") as f:
            (header_size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(header_size))
    except (OSError, ValueError, struct.error):
        return None
    return sum(math.prod(t["shape"]) for name, t in header.items() if name != "__metadata__")


def dataset_source(described: dict[str, Any], dataset_urls: dict[str, str] | None) -> str:
    """The public address of a corpus known by name (``dataset_urls``: name -> URL), or of the Hub dataset's commit
    the run read (its ``revision``), else an empty cell."""
    url = (dataset_urls or {}).get(described.get("name") or "")
    if url:
        return f"[{url.rsplit('/', 1)[-1]}]({url})"
    dataset, commit = hub_dataset_id(described), described.get("revision")
    if dataset:
        return f"[{dataset}@{commit[:7]}](https://huggingface.co/datasets/{dataset}/tree/{commit})"
    return ""


def architecture_rows(config: dict[str, Any], parameters: dict[str, Any] | None) -> list[tuple[str, str]]:
    rows = [("class", f"`{(config.get('architectures') or ['GPTScratchForCausalLM'])[0]}`")]
    if config.get("preset"):
        rows.append(("preset", f"`{config['preset']}`"))
    for key in ("n_layers", "n_heads", "emb_dim", "context_length", "vocab_size", "qkv_bias", "drop_rate",
                "tie_word_embeddings"):  # fmt: skip
        if key in config:
            rows.append((key, format_value(config[key])))
    if parameters:
        for kind in ("total", "trainable"):
            if isinstance(parameters.get(kind), int):
                rows.append((f"parameters ({kind})", f"{parameters[kind]:,}"))
    return rows


def usage_code(config: dict[str, Any], summary: dict[str, Any], model_id: str) -> str:
    """The how-to-load snippet for the card: Auto classes with trust_remote_code, pipeline, generate."""
    if pipeline_tag(config) == "text-classification":
        return f"""\
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

model_id = "{model_id}"  # a Hub id, or the local folder
classifier = pipeline("text-classification", model=model_id, trust_remote_code=True)
print(classifier("You are a winner! Reply now to claim your free prize."))

# or step by step
tokenizer = AutoTokenizer.from_pretrained(model_id, trust_remote_code=True)
model = AutoModelForSequenceClassification.from_pretrained(model_id, trust_remote_code=True).eval()
inputs = tokenizer(["Are we still meeting for lunch?"], return_tensors="pt")
with torch.no_grad():
    label_id = model(**inputs).logits.argmax(-1).item()
print(model.config.id2label[label_id])"""
    prompt = ALPACA_PROMPT if summary.get("task") == "instruction" else "Every effort moves you"
    return f"""\
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

model_id = "{model_id}"  # a Hub id, or the local folder
generator = pipeline("text-generation", model=model_id, trust_remote_code=True)
print(generator("{prompt}", max_new_tokens=35, do_sample=False)[0]["generated_text"])

# or step by step
tokenizer = AutoTokenizer.from_pretrained(model_id, trust_remote_code=True)
model = AutoModelForCausalLM.from_pretrained(model_id, trust_remote_code=True).eval()
inputs = tokenizer("{prompt}", return_tensors="pt")
output = model.generate(**inputs, max_new_tokens=35, do_sample=True, top_k=25, temperature=1.4)
print(tokenizer.decode(output[0], skip_special_tokens=True))"""


def task_section(config: dict[str, Any], summary: dict[str, Any]) -> str:
    if summary.get("task") == "instruction":
        return (
            "The model was fine-tuned on Alpaca-style prompts (chapter 7 of the book): give it the same prompt "
            "format, `Below is an instruction...`, `### Instruction:`, optional `### Input:`, then "
            "`### Response:`, and read the text it writes after `### Response:`."
        )
    if pipeline_tag(config) == "text-classification":
        return (
            "The classifier reads the model's output at the last token of the text (chapter 6 of the book); "
            "padding is handled with the attention mask."
        )
    return ""


def hyperparameter_rows(hyperparameters: dict[str, Any]) -> list[tuple[str, str]]:
    """The settings that shaped the training; no local paths, no unset values, no nested model config."""
    return [
        (key, format_value(value))
        for key, value in hyperparameters.items()
        if key not in HIDDEN_HYPERPARAMETERS and value is not None and not isinstance(value, (dict, list))
    ]


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def render_model_card(
    folder: str | Path,
    license: str = "apache-2.0",
    model_name: str | None = None,
    repo_id: str | None = None,
    *,
    summary: dict[str, Any] | None = None,
    dataset_urls: dict[str, str] | None = None,
) -> ModelCard:
    """The card of ``folder`` (which must hold ``config.json``) as a ``huggingface_hub.ModelCard``.

    ``summary``: the run's summary (default: the folder's training_summary.json, if any); ``dataset_urls``: the
    public address of each data set the summary names, shown in the card's data table.
    """
    folder = Path(folder)
    config = read_json(folder / "config.json")
    summary_path = folder / SUMMARY_FILE
    if summary is None:
        summary = read_json(summary_path) if summary_path.exists() else {}
    model_name = model_name or (repo_id.split("/")[-1] if repo_id else folder.resolve().name)
    parameters = summary.get("parameters") or {}
    if not isinstance(parameters.get("total"), int):
        stored = count_parameters(folder / "model.safetensors")
        parameters = {"total": stored} if stored is not None else {}

    task = summary.get("task")
    what = {"pretraining": "pretrained", "classification": "fine-tuned for text classification",
            "instruction": "instruction fine-tuned", "conversion": "converted"}.get(task, "")  # fmt: skip
    size = f" of {parameters['total']:,} parameters" if parameters.get("total") else ""
    summary_line = f"A GPT model{size}, {what or 'saved'} with `gpt_scratch`."
    labels = sorted((int(i), label) for i, label in (config.get("id2label") or {}).items())
    if pipeline_tag(config) != "text-classification":
        labels = []
    plots = [p for p in summary.get("plots") or [] if (folder / p).is_file()]
    run_rows = [(key, format_value(summary[key])) for key in ("tokens_seen", "steps", "epochs", "wall_time_s")
                if key in summary]  # fmt: skip
    limitations = (
        "Trained the way the book teaches, on its small data sets: the model is for learning how GPT models work, "
        "not for production use. Its outputs can be wrong, repetitive or biased."
    )
    return ModelCard.from_template(
        build_card_data(config, summary, model_name, license),
        template_path=str(TEMPLATE_PATH),
        model_name=model_name,
        summary_line=summary_line,
        architecture=architecture_rows(config, parameters),
        labels=labels,
        usage_code=usage_code(config, summary, repo_id or model_name),
        task_section=task_section(config, summary),
        data_rows=[
            {
                "name": d.get("name") or "?",
                "file": d.get("file") or "-",
                "content": d.get("sha256") or d.get("revision") or "not recorded",
                "source": dataset_source(d, dataset_urls),
            }
            for d in summary.get("datasets") or []
        ],  # fmt: skip
        base_model=summary.get("base_model"),
        base_model_verb="Pretraining continued from" if task == "pretraining" else "Fine-tuned from",
        origin_rows=[(key, format_value(value)) for key, value in (summary.get("origin") or {}).items()],
        hyperparameters=hyperparameter_rows(summary.get("hyperparameters") or {}),
        run_rows=run_rows,
        metrics=[(k, format_value(v)) for k, v in (summary.get("metrics") or {}).items()],
        plots=plots,
        limitations=limitations,
    )


def write_model_card(
    folder: str | Path,
    license: str = "apache-2.0",
    model_name: str | None = None,
    repo_id: str | None = None,
    *,
    summary: dict[str, Any] | None = None,
    dataset_urls: dict[str, str] | None = None,
) -> Path:
    """Render the card of ``folder`` and write it as ``folder/README.md``; returns that path.

    Args:
        folder: a folder written by ``save_pretrained`` (``config.json`` required; ``training_summary.json``,
            the plots and ``model.safetensors`` are used when present).
        license: the Hub license identifier of the weights.
        model_name: the card's title and ``model-index`` name; defaults to the repo name or the folder name.
        repo_id: the Hub id to show in the how-to-load code; defaults to ``model_name``.
        summary: the run's summary as a dict; defaults to the folder's ``training_summary.json``.
        dataset_urls: data set name -> public address, for the card's data table.
    """
    path = Path(folder) / "README.md"
    card = render_model_card(folder, license, model_name, repo_id, summary=summary, dataset_urls=dataset_urls)
    card.save(path)
    return path
