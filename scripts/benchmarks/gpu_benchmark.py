"""GPU speed of gpt_scratch against transformers' GPT2LMHeadModel and the book's GPTModel, same weights, same inputs.

    python scripts/benchmarks/gpu_benchmark.py --json gpu.json            # gpt2-small (124M) on cuda:0, a few minutes

Training steps (forward + backward + AdamW) in fp32 (TF32 off and on), bf16 autocast, and bf16 autocast with
``torch.compile``; our attention through SDPA (flash on bf16) and the book's masked softmax ("eager"); batch-1
decoding in fp32 and bf16. MFU is model FLOP/s over the bf16 (or fp32/TF32) matmul peak measured in the same run
(the formulas of benchmark.py: 6N + 12 L T d a trained token, 2N a decoded one). Each case: warm-up steps, then
the median of timed repeats (CUDA-synchronised). The same script, in-process; the CPU benchmark is benchmark.py.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from typing import Any

import torch

from benchmark import book_available, load_model, measure_matmul_peak, model_flops_params, write_checkpoint


def _timed(fn, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def train_case(impl: str, folder: str, batch: int, seq: int, precision: str, compiled: bool, attention: str,
               warmup: int, repeats: int) -> dict[str, Any]:  # fmt: skip
    """tokens/s of a training step; `precision` fp32, tf32 or bf16 (autocast)."""
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    model = load_model(impl, folder).cuda().train()
    if impl == "gpt_scratch" and attention != "sdpa":
        model.set_attn_implementation(attention)
    ids = torch.randint(0, 50257, (batch, seq + 1), generator=torch.Generator().manual_seed(0)).cuda()
    inputs, targets = ids[:, :-1], ids[:, 1:]
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1, fused=True)
    forward = torch.compile(model) if compiled else model

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
            if impl == "book":
                loss = torch.nn.functional.cross_entropy(forward(inputs).flatten(0, 1), targets.flatten())
            else:
                loss = forward(inputs, labels=inputs, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    torch.cuda.reset_peak_memory_stats()
    seconds = _timed(step, warmup, repeats)
    c = model.config if hasattr(model, "config") else None
    n_layers, d = (c.num_hidden_layers, c.hidden_size) if c is not None else (len(model.trf_blocks), 768)
    flops_per_token = 6 * model_flops_params({"emb_dim": d, "n_layers": n_layers, "vocab_size": 50257})
    flops_per_token += 12 * n_layers * seq * d
    tokens_per_s = batch * seq / seconds
    result = {"tokens_per_s": tokens_per_s, "model_flops_per_s": tokens_per_s * flops_per_token,
              "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30, "step_ms": seconds * 1e3}  # fmt: skip
    return result


def decode_case(
    impl: str, folder: str, dtype: torch.dtype, new: int, warmup: int, repeats: int
) -> dict[str, Any]:
    """Batch-1 greedy decoding of `new` tokens after a 16-token prompt, tokens/s."""
    torch.backends.cuda.matmul.allow_tf32 = False
    model = load_model(impl.removesuffix("_generate"), folder).cuda().to(dtype).eval()
    prompt = torch.randint(0, 50257, (1, 16), generator=torch.Generator().manual_seed(1)).cuda()
    if impl == "gpt_scratch":
        from gpt_scratch.generation.fast_generate import generate_fast

        def decode() -> torch.Tensor:
            return generate_fast(model, prompt, max_new_tokens=new)
    else:  # transformers' generate (ours or GPT-2's), dynamic cache

        def decode() -> torch.Tensor:
            return model.generate(prompt, max_new_tokens=new, min_new_tokens=new, do_sample=False)

    with torch.no_grad():
        seconds = _timed(decode, warmup, repeats)
    return {"tokens_per_s": new / seconds, "model_flops_per_s": new / seconds * 2 * 124_000_000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument(
        "--no-compile", action="store_true", help="skip the torch.compile cases (slow to build)"
    )
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    assert torch.cuda.is_available(), "needs a CUDA GPU"
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda,
        "batch": args.batch, "seq": args.seq,
        "peaks": {name: measure_matmul_peak(dtype, seconds=2.0, device="cuda", max_size=8192)
                  for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))},
    }  # fmt: skip
    torch.backends.cuda.matmul.allow_tf32 = True
    report["peaks"]["tf32"] = measure_matmul_peak(torch.float32, seconds=2.0, device="cuda", max_size=8192)
    torch.backends.cuda.matmul.allow_tf32 = False
    impls = ["gpt_scratch", "hf_gpt2"] + (["book"] if book_available() else [])
    cases = [(p, False, "sdpa") for p in ("fp32", "tf32", "bf16")] + [("bf16", False, "eager")]
    if not args.no_compile:
        cases.append(("bf16", True, "sdpa"))
    with tempfile.TemporaryDirectory() as folder:
        write_checkpoint(folder, "gpt2-small", tiny=False)
        report["train"] = {}
        for precision, compiled, attention in cases:
            key = f"{precision}{' compile' if compiled else ''}{' eager-attention' if attention == 'eager' else ''}"
            row = report["train"][key] = {}
            for impl in impls:
                if attention == "eager" and impl != "gpt_scratch":
                    continue
                row[impl] = train_case(impl, folder, args.batch, args.seq, precision, compiled, attention,
                                       warmup=5 if compiled else 3, repeats=args.repeats)  # fmt: skip
                peak = report["peaks"]["bf16" if precision == "bf16" else precision]
                row[impl]["mfu"] = row[impl]["model_flops_per_s"] / peak
                torch.cuda.empty_cache()  # the case's model and optimizer are gone with its frame
                print(key, impl, {k: round(v, 3) for k, v in row[impl].items()}, flush=True)
        report["decode"] = {}
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            row = report["decode"][name] = {}
            for impl in ("gpt_scratch", "gpt_scratch_generate", "hf_gpt2_generate"):
                row[impl] = decode_case(impl, folder, dtype, args.new_tokens, warmup=2, repeats=5)
                print("decode", name, impl, {k: round(v, 3) for k, v in row[impl].items()}, flush=True)
    print(json.dumps(report, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
