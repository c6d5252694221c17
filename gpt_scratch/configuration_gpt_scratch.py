"""GPTScratchConfig: the book's GPT configuration dictionary as a transformers config.

The fields keep the book's names (chapter 4, ``GPT_CONFIG_124M``); ``attribute_map`` gives transformers the
names it looks for (``hidden_size``, ``num_attention_heads``, ...). This file imports nothing from the rest of
the package: it travels with every saved model for ``trust_remote_code`` loading.
"""

from typing import Any

from transformers import PreTrainedConfig

# GPT-2's released sizes (context 1024, biased q/k/v, output head tied to the token embedding) and the book's own
# training configuration GPT_CONFIG_124M (untied output head, no q/k/v bias): 163,009,536 parameters in all.
PRESETS: dict[str, dict[str, Any]] = {
    "gpt2-small": dict(emb_dim=768, n_layers=12, n_heads=12, qkv_bias=True, tie_word_embeddings=True),
    "gpt2-medium": dict(emb_dim=1024, n_layers=24, n_heads=16, qkv_bias=True, tie_word_embeddings=True),
    "gpt2-large": dict(emb_dim=1280, n_layers=36, n_heads=20, qkv_bias=True, tie_word_embeddings=True),
    "gpt2-xl": dict(emb_dim=1600, n_layers=48, n_heads=25, qkv_bias=True, tie_word_embeddings=True),
    "GPT_CONFIG_124M": dict(emb_dim=768, n_layers=12, n_heads=12, qkv_bias=False, tie_word_embeddings=False),
}

INITIALIZER_STYLES = ("gpt2", "book")


class GPTScratchConfig(PreTrainedConfig):
    """Configuration of the from-scratch GPT.

    Args:
        vocab_size: number of tokens (GPT-2's BPE: 50,257).
        context_length: longest input the model accepts (absolute position embeddings).
        emb_dim: width of the embeddings and of every block.
        n_heads: attention heads per block (``emb_dim`` must divide evenly).
        n_layers: number of transformer blocks.
        drop_rate: dropout on embeddings, attention weights and both residual branches.
        qkv_bias: whether the query/key/value projections have a bias (GPT-2: yes; the book's training: no).
        layer_norm_eps: epsilon of the layer norms (GPT-2 and the book: 1e-5).
        gelu_approximate: the GELU of the feed-forward, as ``F.gelu``'s ``approximate``: ``"tanh"`` (GPT-2 and the
            book) or ``"none"`` (the exact erf form, nanoGPT's ``nn.GELU()``).
        initializer_range: standard deviation of GPT-2's normal initialisation.
        initializer_style: ``"gpt2"`` (GPT-2's normal initialisation, the default) or ``"book"`` (PyTorch's
            defaults, as the book's ``GPTModel``: embeddings N(0, 1), Linear layers Kaiming-uniform, drawn in the
            book's order, so ``torch.manual_seed(123)`` gives the book's weights; its chapter 5 run).
    """

    model_type = "gpt_scratch"
    keys_to_ignore_at_inference = ["cache"]
    attribute_map = {
        "hidden_size": "emb_dim",
        "num_attention_heads": "n_heads",
        "num_hidden_layers": "n_layers",
        "max_position_embeddings": "context_length",
    }

    vocab_size: int = 50257
    context_length: int = 1024
    emb_dim: int = 768
    n_heads: int = 12
    n_layers: int = 12
    drop_rate: float = 0.1
    qkv_bias: bool = False
    layer_norm_eps: float = 1e-5
    gelu_approximate: str = "tanh"
    initializer_range: float = 0.02
    initializer_style: str = "gpt2"
    use_cache: bool = True
    bos_token_id: int | None = 50256
    eos_token_id: int | None = 50256
    pad_token_id: int | None = 50256
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs: Any) -> None:
        for name in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"GPTScratchConfig.{name} must be a positive integer, got {value!r}")
        if self.emb_dim % self.n_heads != 0:
            raise ValueError(
                f"GPTScratchConfig.emb_dim ({self.emb_dim}) must be divisible by n_heads ({self.n_heads})"
            )
        if not 0.0 <= float(self.drop_rate) < 1.0:
            raise ValueError(f"GPTScratchConfig.drop_rate must be in [0, 1), got {self.drop_rate!r}")
        if self.gelu_approximate not in ("tanh", "none"):
            raise ValueError(
                f"GPTScratchConfig.gelu_approximate must be 'tanh' or 'none', got {self.gelu_approximate!r}"
            )
        if self.initializer_style not in INITIALIZER_STYLES:
            raise ValueError(
                f"GPTScratchConfig.initializer_style must be one of {', '.join(INITIALIZER_STYLES)}, "
                f"got {self.initializer_style!r}"
            )
        super().__post_init__(**kwargs)

    @property
    def head_dim(self) -> int:
        return self.emb_dim // self.n_heads

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "GPTScratchConfig":
        """A named size: ``gpt2-small|medium|large|xl`` or the book's ``GPT_CONFIG_124M``; overrides win.

        >>> GPTScratchConfig.from_preset("GPT_CONFIG_124M", context_length=256)  # the book's chapter 5 run
        """
        if name not in PRESETS:
            raise ValueError(f"Unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


__all__ = ["GPTScratchConfig", "PRESETS"]
