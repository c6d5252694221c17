"""generate_fast (static KV cache, last-position head) gives exactly what the model and generate() give."""

import pytest
import torch

from gpt_scratch.generation.fast_generate import StaticKVCache, forward_with_static_cache, generate_fast
from gpt_scratch.modeling_gpt_scratch import GPTScratchForCausalLM

from conftest import tiny_config


def tiny_lm(seed: int = 0, **overrides) -> GPTScratchForCausalLM:
    torch.manual_seed(seed)
    config = tiny_config(
        **{"vocab_size": 97, "context_length": 48, "emb_dim": 32, "n_heads": 4, "drop_rate": 0.1, **overrides}
    )
    model = GPTScratchForCausalLM(config).eval()
    model.generation_config.pad_token_id = config.eos_token_id
    return model


@pytest.mark.parametrize("qkv_bias", [False, True])
@pytest.mark.parametrize("batch", [1, 3])
def test_greedy_equals_generate(batch, qkv_bias):
    model = tiny_lm(qkv_bias=qkv_bias)
    ids = torch.randint(0, 97, (batch, 5), generator=torch.Generator().manual_seed(1))
    expected = model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=False, eos_token_id=None
    )
    assert torch.equal(generate_fast(model, ids, max_new_tokens=20), expected)


def test_static_cache_gives_the_models_logits_at_every_step():
    model = tiny_lm()
    ids = torch.randint(0, 97, (2, 12), generator=torch.Generator().manual_seed(2))
    full = model(ids, use_cache=False).logits  # (B, T, vocab)
    cache = StaticKVCache(2, 2, 4, 12, 8)
    with torch.no_grad():
        hidden = forward_with_static_cache(model.model, ids[:, :7], cache)  # prefill 7 tokens
        torch.testing.assert_close(model.out_head(hidden), full[:, :7], rtol=1e-5, atol=1e-5)
        for t in range(7, 12):  # then one token at a time
            step = model.out_head(forward_with_static_cache(model.model, ids[:, t : t + 1], cache))
            torch.testing.assert_close(step[:, 0], full[:, t], rtol=1e-5, atol=1e-5)
    assert cache.length == 12


def test_sampling_is_reproducible_and_respects_top_k():
    model = tiny_lm()
    ids = torch.randint(0, 97, (2, 4), generator=torch.Generator().manual_seed(3))
    torch.manual_seed(7)
    first = generate_fast(model, ids, max_new_tokens=10, temperature=1.5, top_k=1)
    torch.manual_seed(8)
    second = generate_fast(model, ids, max_new_tokens=10, temperature=1.5, top_k=1)
    assert torch.equal(first, second)  # top_k=1 leaves one candidate: sampling is greedy
    assert torch.equal(first, generate_fast(model, ids, max_new_tokens=10))
    torch.manual_seed(9)
    sampled = generate_fast(model, ids, max_new_tokens=10, temperature=2.0)
    torch.manual_seed(9)
    assert torch.equal(sampled, generate_fast(model, ids, max_new_tokens=10, temperature=2.0))


def test_eos_stops_and_pads_finished_rows():
    model = tiny_lm()
    ids = torch.randint(0, 97, (1, 4), generator=torch.Generator().manual_seed(4))
    greedy = generate_fast(model, ids, max_new_tokens=12)
    eos = int(greedy[0, 6])  # pretend the third generated token is end-of-text
    stopped = generate_fast(model, ids, max_new_tokens=12, eos_token_id=eos)
    first_eos = int((greedy[0, 4:] == eos).nonzero()[0]) + 4
    assert torch.equal(stopped, greedy[:, : first_eos + 1])


def test_past_the_context_crops_it_as_the_book():
    """40 prompt + 20 new tokens in a context of 48: the book's generate_text_simple crops to the last 48."""
    from gpt_scratch.generation.book import generate_text_simple

    model = tiny_lm()
    ids = torch.randint(0, 97, (2, 40), generator=torch.Generator().manual_seed(5))
    expected = generate_text_simple(model, ids, 20, context_size=48)
    assert torch.equal(generate_fast(model, ids, max_new_tokens=20), expected)
    assert torch.equal(
        generate_fast(model, torch.cat([ids, ids], 1), max_new_tokens=3),
        generate_text_simple(model, torch.cat([ids, ids], 1), 3, context_size=48),
    )


def test_clear_errors():
    model = tiny_lm()
    ids = torch.zeros(1, 40, dtype=torch.long)
    with pytest.raises(ValueError, match="eval"):
        generate_fast(model.train(), ids[:, :4], max_new_tokens=2)
    with pytest.raises(ValueError, match="StaticKVCache holds 3"):
        forward_with_static_cache(model.eval().model, ids[:, :4], StaticKVCache(2, 1, 4, 3, 8))
