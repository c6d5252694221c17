"""Chapter 3's teaching attention against the book's printed numbers, and against the model's fast attention."""

import pytest
import torch

from gpt_scratch.modeling_gpt_scratch import MultiHeadAttention
from gpt_scratch.teaching.attention import (
    CausalAttention,
    MultiHeadAttentionWrapper,
    SelfAttention_v1,
    SelfAttention_v2,
    simplified_self_attention,
)

from conftest import tiny_config


def book_inputs() -> torch.Tensor:
    """The 3-dimensional embeddings of "Your journey starts with one step" (section 3.3.1)."""
    return torch.tensor(
        [
            [0.43, 0.15, 0.89],  # Your     (x^1)
            [0.55, 0.87, 0.66],  # journey  (x^2)
            [0.57, 0.85, 0.64],  # starts   (x^3)
            [0.22, 0.58, 0.33],  # with     (x^4)
            [0.77, 0.25, 0.10],  # one      (x^5)
            [0.05, 0.80, 0.55],  # step     (x^6)
        ]
    )


def test_simplified_self_attention_matches_book():
    context_vecs = simplified_self_attention(book_inputs())
    # The context vector of "journey", computed step by step in section 3.3.1.
    torch.testing.assert_close(context_vecs[1], torch.tensor([0.4419, 0.6515, 0.5683]), atol=1e-4, rtol=0)
    # All six context vectors, section 3.3.2.
    expected = torch.tensor(
        [
            [0.4421, 0.5931, 0.5790],
            [0.4419, 0.6515, 0.5683],
            [0.4431, 0.6496, 0.5671],
            [0.4304, 0.6298, 0.5510],
            [0.4671, 0.5910, 0.5266],
            [0.4177, 0.6503, 0.5645],
        ]
    )
    torch.testing.assert_close(context_vecs, expected, atol=1e-4, rtol=0)


def test_simplified_self_attention_rejects_batches():
    with pytest.raises(ValueError, match="num_tokens, d_in"):
        simplified_self_attention(book_inputs().unsqueeze(0))


def test_self_attention_v1_matches_book():
    torch.manual_seed(123)
    sa_v1 = SelfAttention_v1(d_in=3, d_out=2)
    expected = torch.tensor(
        [
            [0.2996, 0.8053],
            [0.3061, 0.8210],
            [0.3058, 0.8203],
            [0.2948, 0.7939],
            [0.2927, 0.7891],
            [0.2990, 0.8040],
        ]
    )
    torch.testing.assert_close(sa_v1(book_inputs()).detach(), expected, atol=1e-4, rtol=0)


def test_self_attention_v2_matches_book():
    torch.manual_seed(789)
    sa_v2 = SelfAttention_v2(d_in=3, d_out=2)
    expected = torch.tensor(
        [
            [-0.0739, 0.0713],
            [-0.0748, 0.0703],
            [-0.0749, 0.0702],
            [-0.0760, 0.0685],
            [-0.0763, 0.0679],
            [-0.0754, 0.0693],
        ]
    )
    torch.testing.assert_close(sa_v2(book_inputs()).detach(), expected, atol=1e-4, rtol=0)


def test_v1_with_v2_weights_gives_v2_output():
    """Exercise 3.1: nn.Linear stores the transposed matrix; copy it across and the two agree."""
    torch.manual_seed(789)
    sa_v2 = SelfAttention_v2(d_in=3, d_out=2)
    sa_v1 = SelfAttention_v1(d_in=3, d_out=2)
    with torch.no_grad():
        sa_v1.W_query.copy_(sa_v2.W_query.weight.T)
        sa_v1.W_key.copy_(sa_v2.W_key.weight.T)
        sa_v1.W_value.copy_(sa_v2.W_value.weight.T)
    torch.testing.assert_close(sa_v1(book_inputs()), sa_v2(book_inputs()), atol=1e-6, rtol=0)


# The causal head and the two-head wrapper of sections 3.5.3 and 3.6.1 (seed 123, batch of two copies).
BOOK_CAUSAL_HEAD = torch.tensor(
    [
        [-0.4519, 0.2216],
        [-0.5874, 0.0058],
        [-0.6300, -0.0632],
        [-0.5675, -0.0843],
        [-0.5526, -0.0981],
        [-0.5299, -0.1081],
    ]
)
BOOK_SECOND_HEAD = torch.tensor(
    [
        [0.4772, 0.1063],
        [0.5891, 0.3257],
        [0.6202, 0.3860],
        [0.5478, 0.3589],
        [0.5321, 0.3428],
        [0.5077, 0.3493],
    ]
)


def test_causal_attention_matches_book():
    batch = torch.stack((book_inputs(), book_inputs()), dim=0)
    torch.manual_seed(123)
    ca = CausalAttention(d_in=3, d_out=2, context_length=batch.shape[1], dropout=0.0)
    context_vecs = ca(batch).detach()
    assert context_vecs.shape == (2, 6, 2)
    torch.testing.assert_close(context_vecs, BOOK_CAUSAL_HEAD.expand(2, 6, 2), atol=1e-4, rtol=0)
    # Causality: the first token's output depends on the first token only.
    changed = batch.clone()
    changed[:, 1:] += 1.0
    torch.testing.assert_close(ca(changed)[:, 0], ca(batch)[:, 0])


def test_causal_attention_rejects_too_long_input():
    ca = CausalAttention(d_in=3, d_out=2, context_length=4, dropout=0.0)
    with pytest.raises(ValueError, match="context_length 4"):
        ca(torch.stack((book_inputs(), book_inputs())))


def test_multi_head_attention_wrapper_matches_book():
    batch = torch.stack((book_inputs(), book_inputs()), dim=0)
    torch.manual_seed(123)
    mha = MultiHeadAttentionWrapper(d_in=3, d_out=2, context_length=batch.shape[1], dropout=0.0, num_heads=2)
    context_vecs = mha(batch).detach()
    assert context_vecs.shape == (2, 6, 4)
    expected = torch.cat((BOOK_CAUSAL_HEAD, BOOK_SECOND_HEAD), dim=-1).expand(2, 6, 4)
    torch.testing.assert_close(context_vecs, expected, atol=1e-4, rtol=0)


def copy_wrapper_into_fast(wrapper: MultiHeadAttentionWrapper, fast: MultiHeadAttention) -> None:
    """Give the fused attention the wrapper's weights: head h fills rows h*head_dim:(h+1)*head_dim of the
    query, key and value blocks of qkv; out_proj becomes the identity, as the wrapper has no output projection."""
    d_out = fast.out_proj.in_features
    head_dim = wrapper.heads[0].d_out
    with torch.no_grad():
        for h, head in enumerate(wrapper.heads):
            rows = slice(h * head_dim, (h + 1) * head_dim)
            for block, linear in enumerate((head.W_query, head.W_key, head.W_value)):
                block_rows = slice(block * d_out + rows.start, block * d_out + rows.stop)
                fast.qkv.weight[block_rows] = linear.weight
                if linear.bias is not None:
                    fast.qkv.bias[block_rows] = linear.bias
        fast.out_proj.weight.copy_(torch.eye(d_out))
        fast.out_proj.bias.zero_()


@pytest.mark.parametrize("qkv_bias", [False, True])
@pytest.mark.parametrize("num_heads, head_dim", [(1, 4), (2, 2), (3, 5), (4, 8)])
@pytest.mark.parametrize("num_tokens", [7, 3])
@pytest.mark.parametrize("use_sdpa", [True, False], ids=["sdpa", "explicit"])
def test_wrapper_of_causal_heads_equals_fast_multi_head_attention(
    qkv_bias, num_heads, head_dim, num_tokens, use_sdpa
):
    torch.manual_seed(num_heads * 100 + head_dim)
    d_in, context_length = num_heads * head_dim, 7  # the model's attention keeps the width: d_in = d_out
    wrapper = MultiHeadAttentionWrapper(
        d_in, head_dim, context_length, 0.1, num_heads, qkv_bias=qkv_bias
    ).eval()
    config = tiny_config(
        emb_dim=d_in, n_heads=num_heads, context_length=context_length, drop_rate=0.1, qkv_bias=qkv_bias
    )
    config._attn_implementation = "sdpa" if use_sdpa else "eager"
    fast = MultiHeadAttention(config).eval()
    assert fast.qkv.weight.shape == (3 * num_heads * head_dim, d_in)
    assert (fast.qkv.bias is not None) == qkv_bias
    copy_wrapper_into_fast(wrapper, fast)

    x = torch.randn(3, num_tokens, d_in)
    with torch.no_grad():
        expected = wrapper(x)
        actual, _ = fast(x)  # the fused kernel, or the book's masked softmax
    assert actual.shape == expected.shape == (3, num_tokens, num_heads * head_dim)
    torch.testing.assert_close(actual, expected, atol=1e-6, rtol=0)


def test_copied_weights_matter():
    """The equality above is not vacuous: a head copied into the wrong rows changes the output."""
    torch.manual_seed(0)
    wrapper = MultiHeadAttentionWrapper(6, 3, 5, 0.0, 2).eval()
    fast = MultiHeadAttention(tiny_config(emb_dim=6, context_length=5)).eval()
    copy_wrapper_into_fast(wrapper, fast)
    with torch.no_grad():
        x = torch.randn(2, 5, 6)
        torch.testing.assert_close(fast(x)[0], wrapper(x), atol=1e-6, rtol=0)
        fast.qkv.weight[[0, 3]] = fast.qkv.weight[[3, 0]]  # swap one query row between the two heads
        assert (fast(x)[0] - wrapper(x)).abs().max() > 1e-3
