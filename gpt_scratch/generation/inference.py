"""`gpt-scratch generate FOLDER --prompt ...`: text from any saved model folder, through transformers' generate().

The folder is what `save_pretrained` wrote (a pretraining or fine-tuning run, or a Hub download): it is loaded
with AutoModelForCausalLM and AutoTokenizer (`load_model`; a config.json that does not match the weights is
refused), and decoded with the model's KV cache. Temperature 0 is greedy decoding (the book's `generate` with
temperature 0); otherwise sampling with temperature, top-k and top-p.

Every decoding here goes through `model.generate`: `generate_cropped` for one prompt, past the context as the
book crops it, and `generate_batch` for many prompts with left padding (the instruction workflow's answers).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


def _drop_load_report(record: logging.LogRecord) -> bool:
    return "LOAD REPORT" not in str(record.msg)


def from_pretrained_checked(
    model_class: Any,
    folder: str | os.PathLike,
    *,
    new_tensors: Sequence[str] = (),
    unused_tensors: Sequence[str] = (),
    **kwargs: Any,
) -> Any:
    """`model_class.from_pretrained(folder, **kwargs)`, refused when the folder's weights do not fit its config.

    transformers re-initialises at random every tensor that is missing from the checkpoint or has another shape
    there, and only logs a report. Here that is allowed only for the tensors whose names start with one of
    `new_tensors` (a classifier's new head, `score.`), and checkpoint tensors may go unused only under
    `unused_tensors` (a causal LM's `out_head.` when a classifier is built on it); anything else is a
    `ValueError` naming the tensors. The report is not printed for those expected differences.
    """
    report_logger = logging.getLogger("transformers.modeling_utils")
    report_logger.addFilter(_drop_load_report)  # the check below replaces transformers' load report
    try:
        model, info = model_class.from_pretrained(
            folder, **kwargs, ignore_mismatched_sizes=True, output_loading_info=True
        )
    finally:
        report_logger.removeFilter(_drop_load_report)

    def expected(name: str, prefixes: Sequence[str]) -> bool:
        return name.startswith(tuple(prefixes))

    problems = [
        f"{name}: {tuple(saved)} in the weights, {tuple(wanted)} in config.json"
        for name, saved, wanted in sorted(info["mismatched_keys"])
        if not expected(name, new_tensors)
    ]
    problems += [
        f"{name}: not in the weights"
        for name in sorted(info["missing_keys"])
        if not expected(name, new_tensors)
    ]
    problems += [
        f"{name}: in the weights, not in the model config.json describes"
        for name in sorted(info["unexpected_keys"])
        if not expected(name, unused_tensors)
    ]
    if problems:
        shown = "; ".join(problems[:6]) + (f"; and {len(problems) - 6} more" if len(problems) > 6 else "")
        raise ValueError(
            f"{folder}: config.json does not match the saved weights ({len(problems)} tensors would be "
            f"re-initialised at random or dropped): {shown}. Give the folder its own config.json"
        )
    return model


def load_model(
    source: str | os.PathLike,
    *,
    from_gpt2: bool = False,
    drop_rate: float | None = None,
    quantize: str | None = None,
    n_heads: int | None = None,
) -> tuple[Any, Any]:
    """A causal LM (eval mode) and its tokenizer: a folder written by `save_pretrained`, or with `from_gpt2` a
    Hugging Face GPT-2 checkpoint (folder or Hub id, e.g. `openai-community/gpt2-medium`) with GPT-2's tokenizer;
    a weights file or a Hub id is read by `gpt_scratch.convert.load_source` (the book's .pth, nanoGPT's ckpt.pt;
    `n_heads` where it does not say), with GPT-2's tokenizer.

    `drop_rate` overrides the model's dropout. A folder without tokenizer files gets GPT-2's tokenizer.
    `quantize` ("int8" or "bf16", see `gpt_scratch.quantize`) shrinks the weights for decoding.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import gpt_scratch  # noqa: F401  (registers gpt_scratch with the Auto classes, AutoTokenizer included)
    from gpt_scratch.hardware import warn_if_slow_bf16
    from gpt_scratch.modeling_gpt_scratch import GPTScratchForCausalLM
    from gpt_scratch.quantization import layout_for_decoding
    from gpt_scratch.quantization import quantize as quantize_model
    from gpt_scratch.tokenization_gpt_scratch import GPTScratchTokenizer

    overrides = {} if drop_rate is None else {"drop_rate": drop_rate}
    if from_gpt2:
        return GPTScratchForCausalLM.from_gpt2(source, **overrides).eval(), GPTScratchTokenizer()
    folder = Path(source)
    if not folder.is_dir():
        from gpt_scratch.convert import load_source

        model = load_source(source, n_heads=n_heads, **overrides).model
        if not isinstance(model, GPTScratchForCausalLM):
            raise ValueError(f"{source}: a {type(model).__name__}, not a causal language model")
        return model, GPTScratchTokenizer(model_max_length=model.config.context_length)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{folder}: no config.json here; give a folder written by save_pretrained "
            "(e.g. a `gpt-scratch pretrain` run), or a GPT-2 checkpoint with --from-gpt2"
        )
    # The installed package's classes, not the copies of its code saved in the folder (no remote code to trust).
    model = from_pretrained_checked(AutoModelForCausalLM, folder, trust_remote_code=False, **overrides)
    if n_heads not in (None, model.config.n_heads):
        raise ValueError(f"{folder}: its config.json says {model.config.n_heads} heads; leave out --n-heads")
    tokenizer = None
    if any((folder / name).is_file() for name in ("tokenizer_config.json", "vocab.json")):
        check_tokenizer_files(folder)
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        except ValueError as e:
            if "sentencepiece or tiktoken" not in str(e):
                raise
            present = sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.endswith(".py"))
            raise ValueError(
                f"{folder}: the tokenizer cannot be built from the files here ({', '.join(present)}): its "
                "tokenizer.json is missing"
            ) from None
    if quantize:
        model = quantize_model(model, quantize)
    elif model.dtype == torch.bfloat16:
        warn_if_slow_bf16(f"{folder}: bf16 weights", model.device)
    elif model.dtype == torch.float32:
        layout_for_decoding(model)  # fp32 weights laid out (in, out) for single-row reads
    return model.eval(), tokenizer or GPTScratchTokenizer()


def check_tokenizer_files(folder: Path) -> None:
    """Refuse a folder whose tokenizer files are incomplete, naming the missing ones (instead of transformers'
    "install sentencepiece or tiktoken", or a GPT-2 tokenizer with an empty vocabulary that encodes nothing)."""
    import json

    config_file = folder / "tokenizer_config.json"
    tokenizer_class = (
        json.loads(config_file.read_text()).get("tokenizer_class") if config_file.is_file() else None
    )
    has = {name: (folder / name).is_file() for name in ("tokenizer.json", "vocab.json", "merges.txt")}
    if (folder / "tokenizer.model").is_file():
        return  # a sentencepiece model: not GPT-2's BPE, transformers checks it
    if tokenizer_class == "GPTScratchTokenizer" or not has["tokenizer.json"]:
        # GPT-2's BPE: vocab.json and merges.txt together (gpt_scratch's own tokenizer may have neither: it then
        # reads tiktoken's gpt2 files, the same vocabulary)
        missing = [name for name in ("vocab.json", "merges.txt") if not has[name]]
        if len(missing) == 1 or (missing and tokenizer_class != "GPTScratchTokenizer"):
            needed = "vocab.json and merges.txt" + (
                "" if tokenizer_class == "GPTScratchTokenizer" else ", or tokenizer.json"
            )
            raise FileNotFoundError(
                f"{folder}: tokenizer files missing: {', '.join(missing)} ({tokenizer_class or 'the tokenizer'} needs "
                f"{needed}); copy them from the folder the model came from, or remove tokenizer_config.json to use "
                "GPT-2's tokenizer"
            )


def generate_text(
    model: Any,
    tokenizer: Any,
    prompt: str,
    max_new_tokens: int = 50,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
) -> str:
    """The prompt followed by up to `max_new_tokens` generated tokens (stopping at end-of-text)."""
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens (--max-new-tokens) must be >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k (--top-k) must be >= 1, got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p (--top-p) must be in (0, 1], got {top_p}")
    if seed is not None:
        torch.manual_seed(seed)
    input_ids = tokenizer(prompt, return_tensors="pt").input_ids.to(model.device)
    if input_ids.shape[1] == 0:
        raise ValueError("the prompt is empty: give --prompt at least one token of text to continue")
    sampling = dict(do_sample=True, temperature=temperature, top_k=top_k or 0, top_p=top_p or 1.0)
    decoding = dict(
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **(sampling if temperature > 0 else dict(do_sample=False)),
    )
    out = generate_cropped(model, input_ids, max_new_tokens, **decoding)
    return tokenizer.decode(out[0], skip_special_tokens=True)


@torch.no_grad()
def generate_cropped(
    model: Any, input_ids: torch.Tensor, max_new_tokens: int, **decoding: Any
) -> torch.Tensor:
    """`model.generate(input_ids, max_new_tokens=..., **decoding)` (one unpadded row) past the model's context,
    as the book's `generate` decodes: each new token sees only the last `context_length` tokens.

    While prompt and answer fit, one `generate()` call with the KV cache; then one token a call on the cropped
    context (the cache cannot slide: positions are absolute). Stops at `decoding["eos_token_id"]`. Returns the
    prompt and every new token, (1, prompt + new).
    """
    context_length = getattr(model.config, "context_length", None) or model.config.max_position_embeddings
    eos_token_id = decoding.get("eos_token_id")
    fits = max(0, context_length - input_ids.shape[1] + 1)  # new tokens whose inputs all have a position
    out = input_ids
    while out.shape[1] - input_ids.shape[1] < max_new_tokens:
        done = out.shape[1] - input_ids.shape[1]
        window = out[:, -context_length:]  # the book's crop: idx[:, -context_size:]
        steps = min(max_new_tokens - done, fits if done == 0 and fits else 1)
        new = model.generate(
            input_ids=window, attention_mask=torch.ones_like(window), max_new_tokens=steps, **decoding
        )[:, window.shape[1] :]
        out = torch.cat([out, new], dim=1)
        if new.shape[1] < steps or (eos_token_id is not None and bool((new == eos_token_id).any())):
            break  # end-of-text
    return out


@torch.no_grad()
def generate_batch(
    model: Any,
    prompts: Sequence[list[int]],
    max_new_tokens: Sequence[int],
    eos_token_id: int,
    batch_size: int = 8,
    progress: str | None = None,
) -> list[list[int]]:
    """Greedy continuations of token-id prompts through `model.generate`, `batch_size` prompts at a time with
    left padding; each stops after its `max_new_tokens` or at (and including) `eos_token_id`.

    Prompts are sorted by length (little padding). A batch decodes its smallest budget; a row that budget cut
    short is continued alone (`generate_cropped`), so every answer equals decoding its prompt alone.
    """
    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    answers: dict[int, list[int]] = {}
    batches = range(0, len(order), batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc=progress)
    for start in batches:
        rows = order[start : start + batch_size]
        width = max(len(prompts[i]) for i in rows)
        input_ids = torch.full((len(rows), width), eos_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for row, i in enumerate(rows):
            input_ids[row, width - len(prompts[i]) :] = torch.tensor(prompts[i])
            attention_mask[row, width - len(prompts[i]) :] = 1
        budget = min(max_new_tokens[i] for i in rows)
        outputs = (
            model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention_mask.to(device),
                max_new_tokens=budget,
                do_sample=False,
                eos_token_id=eos_token_id,
                pad_token_id=eos_token_id,
            )[:, width:].tolist()
            if budget > 0
            else [[] for _ in rows]
        )
        for i, out in zip(rows, outputs, strict=True):
            out = _until_eos(out, eos_token_id)
            if len(out) < max_new_tokens[i] and eos_token_id not in out:  # cut short by the batch's budget
                more = generate_cropped(
                    model,
                    torch.tensor([prompts[i] + out], device=device),
                    max_new_tokens[i] - len(out),
                    do_sample=False,
                    eos_token_id=eos_token_id,
                    pad_token_id=eos_token_id,
                )
                out = _until_eos(more[0, len(prompts[i]) :].tolist(), eos_token_id)
            answers[i] = out
    return [answers[i] for i in range(len(prompts))]


def _until_eos(tokens: list[int], eos_token_id: int) -> list[int]:
    """The tokens up to and including the first end-of-text (generate pads finished rows with it)."""
    return tokens[: tokens.index(eos_token_id) + 1] if eos_token_id in tokens else tokens


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gpt_scratch.convert import add_model_source_arguments

    parser.add_argument(
        "folder",
        help="a folder written by save_pretrained (e.g. a run folder), or a file convert reads (.pth, ckpt.pt)",
    )
    parser.add_argument("--prompt", default="Every effort moves you", help="text to continue")
    parser.add_argument("--max-new-tokens", type=int, default=50, help="tokens to generate (default: 50)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy (default); > 0: sample")
    parser.add_argument("--top-k", type=int, default=None, help="sample from the k most likely tokens")
    parser.add_argument(
        "--top-p", type=float, default=None, help="sample from the smallest set with this mass"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for reproducible samples")
    add_quantize_argument(parser)
    add_model_source_arguments(parser)


def add_quantize_argument(parser: argparse.ArgumentParser) -> None:
    """``--quantize int8|bf16``, shared by ``gpt-scratch generate`` and ``gpt-scratch chat``."""
    from gpt_scratch.quantization import QUANTIZE_CHOICES

    parser.add_argument("--quantize", choices=QUANTIZE_CHOICES, default=None,
                        help="int8: dynamic int8 weights (CPU); bf16: bf16 weights (CPUs with native bf16)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    model, tokenizer = load_model(args.folder, quantize=args.quantize, n_heads=args.n_heads)
    print(
        generate_text(
            model,
            tokenizer,
            args.prompt,
            args.max_new_tokens,
            args.temperature,
            args.top_k,
            args.top_p,
            args.seed,
        )
    )
    return 0
