"""The book's own decoding (chapters 4 and 5), as plain functions over any model that returns logits.

For readers of the book: `generate_text_simple` (greedy, chapter 4) and `generate` (temperature, top-k and an
end-of-text id, chapter 5) work with the book's `GPTModel`, whose forward returns a logits tensor, and with
`GPTScratchForCausalLM`, whose forward returns an output with `.logits`. They re-run the whole (cropped)
context at every step, as the book does; `model.generate()` of transformers does the same job with a KV cache
and is what to use in practice. For greedy decoding the two agree token for token
(`tests/test_generation_book.py`).

    model.eval()
    idx = text_to_token_ids("Every effort moves you", tokenizer)
    out = generate(model, idx, max_new_tokens=15, context_size=model.config.context_length, top_k=25, temperature=1.4)
    print(token_ids_to_text(out, tokenizer))
"""

from typing import Any

import torch
from torch import nn


def _last_logits(model: nn.Module, idx_cond: torch.Tensor) -> torch.Tensor:
    """Logits of the last position, (batch, vocab), from a model returning a tensor or an output with `.logits`."""
    with torch.no_grad():
        output = model(idx_cond)
    logits = output if isinstance(output, torch.Tensor) else getattr(output, "logits", None)
    if logits is None:
        raise TypeError(
            f"gpt_scratch.generation: the model returned {type(output).__name__}, "
            "expected a logits tensor or an output with a `.logits` attribute"
        )
    return logits[:, -1, :]


def _check_idx(idx: torch.Tensor, context_size: int) -> None:
    if not isinstance(idx, torch.Tensor) or idx.dim() != 2:
        shape = tuple(idx.shape) if isinstance(idx, torch.Tensor) else type(idx).__name__
        raise ValueError(
            f"gpt_scratch.generation: idx must be a (batch, num_tokens) tensor of ids, got {shape}"
        )
    if context_size < 1:
        raise ValueError(f"gpt_scratch.generation: context_size must be positive, got {context_size}")


def generate_text_simple(
    model: nn.Module, idx: torch.Tensor, max_new_tokens: int, context_size: int
) -> torch.Tensor:
    """Chapter 4: greedy decoding. idx is (batch, num_tokens); returns (batch, num_tokens + max_new_tokens).

    At each step the context is cropped to its last `context_size` tokens and run through the model; the token
    with the highest logit is appended.
    """
    _check_idx(idx, context_size)
    for _ in range(max_new_tokens):
        idx_cond = idx[:, -context_size:]  # crop to the supported context
        logits = _last_logits(model, idx_cond)  # (batch, vocab)
        probas = torch.softmax(logits, dim=-1)  # softmax is monotonic: kept to follow the book
        idx_next = torch.argmax(probas, dim=-1, keepdim=True)  # (batch, 1)
        idx = torch.cat((idx, idx_next), dim=1)  # (batch, num_tokens + 1)
    return idx


def generate(
    model: nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    context_size: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    eos_id: int | None = None,
) -> torch.Tensor:
    """Chapter 5: decoding with top-k filtering, then temperature sampling; greedy when temperature is 0.

    top_k keeps the k highest logits of each row (the others become -inf); temperature > 0 divides the logits
    and samples the next token with `torch.multinomial` (seed torch for reproducible samples). If eos_id is
    given, decoding stops as soon as that token is chosen, and it is not appended, as in the book; this early
    stop is defined for a batch of one sequence only (use `model.generate()` for batches).
    """
    _check_idx(idx, context_size)
    if temperature < 0.0:
        raise ValueError(f"gpt_scratch.generation.generate: temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"gpt_scratch.generation.generate: top_k must be a positive integer, got {top_k}")
    if eos_id is not None and idx.shape[0] != 1:
        raise ValueError(
            f"gpt_scratch.generation.generate: eos_id stopping is defined for batch size 1 (as in the book), "
            f"got batch size {idx.shape[0]}; use model.generate(..., eos_token_id=...) for batches"
        )
    for _ in range(max_new_tokens):
        idx_cond = idx[:, -context_size:]
        logits = _last_logits(model, idx_cond)  # (batch, vocab)

        if top_k is not None:
            top_logits, _ = torch.topk(logits, min(top_k, logits.shape[-1]))
            # The book compares with top_logits[:, -1]; the kept dim makes it right for every row of a batch.
            min_val = top_logits[:, -1:]  # (batch, 1)
            logits = torch.where(logits < min_val, torch.tensor(float("-inf"), device=logits.device), logits)

        if temperature > 0.0:
            logits = logits / temperature
            probs = torch.softmax(logits, dim=-1)
            idx_next = torch.multinomial(probs, num_samples=1)  # (batch, 1)
        else:
            idx_next = torch.argmax(logits, dim=-1, keepdim=True)  # (batch, 1)

        if eos_id is not None and idx_next.item() == eos_id:
            break  # stop at end-of-text, as the book does
        idx = torch.cat((idx, idx_next), dim=1)
    return idx


def text_to_token_ids(text: str, tokenizer: Any) -> torch.Tensor:
    """Encode text to a (1, num_tokens) tensor with a transformers tokenizer or a tiktoken encoding.

    `<|endoftext|>` in the text is read as the special token (tiktoken needs it allowed explicitly, as the
    book does); a transformers tokenizer is called with its defaults, `tokenizer.encode(text)`.
    """
    if _is_tiktoken(tokenizer):
        encoded = tokenizer.encode(text, allowed_special={"<|endoftext|>"})
    else:
        encoded = tokenizer.encode(text)
    encoded_tensor = torch.tensor(encoded, dtype=torch.long).unsqueeze(0)  # add the batch dimension
    return encoded_tensor


def token_ids_to_text(token_ids: torch.Tensor | list[int], tokenizer: Any) -> str:
    """Decode a (1, num_tokens) or (num_tokens,) tensor, or a list of ids, back to text."""
    if isinstance(token_ids, torch.Tensor):
        if token_ids.dim() == 2:
            if token_ids.shape[0] != 1:
                raise ValueError(
                    f"gpt_scratch.generation.token_ids_to_text: expected one sequence, got a batch of "
                    f"{token_ids.shape[0]}; decode each row separately"
                )
            token_ids = token_ids.squeeze(0)  # remove the batch dimension
        elif token_ids.dim() != 1:
            raise ValueError(
                f"gpt_scratch.generation.token_ids_to_text: expected (1, num_tokens) or (num_tokens,), "
                f"got shape {tuple(token_ids.shape)}"
            )
        token_ids = token_ids.tolist()
    return tokenizer.decode(list(token_ids))


def _is_tiktoken(tokenizer: Any) -> bool:
    try:
        import tiktoken
    except ImportError:  # pragma: no cover - tiktoken is a dependency of the package
        return False
    return isinstance(tokenizer, tiktoken.Encoding)
