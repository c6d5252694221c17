"""The GPT of "Build a Large Language Model (From Scratch)", chapters 3 and 4, as transformers models.

One class per idea, with the book's names: LayerNorm, GELU, FeedForward, MultiHeadAttention, TransformerBlock,
then the transformers wrappers (GPTScratchModel, GPTScratchForCausalLM, GPTScratchForSequenceClassification) and
the GPT-2 checkpoint import/export of chapter 5. This file imports nothing from the rest of the package but its
configuration: it travels with every saved model for ``trust_remote_code`` loading.
"""

import json
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutputWithPast,
    CausalLMOutputWithPast,
    SequenceClassifierOutputWithPast,
)

from .configuration_gpt_scratch import PRESETS, GPTScratchConfig


class LayerNorm(nn.Module):
    """(x - mean) / sqrt(var + eps) * scale + shift over the last dimension (biased variance, as the book)."""

    def __init__(self, emb_dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(emb_dim))
        self.shift = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The book's formula, computed by PyTorch's fused kernel (tests compare it with the explicit mean/var).
        return F.layer_norm(x, self.scale.shape, self.scale, self.shift, self.eps)


class GELU(nn.Module):
    """0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))): GPT-2's tanh approximation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate="tanh")


class FeedForward(nn.Module):
    """emb_dim -> 4 * emb_dim -> GELU -> emb_dim."""

    def __init__(self, emb_dim: int):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(emb_dim, 4 * emb_dim), GELU(), nn.Linear(4 * emb_dim, emb_dim))
        self.layers[2].writes_residual = True  # GPT-2 initialises it with a smaller std (see _init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class MultiHeadAttention(nn.Module):
    """Causal multi-head self-attention (chapter 3) with one fused query/key/value projection.

    ``qkv`` stacks the book's W_query, W_key and W_value: its output rows are [query; key; value].
    ``attn_mask`` is a boolean (B, 1, T, S) mask, True where a query may attend to a key; ``None`` means plain causal
    (``is_causal``) or, for a single new token, everything in the cache.
    """

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
        assert d_out % num_heads == 0, "d_out must be divisible by num_heads"
        self.num_heads = num_heads
        self.head_dim = d_out // num_heads
        self.context_length = context_length
        self.qkv = nn.Linear(d_in, 3 * d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)
        self.out_proj.writes_residual = True  # GPT-2 initialises it with a smaller std (see _init_weights)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = True,
        cache: Cache | None = None,
        layer_idx: int = 0,
        use_sdpa: bool = True,
    ) -> torch.Tensor:
        b, num_tokens, d_in = x.shape
        q, k, v = (
            self.qkv(x).view(b, num_tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        )  # (B, nh, T, hd)
        if cache is not None:
            k, v = cache.update(k, v, layer_idx)  # (B, nh, S, hd): the past and the new tokens
        is_causal = is_causal and attn_mask is None and num_tokens > 1
        dropout_p = self.dropout.p if self.training else 0.0
        if use_sdpa:
            context = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal
            )
        else:  # the book's explicit computation
            attn_scores = q @ k.transpose(2, 3)  # (B, nh, T, S)
            if is_causal:
                attn_mask = torch.ones(num_tokens, k.shape[2], dtype=torch.bool, device=x.device).tril()
            if attn_mask is not None:
                attn_scores = attn_scores.masked_fill(~attn_mask, float("-inf"))
            attn_weights = self.dropout(torch.softmax(attn_scores / self.head_dim**0.5, dim=-1))
            context = attn_weights @ v
        context = context.transpose(1, 2).reshape(b, num_tokens, -1)  # (B, T, d_out)
        return self.out_proj(context)


class TransformerBlock(GradientCheckpointingLayer):
    """Pre-norm block: x + attention(norm(x)), then x + feed_forward(norm(x)), dropout on both shortcuts."""

    def __init__(self, cfg: GPTScratchConfig):
        super().__init__()
        self.att = MultiHeadAttention(
            cfg.emb_dim, cfg.emb_dim, cfg.context_length, cfg.drop_rate, cfg.n_heads, cfg.qkv_bias
        )
        self.ff = FeedForward(cfg.emb_dim)
        self.norm1 = LayerNorm(cfg.emb_dim, cfg.layer_norm_eps)
        self.norm2 = LayerNorm(cfg.emb_dim, cfg.layer_norm_eps)
        self.drop_shortcut = nn.Dropout(cfg.drop_rate)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, **attn_kwargs) -> torch.Tensor:
        x = x + self.drop_shortcut(self.att(self.norm1(x), attn_mask, **attn_kwargs))
        return x + self.drop_shortcut(self.ff(self.norm2(x)))


def build_attention_mask(
    attention_mask: torch.Tensor | None, num_tokens: int, past_length: int, kv_length: int
) -> torch.Tensor | None:
    """A boolean (B, 1, T, S) mask from a (B, past + T) padding mask; None when plain causal attention is exact.

    Query i (absolute position past + i) may see key j when j <= past + i and key j is not padding. A padding query
    that can see nothing (left padding) is allowed everything: its output is never used, and SDPA needs no NaN.
    """
    if attention_mask is not None and attention_mask.dim() == 4:  # already (B, 1, T, S), e.g. from generate()
        return (
            attention_mask if attention_mask.dtype == torch.bool else attention_mask == 0
        )  # additive: 0 = attend
    has_padding = attention_mask is not None and not bool(attention_mask.all())
    if not has_padding and kv_length == past_length + num_tokens and (past_length == 0 or num_tokens == 1):
        return None
    device = attention_mask.device if attention_mask is not None else None
    query_pos = torch.arange(past_length, past_length + num_tokens, device=device)
    key_pos = torch.arange(kv_length, device=device)
    mask = (key_pos[None, :] <= query_pos[:, None])[None, None]  # (1, 1, T, S)
    if has_padding:
        key_valid = F.pad(attention_mask.bool(), (0, kv_length - attention_mask.shape[1]))  # (B, S)
        mask = mask & key_valid[:, None, None, :]
        mask = mask | ~mask.any(dim=-1, keepdim=True)
    return mask


class GPTScratchPreTrainedModel(PreTrainedModel):
    """Weight initialisation of GPT-2 and the attributes transformers, accelerate and PEFT read."""

    config_class = GPTScratchConfig
    config: GPTScratchConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["TransformerBlock"]
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            # GPT-2: the projections that write into the residual stream are scaled by 1/sqrt(2 * n_layers).
            residual_scale = (
                math.sqrt(2 * self.config.n_layers) if getattr(module, "writes_residual", False) else 1.0
            )
            init.normal_(module.weight, mean=0.0, std=std / residual_scale)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, LayerNorm):
            init.ones_(module.scale)
            init.zeros_(module.shift)


class GPTScratchModel(GPTScratchPreTrainedModel):
    """Token + position embeddings, the transformer blocks and the final norm: hidden states (B, T, emb_dim)."""

    def __init__(self, config: GPTScratchConfig):
        super().__init__(config)
        self.tok_emb = nn.Embedding(config.vocab_size, config.emb_dim)
        self.pos_emb = nn.Embedding(config.context_length, config.emb_dim)
        self.drop_emb = nn.Dropout(config.drop_rate)
        self.trf_blocks = nn.ModuleList([TransformerBlock(config) for _ in range(config.n_layers)])
        self.final_norm = LayerNorm(config.emb_dim, config.layer_norm_eps)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.tok_emb

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.tok_emb = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast | tuple:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds")
        use_cache = self.config.use_cache if use_cache is None else use_cache
        use_cache = use_cache and not (self.gradient_checkpointing and self.training)
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        if not use_cache:
            cache = None
        x = self.tok_emb(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, emb_dim)
        b, num_tokens = x.shape[:2]
        past_length = int(cache.get_seq_length()) if cache is not None else 0  # a tensor for a StaticCache
        if past_length + num_tokens > self.config.context_length:
            raise ValueError(
                f"Input of {past_length + num_tokens} tokens ({past_length} cached + {num_tokens} new) exceeds the "
                f"model's context_length of {self.config.context_length}"
            )
        kv_length = cache.get_mask_sizes(num_tokens, 0)[0] if cache is not None else num_tokens
        if position_ids is None:
            if attention_mask is not None and attention_mask.dim() == 2 and not bool(attention_mask.all()):
                # Left padding: the first real token of each row is position 0.
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -num_tokens:]
            else:
                position_ids = torch.arange(past_length, past_length + num_tokens, device=x.device)[None]
        attn_mask = build_attention_mask(attention_mask, num_tokens, past_length, kv_length)
        use_sdpa = self.config._attn_implementation != "eager"

        x = self.drop_emb(x + self.pos_emb(position_ids))
        all_hidden_states = () if output_hidden_states else None
        for layer_idx, block in enumerate(self.trf_blocks):
            if output_hidden_states:
                all_hidden_states += (x,)
            x = block(
                x, attn_mask, is_causal=past_length == 0, cache=cache, layer_idx=layer_idx, use_sdpa=use_sdpa
            )
        x = self.final_norm(x)
        if output_hidden_states:
            all_hidden_states += (x,)
        output = BaseModelOutputWithPast(last_hidden_state=x, cache=cache, hidden_states=all_hidden_states)
        return output if return_dict is not False else output.to_tuple()


class GPTScratchForCausalLM(GPTScratchPreTrainedModel, GenerationMixin):
    """The book's GPTModel: GPTScratchModel followed by the output head over the vocabulary."""

    _tied_weights_keys = {"out_head.weight": "model.tok_emb.weight"}

    def __init__(self, config: GPTScratchConfig):
        super().__init__(config)
        self.model = GPTScratchModel(config)
        self.out_head = nn.Linear(config.emb_dim, config.vocab_size, bias=False)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.out_head

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.out_head = new_embeddings

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        logits_to_keep: int = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast | tuple:
        """``labels`` are the input ids themselves (shifted inside, -100 ignored), as everywhere in transformers."""
        outputs = self.model(
            input_ids, attention_mask, position_ids, cache, inputs_embeds, use_cache, output_hidden_states
        )
        hidden = outputs.last_hidden_state
        logits = self.out_head(hidden[:, -logits_to_keep:] if logits_to_keep else hidden)  # (B, T, vocab)
        loss = None
        if labels is not None:
            # Position t predicts token t + 1: shift the labels, not the (large) logits, so nothing is copied.
            targets = F.pad(labels.to(logits.device)[:, 1:], (0, 1), value=-100)  # (B, T), last one ignored
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
        output = CausalLMOutputWithPast(
            loss=loss, logits=logits, cache=outputs.cache, hidden_states=outputs.hidden_states
        )
        return output if return_dict is not False else output.to_tuple()

    @classmethod
    def from_gpt2(cls, source: str | os.PathLike, **config_overrides) -> "GPTScratchForCausalLM":
        """Import a Hugging Face GPT-2 checkpoint (a local folder or a Hub id such as ``openai-community/gpt2``)."""
        folder = Path(source)
        if not folder.is_dir():
            from huggingface_hub import snapshot_download

            folder = Path(
                snapshot_download(str(source), allow_patterns=["config.json", "*.safetensors", "*.json"])
            )
        config = gpt2_config_to_scratch(json.loads((folder / "config.json").read_text()), **config_overrides)
        model = cls(config)
        model.load_state_dict(gpt2_to_scratch_state_dict(_read_tensors(folder), config), strict=True)
        model.tie_weights()
        return model.eval()

    def save_gpt2(self, folder: str | os.PathLike) -> None:
        """Write a plain GPT-2 checkpoint (config.json + model.safetensors) for ``transformers.GPT2LMHeadModel``."""
        from safetensors.torch import save_file
        from transformers import GPT2Config

        c = self.config
        gpt2_config = GPT2Config(
            vocab_size=c.vocab_size, n_positions=c.context_length, n_embd=c.emb_dim, n_layer=c.n_layers,
            n_head=c.n_heads, resid_pdrop=c.drop_rate, embd_pdrop=c.drop_rate, attn_pdrop=c.drop_rate,
            layer_norm_epsilon=c.layer_norm_eps, tie_word_embeddings=c.tie_word_embeddings,
            bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id, architectures=["GPT2LMHeadModel"],
        )  # fmt: skip
        Path(folder).mkdir(parents=True, exist_ok=True)
        gpt2_config.save_pretrained(folder)
        tensors = scratch_to_gpt2_state_dict(self.state_dict(), c)
        save_file(
            {k: v.contiguous() for k, v in tensors.items()},
            str(Path(folder) / "model.safetensors"),
            {"format": "pt"},
        )


def gpt2_config_to_scratch(gpt2: dict, **overrides) -> GPTScratchConfig:
    """Our configuration for a GPT-2 ``config.json``; ``preset`` names the matching size (gpt2-small, ...) if any."""
    config = GPTScratchConfig(
        vocab_size=gpt2["vocab_size"],
        context_length=gpt2.get("n_positions", 1024),
        emb_dim=gpt2["n_embd"],
        n_heads=gpt2["n_head"],
        n_layers=gpt2["n_layer"],
        drop_rate=gpt2.get("resid_pdrop", 0.1),
        qkv_bias=True,
        layer_norm_eps=gpt2.get("layer_norm_epsilon", 1e-5),
        tie_word_embeddings=gpt2.get("tie_word_embeddings", True),
        **overrides,
    )
    shape = {k: getattr(config, k) for k in ("emb_dim", "n_layers", "n_heads", "qkv_bias")}
    config.preset = next((name for name, p in PRESETS.items() if shape.items() <= p.items()), None)
    return config


def _gpt2_names(n_layers: int) -> list[tuple[str, str, bool]]:
    """(GPT-2 name, our name, transposed?) for every tensor. GPT-2's Conv1D stores weights as (in, out)."""
    names = [("transformer.wte.weight", "model.tok_emb.weight", False),
             ("transformer.wpe.weight", "model.pos_emb.weight", False),
             ("transformer.ln_f.weight", "model.final_norm.scale", False),
             ("transformer.ln_f.bias", "model.final_norm.shift", False)]  # fmt: skip
    for i in range(n_layers):
        g, s = f"transformer.h.{i}.", f"model.trf_blocks.{i}."
        names += [(g + "ln_1.weight", s + "norm1.scale", False), (g + "ln_1.bias", s + "norm1.shift", False),
                  (g + "attn.c_attn.weight", s + "att.qkv.weight", True), (g + "attn.c_attn.bias", s + "att.qkv.bias", False),
                  (g + "attn.c_proj.weight", s + "att.out_proj.weight", True), (g + "attn.c_proj.bias", s + "att.out_proj.bias", False),
                  (g + "ln_2.weight", s + "norm2.scale", False), (g + "ln_2.bias", s + "norm2.shift", False),
                  (g + "mlp.c_fc.weight", s + "ff.layers.0.weight", True), (g + "mlp.c_fc.bias", s + "ff.layers.0.bias", False),
                  (g + "mlp.c_proj.weight", s + "ff.layers.2.weight", True), (g + "mlp.c_proj.bias", s + "ff.layers.2.bias", False)]  # fmt: skip
    return names


def gpt2_to_scratch_state_dict(
    gpt2: dict[str, torch.Tensor], config: GPTScratchConfig
) -> dict[str, torch.Tensor]:
    """Map a GPT-2 state dict onto ours; any missing, extra or misshapen tensor is listed in one ValueError."""
    gpt2 = {
        k.removeprefix("module."): v
        for k, v in gpt2.items()
        if not k.endswith((".attn.bias", ".attn.masked_bias"))
    }
    if not any(k.startswith("transformer.") for k in gpt2):  # a GPT2Model checkpoint (no LM head prefix)
        gpt2 = {f"transformer.{k}": v for k, v in gpt2.items()}
    d, v, t = config.emb_dim, config.vocab_size, config.context_length
    shapes = {"model.tok_emb.weight": (v, d), "model.pos_emb.weight": (t, d), "out_head.weight": (v, d),
              "qkv.weight": (3 * d, d), "qkv.bias": (3 * d,), "out_proj.weight": (d, d), "layers.0.weight": (4 * d, d),
              "layers.0.bias": (4 * d,), "layers.2.weight": (d, 4 * d)}  # fmt: skip
    ours, problems = {}, []
    names = _gpt2_names(config.n_layers)
    head = ("lm_head.weight", "out_head.weight", False)
    if not config.tie_word_embeddings or "lm_head.weight" in gpt2:
        names.append(head)
    for gpt2_name, our_name, transposed in names:
        if gpt2_name not in gpt2:
            if gpt2_name == "lm_head.weight" and config.tie_word_embeddings:
                continue
            problems.append(f"missing tensor {gpt2_name}")
            continue
        tensor = gpt2[gpt2_name].t() if transposed else gpt2[gpt2_name]
        want = next((s for suffix, s in shapes.items() if our_name.endswith(suffix)), (d,))
        if tuple(tensor.shape) != want:
            problems.append(
                f"{gpt2_name}: shape {tuple(gpt2[gpt2_name].shape)} does not fit {our_name} {want}"
            )
        ours[our_name] = tensor
    known = {g for g, _, _ in names} | {head[0]}
    problems += [f"unexpected tensor {k}" for k in sorted(gpt2) if k not in known]
    if problems:
        raise ValueError("GPT-2 checkpoint does not match the configuration:\n  " + "\n  ".join(problems))
    if config.tie_word_embeddings:
        ours["out_head.weight"] = ours["model.tok_emb.weight"]
    return ours


def scratch_to_gpt2_state_dict(
    ours: dict[str, torch.Tensor], config: GPTScratchConfig
) -> dict[str, torch.Tensor]:
    """The inverse mapping; a model without q/k/v bias exports zero biases (GPT-2 always has them)."""
    gpt2 = {}
    for gpt2_name, our_name, transposed in _gpt2_names(config.n_layers):
        if our_name not in ours:  # q/k/v bias of a qkv_bias=False model
            gpt2[gpt2_name] = torch.zeros(3 * config.emb_dim, dtype=ours["model.tok_emb.weight"].dtype)
            continue
        gpt2[gpt2_name] = ours[our_name].t() if transposed else ours[our_name].clone()
    if not config.tie_word_embeddings:
        gpt2["lm_head.weight"] = ours["out_head.weight"].clone()
    return gpt2


def _read_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint folder: safetensors (single or sharded), else a weights-only pytorch_model.bin."""
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if files:
        return {k: v for f in files for k, v in load_file(str(f)).items()}
    if (folder / "pytorch_model.bin").exists():
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"No *.safetensors or pytorch_model.bin in {folder}")


class GPTScratchForSequenceClassification(GPTScratchPreTrainedModel):
    """Chapter 6: the output head replaced by a ``num_labels`` head read at the last non-padding token."""

    def __init__(self, config: GPTScratchConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = GPTScratchModel(config)
        self.score = nn.Linear(config.emb_dim, config.num_labels, bias=True)  # the book's new out_head
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SequenceClassifierOutputWithPast | tuple:
        outputs = self.model(
            input_ids, attention_mask, position_ids, cache, inputs_embeds, use_cache, output_hidden_states
        )
        hidden = outputs.last_hidden_state  # (B, T, emb_dim)
        if attention_mask is not None and attention_mask.dim() == 2:
            # The last real token: T - 1 - (index of the first 1 from the right); right and left padding alike.
            last = hidden.shape[1] - 1 - attention_mask.flip(-1).long().argmax(-1)
        else:
            last = torch.full((hidden.shape[0],), hidden.shape[1] - 1, device=hidden.device)
        logits = self.score(
            hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        )  # (B, num_labels)
        loss = None
        if labels is not None:
            labels = labels.to(logits.device)
            if self.config.problem_type is None:
                is_class_ids = labels.dtype in (torch.long, torch.int)
                self.config.problem_type = (
                    "regression" if self.num_labels == 1 else
                    "single_label_classification" if is_class_ids else "multi_label_classification"
                )  # fmt: skip
            if self.config.problem_type == "regression":
                loss = F.mse_loss(logits.squeeze(-1).float(), labels.float())
            elif self.config.problem_type == "single_label_classification":
                loss = F.cross_entropy(logits.float(), labels.view(-1))
            else:
                loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float())
        output = SequenceClassifierOutputWithPast(
            loss=loss, logits=logits, cache=outputs.cache, hidden_states=outputs.hidden_states
        )
        return output if return_dict is not False else output.to_tuple()


__all__ = [
    "LayerNorm",
    "GELU",
    "FeedForward",
    "MultiHeadAttention",
    "TransformerBlock",
    "GPTScratchPreTrainedModel",
    "GPTScratchModel",
    "GPTScratchForCausalLM",
    "GPTScratchForSequenceClassification",
]
