"""The book's plain decoding functions agree with transformers' generate(), and the text helpers round-trip."""

import pytest
import tiktoken
import torch
from torch import nn

from gpt_scratch.generation.book import generate, generate_text_simple, text_to_token_ids, token_ids_to_text
from gpt_scratch.modeling_gpt_scratch import GPTScratchForCausalLM

from conftest import BOOK_IDS, BOOK_TEXT, tiny_config

pytestmark = pytest.mark.needs_shared  # GPT-2's BPE files or the book's data, from ../shared

CONTEXT_LENGTH = 24


@pytest.fixture(scope="module")
def model() -> GPTScratchForCausalLM:
    torch.manual_seed(0)
    config = tiny_config(
        vocab_size=101,
        context_length=CONTEXT_LENGTH,
        emb_dim=32,
        n_heads=4,
        drop_rate=0.1,  # eval() must switch it off
        qkv_bias=True,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    return GPTScratchForCausalLM(config).eval()


@pytest.fixture(scope="module")
def prompts() -> torch.Tensor:
    return torch.tensor([[5, 17, 42, 8, 99], [3, 3, 71, 0, 64]])


def hf_greedy(model: GPTScratchForCausalLM, input_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    return model.generate(
        input_ids,
        attention_mask=torch.ones_like(input_ids),
        max_new_tokens=max_new_tokens,
        min_new_tokens=max_new_tokens,
        do_sample=False,
    )


class BookStyleGPT(nn.Module):
    """A model whose forward returns the logits tensor itself, as the book's GPTModel does."""

    def __init__(self, model: GPTScratchForCausalLM):
        super().__init__()
        self.model = model

    def forward(self, in_idx: torch.Tensor) -> torch.Tensor:
        return self.model(in_idx).logits


def test_generate_text_simple_equals_transformers_greedy(model, prompts):
    max_new_tokens = CONTEXT_LENGTH - prompts.shape[1]  # fill the whole context
    ours = generate_text_simple(model, prompts, max_new_tokens, context_size=model.config.context_length)
    theirs = hf_greedy(model, prompts, max_new_tokens)
    assert ours.shape == (2, CONTEXT_LENGTH)
    assert torch.equal(ours[:, : prompts.shape[1]], prompts)
    assert ours.tolist() == theirs.tolist()


def test_generate_text_simple_accepts_a_model_returning_a_tensor(model, prompts):
    expected = generate_text_simple(model, prompts, 6, context_size=CONTEXT_LENGTH)
    assert torch.equal(
        generate_text_simple(BookStyleGPT(model), prompts, 6, context_size=CONTEXT_LENGTH), expected
    )


def test_generate_text_simple_crops_the_context(model, prompts):
    """Past the context size only the last context_size tokens are seen: decoding from the long prompt gives the
    same new tokens as decoding from its cropped tail. It also runs past the model's context_length."""
    context_size = 4
    new = 2 * CONTEXT_LENGTH
    from_full = generate_text_simple(model, prompts, new, context_size)
    from_tail = generate_text_simple(model, prompts[:, -context_size:], new, context_size)
    assert from_full.shape == (2, prompts.shape[1] + new)
    assert torch.equal(from_full[:, prompts.shape[1] :], from_tail[:, context_size:])


def test_generate_without_temperature_is_greedy(model, prompts):
    greedy = generate_text_simple(model, prompts, 12, CONTEXT_LENGTH)
    assert torch.equal(generate(model, prompts, 12, CONTEXT_LENGTH), greedy)
    assert torch.equal(generate(model, prompts, 12, CONTEXT_LENGTH, temperature=0.0, top_k=5), greedy)
    assert torch.equal(generate(BookStyleGPT(model), prompts, 12, CONTEXT_LENGTH), greedy)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_top_k_1_with_temperature_is_greedy(model, prompts, seed):
    greedy = generate_text_simple(model, prompts, 12, CONTEXT_LENGTH)
    torch.manual_seed(seed)
    assert torch.equal(generate(model, prompts, 12, CONTEXT_LENGTH, temperature=1.5, top_k=1), greedy)


def test_eos_stops_early_without_appending_it(model, prompts):
    prompt = prompts[:1]
    greedy = generate_text_simple(model, prompt, 12, CONTEXT_LENGTH)[0, prompt.shape[1] :].tolist()
    eos_id = greedy[3]
    first = greedy.index(eos_id)  # decoding stops at the first time eos_id is chosen
    out = generate(model, prompt, 12, CONTEXT_LENGTH, eos_id=eos_id)
    assert out[0].tolist() == prompt[0].tolist() + greedy[:first]
    assert out.shape[1] < prompt.shape[1] + 12
    # An id that never comes up does not stop anything.
    unused = next(i for i in range(model.config.vocab_size) if i not in greedy)
    assert (
        generate(model, prompt, 12, CONTEXT_LENGTH, eos_id=unused)[0].tolist() == prompt[0].tolist() + greedy
    )


def test_eos_needs_a_batch_of_one(model, prompts):
    with pytest.raises(ValueError, match="batch size 1"):
        generate(model, prompts, 3, CONTEXT_LENGTH, eos_id=0)


def test_seeded_sampling_is_reproducible_and_stays_in_the_top_k(model, prompts):
    def sample(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return generate(model, prompts, 15, CONTEXT_LENGTH, temperature=2.0, top_k=10)

    first, again, other = sample(123), sample(123), sample(7)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert not torch.equal(first, generate_text_simple(model, prompts, 15, CONTEXT_LENGTH))
    # Every sampled token was among the 10 highest logits at its step.
    with torch.no_grad():
        for step in range(prompts.shape[1], first.shape[1]):
            logits = model(first[:, :step]).logits[:, -1, :]
            top10 = torch.topk(logits, 10).indices
            assert (top10 == first[:, step : step + 1]).any(dim=-1).all()


def test_sampling_without_top_k_reaches_beyond_greedy(model):
    """Temperature alone samples from the whole vocabulary: a high temperature spreads the choices out."""
    torch.manual_seed(0)
    prompt = torch.tensor([[1, 2, 3]])
    out = generate(model, prompt.repeat(64, 1), 1, CONTEXT_LENGTH, temperature=5.0)
    assert len(set(out[:, -1].tolist())) > 10


def test_bad_arguments_raise(model, prompts):
    with pytest.raises(ValueError, match="batch, num_tokens"):
        generate_text_simple(model, prompts[0], 2, CONTEXT_LENGTH)
    with pytest.raises(ValueError, match="top_k"):
        generate(model, prompts, 2, CONTEXT_LENGTH, top_k=0)
    with pytest.raises(ValueError, match="temperature"):
        generate(model, prompts, 2, CONTEXT_LENGTH, temperature=-1.0)

    class NoLogits(nn.Module):
        def forward(self, idx):
            return {"scores": idx}

    with pytest.raises(TypeError, match="logits"):
        generate_text_simple(NoLogits(), prompts, 1, CONTEXT_LENGTH)


def test_text_helpers_with_a_transformers_tokenizer(hf_gpt2_tokenizer):
    ids = text_to_token_ids(BOOK_TEXT, hf_gpt2_tokenizer)
    assert ids.shape == (1, len(BOOK_IDS)) and ids.dtype == torch.long
    assert ids[0].tolist() == BOOK_IDS
    assert token_ids_to_text(ids, hf_gpt2_tokenizer) == BOOK_TEXT
    assert token_ids_to_text(ids[0], hf_gpt2_tokenizer) == BOOK_TEXT
    assert token_ids_to_text(BOOK_IDS, hf_gpt2_tokenizer) == BOOK_TEXT


def test_text_helpers_with_tiktoken_as_in_the_book():
    tokenizer = tiktoken.get_encoding("gpt2")
    ids = text_to_token_ids(BOOK_TEXT, tokenizer)
    assert ids[0].tolist() == BOOK_IDS
    assert token_ids_to_text(ids, tokenizer) == BOOK_TEXT


def test_token_ids_to_text_rejects_a_batch(hf_gpt2_tokenizer):
    with pytest.raises(ValueError, match="batch of 2"):
        token_ids_to_text(torch.tensor([BOOK_IDS, BOOK_IDS]), hf_gpt2_tokenizer)


def test_book_pipeline_end_to_end(hf_gpt2_tokenizer):
    """text -> ids -> generate -> text, the book's chapter 5 loop, on a model with GPT-2's vocabulary size."""
    torch.manual_seed(0)
    config = tiny_config(context_length=16, n_layers=1, drop_rate=0.1)
    gpt = GPTScratchForCausalLM(config).eval()
    idx = text_to_token_ids("Every effort moves you", hf_gpt2_tokenizer)
    torch.manual_seed(123)
    out = generate(gpt, idx, 6, context_size=gpt.config.context_length, temperature=1.4, top_k=25)
    text = token_ids_to_text(out, hf_gpt2_tokenizer)
    assert text.startswith("Every effort moves you")
    assert out.shape[1] == idx.shape[1] + 6
