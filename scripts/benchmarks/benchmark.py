"""Speed of gpt_scratch against transformers' GPT2LMHeadModel and the book's code, same weights, same inputs.

    python scripts/benchmarks/benchmark.py                     # gpt2-small (124M) on this machine, a few minutes on 2 CPU cores
    python scripts/benchmarks/benchmark.py --quick --json out.json

One random gpt2-small is written once as a GPT-2 checkpoint (``save_gpt2``); every implementation loads those
weights: ours (``from_gpt2``), ``GPT2LMHeadModel`` (``from_pretrained``) and the book's ``GPTModel`` and KV-cache
``GPTModel`` from the ``llms-from-scratch`` package (its W_query/W_key/W_value are our fused ``qkv`` split in three).

Each case (one implementation, one task, one shape) runs in its own Python process, so that its peak RSS is its
own and the thread settings (``--omp-wait-policy``) are in force before torch starts; ``--in-process`` runs them all
here instead (for tests; the RSS is then the process's high-water mark). A case runs ``warmup`` times, then
``repeats`` times; figures are the median with min and max. MFU is model FLOPs per second over a matmul peak measured
in the same run (6N + 12 L T d per trained token, 2N per decoded token; N = parameters without position embeddings).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from gpt_scratch.hardware import measure_read_bandwidth, slow_bf16_reason

BOOK_PACKAGE = "llms-from-scratch"
BOOK_NOTE = f"the book's package is not installed: pip install --no-deps {BOOK_PACKAGE}==1.0.19"
TINY = dict(vocab_size=512, context_length=128, emb_dim=64, n_heads=4, n_layers=2)  # for tests: seconds

TRAIN_IMPLS = ("gpt_scratch", "hf_gpt2", "book")
DECODE_IMPLS = ("gpt_scratch", "gpt_scratch_generate", "gpt_scratch_int8", "gpt_scratch_bf16", "hf_gpt2_generate",
                "book_simple", "book_kv_cache")  # fmt: skip
PREFILL_IMPLS = ("gpt_scratch", "hf_gpt2", "book", "book_kv_cache")


# --------------------------------------------------------------------------------------------- loading the models


def book_available() -> bool:
    try:
        import llms_from_scratch.ch04  # noqa: F401
        import llms_from_scratch.kv_cache.gpt2  # noqa: F401
    except ImportError:
        return False
    return True


def book_config(config: Any) -> dict[str, Any]:
    """The book's GPT_CONFIG dictionary for one of our configurations."""
    return dict(
        vocab_size=config.vocab_size,
        context_length=config.context_length,
        emb_dim=config.emb_dim,
        n_heads=config.n_heads,
        n_layers=config.n_layers,
        drop_rate=config.drop_rate,
        qkv_bias=config.qkv_bias,
    )


def book_state_dict(ours: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """Our GPTScratchForCausalLM state dict under the book's names (fused qkv -> W_query, W_key, W_value)."""
    book = {k.removeprefix("model."): v for k, v in ours.items() if ".att.qkv." not in k}
    for i in range(n_layers):
        for kind in ("weight", "bias"):
            fused = ours.get(f"model.trf_blocks.{i}.att.qkv.{kind}")
            if fused is None:
                continue
            for name, part in zip(("W_query", "W_key", "W_value"), fused.chunk(3, dim=0), strict=True):
                book[f"trf_blocks.{i}.att.{name}.{kind}"] = part.clone()
    book["out_head.weight"] = ours["out_head.weight"].clone()  # the book's head is never tied
    return book


def load_model(impl: str, folder: str) -> torch.nn.Module:
    """``gpt_scratch``, ``hf_gpt2``, ``book`` or ``book_kv_cache`` with the weights of the GPT-2 checkpoint."""
    from gpt_scratch.modeling_gpt_scratch import GPTScratchForCausalLM

    if impl == "hf_gpt2":
        from transformers import GPT2LMHeadModel

        model = GPT2LMHeadModel.from_pretrained(folder, attn_implementation="sdpa")
        model.generation_config.eos_token_id = None  # always decode the full number of tokens
        model.generation_config.pad_token_id = model.config.eos_token_id
        return model
    ours = GPTScratchForCausalLM.from_gpt2(folder)
    if impl == "gpt_scratch":
        ours.generation_config.eos_token_id = None
        ours.generation_config.pad_token_id = ours.config.eos_token_id
        return ours
    if impl == "book":
        from llms_from_scratch.ch04 import GPTModel
    elif impl == "book_kv_cache":
        from llms_from_scratch.kv_cache.gpt2 import GPTModel
    else:
        raise ValueError(f"Unknown implementation {impl!r}")
    model = GPTModel(book_config(ours.config))
    missing, unexpected = model.load_state_dict(
        book_state_dict(ours.state_dict(), ours.config.n_layers), strict=False
    )
    if unexpected or any(not k.endswith(".att.mask") for k in missing):
        raise ValueError(f"book model does not match: missing {missing}, unexpected {unexpected}")
    if impl == "book_kv_cache":
        for block in model.trf_blocks:
            block.att.forward = _book_kv_attention_forward.__get__(block.att)
    return model


def _book_kv_attention_forward(self, x, use_cache=False, start_pos=0, cache=None):
    """The book's KV-cache attention (llms_from_scratch 1.0.19, kv_cache/gpt2.py) with its causal mask fixed.

    The package slices the (S, S) mask by columns, ``mask[:, -num_tokens:]``, so a cached step (one query, S keys)
    fails with a shape error; the rows of the new queries, ``mask[-num_tokens:, :]``, are meant. All else as there.
    """
    b, num_tokens, _ = x.shape
    keys = self.W_key(x).view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)
    values = self.W_value(x).view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)
    queries = self.W_query(x).view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)
    if use_cache:
        if cache is not None:
            keys = torch.cat([cache[0], keys], dim=2)
            values = torch.cat([cache[1], values], dim=2)
        next_cache = (keys, values)
    else:
        next_cache = None
    seq_len = keys.size(2)
    causal_mask = torch.triu(torch.ones(seq_len, seq_len, dtype=torch.bool, device=x.device), diagonal=1)
    causal_mask = causal_mask[-num_tokens:, :][None, None, :, :]  # the fix (the package: [:, -num_tokens:])
    attn_scores = queries @ keys.transpose(2, 3)
    attn_scores.masked_fill_(causal_mask, -torch.inf)
    attn_weights = self.dropout(torch.softmax(attn_scores / keys.shape[-1] ** 0.5, dim=-1))
    context_vec = (attn_weights @ values).transpose(1, 2).contiguous().view(b, num_tokens, self.d_out)
    return self.out_proj(context_vec), next_cache


# ------------------------------------------------------------------------------------------------- measuring


def model_flops_params(config: dict[str, int]) -> int:
    """N of the FLOP formulas: the parameters that multiply, blocks and output head (no embeddings, no biases
    counted twice): the same for every implementation, tied head or not."""
    d = config["emb_dim"]
    return config["n_layers"] * (12 * d * d + 13 * d) + 2 * d + config["vocab_size"] * d


class SkipCase(Exception):
    """A case that cannot run here (the book's package missing, bf16 on a CPU without fast bf16): the reason."""


def measure_matmul_peak(
    dtype: torch.dtype, seconds: float = 1.0, device: str = "cpu", max_size: int = 8192
) -> float:
    """Best FLOP/s of a square matmul in ``dtype`` within about ``seconds``: the peak MFU is measured against.

    The size doubles from 256 while one matmul takes under a tenth of the budget (a slow dtype stays small);
    the rest of the budget repeats that size.
    """
    size, best, deadline = 256, 0.0, time.perf_counter() + seconds
    while True:
        a = torch.randn(size, size, device=device).to(dtype)
        b = torch.randn(size, size, device=device).to(dtype)
        a @ b  # warm-up
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        took = time.perf_counter() - start
        best = max(best, 2 * size**3 / took)
        if took > seconds / 10 or size >= max_size or time.perf_counter() > deadline:
            break
        size *= 2
    while time.perf_counter() + took < deadline:
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = max(best, 2 * size**3 / (time.perf_counter() - start))
    return best


def _train_runner(impl: str, folder: str, batch: int, seq: int, dtype: str, device: str):
    """A training step (forward + backward + AdamW, lr 4e-4, weight decay 0.1: the book's chapter 5)."""
    model = load_model(impl, folder).to(device).train()
    config = _config_of(model)
    batch_ids = torch.randint(
        0, config["vocab_size"], (batch, seq + 1), generator=torch.Generator().manual_seed(0)
    )
    inputs, targets = batch_ids[:, :-1].to(device), batch_ids[:, 1:].to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)

    def step() -> None:
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=dtype == "bf16"):
            if impl == "book":  # the book's calc_loss_batch
                logits = model(inputs)
                loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
            else:  # transformers' convention: labels are the inputs, shifted inside
                loss = model(inputs, labels=inputs, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    flops = 6 * model_flops_params(config) + 12 * config["n_layers"] * seq * config["emb_dim"]
    return model, step, batch * seq, flops


def _decode_runner(impl: str, folder: str, batch: int, prompt: int, new: int, device: str):
    """Greedy decoding of ``new`` tokens after a random ``prompt``-token prompt; checks the output length."""
    from gpt_scratch.quantization import layout_for_decoding, quantize

    base = {"gpt_scratch_generate": "gpt_scratch", "gpt_scratch_int8": "gpt_scratch", "gpt_scratch_bf16":
            "gpt_scratch", "hf_gpt2_generate": "hf_gpt2", "book_simple": "book"}  # fmt: skip
    if impl == "gpt_scratch_bf16" and slow_bf16_reason(device):
        raise SkipCase(slow_bf16_reason(device))
    if impl == "gpt_scratch_int8" and device != "cpu":
        raise SkipCase("int8 (torch dynamic quantization) runs on CPU only")
    model = load_model(base.get(impl, impl), folder).to(device).eval()
    if impl in ("gpt_scratch", "gpt_scratch_generate"):
        layout_for_decoding(model)  # as gpt-scratch generate loads fp32 weights
    elif impl in ("gpt_scratch_int8", "gpt_scratch_bf16"):
        model = quantize(model, impl.removeprefix("gpt_scratch_"))
    config = _config_of(model)
    ids = torch.randint(0, config["vocab_size"], (batch, prompt), generator=torch.Generator().manual_seed(1))
    ids = ids.to(device)

    if impl in ("gpt_scratch", "gpt_scratch_int8", "gpt_scratch_bf16"):
        from gpt_scratch.generation.fast_generate import generate_fast

        def decode() -> torch.Tensor:
            return generate_fast(model, ids, max_new_tokens=new)
    elif impl in ("gpt_scratch_generate", "hf_gpt2_generate"):

        def decode() -> torch.Tensor:
            mask = torch.ones_like(ids)
            return model.generate(ids, attention_mask=mask, max_new_tokens=new, do_sample=False)
    elif impl == "book_simple":
        from llms_from_scratch.ch04 import generate_text_simple

        def decode() -> torch.Tensor:
            with torch.no_grad():
                return generate_text_simple(model, ids, new, config["context_length"])
    elif impl == "book_kv_cache":

        def decode() -> torch.Tensor:
            return book_generate_cached(model, ids, new)
    else:
        raise ValueError(f"Unknown decoding implementation {impl!r}")

    def checked() -> None:
        out = decode()
        if tuple(out.shape) != (batch, prompt + new):
            raise RuntimeError(f"{impl} decoded {tuple(out.shape)}, expected {(batch, prompt + new)}")
        checked.first_tokens = out[0, prompt : prompt + 8].tolist()  # the implementations must agree

    return model, checked, batch * new, 2 * model_flops_params(config)


def book_generate_cached(model: torch.nn.Module, idx: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """The book's greedy decoding with its KV cache (``generate_text_simple_cached``, chapter 4 bonus)."""
    from llms_from_scratch.kv_cache.utils import KVCache

    with torch.no_grad():
        cache = KVCache(n_layers=len(model.trf_blocks))
        model.current_pos = 0
        logits = model(idx, use_cache=True, cache=cache)
        for _ in range(max_new_tokens):
            next_idx = logits[:, -1].argmax(dim=-1, keepdim=True)
            idx = torch.cat([idx, next_idx], dim=1)
            logits = model(next_idx, use_cache=True, cache=cache)
    return idx


def _prefill_runner(impl: str, folder: str, length: int, device: str):
    """A ``length``-token prompt (batch 1) run into the KV cache, up to the next-token logits."""
    model = load_model(impl, folder).to(device).eval()
    config = _config_of(model)
    ids = torch.randint(0, config["vocab_size"], (1, length), generator=torch.Generator().manual_seed(2))
    ids = ids.to(device)

    if impl == "gpt_scratch":  # the prefill of generate_fast
        from gpt_scratch.generation.fast_generate import StaticKVCache, forward_with_static_cache

        c = model.config

        def prefill() -> torch.Tensor:
            cache = StaticKVCache(c.n_layers, 1, c.n_heads, length, c.head_dim, device=device)
            return model.out_head(forward_with_static_cache(model.model, ids, cache)[:, -1])
    elif impl == "hf_gpt2":

        def prefill() -> torch.Tensor:
            return model(ids, use_cache=True, logits_to_keep=1).logits
    elif impl == "book":

        def prefill() -> torch.Tensor:
            return model(ids)  # the book's GPTModel computes the logits of every position
    elif impl == "book_kv_cache":
        from llms_from_scratch.kv_cache.utils import KVCache

        def prefill() -> torch.Tensor:
            model.current_pos = 0
            return model(ids, use_cache=True, cache=KVCache(n_layers=len(model.trf_blocks)))
    else:
        raise ValueError(f"Unknown prefill implementation {impl!r}")

    def no_grad_prefill() -> None:
        with torch.inference_mode():
            prefill()

    # Per prompt token: the blocks (2N without the head), causal attention (2 L T d), the head once per prompt.
    head = config["vocab_size"] * config["emb_dim"]
    flops = 2 * (model_flops_params(config) - head) + 2 * config["n_layers"] * length * config["emb_dim"]
    return model, no_grad_prefill, length, flops + 2 * head / length


def _memory_mib(device: str, peak: bool) -> float:
    """Current or peak memory: RSS (VmRSS / VmHWM of /proc/self/status) on CPU, allocated memory on CUDA."""
    if device.startswith("cuda"):
        return (torch.cuda.max_memory_allocated() if peak else torch.cuda.memory_allocated()) / 2**20
    try:
        key = "VmHWM:" if peak else "VmRSS:"
        line = next(
            line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(key)
        )
        return int(line.split()[1]) / 1024
    except (OSError, StopIteration):  # not Linux: the high-water mark of the process
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak_memory(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        return
    try:  # glibc keeps freed memory in RSS for reuse; give it back, else the next case's growth hides in it
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM := VmRSS
    except OSError:
        pass


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


RUNNERS = {"train": _train_runner, "decode": _decode_runner, "prefill": _prefill_runner}


def benchmark_task(
    task: str,
    impls: list[str],
    folder: str,
    warmup: int,
    repeats: int,
    device: str = "cpu",
    per_impl: dict[str, dict[str, Any]] | None = None,
    **shape: Any,
) -> dict[str, dict[str, Any]]:
    """Time one task (``train``, ``decode`` or ``prefill`` with its ``shape``) for each implementation.

    The models are loaded side by side; each is warmed up (its peak memory above the memory before it is measured
    then), and the timed repeats go round the implementations in turn, so that a slow moment of a shared machine
    hits them all alike. ``per_impl`` changes the shape of some implementations (e.g. fewer tokens for a slow one).
    Per implementation: tokens/s median, min, max; model FLOP/s; peak memory (weights included); weight memory.
    """
    from gpt_scratch.quantization import weight_bytes

    results, runs = {}, {}
    for impl in impls:
        try:
            model, fn, work, flops = RUNNERS[task](
                impl, folder, device=device, **{**shape, **(per_impl or {}).get(impl, {})}
            )
        except ImportError as error:
            results[impl] = {"skipped": f"{BOOK_NOTE} ({error})"}
            continue
        except SkipCase as reason:
            results[impl] = {"skipped": str(reason)}
            continue
        weights = weight_bytes(model)
        _reset_peak_memory(device)
        before = _memory_mib(device, peak=False)
        for _ in range(max(warmup, 1)):  # at least once: the peak memory and the output check
            fn()
        _sync(device)
        results[impl] = {"peak_memory_mib": _memory_mib(device, peak=True) - before + weights / 2**20,
                         "weights_mib": weights / 2**20, "seconds": [], "flops_per_unit": flops}  # fmt: skip
        if hasattr(fn, "first_tokens"):
            results[impl]["first_tokens"] = fn.first_tokens
        runs[impl] = (fn, work)
    for _ in range(repeats):
        for impl, (fn, _) in runs.items():
            start = time.perf_counter()
            fn()
            _sync(device)
            results[impl]["seconds"].append(time.perf_counter() - start)
    for impl, (_, work) in runs.items():
        r = results[impl]
        seconds = r.pop("seconds")
        r.update(
            tokens_per_s=work / statistics.median(seconds),
            tokens_per_s_min=work / max(seconds),
            tokens_per_s_max=work / min(seconds),
            seconds_median=statistics.median(seconds),
            repeats=len(seconds),
        )
        r["model_flops_per_s"] = r["tokens_per_s"] * r.pop("flops_per_unit")
    return results


def _config_of(model: torch.nn.Module) -> dict[str, int]:
    if hasattr(model, "config"):
        c = model.config
        return dict(vocab_size=c.vocab_size, context_length=c.n_positions if hasattr(c, "n_positions") else
                    c.context_length, emb_dim=c.hidden_size, n_layers=c.num_hidden_layers)  # fmt: skip
    return dict(vocab_size=model.tok_emb.num_embeddings, context_length=model.pos_emb.num_embeddings,
                emb_dim=model.tok_emb.embedding_dim, n_layers=len(model.trf_blocks))  # fmt: skip


# ------------------------------------------------------------------------------------------------- the whole run

TARGETS = [  # (task key, our implementation, other implementation, minimum ratio ours / other): issues 8 and 15
    ("train fp32", "gpt_scratch", "hf_gpt2", 1.3),
    ("train bf16", "gpt_scratch", "hf_gpt2", 1.3),
    ("decode batch 1", "gpt_scratch", "hf_gpt2_generate", 1.0),
    ("decode batch 1", "gpt_scratch_int8", "hf_gpt2_generate", 2.0),
    ("decode batch 1", "gpt_scratch", "book_simple", 5.0),
    ("decode batch 1", "gpt_scratch", "book_kv_cache", 1.0),
]


def write_checkpoint(folder: str, preset: str, tiny: bool, seed: int = 0) -> Any:
    """A randomly initialised model of ``preset`` (or the tiny test size) saved as a GPT-2 checkpoint."""
    from gpt_scratch.configuration_gpt_scratch import GPTScratchConfig
    from gpt_scratch.modeling_gpt_scratch import GPTScratchForCausalLM

    config = GPTScratchConfig.from_preset(preset, **(TINY if tiny else {}))
    torch.manual_seed(seed)
    GPTScratchForCausalLM(config).save_gpt2(folder)
    return config


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement of ``args`` (see ``add_arguments``); the report that ``format_report`` prints."""
    if args.threads:
        torch.set_num_threads(args.threads)
    tasks = set(args.tasks.split(","))
    book = book_available()
    report: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": args.device,
                    "torch": torch.__version__, "transformers": _version("transformers"),
                    "llms_from_scratch": _version(BOOK_PACKAGE) if book else None},
        "settings": {k: v for k, v in vars(args).items() if k not in ("func", "command")},
        "results": {},
    }  # fmt: skip
    if not book:
        report["notes"] = [BOOK_NOTE + "; the book's columns are skipped"]

    train_dtypes = args.dtypes.split(",") if "train" in tasks else []
    slow_bf16 = slow_bf16_reason(args.device)
    report["machine"]["bf16"] = "fast" if slow_bf16 is None else f"slow: {slow_bf16}"
    report["machine"]["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    report["machine"]["cpu_model"] = _cpu_model()
    # Peaks only for the dtypes that run: fp32 for decode/prefill and fp32 training, bf16 for bf16 cases.
    peak_dtypes = {d for d in train_dtypes} | ({"fp32"} if tasks & {"decode", "prefill"} else set())
    if slow_bf16:
        peak_dtypes.discard("bf16")
        if "bf16" in train_dtypes:
            report.setdefault("notes", []).append(f"bf16 cases skipped: {slow_bf16}")

    def measure_peaks() -> dict[str, float]:
        names = {"fp32": torch.float32, "bf16": torch.bfloat16}
        return {dtype: measure_matmul_peak(names[dtype], seconds=args.peak_seconds, device=args.device)
                for dtype in sorted(peak_dtypes)}  # fmt: skip

    peaks = measure_peaks()
    if "decode" in tasks and args.device == "cpu":
        report["read_bytes_per_s"] = measure_read_bandwidth()
    results = report["results"]
    common = dict(warmup=args.warmup, repeats=args.repeats, device=args.device)
    with tempfile.TemporaryDirectory() as folder:
        config = write_checkpoint(folder, args.preset, args.tiny)
        seq_cap = config.context_length
        if "train" in tasks:
            for dtype in train_dtypes:
                for shape in args.train_shapes.split(","):
                    batch, seq = (int(n) for n in shape.split("x"))
                    key = f"train {dtype} {batch}x{min(seq, seq_cap)}"
                    impls = [i for i in TRAIN_IMPLS if book or not i.startswith("book")]
                    if dtype == "bf16" and slow_bf16:
                        results[key] = {impl: {"skipped": slow_bf16} for impl in impls}
                        continue
                    results[key] = benchmark_task("train", impls, folder, batch=batch, seq=min(seq, seq_cap),
                                                  dtype=dtype, **common)  # fmt: skip
                    _progress(key, results[key])
        if "decode" in tasks:
            prompt = min(args.prompt_tokens, seq_cap - args.new_tokens)
            for batch in (int(b) for b in args.decode_batches.split(",")):
                key = f"decode batch {batch}"
                impls = [i for i in DECODE_IMPLS if book or not i.startswith("book")]
                if batch > 1 and not args.book_simple_all_batches:
                    impls = [
                        i for i in impls if i != "book_simple"
                    ]  # minutes per run: it re-runs the context
                per_impl = {"book_simple": {"new": min(args.book_simple_tokens, args.new_tokens)}}
                results[key] = benchmark_task("decode", impls, folder, batch=batch, prompt=prompt,
                                              new=args.new_tokens, per_impl=per_impl, **common)  # fmt: skip
                _progress(key, results[key])
        if "prefill" in tasks:
            key = f"prefill {min(args.prefill_tokens, seq_cap)}"
            impls = [i for i in PREFILL_IMPLS if book or not i.startswith("book")]
            results[key] = benchmark_task("prefill", impls, folder, length=min(args.prefill_tokens, seq_cap),
                                          **common)  # fmt: skip
            _progress(key, results[key])
    at_end = measure_peaks()  # the best of the start and the end: the machine's quietest moment
    peaks = {dtype: max(flops, at_end[dtype]) for dtype, flops in peaks.items()}
    report["matmul_peak_flops"] = peaks
    for key, group in results.items():
        _add_mfu(group, peaks.get("bf16" if key.startswith("train bf16") else "fp32"))
        if key.startswith("decode") and report.get("read_bytes_per_s"):
            _add_bandwidth_limit(group, int(key.split()[-1]), report["read_bytes_per_s"])
    if "tokenizer" in tasks:
        try:
            from bench_tokenizer import benchmark_tokenizer

            report["tokenizer"] = benchmark_tokenizer(repeats=args.tokenizer_repeats)
        except Exception as error:  # no data set offline, etc.: the rest of the report stands
            report["tokenizer"] = {"skipped": f"{type(error).__name__}: {error}"}
    report["ratios"] = {  # gpt_scratch / other, tokens per second
        key: {impl: group["gpt_scratch"]["tokens_per_s"] / r["tokens_per_s"]
              for impl, r in group.items() if impl != "gpt_scratch" and "tokens_per_s" in r}
        for key, group in results.items() if "tokens_per_s" in group.get("gpt_scratch", {})
    }  # fmt: skip
    report["targets"] = _check_targets(results)
    return report


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _add_bandwidth_limit(group: dict[str, dict[str, Any]], batch: int, read_bytes_per_s: float) -> None:
    """Tokens/s if a decoding step took only the time to read the weights once: batch x GB/s / weight bytes."""
    for r in group.values():
        if "tokens_per_s" in r:
            r["bandwidth_limit_tokens_per_s"] = batch * read_bytes_per_s / (r["weights_mib"] * 2**20)


def _add_mfu(group: dict[str, dict[str, Any]], peak: float | None) -> None:
    for r in group.values():
        if peak and "model_flops_per_s" in r:
            r["mfu"] = r["model_flops_per_s"] / peak


def _progress(key: str, group: dict[str, dict[str, Any]]) -> None:
    done = ", ".join(f"{impl} {r['tokens_per_s']:.1f}" for impl, r in group.items() if "tokens_per_s" in r)
    print(f"[benchmark] {key}: tokens/s {done}", file=sys.stderr, flush=True)


def _check_targets(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, for every measured shape they apply to (e.g. train fp32 at each batch shape)."""
    checks = []
    for prefix, mine, other, minimum in TARGETS:
        for key, group in results.items():
            if not (key == prefix or key.startswith(prefix + " ")):
                continue
            ours, theirs = group.get(mine, {}), group.get(other, {})
            if "tokens_per_s" in ours and "tokens_per_s" in theirs:
                ratio = ours["tokens_per_s"] / theirs["tokens_per_s"]
                checks.append({"case": key, "ours": mine, "versus": other, "ratio": ratio, "target": minimum,
                               "met": ratio >= minimum})  # fmt: skip
    return checks


def format_report(report: dict[str, Any]) -> str:
    """The report as plain-text tables: tokens/s (median, min-max), ratio gpt_scratch / other, MFU, peak memory."""
    m = report["machine"]
    lines = [f"{m.get('cpu_model', m['processor'])} (torch CPU capability {m.get('cpu_capability')}, bf16 "
             f"{m.get('bf16')}), {m['cpu_count']} CPUs, torch {m['torch']} ({m['torch_threads']} threads), "
             f"transformers {m['transformers']}, llms-from-scratch {m['llms_from_scratch']}, device {m['device']}"]  # fmt: skip
    if report.get("matmul_peak_flops"):
        lines.append("matmul peak: " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s"
                                                 for k, v in report["matmul_peak_flops"].items()))  # fmt: skip
    if report.get("read_bytes_per_s"):
        lines.append(f"memory read: {report['read_bytes_per_s'] / 1e9:.1f} GB/s; decode limit = batch x read GB/s "
                     "/ weight bytes (each step reads every weight once)")  # fmt: skip
    lines += report.get("notes", [])
    header = (f"{'case':<18}{'implementation':<22}{'tokens/s':>11}{'min-max':>19}{'ours/it':>9}{'MFU':>7}"
              f"{'peak MiB':>10}{'weights MiB':>12}{'limit tok/s':>12}")  # fmt: skip
    lines += ["", header, "-" * len(header)]
    for key, group in report["results"].items():
        for impl, r in group.items():
            if "skipped" in r:
                lines.append(f"{key:<18}{impl:<22}  skipped: {r['skipped']}")
                continue
            ratio = report["ratios"].get(key, {}).get(impl)
            ratio_text = f"{ratio:.2f}x" if ratio else "-"
            mfu_text = f"{100 * r['mfu']:.1f}%" if "mfu" in r else "-"
            spread = f"{r['tokens_per_s_min']:.1f}-{r['tokens_per_s_max']:.1f}"
            lines.append(
                f"{key:<18}{impl:<22}{r['tokens_per_s']:>11.1f}{spread:>19}{ratio_text:>9}{mfu_text:>7}"
                f"{r['peak_memory_mib']:>10.0f}{r['weights_mib']:>12.0f}"
                + (
                    f"{r['bandwidth_limit_tokens_per_s']:>12.1f}"
                    if "bandwidth_limit_tokens_per_s" in r
                    else ""
                )
            )
    tokenizer = report.get("tokenizer")
    if tokenizer:
        lines.append("")
        if "skipped" in tokenizer:
            lines.append(f"tokenizer: skipped ({tokenizer['skipped']})")
        else:
            from bench_tokenizer import format_tokenizer_benchmark

            lines.append(format_tokenizer_benchmark(tokenizer))
    if report.get("targets"):
        lines.append("")
        for t in report["targets"]:
            lines.append(f"target {t['case']}: {t['ours']} vs {t['versus']}: {t['ratio']:.2f}x "
                         f"(>= {t['target']}x: {'met' if t['met'] else 'NOT met'})")  # fmt: skip
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``python scripts/benchmarks/benchmark.py``."""
    parser.add_argument(
        "--preset", default="gpt2-small", help="model size (random weights), default gpt2-small"
    )
    parser.add_argument("--tiny", action="store_true", help="a tiny model of the preset's kind (for tests)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--quick", action="store_true",
                        help="one repeat, no warm-up beyond the checked first run, 2x256 training only, 50 new tokens")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case (median, min, max)")
    parser.add_argument(
        "--warmup", type=int, default=1, help="untimed runs per case (the first checks outputs)"
    )
    parser.add_argument("--tasks", default="train,decode,prefill,tokenizer", help="comma-separated subset")
    parser.add_argument(
        "--dtypes", default="fp32,bf16", help="training precisions: fp32 and/or bf16 (autocast)"
    )
    parser.add_argument("--train-shapes", default="2x256,8x256", help="BATCHxSEQ, comma-separated")
    parser.add_argument("--decode-batches", default="1,8")
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--book-simple-tokens", type=int, default=50,
                        help="new tokens for the book's generate_text_simple (it re-runs the whole context per token)")  # fmt: skip
    parser.add_argument("--book-simple-all-batches", action="store_true", help="also time it at batch > 1")
    parser.add_argument("--prefill-tokens", type=int, default=1024)
    parser.add_argument("--tokenizer-repeats", type=int, default=5)
    parser.add_argument("--peak-seconds", type=float, default=1.0,
                        help="time for each matmul peak (per dtype that runs, at the start and at the end)")  # fmt: skip
    parser.add_argument("--json", default=None, help="also write the report to this JSON file")


def run(args: argparse.Namespace) -> int:
    if args.quick:
        args.repeats, args.warmup, args.train_shapes = 1, 1, args.train_shapes.split(",")[0]
        args.new_tokens, args.tokenizer_repeats = min(args.new_tokens, 50), 2
    report = run_benchmark(args)
    print(format_report(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"\nwritten: {args.json}")
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(
        prog="python scripts/benchmarks/benchmark.py", description=__doc__.splitlines()[0]
    )
    add_arguments(_parser)
    raise SystemExit(run(_parser.parse_args()))
