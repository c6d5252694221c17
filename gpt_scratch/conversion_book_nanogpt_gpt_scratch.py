"""The book's ``GPTModel`` state dicts and nanoGPT's ``ckpt.pt`` in and out, beside the GPT-2 conversion.

    the book (chapter 4)                         ours
    tok_emb, pos_emb, final_norm, out_head       model.tok_emb, model.pos_emb, model.final_norm, out_head
    trf_blocks.N.att.W_query | W_key | W_value   model.trf_blocks.N.att.qkv (stacked rows: [query; key; value])
    trf_blocks.N.att.mask                        (a buffer: the causal mask is made on the fly)
    out_head (num_classes, emb_dim) + bias       score (chapter 6's classifier)

nanoGPT names its tensors as GPT-2 does (``transformer.h.N.attn.c_attn``, ...) but stores ``nn.Linear`` weights
(out, in), untransposed, ties ``lm_head`` to ``wte`` and uses the exact GELU; ``bias=False`` drops every bias,
which is our model with zero biases: the same function. ``torch.compile`` prefixes keys with ``_orig_mod.``.

The head count is in no shape: nanoGPT's ``model_args`` has it, for the book's files it is the book's preset for
the width (``BOOK_HEADS``) unless given. ``GPTScratchForCausalLM.save_book`` / ``.save_nanogpt`` are thin calls
into this module; ``gpt_scratch.convert`` reads the files. Like the GPT-2 conversion it imports nothing from the
package but the configuration and that conversion: ``save_pretrained`` ships it beside the modeling file.
"""

import json
import os
import re
import warnings
from pathlib import Path

import torch

from .configuration_gpt_scratch import GPTScratchConfig
from .conversion_gpt_scratch import _gpt2_names, matching_preset

BOOK_HEADS = {
    768: 12,
    1024: 16,
    1280: 20,
    1600: 25,
}  # GPT-2 small, medium, large, xl (the book's model_configs)
PREFIXES = ("_orig_mod.", "module.")  # torch.compile, DataParallel / DDP
BOOK_KEY = re.compile(
    r"(tok_emb|pos_emb)\.weight|final_norm\.(scale|shift)|out_head\.(weight|bias)|trf_blocks\.\d+\."
    r"(att\.(W_query|W_key|W_value|out_proj)\.(weight|bias)|att\.mask|ff\.layers\.[02]\.(weight|bias)|norm[12]\.(scale|shift))"
)
NANOGPT_KEY = re.compile(
    r"transformer\.(wte|wpe)\.weight|transformer\.ln_f\.(weight|bias)|lm_head\.weight|transformer\.h\.\d+\."
    r"(ln_[12]\.(weight|bias)|attn\.(c_attn|c_proj)\.(weight|bias)|attn\.bias|mlp\.(c_fc|c_proj)\.(weight|bias))"
)


def strip_prefixes(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys without the ``_orig_mod.`` of ``torch.compile`` and the ``module.`` of DataParallel, wherever they are."""
    stripped = {}
    for key, tensor in state_dict.items():
        for prefix in PREFIXES:
            key = key.replace(prefix, "")
        stripped[key] = tensor
    return stripped


def heads_for(emb_dim: int, n_heads: int | None) -> int:
    """``n_heads`` if given, else the book's preset for the width; an error when neither fits."""
    if n_heads is None:
        if emb_dim not in BOOK_HEADS:
            known = ", ".join(f"{w}: {h}" for w, h in BOOK_HEADS.items())
            raise ValueError(
                f"the number of attention heads is not in the weights, and width {emb_dim} has no book preset "
                f"({known}): give it with --n-heads (n_heads= in Python)"
            )
        n_heads = BOOK_HEADS[emb_dim]
    if emb_dim % n_heads:
        raise ValueError(f"{n_heads} attention heads do not divide the width {emb_dim}")
    return n_heads


def check_keys(state_dict: dict, pattern: re.Pattern, required: list[str], what: str) -> None:
    """One error listing every key that does not fit ``what`` and every required key that is missing."""
    unfit = [k for k in state_dict if not pattern.fullmatch(k)]
    missing = [k for k in required if k not in state_dict]
    if unfit or missing:
        lines = [f"unexpected {k} {tuple(getattr(state_dict[k], 'shape', ()))}" for k in unfit]
        lines += [f"missing {k}" for k in missing]
        shown = lines[:20] + ([f"... and {len(lines) - 20} more"] if len(lines) > 20 else [])
        raise ValueError(f"not {what}: these keys do not fit it:\n  " + "\n  ".join(shown))


def convert_tensors(
    source: dict[str, torch.Tensor],
    names: list[tuple[tuple[str, ...], str]],
    shapes: dict[str, tuple[int, ...]],
    ignored: re.Pattern | None = None,
) -> dict[str, torch.Tensor]:
    """Our state dict from (source names, our name) pairs; several source tensors are stacked along dim 0.

    Every missing, misshapen or unused source tensor is listed in one ValueError (a shape names both shapes).
    """
    ours, problems, used = {}, [], set()
    for source_names, our_name in names:
        parts, want = [], shapes[our_name]
        part_shape = (want[0] // len(source_names), *want[1:])
        for name in source_names:
            if name not in source:
                problems.append(f"missing tensor {name}")
            elif tuple(source[name].shape) != part_shape:
                problems.append(
                    f"{name}: shape {tuple(source[name].shape)}, the configuration needs {part_shape}"
                )
            parts.append(source.get(name))
            used.add(name)
        if all(p is not None for p in parts):
            ours[our_name] = torch.cat(parts) if len(parts) > 1 else parts[0].clone()
    problems += [
        f"unexpected tensor {k}" for k in source if k not in used and not (ignored and ignored.fullmatch(k))
    ]
    if problems:
        raise ValueError("the weights do not fit the configuration:\n  " + "\n  ".join(problems))
    return ours


def scratch_shapes(config: GPTScratchConfig) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor of our model (causal LM and classifier heads both)."""
    v, t, d, n = config.vocab_size, config.context_length, config.emb_dim, config.num_labels
    shapes = {"model.tok_emb.weight": (v, d), "model.pos_emb.weight": (t, d), "model.final_norm.scale": (d,),
              "model.final_norm.shift": (d,), "out_head.weight": (v, d), "score.weight": (n, d), "score.bias": (n,)}  # fmt: skip
    per_block = {"att.qkv.weight": (3 * d, d), "att.qkv.bias": (3 * d,), "att.out_proj.weight": (d, d),
                 "att.out_proj.bias": (d,), "ff.layers.0.weight": (4 * d, d), "ff.layers.0.bias": (4 * d,),
                 "ff.layers.2.weight": (d, 4 * d), "ff.layers.2.bias": (d,), "norm1.scale": (d,), "norm1.shift": (d,),
                 "norm2.scale": (d,), "norm2.shift": (d,)}  # fmt: skip
    for i in range(config.n_layers):
        shapes |= {f"model.trf_blocks.{i}.{name}": shape for name, shape in per_block.items()}
    return shapes


def warn_if_other_function(config: GPTScratchConfig, where: str, gelu: str) -> None:
    """A warning when the code ``where`` the model goes computes another GELU or layer norm than ``config``."""
    if config.gelu_approximate != gelu or config.layer_norm_eps != 1e-5:
        warnings.warn(
            f"{where} uses gelu approximate={gelu!r} and layer-norm eps 1e-5; this model has "
            f"{config.gelu_approximate!r} and {config.layer_norm_eps}: there it computes a slightly different function",
            stacklevel=3,
        )


# ----------------------------------------------------------------------------------------------------------------
# The book's GPTModel (chapter 4), its chapter 6 classifier


def book_names(config: GPTScratchConfig, classifier: bool) -> list[tuple[tuple[str, ...], str]]:
    """(the book's names, our name) for every tensor of our model."""
    names = [(("tok_emb.weight",), "model.tok_emb.weight"), (("pos_emb.weight",), "model.pos_emb.weight"),
             (("final_norm.scale",), "model.final_norm.scale"), (("final_norm.shift",), "model.final_norm.shift")]  # fmt: skip
    for i in range(config.n_layers):
        b = f"trf_blocks.{i}."
        for part in ("weight", "bias") if config.qkv_bias else ("weight",):
            names.append((tuple(f"{b}att.{w}.{part}" for w in ("W_query", "W_key", "W_value")), f"model.{b}att.qkv.{part}"))  # fmt: skip
        for name in ("att.out_proj.weight", "att.out_proj.bias", "ff.layers.0.weight", "ff.layers.0.bias",
                     "ff.layers.2.weight", "ff.layers.2.bias", "norm1.scale", "norm1.shift", "norm2.scale", "norm2.shift"):  # fmt: skip
            names.append(((b + name,), f"model.{b}{name}"))
    heads = [("out_head.weight", "score.weight"), ("out_head.bias", "score.bias")] if classifier else [("out_head.weight", "out_head.weight")]  # fmt: skip
    return names + [((book,), ours) for book, ours in heads]


def book_config(book: dict[str, torch.Tensor], n_heads: int | None = None, **overrides) -> GPTScratchConfig:
    """Our configuration for a book ``GPTModel`` state dict, from its shapes; ``out_head`` with fewer rows than the
    vocabulary is chapter 6's classifier (``num_labels`` = its rows)."""
    check_keys(book, BOOK_KEY, ["tok_emb.weight", "pos_emb.weight", "final_norm.scale", "out_head.weight"],
               "a state dict of the book's GPTModel")  # fmt: skip
    vocab_size, emb_dim = book["tok_emb.weight"].shape
    num_classes = book["out_head.weight"].shape[0]
    classifier = num_classes != vocab_size
    config = GPTScratchConfig(
        vocab_size=vocab_size,
        context_length=book["pos_emb.weight"].shape[0],
        emb_dim=emb_dim,
        n_heads=heads_for(emb_dim, n_heads),
        n_layers=len({k.split(".")[1] for k in book if k.startswith("trf_blocks.")}),
        qkv_bias="trf_blocks.0.att.W_query.bias" in book,
        tie_word_embeddings=False,  # the book's out_head is its own tensor
        **({"num_labels": num_classes} if classifier else {}),
        **overrides,
    )
    config.architectures = ["GPTScratchForSequenceClassification" if classifier else "GPTScratchForCausalLM"]
    config.preset = None if classifier else matching_preset(config)
    return config


def book_to_scratch_state_dict(
    book: dict[str, torch.Tensor], config: GPTScratchConfig
) -> dict[str, torch.Tensor]:
    """Our state dict for the book's; the ``att.mask`` buffers are checked, not kept (ours makes its mask)."""
    classifier = "GPTScratchForSequenceClassification" in (config.architectures or [])
    t = config.context_length
    for key, mask in book.items():
        if key.endswith(".att.mask") and tuple(mask.shape) != (t, t):
            raise ValueError(f"{key}: shape {tuple(mask.shape)}, the context of {t} tokens needs {(t, t)}")
    return convert_tensors(
        book, book_names(config, classifier), scratch_shapes(config), re.compile(r".*\.att\.mask")
    )


def book_cfg(config: GPTScratchConfig) -> dict:
    """The book's ``cfg`` dict (``GPT_CONFIG_124M``'s keys) for ``config``."""
    keys = ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers", "drop_rate", "qkv_bias")
    return {key: getattr(config, key) for key in keys}


def scratch_to_book_state_dict(
    ours: dict[str, torch.Tensor], config: GPTScratchConfig
) -> dict[str, torch.Tensor]:
    """The book's ``GPTModel.state_dict()`` (masks included) for our model's state dict."""
    classifier = "score.weight" in ours
    book = {}
    for names, our_name in book_names(config, classifier):
        parts = ours[our_name].chunk(len(names))  # our qkv: back into W_query, W_key, W_value
        book |= {name: part.clone().contiguous() for name, part in zip(names, parts, strict=True)}
    mask = torch.triu(torch.ones(config.context_length, config.context_length), diagonal=1)
    book |= {f"trf_blocks.{i}.att.mask": mask.clone() for i in range(config.n_layers)}
    return book


def save_book(model, path: str | os.PathLike) -> tuple[Path, Path]:
    """``path``: the state dict the book's ``GPTModel(cfg).load_state_dict(..., strict=True)`` takes; beside it
    ``<path stem>.json``: that ``cfg``. The book's GELU is the tanh approximation (a model with the exact one, from
    nanoGPT, is saved with a warning: the book's code computes a slightly different function)."""
    config = model.config
    warn_if_other_function(config, "the book's GPTModel", gelu="tanh")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(scratch_to_book_state_dict(model.state_dict(), config), path)
    cfg_path = path.with_suffix(".json")
    cfg_path.write_text(json.dumps(book_cfg(config), indent=2) + "\n")
    return path, cfg_path


# ----------------------------------------------------------------------------------------------------------------
# nanoGPT's GPT (model.py) and its ckpt.pt


def nanogpt_config(
    nano: dict[str, torch.Tensor], model_args: dict | None = None, n_heads: int | None = None, **overrides
) -> GPTScratchConfig:
    """Our configuration for a nanoGPT state dict: the heads from ``model_args`` (else ``n_heads`` or the book's
    preset for the width), the rest from the shapes."""
    check_keys(nano, NANOGPT_KEY, ["transformer.wte.weight", "transformer.wpe.weight", "transformer.ln_f.weight"],
               "a state dict of nanoGPT's GPT")  # fmt: skip
    vocab_size, emb_dim = nano["transformer.wte.weight"].shape
    if model_args and n_heads is not None and n_heads != model_args.get("n_head"):
        raise ValueError(
            f"n_heads={n_heads}, but the checkpoint's model_args say n_head={model_args['n_head']}"
        )
    config = GPTScratchConfig(
        vocab_size=vocab_size,
        context_length=nano["transformer.wpe.weight"].shape[0],
        emb_dim=emb_dim,
        n_heads=heads_for(emb_dim, (model_args or {}).get("n_head", n_heads)),
        n_layers=len({k.split(".")[2] for k in nano if k.startswith("transformer.h.")}),
        qkv_bias=True,  # bias=False is loaded as zero biases: the same function
        gelu_approximate="none",  # nanoGPT's nn.GELU()
        tie_word_embeddings=True,
        **{
            **({"drop_rate": model_args["dropout"]} if model_args and "dropout" in model_args else {}),
            **overrides,
        },
    )
    config.architectures = ["GPTScratchForCausalLM"]
    return config


def nanogpt_to_scratch_state_dict(
    nano: dict[str, torch.Tensor], config: GPTScratchConfig
) -> dict[str, torch.Tensor]:
    """Our state dict for nanoGPT's; every bias it lacks (``bias=False``) is zero."""
    nano = dict(nano)
    if "lm_head.weight" in nano and not torch.equal(nano["lm_head.weight"], nano["transformer.wte.weight"]):
        raise ValueError("lm_head.weight differs from transformer.wte.weight: nanoGPT ties them")
    nano.pop("lm_head.weight", None)
    names = [((n,), ours) for n, ours, _ in _gpt2_names(config.n_layers)]  # untransposed: nn.Linear (out, in)
    shapes = scratch_shapes(config)
    if "transformer.ln_f.bias" not in nano:  # bias=False: no bias anywhere, ours are zero
        for (nano_name,), our_name in names:
            if nano_name.endswith(".bias") and nano_name not in nano:
                nano[nano_name] = torch.zeros(shapes[our_name], dtype=nano["transformer.wte.weight"].dtype)
    mask_buffer = re.compile(
        r"transformer\.h\.\d+\.attn\.bias"
    )  # nanoGPT's causal mask without flash attention
    ours = convert_tensors(nano, names, shapes, mask_buffer)
    ours["out_head.weight"] = ours["model.tok_emb.weight"]
    return ours


def scratch_to_nanogpt(ours: dict[str, torch.Tensor], config: GPTScratchConfig) -> tuple[dict, dict]:
    """nanoGPT's (state dict, model_args) for our model; ``bias=False`` when every bias is zero."""
    if "score.weight" in ours:
        raise ValueError("nanoGPT has no classifier head: save_nanogpt takes a causal LM")
    if not config.tie_word_embeddings and not torch.equal(
        ours["out_head.weight"], ours["model.tok_emb.weight"]
    ):
        raise ValueError(
            "this model's output head is not tied to its token embedding (tie_word_embeddings=False, e.g. the "
            "book's GPT_CONFIG_124M); nanoGPT ties lm_head to wte and cannot hold it"
        )
    d = config.emb_dim
    full = dict(ours)
    dtype = ours["model.tok_emb.weight"].dtype
    full |= {f"model.trf_blocks.{i}.att.qkv.bias": torch.zeros(3 * d, dtype=dtype) for i in range(config.n_layers)
             if f"model.trf_blocks.{i}.att.qkv.bias" not in ours}  # fmt: skip
    nano = {
        nano_name: full[our_name].clone().contiguous()
        for nano_name, our_name, _ in _gpt2_names(config.n_layers)
    }
    bias = any(bool(t.any()) for name, t in nano.items() if name.endswith(".bias"))
    if not bias:
        nano = {name: t for name, t in nano.items() if not name.endswith(".bias")}
    nano["lm_head.weight"] = nano["transformer.wte.weight"]
    model_args = dict(n_layer=config.n_layers, n_head=config.n_heads, n_embd=d, block_size=config.context_length,
                      bias=bias, vocab_size=config.vocab_size, dropout=float(config.drop_rate))  # fmt: skip
    return nano, model_args


def save_nanogpt(model, path: str | os.PathLike, iter_num: int = 0, best_val_loss: float = 1e9) -> Path:
    """A ``ckpt.pt`` that nanoGPT's ``GPT(GPTConfig(**ckpt["model_args"]))`` loads strictly (``sample.py``).
    nanoGPT's GELU is the exact one (a model with the tanh GELU, the book's, is saved with a warning)."""
    config = model.config
    warn_if_other_function(config, "nanoGPT's GPT", gelu="none")
    nano, model_args = scratch_to_nanogpt(model.state_dict(), config)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {"model": nano, "model_args": model_args, "iter_num": iter_num, "best_val_loss": best_val_loss,
                  "config": {**model_args, "init_from": "gpt_scratch"}}  # fmt: skip
    torch.save(checkpoint, path)
    return path


__all__ = [
    "BOOK_HEADS",
    "strip_prefixes",
    "heads_for",
    "book_config",
    "book_to_scratch_state_dict",
    "scratch_to_book_state_dict",
    "book_cfg",
    "save_book",
    "nanogpt_config",
    "nanogpt_to_scratch_state_dict",
    "scratch_to_nanogpt",
    "save_nanogpt",
]
