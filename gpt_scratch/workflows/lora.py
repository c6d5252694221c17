"""LoRA (appendix E) through PEFT: low-rank adapters on the attention and feed-forward linear layers.

The book replaces every `nn.Linear` with `LinearWithLoRA` (W x + alpha * x A B). Here PEFT does the same on our
module names, the new classification head stays fully trainable (`modules_to_save`), and the result saves and
loads as a PEFT adapter, or merges into the weights (`merge_lora`) for a plain gpt_scratch folder:

    model = add_lora(classifier, rank=16, alpha=16)      # appendix E's rank and alpha
    ...train...
    model.save_pretrained("runs/spam/adapter")            # adapter_config.json + adapter_model.safetensors
    merged = merge_lora(model)                             # a GPTScratchForSequenceClassification again

PEFT scales the update by alpha / rank (the LoRA paper), the book by alpha: rank 16, alpha 16 is a scale of 1
here and of 16 in the book. Our attention has one fused `qkv` projection where the book has three, so a rank-r
adapter on it has r * (d + 3d) parameters where the book's three have 3 * r * (d + d).
"""

from __future__ import annotations

import os

import torch
from peft import LoraConfig, PeftModel, TaskType, get_peft_model

# The linear layers of every TransformerBlock (fused q/k/v, attention output, the feed-forward's two layers): the
# modeling file gives them to PEFT as this model type's default targets.
from gpt_scratch.modeling_gpt_scratch import LORA_TARGET_MODULES

HEAD_MODULES = ["score"]  # the classifier's new output head: trained in full, saved with the adapter


def lora_config(
    rank: int = 16,
    alpha: float | None = None,
    dropout: float = 0.0,
    target_modules: list[str] | None = None,
) -> LoraConfig:
    """PEFT's LoraConfig for a GPTScratchForSequenceClassification (alpha defaults to rank, as appendix E)."""
    if rank < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {rank}")
    return LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=rank,
        lora_alpha=rank if alpha is None else alpha,
        lora_dropout=dropout,
        target_modules=list(target_modules or LORA_TARGET_MODULES),
        modules_to_save=list(HEAD_MODULES),
    )


def add_lora(
    model: torch.nn.Module,
    rank: int = 16,
    alpha: float | None = None,
    dropout: float = 0.0,
    target_modules: list[str] | None = None,
) -> PeftModel:
    """`model` wrapped by PEFT: every weight frozen but the LoRA matrices and the `score` head."""
    return get_peft_model(model, lora_config(rank, alpha, dropout, target_modules))


def merge_lora(model: PeftModel) -> torch.nn.Module:
    """The base model with W + (alpha / r) B A folded into each adapted layer and the trained head in place."""
    return model.merge_and_unload()


def load_lora(
    base_model: torch.nn.Module, adapter_dir: str | os.PathLike, merge: bool = False
) -> torch.nn.Module:
    """A saved adapter on `base_model` (the classifier it was trained from; its `score` head is replaced by the
    adapter's). `merge=True` returns the plain merged model."""
    model = PeftModel.from_pretrained(base_model, str(adapter_dir))
    return merge_lora(model) if merge else model


__all__ = ["LORA_TARGET_MODULES", "HEAD_MODULES", "lora_config", "add_lora", "merge_lora", "load_lora"]
