"""`gpt-scratch convert`: every from-scratch GPT in, as a complete model folder; and back out to the book or nanoGPT.

A SOURCE is recognised by its content, never its name (`load_source`, the one loader of every workflow's --model):

    a file (read with torch.load(weights_only=True), or safetensors: nothing in it can run)
        the book's GPTModel.state_dict() (chapter 5's model.pth, gpt2-small-124M.pth, ...)   -> causal LM
        {"model_state_dict": ..., "optimizer_state_dict": ...} (chapter 5's model_and_optimizer.pth)
        the book's classifier: out_head (num_classes, emb_dim) (chapter 6's review_classifier.pth) -> classifier
        nanoGPT's ckpt.pt {"model", "model_args", "iter_num", "best_val_loss", "config"}
    a folder: a gpt_scratch folder (save_pretrained), or a GPT-2 folder (transformers' config.json, from_gpt2)
    a Hub id: downloaded, then read as a folder

    gpt-scratch convert model.pth --output-dir runs/book              # then generate(), pipeline, push
    gpt-scratch convert review_classifier.pth --output-dir runs/spam --labels "not spam,spam"
    gpt-scratch convert out/ckpt.pt --output-dir runs/nanogpt
    gpt-scratch convert runs/book --to book --output model.pth        # + model.json, the book's cfg
    gpt-scratch convert runs/nanogpt --to nanogpt --output out/ckpt.pt

The folder written is complete, as every folder the package writes: config, safetensors, GPT-2's tokenizer
(`model_max_length` = the context), generation config, and the model card, which records the origin (file,
sha256, format; nanoGPT's iter_num and best_val_loss) from `training_summary.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gpt_scratch.conversion_book_nanogpt_gpt_scratch import (
    book_config,
    book_names,
    book_to_scratch_state_dict,
    nanogpt_config,
    nanogpt_to_scratch_state_dict,
    strip_prefixes,
)
from gpt_scratch.data.corpora import sha256_file
from gpt_scratch.modeling_gpt_scratch import GPTScratchForCausalLM, GPTScratchForSequenceClassification

HUB_ID = re.compile(r"\w[\w.-]*(/\w[\w.-]*)?")
CHAT_TEMPLATES = ("alpaca",)
# What a written folder may hold beside the run's files: --overwrite removes them too, so none is left stale
FOLDER_FILES = ("*_gpt_scratch.py", "chat_template.jinja", "tokenizer*.json", "special_tokens_map.json",
                "added_tokens.json", "vocab.json", "merges.txt", "generation_config.json", "README.md")  # fmt: skip


@dataclass
class LoadedModel:
    """A model read from a SOURCE, in eval mode, and where it came from (the card's origin)."""

    model: GPTScratchForCausalLM | GPTScratchForSequenceClassification
    origin: dict[str, Any] = field(default_factory=dict)
    optimizer_state: dict[str, dict[str, torch.Tensor]] | None = None  # AdamW's, of model_and_optimizer.pth


def read_weights(path: Path) -> Any:
    """What a weights file holds, without running anything: safetensors, or torch.load with weights_only=True."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"{path}: refused: this file holds more than tensors and plain values, and loading it would run "
            f"code it names (torch.load with weights_only=True: {reason}). Save the state dict alone "
            "(torch.save(model.state_dict(), ...)) and convert that"
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise ValueError(f"{path}: not a PyTorch checkpoint ({str(error).splitlines()[0]})") from None


def load_source(
    source: str | os.PathLike,
    *,
    n_heads: int | None = None,
    labels: list[str] | None = None,
    **config_overrides: Any,
) -> LoadedModel:
    """The model of `source` (see the module docstring), in eval mode, with its origin.

    `n_heads`: the head count of a book file whose width has no book preset (or to override the preset);
    `labels`: the names of a book classifier's classes in id order (default 0..n-1); `config_overrides` (e.g.
    `drop_rate`) go into the configuration.
    """
    path = Path(source).expanduser()
    if path.is_file():
        return load_file(path, n_heads=n_heads, labels=labels, **config_overrides)
    if path.is_dir():
        loaded = load_folder(path, **config_overrides)
        if labels or n_heads not in (None, loaded.model.config.n_heads):
            raise ValueError(
                f"{path}: its config.json says the heads and labels; leave out --n-heads and --labels"
            )
        return loaded
    if not HUB_ID.fullmatch(str(source)) or path.suffix in (".pth", ".pt", ".bin", ".safetensors"):
        raise FileNotFoundError(f"{source}: no such file or folder")
    from huggingface_hub import snapshot_download

    folder = snapshot_download(str(source), allow_patterns=["*.json", "*.safetensors", "*.txt"])
    loaded = load_folder(Path(folder), **config_overrides)
    loaded.origin["source"] = str(source)
    return loaded


def is_gpt_scratch_folder(source: str | os.PathLike) -> bool:
    config_file = Path(source) / "config.json"
    return config_file.is_file() and json.loads(config_file.read_text()).get("model_type") == "gpt_scratch"


def load_folder(folder: Path, **config_overrides: Any) -> LoadedModel:
    """A gpt_scratch folder (its weights checked against its config.json) or a GPT-2 folder (`from_gpt2`)."""
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(
            f"{folder}: no config.json; give a folder saved by gpt_scratch or transformers' GPT-2, or a weights file"
        )
    model_type = json.loads(config_file.read_text()).get("model_type")
    if model_type == "gpt2":
        model = GPTScratchForCausalLM.from_gpt2(folder, **config_overrides)
        return LoadedModel(model.eval(), {"source": str(folder), "format": "GPT-2 (transformers)"})
    if model_type != "gpt_scratch":
        raise ValueError(
            f"{config_file}: model_type {model_type!r}; gpt_scratch reads gpt_scratch and gpt2 folders"
        )
    from gpt_scratch.generation.inference import from_pretrained_checked

    architectures = json.loads(config_file.read_text()).get("architectures") or []
    model_class = (
        GPTScratchForSequenceClassification
        if "GPTScratchForSequenceClassification" in architectures
        else GPTScratchForCausalLM
    )
    model = from_pretrained_checked(model_class, folder, **config_overrides)
    return LoadedModel(model.eval(), {"source": str(folder), "format": "gpt_scratch folder"})


def load_file(
    path: Path, *, n_heads: int | None = None, labels: list[str] | None = None, **config_overrides: Any
) -> LoadedModel:
    """A book or nanoGPT weights file (see the module docstring); any error names the file."""
    content = read_weights(path)
    origin: dict[str, Any] = {"source": str(path), "file": path.name, "sha256": sha256_file(path)}
    book_optimizer, optimizer_state = None, None
    try:
        if not isinstance(content, dict):
            raise ValueError(f"holds a {type(content).__name__}, not a state dict")
        model_args = None
        if "model" in content and "model_args" in content:  # nanoGPT's ckpt.pt
            model_args, state_dict = content["model_args"], content["model"]
            origin |= {"format": "nanoGPT ckpt.pt", "model_args": model_args}
            origin |= {k: _plain(content[k]) for k in ("iter_num", "best_val_loss") if k in content}
        elif "model_state_dict" in content:  # chapter 5's model_and_optimizer.pth
            state_dict = content["model_state_dict"]
            origin["format"] = "book GPTModel (model_and_optimizer.pth)"
            book_optimizer = content.get("optimizer_state_dict")
        else:
            state_dict = content
        if not isinstance(state_dict, dict) or not all(
            isinstance(t, torch.Tensor) for t in state_dict.values()
        ):
            raise ValueError(f"keys {', '.join(map(str, list(content)[:10]))}: not a state dict of tensors")
        state_dict = strip_prefixes(state_dict)
        nanogpt = model_args is not None or "transformer.wte.weight" in state_dict
        if "tok_emb.weight" in state_dict or not nanogpt:  # the book's key check lists what does not fit
            config = book_config(state_dict, n_heads, **config_overrides)
            ours = book_to_scratch_state_dict(state_dict, config)
            origin.setdefault("format", "book GPTModel state dict")
            if book_optimizer is not None:
                optimizer_state = book_adamw_state(book_optimizer, state_dict, config)
        else:
            config = nanogpt_config(state_dict, model_args, n_heads, **config_overrides)
            ours = nanogpt_to_scratch_state_dict(state_dict, config)
            origin.setdefault("format", "nanoGPT state dict")
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    if config.architectures == ["GPTScratchForSequenceClassification"]:
        names = labels or [str(i) for i in range(config.num_labels)]
        if len(names) != config.num_labels:
            raise ValueError(
                f"{path}: a classifier of {config.num_labels} classes, but {len(names)} labels given"
            )
        config.id2label, config.label2id = dict(enumerate(names)), {n: i for i, n in enumerate(names)}
        origin["format"] = origin["format"].replace("GPTModel", "classifier (chapter 6)")
    elif labels:
        raise ValueError(f"{path}: --labels names a classifier's classes; this is a causal language model")
    classifier = config.architectures == ["GPTScratchForSequenceClassification"]
    with torch.device(
        "meta"
    ):  # shapes only: every tensor comes from the file (strict), none is drawn at random
        model = (GPTScratchForSequenceClassification if classifier else GPTScratchForCausalLM)(config)
    model.load_state_dict(ours, strict=True, assign=True)
    if config.tie_word_embeddings:
        model.tie_weights()
    return LoadedModel(model.eval(), origin, optimizer_state)


def book_adamw_state(
    optimizer_state: dict, book: dict[str, torch.Tensor], config: Any
) -> dict[str, dict[str, torch.Tensor]]:
    """The state of chapter 5's ``AdamW(model.parameters())`` by our parameter names: the moments of W_query, W_key
    and W_value stacked into our fused qkv, as the weights are. The book's parameters are its state dict's tensors
    but the ``att.mask`` buffers, in order."""
    names = [k for k in book if not k.endswith(".att.mask")]
    indices = [i for group in optimizer_state.get("param_groups") or [] for i in group["params"]]
    if len(indices) != len(names):
        raise ValueError(f"optimizer_state_dict holds {len(indices)} parameters, the model {len(names)}")
    state = optimizer_state.get("state") or {}
    by_name = {name: state[i] for name, i in zip(names, indices, strict=True) if i in state}
    adamw = {}
    classifier = config.architectures == ["GPTScratchForSequenceClassification"]
    for source_names, our_name in book_names(config, classifier):
        parts = [by_name.get(name) for name in source_names]
        if any(part is None for part in parts):
            continue  # never stepped
        if not all({"step", "exp_avg", "exp_avg_sq"} <= part.keys() for part in parts):
            raise ValueError(
                f"optimizer_state_dict: {source_names[0]} has no AdamW moments (exp_avg, exp_avg_sq)"
            )
        adamw[our_name] = {
            "step": torch.as_tensor(parts[0]["step"], dtype=torch.float32).clone(),
            "exp_avg": torch.cat([part["exp_avg"] for part in parts]),
            "exp_avg_sq": torch.cat([part["exp_avg_sq"] for part in parts]),
        }
    return adamw


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, torch.Tensor) else value


# ----------------------------------------------------------------------------------------------------------------
# The folder written


def write_folder(
    loaded: LoadedModel,
    output_dir: str | os.PathLike,
    *,
    chat_template: str | None = None,
    overwrite: bool = False,
) -> Path:
    """`loaded`'s model as a complete folder (see the module docstring); a folder that holds anything is refused
    unless `overwrite`. `chat_template="alpaca"` gives the tokenizer the book's Alpaca prompt (chapter 7)."""
    from gpt_scratch.tokenization_gpt_scratch import ALPACA_CHAT_TEMPLATE, GPTScratchTokenizer
    from gpt_scratch.training import write_summary
    from gpt_scratch.training.checkpointing import clear_output_folder

    if chat_template not in (None, *CHAT_TEMPLATES):
        raise ValueError(f"chat template {chat_template!r}: gpt_scratch knows {', '.join(CHAT_TEMPLATES)}")
    output_dir = Path(output_dir)
    clear_output_folder(output_dir, overwrite)
    for path in [p for pattern in FOLDER_FILES for p in output_dir.glob(pattern) if p.is_file()]:
        path.unlink()
    output_dir.mkdir(parents=True, exist_ok=True)
    model = loaded.model
    tokenizer = GPTScratchTokenizer(model_max_length=model.config.context_length)
    if chat_template == "alpaca":
        tokenizer.chat_template = ALPACA_CHAT_TEMPLATE
    tmp = output_dir / ".tmp-convert"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    for path in sorted(tmp.iterdir()):
        os.replace(path, output_dir / path.name)
    tmp.rmdir()
    parameters = sum(p.numel() for p in model.parameters())
    summary = {
        "task": "conversion",
        "origin": {k: v for k, v in loaded.origin.items() if k != "source"},
        "parameters": {"total": parameters, "trainable": parameters},
    }
    write_summary(output_dir, summary)  # and the model card
    return output_dir


# ----------------------------------------------------------------------------------------------------------------
# The `gpt-scratch convert` verb


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        help="the book's .pth (GPTModel, model_and_optimizer, chapter 6 classifier), nanoGPT's ckpt.pt, a gpt_scratch "
        "or GPT-2 folder, or a Hub id",
    )
    parser.add_argument("--output-dir", help="the model folder to write (into gpt_scratch)")
    parser.add_argument(
        "--to", choices=["book", "nanogpt"], help="write the book's model.pth or nanoGPT's ckpt.pt"
    )
    parser.add_argument("--output", help="with --to: the file to write")
    add_model_source_arguments(parser)
    parser.add_argument(
        "--labels", help="a book classifier's class names in id order, comma-separated (default: 0..n-1)"
    )
    parser.add_argument(
        "--chat-template", choices=CHAT_TEMPLATES, help="give the tokenizer the book's Alpaca prompt"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace what the output holds")


def add_model_source_arguments(parser: Any) -> None:
    parser.add_argument(
        "--n-heads",
        type=int,
        help="attention heads of a book .pth (default: the book's preset for the width: 768: 12, 1024: 16, "
        "1280: 20, 1600: 25)",
    )


def run(args: argparse.Namespace) -> int:
    if (args.to is None) == (args.output_dir is None):
        raise ValueError(
            "give --output-dir DIR (into gpt_scratch) or --to book|nanogpt --output PATH (out of it)"
        )
    if args.to is not None and not args.output:
        raise ValueError(f"--to {args.to} needs --output PATH (the file to write)")
    labels = [name.strip() for name in args.labels.split(",")] if args.labels else None
    loaded = load_source(args.source, n_heads=args.n_heads, labels=labels)
    if args.to is None:
        folder = write_folder(
            loaded, args.output_dir, chat_template=args.chat_template, overwrite=args.overwrite
        )
        print(f"Converted {args.source} ({loaded.origin.get('format')}) to {folder}")
        return 0
    output = Path(args.output)
    written = [output, output.with_suffix(".json")] if args.to == "book" else [output]
    existing = [str(p) for p in written if p.exists()]
    if existing and not args.overwrite:
        raise ValueError(
            f"{', '.join(existing)} already exist(s): pass --overwrite to replace, or choose another --output"
        )
    if args.to == "book":
        loaded.model.save_book(output)
    elif isinstance(loaded.model, GPTScratchForSequenceClassification):
        raise ValueError(f"{args.source}: a classifier; nanoGPT holds causal language models only")
    else:
        loaded.model.save_nanogpt(output)
    print(f"Wrote {', '.join(map(str, written))}")
    return 0


__all__ = [
    "LoadedModel",
    "read_weights",
    "load_source",
    "load_folder",
    "load_file",
    "write_folder",
    "add_arguments",
    "run",
]
