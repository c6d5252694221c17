"""Lean decoding for GPTScratchForCausalLM: a preallocated (static) KV cache and a plain loop.

``model.generate()`` of transformers is general: logits processors, stopping criteria, a growing cache, an output
object per step. For plain greedy decoding or temperature / top-k sampling this module does the same job with less
work per token:

- the prompt runs once (prefill) and fills a cache allocated once for prompt + new tokens;
- each new token runs alone through the blocks, writing its keys and values into the cache in place;
- the output head is computed for the last position only;
- the generated ids go into one preallocated (batch, prompt + new) tensor.

Greedy decoding gives exactly the tokens of ``model.generate(do_sample=False)`` (``tests/test_fast_generate.py``).

    out = generate_fast(model, input_ids, max_new_tokens=200)  # (batch, prompt + 200)
"""

from __future__ import annotations

import torch

from gpt_scratch.modeling_gpt_scratch import GPTScratchForCausalLM, GPTScratchModel


class StaticKVCache:
    """Keys and values of every layer, allocated once: per layer two (B, n_heads, max_length, head_dim) buffers.

    ``update(k, v, layer_idx)`` is what ``MultiHeadAttention`` calls: it writes the new keys/values at positions
    ``length ...`` and returns views of everything stored so far. ``advance(n)`` moves ``length`` on once all layers
    have seen the ``n`` new tokens.
    """

    def __init__(
        self,
        n_layers: int,
        batch_size: int,
        n_heads: int,
        max_length: int,
        head_dim: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ):
        shape = (batch_size, n_heads, max_length, head_dim)
        self.keys = [torch.empty(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.values = [torch.empty(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.max_length = max_length
        self.length = 0  # tokens stored in every layer

    def update(self, k: torch.Tensor, v: torch.Tensor, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        end = self.length + k.shape[2]
        if end > self.max_length:
            raise ValueError(f"StaticKVCache holds {self.max_length} tokens, asked to store {end}")
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        keys[:, :, self.length : end] = k
        values[:, :, self.length : end] = v
        return keys[:, :, :end], values[:, :, :end]  # (B, nh, S, hd)

    def advance(self, num_tokens: int) -> None:
        self.length += num_tokens


def forward_with_static_cache(
    backbone: GPTScratchModel, input_ids: torch.Tensor, cache: StaticKVCache
) -> torch.Tensor:
    """Hidden states (B, T, emb_dim) of ``input_ids`` placed after the ``cache.length`` tokens already cached.

    No padding, no attention mask: the prompt attends causally (SDPA's ``is_causal``), a single new token attends
    to the whole cache. Uses the model's own blocks, so it computes exactly what ``GPTScratchModel`` computes.
    """
    start, num_tokens = cache.length, input_ids.shape[1]
    positions = torch.arange(start, start + num_tokens, device=input_ids.device)
    x = backbone.tok_emb(input_ids) + backbone.pos_emb(positions)  # (B, T, emb_dim); dropout is off in eval
    for block in backbone.trf_blocks:
        x = block(x, cache=cache)  # no mask: causal over the new tokens, each seeing the whole cache
    cache.advance(num_tokens)
    return backbone.final_norm(x)


def _next_token(logits: torch.Tensor, temperature: float, top_k: int | None) -> torch.Tensor:
    """(B, vocab) logits -> (B,) ids: argmax when temperature is 0, else top-k filtered sampling (the book's)."""
    if temperature == 0.0:
        return logits.argmax(dim=-1)
    if top_k is not None:
        top_logits, _ = torch.topk(logits, min(top_k, logits.shape[-1]))
        logits = logits.masked_fill(logits < top_logits[:, -1:], float("-inf"))
    probs = torch.softmax(logits / temperature, dim=-1)
    return torch.multinomial(probs, num_samples=1).squeeze(-1)


@torch.inference_mode()
def generate_fast(
    model: GPTScratchForCausalLM,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    eos_token_id: int | None = None,
) -> torch.Tensor:
    """Decode ``max_new_tokens`` after ``input_ids`` (B, T, no padding); returns (B, T + generated) ids.

    Past the model's context, each new token sees the last ``context_length`` tokens, as the book's ``generate``.

    Greedy when ``temperature`` is 0; else the book's top-k + temperature sampling (seed torch to repeat it).
    With ``eos_token_id``, decoding stops once every row has produced it; rows that finished earlier are filled
    with ``eos_token_id`` (as ``generate()`` pads them).
    """
    if model.training:
        raise ValueError("generate_fast needs model.eval(): dropout would make decoding random")
    if input_ids.dim() != 2 or input_ids.shape[1] == 0:
        raise ValueError(
            f"generate_fast: input_ids must be (batch, num_tokens >= 1), got {tuple(input_ids.shape)}"
        )
    if temperature < 0.0:
        raise ValueError(f"generate_fast: temperature must be >= 0, got {temperature}")
    config = model.config
    batch_size, prompt_length = input_ids.shape
    total = prompt_length + max_new_tokens
    # New tokens decoded with the cache: while every token fed in has a position < context_length. Past that
    # each token sees the last context_length tokens, run whole, as the book's generate crops its context.
    cached_steps = max(0, min(max_new_tokens, config.context_length - prompt_length + 1))
    weight = model.model.tok_emb.weight  # not out_head's: a quantized head holds packed weights
    cache = StaticKVCache(
        config.n_layers,
        batch_size,
        config.n_heads,
        min(total, config.context_length),
        config.head_dim,
        weight.dtype,
        weight.device,
    )
    out = torch.empty(batch_size, total, dtype=torch.long, device=input_ids.device)
    out[:, :prompt_length] = input_ids
    finished = torch.zeros(batch_size, dtype=torch.bool, device=input_ids.device)

    tokens = input_ids
    for step in range(max_new_tokens):
        end = prompt_length + step
        if step < cached_steps:
            hidden = forward_with_static_cache(model.model, tokens, cache)[:, -1]
        else:  # the context is full: the book's idx[:, -context_size:], without a cache
            hidden = model.model(
                input_ids=out[:, max(0, end - config.context_length) : end]
            ).last_hidden_state[:, -1]
        next_ids = _next_token(model.out_head(hidden), temperature, top_k)  # (B,)
        if eos_token_id is not None:
            next_ids = next_ids.masked_fill(finished, eos_token_id)
            finished |= next_ids == eos_token_id
        out[:, end] = next_ids
        if eos_token_id is not None and bool(finished.all()):
            return out[:, : end + 1]
        tokens = out[:, end : end + 1]  # (B, 1)
    return out


__all__ = ["StaticKVCache", "forward_with_static_cache", "generate_fast"]
