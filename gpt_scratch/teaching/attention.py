"""Chapter 3 of the book, in order: the attention mechanisms that lead up to multi-head attention.

These are the teaching variants, kept small and readable with the book's names. The model itself uses the
efficient `MultiHeadAttention` of `gpt_scratch.modeling_gpt_scratch` (one fused projection for queries, keys
and values); `tests/test_teaching_attention.py` shows that the `MultiHeadAttentionWrapper` below computes the
same thing when given the same weights.

1. `simplified_self_attention`: no trainable weights, each token attends to every token by dot product.
2. `SelfAttention_v1`: scaled dot-product attention with trainable weight matrices (`nn.Parameter`).
3. `SelfAttention_v2`: the same with `nn.Linear` layers (better initialisation, optional bias).
4. `CausalAttention`: a mask hides future tokens; dropout on the attention weights; batches of sequences.
5. `MultiHeadAttentionWrapper`: several `CausalAttention` heads side by side, outputs concatenated.
"""

import torch
from torch import nn


def simplified_self_attention(inputs: torch.Tensor) -> torch.Tensor:
    """Context vectors of section 3.3: attention weights from plain dot products, no trainable weights.

    inputs: (num_tokens, d_in) embeddings of one sequence. Returns (num_tokens, d_in): row i is the
    attention-weighted sum of all input rows, weighted by the softmax of their dot products with row i.
    """
    if inputs.dim() != 2:
        raise ValueError(
            f"simplified_self_attention expects (num_tokens, d_in), got shape {tuple(inputs.shape)}"
        )
    attn_scores = inputs @ inputs.T  # (num_tokens, num_tokens): omega_ij = x_i . x_j
    attn_weights = torch.softmax(attn_scores, dim=-1)  # each row sums to 1
    all_context_vecs = attn_weights @ inputs
    return all_context_vecs


class SelfAttention_v1(nn.Module):
    """Section 3.4: scaled dot-product attention with trainable query, key and value matrices."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.W_query = nn.Parameter(torch.rand(d_in, d_out))
        self.W_key = nn.Parameter(torch.rand(d_in, d_out))
        self.W_value = nn.Parameter(torch.rand(d_in, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keys = x @ self.W_key
        queries = x @ self.W_query
        values = x @ self.W_value
        attn_scores = queries @ keys.T  # omega
        attn_weights = torch.softmax(attn_scores / keys.shape[-1] ** 0.5, dim=-1)
        context_vec = attn_weights @ values
        return context_vec


class SelfAttention_v2(nn.Module):
    """Section 3.4.2: `SelfAttention_v1` with `nn.Linear` layers (their weight is the transposed matrix)."""

    def __init__(self, d_in: int, d_out: int, qkv_bias: bool = False):
        super().__init__()
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keys = self.W_key(x)
        queries = self.W_query(x)
        values = self.W_value(x)
        attn_scores = queries @ keys.T
        attn_weights = torch.softmax(attn_scores / keys.shape[-1] ** 0.5, dim=-1)
        context_vec = attn_weights @ values
        return context_vec


class CausalAttention(nn.Module):
    """Section 3.5: each token attends only to itself and the tokens before it; works on batches."""

    def __init__(self, d_in: int, d_out: int, context_length: int, dropout: float, qkv_bias: bool = False):
        super().__init__()
        self.d_out = d_out
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.dropout = nn.Dropout(dropout)
        # 1 above the diagonal: the future positions to hide. A buffer moves with the module to its device.
        self.register_buffer("mask", torch.triu(torch.ones(context_length, context_length), diagonal=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, num_tokens, d_in = x.shape
        if num_tokens > self.mask.shape[0]:
            raise ValueError(
                f"CausalAttention: {num_tokens} tokens exceed context_length {self.mask.shape[0]}"
            )
        keys = self.W_key(x)
        queries = self.W_query(x)
        values = self.W_value(x)

        attn_scores = queries @ keys.transpose(1, 2)  # (b, num_tokens, num_tokens)
        attn_scores.masked_fill_(self.mask.bool()[:num_tokens, :num_tokens], -torch.inf)
        attn_weights = torch.softmax(attn_scores / keys.shape[-1] ** 0.5, dim=-1)
        attn_weights = self.dropout(attn_weights)

        context_vec = attn_weights @ values
        return context_vec


class MultiHeadAttentionWrapper(nn.Module):
    """Section 3.6.1: `num_heads` independent causal heads, each of size d_out, concatenated to num_heads * d_out."""

    def __init__(
        self,
        d_in: int,
        d_out: int,
        context_length: int,
        dropout: float,
        num_heads: int,
        qkv_bias: bool = False,
    ):
        super().__init__()
        self.heads = nn.ModuleList(
            [CausalAttention(d_in, d_out, context_length, dropout, qkv_bias) for _ in range(num_heads)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([head(x) for head in self.heads], dim=-1)
