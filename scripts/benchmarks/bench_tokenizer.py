"""Tokenizer throughput: raw tiktoken vs GPTScratchTokenizer vs transformers' fast tokenizers (GPT-2's, and the saved
tokenizer.json that AutoTokenizer reads where gpt_scratch is not installed), in MB/s.

The texts default to the book's instruction data (chapter 7), each record formatted as the training text
(prompt + ``### Response:`` + output), found through ``GPT_SCRATCH_DATA_DIR`` or downloaded like every corpus.
Every case is warmed up once, then the cases run in turn ``repeats`` times (interleaved, so a slow moment of
the machine hits them all alike); the figures are the median and the min/max over the repeats.

    python scripts/benchmarks/bench_tokenizer.py
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

from gpt_scratch.tokenization_gpt_scratch import ENDOFTEXT, GPTScratchTokenizer

TARGET_RATIO = 0.85  # GPTScratchTokenizer's batched encoding vs raw tiktoken


def instruction_texts() -> list[str]:
    """The book's 1,100 instruction records, each as the text the model is fine-tuned on."""
    from gpt_scratch.data.instructions import format_training_text, load_instruction_data

    return [format_training_text(record) for record in load_instruction_data("alpaca-book")]


def benchmark_tokenizer(texts: list[str] | None = None, repeats: int = 5) -> dict[str, Any]:
    """Encode ``texts`` (default: the book's instruction data) with each tokenizer; MB/s of UTF-8 input.

    Returns ``{"n_texts", "n_bytes", "repeats", "results": {case: {"mb_per_s", "mb_per_s_min", "mb_per_s_max",
    "seconds"}}, "tiktoken_reference", "ratio_batched_vs_tiktoken", "target_ratio", "meets_target"}``. The ratio
    compares ``gpt_scratch_batched`` with the faster of tiktoken's plain loop and its thread-pool batch encoder.
    """
    from transformers import GPT2TokenizerFast, PreTrainedTokenizerFast

    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    texts = instruction_texts() if texts is None else list(texts)
    if not texts:
        raise ValueError("benchmark_tokenizer needs at least one text")
    n_bytes = sum(len(text.encode("utf-8")) for text in texts)

    tokenizer = GPTScratchTokenizer()
    encoding = tokenizer.encoding
    with tempfile.TemporaryDirectory() as folder:  # transformers' GPT-2 tokenizer on the very same vocabulary
        tokenizer.save_vocabulary(folder)
        hf_tokenizer = GPT2TokenizerFast.from_pretrained(folder)
        # what AutoTokenizer gives where gpt_scratch is not installed: the saved tokenizer.json, read by transformers
        saved_json_tokenizer = PreTrainedTokenizerFast(tokenizer_file=os.path.join(folder, "tokenizer.json"))
    allowed = {ENDOFTEXT}

    cases: dict[str, Callable[[], object]] = {
        "tiktoken_loop": lambda: [encoding.encode(text, allowed_special=allowed) for text in texts],
        "tiktoken_batch": lambda: encoding.encode_batch(texts, allowed_special=allowed),
        "gpt_scratch_single": lambda: [tokenizer(text) for text in texts],
        "gpt_scratch_batched": lambda: tokenizer(texts),
        "gpt_scratch_batched_padded_pt": lambda: tokenizer(texts, padding=True, return_tensors="pt"),
        "hf_gpt2_fast_batched": lambda: hf_tokenizer(texts),
        "saved_tokenizer_json_batched": lambda: saved_json_tokenizer(texts),
    }
    seconds: dict[str, list[float]] = {name: [] for name in cases}
    for run in cases.values():  # warm-up: caches, thread pools, lazy imports
        run()
    for _ in range(repeats):
        for name, run in cases.items():
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)

    results = {
        name: {
            "mb_per_s": n_bytes / statistics.median(times) / 1e6,
            "mb_per_s_min": n_bytes / max(times) / 1e6,
            "mb_per_s_max": n_bytes / min(times) / 1e6,
            "seconds": statistics.median(times),
        }
        for name, times in seconds.items()
    }
    reference = max(("tiktoken_loop", "tiktoken_batch"), key=lambda name: results[name]["mb_per_s"])
    ratio = results["gpt_scratch_batched"]["mb_per_s"] / results[reference]["mb_per_s"]
    return {
        "n_texts": len(texts),
        "n_bytes": n_bytes,
        "repeats": repeats,
        "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM", "(unset)"),
        "results": results,
        "tiktoken_reference": reference,
        "ratio_batched_vs_tiktoken": ratio,
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio >= TARGET_RATIO,
    }


def format_tokenizer_benchmark(report: dict[str, Any]) -> str:
    """A plain-text table of ``benchmark_tokenizer``'s report."""
    lines = [
        f"{report['n_texts']} texts, {report['n_bytes'] / 1e6:.3f} MB, median of {report['repeats']} runs",
        f"{'case':<32}{'MB/s':>8}{'min':>8}{'max':>8}",
    ]
    for name, r in report["results"].items():
        lines.append(f"{name:<32}{r['mb_per_s']:>8.2f}{r['mb_per_s_min']:>8.2f}{r['mb_per_s_max']:>8.2f}")
    lines.append(
        f"gpt_scratch_batched / {report['tiktoken_reference']}: {report['ratio_batched_vs_tiktoken']:.3f} "
        f"(target >= {report['target_ratio']}: {'met' if report['meets_target'] else 'NOT met'})"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()  # --help; no flags
    print(format_tokenizer_benchmark(benchmark_tokenizer()))
