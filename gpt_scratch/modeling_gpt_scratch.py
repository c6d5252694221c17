"""The GPT of "Build a Large Language Model (From Scratch)", chapters 3 and 4, as transformers models.

Read top to bottom: the book's modules (LayerNorm, GELU, FeedForward, MultiHeadAttention, TransformerBlock), each
built from the config as the book builds them from ``cfg``; the backbone (GPTScratchModel); the two heads
(GPTScratchForCausalLM, GPTScratchForSequenceClassification). Attention runs through transformers' attention
interface (``config._attn_implementation``: ``eager`` is the book's masked softmax, ``sdpa``, ``flex_attention``,
``flash_attention_2``) and the masks come from transformers' ``create_causal_mask``, so ``torch.compile`` and
``torch.export`` trace the forward without data-dependent branches.

This file imports nothing from the rest of the package but its configuration and, inside ``from_gpt2`` /
``save_gpt2`` / ``save_book`` / ``save_nanogpt``, the conversions beside it (the GPT-2 one writes GPT-2's tokenizer
files with the tokenizer file):
``save_pretrained`` ships all of them for ``trust_remote_code`` loading.
"""

import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache
from transformers.masking_utils import create_causal_mask
from transformers.modeling_flash_attention_utils import FlashAttentionKwargs
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutputWithPast,
    CausalLMOutputWithPast,
    SequenceClassifierOutputWithPast,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, slice_logits_to_keep
from transformers.utils import can_return_tuple, is_torchdynamo_compiling
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import TransformersKwargs, merge_with_config_defaults
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .configuration_gpt_scratch import GPTScratchConfig

# Every model of this file, as the Auto class that loads it: all go into a saved folder's auto_map.
AUTO_CLASSES = {
    "AutoModel": "GPTScratchModel",
    "AutoModelForCausalLM": "GPTScratchForCausalLM",
    "AutoModelForSequenceClassification": "GPTScratchForSequenceClassification",
}
# The book's LoRA targets (appendix E: every linear layer of each block), PEFT's default for this model type.
LORA_TARGET_MODULES = ["att.qkv", "att.out_proj", "ff.layers.0", "ff.layers.2"]
try:  # PEFT is optional: LoraConfig() without target_modules then adapts these, as it adapts c_attn for GPT-2
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.setdefault(
        GPTScratchConfig.model_type, LORA_TARGET_MODULES
    )
except ImportError:
    pass
# Keyword arguments a forward accepts beyond its own: those transformers passes on (loss, outputs, attention).
KNOWN_KWARGS = frozenset(TransformersKwargs.__annotations__) | frozenset(FlashAttentionKwargs.__annotations__)
# What generate() hands every forward call besides the inputs (the tokenizer of stop strings and token healing);
# GPT-2's keywords for an encoder (cross-attention) and transformers 4's head_mask, accepted only as None: nothing
# that would change the result is ignored.
GENERATE_KWARGS = frozenset({"tokenizer", "assistant_tokenizer"})
NONE_ONLY_KWARGS = frozenset({"encoder_hidden_states", "encoder_attention_mask", "head_mask"})


def check_kwargs(model: nn.Module, kwargs: dict) -> dict:
    """The keyword arguments to pass on: a misspelt or foreign one is an error, not silently ignored; generate's
    tokenizer is dropped; GPT-2's ``cache_position`` (transformers 4) is kept for the backbone to read."""
    unknown = sorted(set(kwargs) - KNOWN_KWARGS - GENERATE_KWARGS - NONE_ONLY_KWARGS - {"cache_position"})
    if unknown:
        raise TypeError(
            f"{type(model).__name__}.forward() got unexpected keyword arguments: {', '.join(unknown)}"
        )
    given = sorted(name for name in NONE_ONLY_KWARGS if kwargs.get(name) is not None)
    if given:
        raise ValueError(
            f"{type(model).__name__} has no cross-attention and no head masking: {', '.join(given)} must be None "
            "(GPT2LMHeadModel without add_cross_attention refuses encoder_hidden_states too)"
        )
    return {k: v for k, v in kwargs.items() if k not in GENERATE_KWARGS and k not in NONE_ONLY_KWARGS}


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
    """0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))): GPT-2's tanh approximation (the book's); with
    ``approximate="none"`` the exact 0.5 * x * (1 + erf(x / sqrt(2))) of nanoGPT's ``nn.GELU()``."""

    def __init__(self, approximate: str = "tanh"):
        super().__init__()
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate=self.approximate)


class FeedForward(nn.Module):
    """emb_dim -> 4 * emb_dim -> GELU -> emb_dim."""

    def __init__(self, cfg: GPTScratchConfig):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(cfg.emb_dim, 4 * cfg.emb_dim),
            GELU(cfg.gelu_approximate),
            nn.Linear(4 * cfg.emb_dim, cfg.emb_dim),
        )
        self.layers[2].writes_residual = True  # GPT-2 initialises it with a smaller std (see _init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The book's attention (chapter 3): scores, masked softmax, weighted sum of the values.

    ``attention_mask`` is transformers' additive (B, 1, T, S) mask (0 = attend, a large negative number = masked);
    without one, the book's own causal mask (``mask_bool``) hides the future.
    """
    attn_scores = (query @ key.transpose(2, 3)) * scaling  # (B, nh, T, S), scaled by 1 / sqrt(head_dim)
    if attention_mask is None:
        num_tokens, kv_length = query.shape[2], key.shape[2]
        mask_bool = torch.ones(num_tokens, kv_length, dtype=torch.bool, device=query.device)
        mask_bool = mask_bool.triu(diagonal=kv_length - num_tokens + 1)  # True above the diagonal: the future
        attn_scores = attn_scores.masked_fill(mask_bool, float("-inf"))
    else:
        attn_scores = attn_scores + attention_mask
    attn_weights = torch.softmax(attn_scores, dim=-1).to(value.dtype)
    attn_weights = F.dropout(attn_weights, p=dropout, training=module.training)
    context_vec = (attn_weights @ value).transpose(1, 2)  # (B, T, nh, hd)
    return context_vec, attn_weights


class MultiHeadAttention(nn.Module):
    """Causal multi-head self-attention (chapter 3) with one fused query/key/value projection.

    ``qkv`` stacks the book's W_query, W_key and W_value: its output rows are [query; key; value]. The kernel is
    ``config._attn_implementation``'s (the book's ``eager_attention_forward`` under ``"eager"``). Returns the output
    and the attention weights (None for kernels that do not form them).
    """

    def __init__(self, cfg: GPTScratchConfig, layer_idx: int = 0):
        super().__init__()
        self.config = cfg
        self.layer_idx = layer_idx
        self.num_heads = cfg.n_heads
        self.head_dim = cfg.head_dim
        self.scaling = self.head_dim**-0.5
        self.is_causal = True
        self.qkv = nn.Linear(cfg.emb_dim, 3 * cfg.emb_dim, bias=cfg.qkv_bias)
        self.out_proj = nn.Linear(cfg.emb_dim, cfg.emb_dim)
        self.out_proj.writes_residual = True  # GPT-2 initialises it with a smaller std (see _init_weights)
        self.dropout = nn.Dropout(cfg.drop_rate)

    def forward(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, num_tokens, _ = x.shape
        q, k, v = self.qkv(x).view(b, num_tokens, 3, self.num_heads, self.head_dim).unbind(2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, nh, T, hd)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_idx)  # (B, nh, S, hd): the past and the new tokens
        attention: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        context_vec, attn_weights = attention(
            self,
            q,
            k,
            v,
            attention_mask,
            dropout=self.dropout.p if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        context_vec = context_vec.reshape(b, num_tokens, -1)  # (B, T, emb_dim)
        return self.out_proj(context_vec), attn_weights


@torch.no_grad()
def regroup_qkv_draws_as_the_books(qkv: nn.Linear) -> None:
    """Give a freshly constructed fused q/k/v layer with bias the book's values under the same seed.

    PyTorch drew its (3 * emb_dim, emb_dim) weight, then its 3 * emb_dim bias; the book's separate W_query,
    W_key, W_value draw weight then bias for each in turn. Both are uniform draws with the same bound,
    1 / sqrt(emb_dim): the same numbers in the same order, which this puts where the book has them.
    """
    emb_dim = qkv.in_features
    draws = torch.cat([qkv.weight.flatten(), qkv.bias]).view(3, emb_dim * emb_dim + emb_dim)  # per projection
    qkv.weight.copy_(draws[:, : emb_dim * emb_dim].reshape_as(qkv.weight))
    qkv.bias.copy_(draws[:, emb_dim * emb_dim :].reshape_as(qkv.bias))


class TransformerBlock(GradientCheckpointingLayer):
    """Pre-norm block: x + attention(norm(x)), then x + feed_forward(norm(x)), dropout on both shortcuts."""

    def __init__(self, cfg: GPTScratchConfig, layer_idx: int = 0):
        super().__init__()
        self.att = MultiHeadAttention(cfg, layer_idx)
        self.ff = FeedForward(cfg)
        self.norm1 = LayerNorm(cfg.emb_dim, cfg.layer_norm_eps)
        self.norm2 = LayerNorm(cfg.emb_dim, cfg.layer_norm_eps)
        self.drop_shortcut = nn.Dropout(cfg.drop_rate)

    def forward(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        **kwargs,
    ) -> torch.Tensor:
        attn_output, _ = self.att(self.norm1(x), attention_mask=attention_mask, cache=cache, **kwargs)
        x = x + self.drop_shortcut(attn_output)
        return x + self.drop_shortcut(self.ff(self.norm2(x)))


class GPTScratchPreTrainedModel(PreTrainedModel):
    """Weight initialisation of GPT-2 and the attributes transformers, accelerate and PEFT read."""

    config_class = GPTScratchConfig
    config: GPTScratchConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["TransformerBlock"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = True
    _can_record_outputs = {
        "hidden_states": TransformerBlock,
        "attentions": OutputRecorder(MultiHeadAttention, index=1),
    }

    def init_weights(self) -> None:
        """post_init's initialisation. GPT-2's style overwrites the layers with `_init_weights`. The book's style
        keeps what the layers' constructors drew: PyTorch's defaults, in the order the book's GPTModel draws them
        (tok_emb, pos_emb, per block W_query, W_key, W_value, out_proj, the feed-forward, then out_head), so
        `torch.manual_seed(123)` gives the book's weights and leaves the global generator where the book's does.
        """
        if self.config.initializer_style == "book" and not any(p.is_meta for p in self.parameters()):
            for module in self.modules():
                if getattr(module, "_is_hf_initialized", False):
                    continue  # a sub-model's own post_init kept it already
                if isinstance(module, MultiHeadAttention) and module.qkv.bias is not None:
                    regroup_qkv_draws_as_the_books(module.qkv)
                module._is_hf_initialized = True
        super().init_weights()

    def _init_weights(self, module: nn.Module) -> None:
        # The book's style: layers a checkpoint lacks (e.g. a new head) get PyTorch's own defaults.
        if self.config.initializer_style == "book":
            if isinstance(module, (nn.Linear, nn.Embedding)):
                module.reset_parameters()
            elif isinstance(module, LayerNorm):
                init.ones_(module.scale)
                init.zeros_(module.shift)
            return
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            # GPT-2: the projections that write into the residual stream are scaled by 1/sqrt(2 * n_layers).
            residual_scale = (
                (2 * self.config.n_layers) ** 0.5 if getattr(module, "writes_residual", False) else 1.0
            )
            init.normal_(module.weight, mean=0.0, std=std / residual_scale)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, LayerNorm):
            init.ones_(module.scale)
            init.zeros_(module.shift)

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        """As transformers', but a folder saved for remote code names every model class of this file in its
        auto_map, so any Auto class loads it (AutoModel, a classifier fine-tuned from a causal LM, ...)."""
        if self._auto_class is not None:
            module = type(self).__module__.split(".")[-1]
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            self.config.auto_map = {**auto_map, **{k: f"{module}.{v}" for k, v in AUTO_CLASSES.items()}}
        super().save_pretrained(save_directory, *args, **kwargs)


class GPTScratchModel(GPTScratchPreTrainedModel):
    """Token + position embeddings, the transformer blocks and the final norm: hidden states (B, T, emb_dim)."""

    def __init__(self, config: GPTScratchConfig):
        super().__init__(config)
        self.tok_emb = nn.Embedding(config.vocab_size, config.emb_dim)
        self.pos_emb = nn.Embedding(config.context_length, config.emb_dim)
        self.drop_emb = nn.Dropout(config.drop_rate)
        self.trf_blocks = nn.ModuleList([TransformerBlock(config, i) for i in range(config.n_layers)])
        self.final_norm = LayerNorm(config.emb_dim, config.layer_norm_eps)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.tok_emb

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.tok_emb = value

    @merge_with_config_defaults
    @capture_outputs
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        token_type_ids: torch.LongTensor | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        """A ``cache`` that is passed is always used (and extended); ``use_cache`` decides whether one is returned
        (and made when none is passed). ``position_ids`` that restart at 0 mark packed sequences: the context
        limit is on the positions, and without a cache or 2D mask each sequence attends only to itself
        (``create_causal_mask`` builds the block-diagonal mask for eager, sdpa and flex attention; flash
        attention reads the sequences from ``position_ids``). ``token_type_ids`` are GPT-2's: the token embedding
        of each type id is added to the input."""
        kwargs = check_kwargs(self, kwargs)
        # transformers 4's name for the new tokens' positions
        cache_position = kwargs.pop("cache_position", None)
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds")
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        x = self.tok_emb(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, emb_dim)
        num_tokens = x.shape[1]
        past_length = cache.get_seq_length() if cache is not None else 0  # a tensor for a StaticCache
        if position_ids is None and cache_position is not None:
            position_ids = cache_position[None]
        if position_ids is None:
            if isinstance(past_length, int) and past_length + num_tokens > self.config.context_length:
                raise ValueError(
                    f"Input of {past_length + num_tokens} tokens ({past_length} cached + {num_tokens} new) exceeds "
                    f"the model's context_length of {self.config.context_length}"
                )
            if attention_mask is not None and attention_mask.dim() == 2:
                # Left padding: the first real token of each row is position 0 (no padding: past ... past + T - 1).
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -num_tokens:]
            else:
                position_ids = (torch.arange(num_tokens, device=x.device) + past_length)[None]
        elif not is_torchdynamo_compiling() and position_ids.numel() > 0:
            last_position = int(position_ids.max())
            if last_position >= self.config.context_length:
                raise ValueError(
                    f"Position {last_position} of position_ids exceeds the model's context_length of "
                    f"{self.config.context_length} (positions 0 to {self.config.context_length - 1})"
                )
        mask = create_causal_mask(
            config=self.config,
            inputs_embeds=x,
            attention_mask=attention_mask,
            cache=cache,
            position_ids=position_ids,
        )

        x = x + self.pos_emb(position_ids)
        if token_type_ids is not None:
            x = x + self.tok_emb(token_type_ids)
        x = self.drop_emb(x)
        for block in self.trf_blocks:
            x = block(x, attention_mask=mask, cache=cache, position_ids=position_ids, **kwargs)
        x = self.final_norm(x)
        return BaseModelOutputWithPast(last_hidden_state=x, cache=cache if use_cache else None)


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

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        token_type_ids: torch.LongTensor | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """``labels`` are the input ids themselves (shifted inside, -100 ignored), as everywhere in transformers.
        The other arguments are GPT2LMHeadModel's (see ``GPTScratchModel.forward``); the tokenizer that ``generate``
        passes along for stop strings is accepted and dropped.

        ``num_items_in_batch`` (passed by ``Trainer`` under gradient accumulation) makes the loss a sum over the
        batch's target tokens divided by that count, so N accumulated micro-batches give the loss of one.
        """
        kwargs = check_kwargs(self, kwargs)
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            token_type_ids=token_type_ids,
            **kwargs,
        )
        logits = self.out_head(
            slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep)
        )  # (B, T, vocab)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits, labels, vocab_size=self.config.vocab_size, **kwargs)
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )

    @classmethod
    def from_gpt2(cls, source: str | os.PathLike, **config_overrides) -> "GPTScratchForCausalLM":
        """Import a Hugging Face GPT-2 checkpoint (a local folder or a Hub id such as ``openai-community/gpt2``)."""
        from .conversion_gpt_scratch import load_gpt2

        return load_gpt2(cls, source, **config_overrides)

    def save_gpt2(self, folder: str | os.PathLike, chat_template: str | None = None) -> None:
        """Write a plain GPT-2 checkpoint for ``GPT2LMHeadModel``: config, generation config, safetensors and GPT-2's
        tokenizer files with ``chat_template`` (default: the one saved with this model, if any)."""
        from .conversion_gpt_scratch import save_gpt2

        save_gpt2(self, folder, chat_template)

    def save_book(self, path: str | os.PathLike) -> None:
        """Write the book's ``GPTModel`` state dict (``model.pth``) and its ``cfg`` as JSON beside it."""
        from .conversion_book_nanogpt_gpt_scratch import save_book

        save_book(self, path)

    def save_nanogpt(self, path: str | os.PathLike) -> None:
        """Write a nanoGPT ``ckpt.pt`` (``model``, ``model_args``, ...) that nanoGPT's ``GPT`` loads strictly."""
        from .conversion_book_nanogpt_gpt_scratch import save_nanogpt

        save_nanogpt(self, path)


class GPTScratchForSequenceClassification(GPTScratchPreTrainedModel):
    """Chapter 6: the output head replaced by a ``num_labels`` head read at the last non-padding token."""

    def __init__(self, config: GPTScratchConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = GPTScratchModel(config)
        self.score = nn.Linear(config.emb_dim, config.num_labels, bias=True)  # the book's new out_head
        self.post_init()

    def last_token_index(
        self, attention_mask: torch.Tensor | None, input_ids: torch.Tensor | None, num_tokens: int
    ) -> torch.Tensor | int:
        """Where each row's last real token is: from the mask, else (as GPT-2) the last id that is not padding."""
        if attention_mask is not None and attention_mask.dim() == 2:
            real = attention_mask.long()
        elif input_ids is not None and self.config.pad_token_id is not None:
            real = (input_ids != self.config.pad_token_id).long()
        else:
            return num_tokens - 1
        # T - 1 - (index of the first real token from the right): right and left padding alike.
        return num_tokens - 1 - real.flip(-1).argmax(-1)

    def classification_loss(
        self, logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch: torch.Tensor | int | None = None
    ) -> torch.Tensor:
        """Mean loss per example; with ``num_items_in_batch`` (Trainer's gradient accumulation) sum / that count."""
        labels = labels.to(logits.device)
        if self.config.problem_type is None:
            is_class_ids = labels.dtype in (torch.long, torch.int)
            self.config.problem_type = (
                "regression" if self.num_labels == 1 else
                "single_label_classification" if is_class_ids else "multi_label_classification"
            )  # fmt: skip
        if self.config.problem_type == "regression":
            per_example = F.mse_loss(logits.float().view(labels.shape[0], -1), labels.float().view(labels.shape[0], -1),
                                     reduction="none").mean(-1)  # fmt: skip
        elif self.config.problem_type == "single_label_classification":
            per_example = F.cross_entropy(logits.float(), labels.view(-1), reduction="none")
        else:
            per_example = F.binary_cross_entropy_with_logits(
                logits.float(), labels.float(), reduction="none"
            ).mean(-1)
        if num_items_in_batch is None:
            return per_example.mean()
        return per_example.sum() / torch.as_tensor(num_items_in_batch, device=per_example.device)

    def save_book(self, path: str | os.PathLike) -> None:
        """Write the book's chapter 6 classifier state dict (``out_head`` of num_labels rows) and its ``cfg``."""
        from .conversion_book_nanogpt_gpt_scratch import save_book

        save_book(self, path)

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        token_type_ids: torch.LongTensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutputWithPast:
        kwargs = check_kwargs(self, kwargs)
        num_items_in_batch = kwargs.pop("num_items_in_batch", None)
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            token_type_ids=token_type_ids,
            **kwargs,
        )
        hidden = outputs.last_hidden_state  # (B, T, emb_dim)
        last = self.last_token_index(attention_mask, input_ids, hidden.shape[1])
        logits = self.score(
            hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        )  # (B, num_labels)
        loss = None if labels is None else self.classification_loss(logits, labels, num_items_in_batch)
        return SequenceClassifierOutputWithPast(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


__all__ = [
    "LayerNorm",
    "GELU",
    "FeedForward",
    "eager_attention_forward",
    "MultiHeadAttention",
    "TransformerBlock",
    "GPTScratchPreTrainedModel",
    "GPTScratchModel",
    "GPTScratchForCausalLM",
    "GPTScratchForSequenceClassification",
]
