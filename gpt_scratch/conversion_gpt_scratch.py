"""GPT-2 checkpoints in and out (chapter 5's ``load_weights_into_gpt``), apart from the model it converts.

``GPTScratchForCausalLM.from_gpt2`` and ``.save_gpt2`` are thin calls into this module. It imports nothing from the
package but the configuration (and, to export GPT-2's tokenizer files, the tokenizer): ``save_pretrained`` ships it
beside the modeling file, so both methods also work in a folder loaded with ``trust_remote_code``.
"""

import json
import os
from pathlib import Path

import torch

from .configuration_gpt_scratch import PRESETS, GPTScratchConfig


def gpt2_config_to_scratch(gpt2: dict, **overrides) -> GPTScratchConfig:
    """Our configuration for a GPT-2 ``config.json``; ``preset`` names the matching size (gpt2-small, ...) if any."""
    if "n_embd" not in gpt2:
        what = f"a {gpt2['model_type']!r} config" if "model_type" in gpt2 else "not a GPT-2 config"
        hint = (
            " (a gpt_scratch folder: load it with from_pretrained)"
            if gpt2.get("model_type") == "gpt_scratch"
            else ""
        )
        raise ValueError(f"from_gpt2 needs a GPT-2 checkpoint (config.json with n_embd), got {what}{hint}")
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
    config.preset = matching_preset(config, ("emb_dim", "n_layers", "n_heads", "qkv_bias"))
    return config


def matching_preset(config: GPTScratchConfig, fields: tuple[str, ...] = ()) -> str | None:
    """The name of the preset whose ``fields`` (default: all of a preset's) ``config`` has, else None."""
    for name, preset in PRESETS.items():
        if all(getattr(config, k) == v for k, v in preset.items() if not fields or k in fields):
            return name
    return None


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


def read_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint folder: safetensors (single or sharded), else a weights-only pytorch_model.bin."""
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if files:
        return {k: v for f in files for k, v in load_file(str(f)).items()}
    if (folder / "pytorch_model.bin").exists():
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"No *.safetensors or pytorch_model.bin in {folder}")


def load_gpt2(model_class: type, source: str | os.PathLike, **config_overrides):
    """``model_class`` (GPTScratchForCausalLM) with the weights of a GPT-2 folder or Hub id, in eval mode."""
    folder = Path(source)
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        folder = Path(
            snapshot_download(str(source), allow_patterns=["config.json", "*.safetensors", "*.json"])
        )
    config_file = folder / "config.json"
    config = gpt2_config_to_scratch(json.loads(config_file.read_text()), **config_overrides)
    model = model_class(config)
    model.load_state_dict(gpt2_to_scratch_state_dict(read_tensors(folder), config), strict=True)
    model.tie_weights()
    return model.eval()


def saved_chat_template(folder: str | os.PathLike) -> str | None:
    """The chat template saved in a model folder (``chat_template.jinja`` or tokenizer_config.json's), if any."""
    folder = Path(folder)
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text(encoding="utf-8")
    if (folder / "tokenizer_config.json").is_file():
        template = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8")).get(
            "chat_template"
        )
        return template if isinstance(template, str) else None
    return None


def save_gpt2(model, folder: str | os.PathLike, chat_template: str | None = None) -> None:
    """A plain GPT-2 folder: config.json, generation_config.json, model.safetensors and GPT-2's tokenizer files
    (``AutoTokenizer`` and ``GPT2LMHeadModel`` of plain transformers load it, ``model_max_length`` = the model's
    context) with ``chat_template``: by default the one saved in the folder the model was loaded from, if any."""
    from safetensors.torch import save_file
    from transformers import GPT2Config, GPT2Tokenizer

    from .tokenization_gpt_scratch import GPTScratchTokenizer

    c = model.config
    gpt2_config = GPT2Config(
        vocab_size=c.vocab_size, n_positions=c.context_length, n_embd=c.emb_dim, n_layer=c.n_layers,
        n_head=c.n_heads, resid_pdrop=c.drop_rate, embd_pdrop=c.drop_rate, attn_pdrop=c.drop_rate,
        layer_norm_epsilon=c.layer_norm_eps, tie_word_embeddings=c.tie_word_embeddings,
        bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id, pad_token_id=c.pad_token_id,
        architectures=["GPT2LMHeadModel"],
    )  # fmt: skip
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    gpt2_config.save_pretrained(folder)
    model.generation_config.save_pretrained(folder)  # the model's decoding defaults: stop ids, lengths, ...
    tensors = scratch_to_gpt2_state_dict(model.state_dict(), c)
    save_file(
        {k: v.contiguous() for k, v in tensors.items()}, str(folder / "model.safetensors"), {"format": "pt"}
    )
    vocab_file, merges_file = GPTScratchTokenizer().save_vocabulary(str(folder))[:2]
    tokenizer = GPT2Tokenizer(vocab_file, merges_file, model_max_length=c.context_length)
    tokenizer.pad_token = tokenizer.eos_token
    source = getattr(c, "_name_or_path", "")
    if chat_template is None and source and Path(source).is_dir():
        chat_template = saved_chat_template(source)
    tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(folder)


__all__ = [
    "gpt2_config_to_scratch",
    "matching_preset",
    "gpt2_to_scratch_state_dict",
    "scratch_to_gpt2_state_dict",
    "read_tensors",
    "load_gpt2",
    "saved_chat_template",
    "save_gpt2",
]
