"""Tasks: what a batch's loss (and metrics, and a sample) is. A workflow hands the loop one of these."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from gpt_scratch.generation.book import generate_text_simple, text_to_token_ids, token_ids_to_text
from gpt_scratch.generation.fast_generate import generate_fast
from gpt_scratch.modeling_gpt_scratch import GPTScratchForCausalLM


class Task:
    """How the loop turns a batch into a loss. Subclass it and override what your workflow needs.

    - `loss(model, batch)`: a scalar tensor to minimise (required).
    - `metrics(model, batch)`: `{name: (numerator, denominator)}`; the loop sums both over batches and processes
      and reports numerator / denominator (accuracy: (correct, examples)). Called with the model in eval mode.
    - `sample(model, tokenizer)`: text printed after each epoch (the model is unwrapped and in eval mode).
    - `num_tokens(batch)`: the tokens a batch feeds the model, for "tokens seen".
    - `derived_metrics(metrics)`: extra final metrics computed from the others (e.g. perplexity).
    """

    name: str = "task"

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def metrics(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, tuple[Any, Any]]:
        return {}

    def sample(self, model: torch.nn.Module, tokenizer: Any) -> str | None:
        return None

    def num_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["input_ids"].numel())

    def derived_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        return {}


class CausalLMTask(Task):
    """Next-token prediction on batches of {input_ids, target_ids} with pre-shifted targets (ch. 5 and 7).

    The loss is the book's `calc_loss_batch`: cross-entropy of `model(input_ids).logits` against `target_ids`,
    positions with -100 ignored. The sample is the book's `generate_and_print_sample`: greedy decoding of
    `max_new_tokens` tokens after `start_context` (a prompt formatted by the workflow, for instructions), with a
    KV cache where the context allows (the book re-runs the whole context for each token: the same tokens).
    """

    def __init__(
        self,
        start_context: str | None = "Every effort moves you",
        max_new_tokens: int = 50,
        name: str = "pretraining",
    ):
        self.start_context = start_context
        self.max_new_tokens = max_new_tokens
        self.name = name

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = model(input_ids=batch["input_ids"]).logits  # (B, T, vocab)
        return F.cross_entropy(logits.flatten(0, 1).float(), batch["target_ids"].flatten(), ignore_index=-100)

    def sample(self, model: torch.nn.Module, tokenizer: Any) -> str | None:
        if tokenizer is None or not self.start_context:
            return None
        device = next(model.parameters()).device
        idx = text_to_token_ids(self.start_context, tokenizer).to(device)
        context_length = model.config.context_length
        if isinstance(model, GPTScratchForCausalLM) and idx.shape[1] + self.max_new_tokens <= context_length:
            out = generate_fast(model, idx, self.max_new_tokens)  # the same greedy tokens, with a KV cache
        else:
            out = generate_text_simple(model, idx, self.max_new_tokens, context_size=context_length)
        return token_ids_to_text(out, tokenizer).replace("\n", " ")  # compact print format, as the book

    def derived_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        return {"perplexity": math.exp(min(metrics["val_loss"], 50.0))} if "val_loss" in metrics else {}


class ClassificationTask(Task):
    """Sequence classification on batches of {input_ids, attention_mask?, labels} (ch. 6).

    The loss is the classifier's own (`model(..., labels=labels).loss`, cross-entropy of the last real token's
    logits); the metric is accuracy from the argmax of those logits, as the book's `calc_accuracy_loader`.
    """

    name = "classification"

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(
            input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"), labels=batch["labels"]
        ).loss

    def metrics(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, tuple[Any, Any]]:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits
        correct = (logits.argmax(dim=-1) == batch["labels"]).sum()
        return {"accuracy": (correct, batch["labels"].numel())}
