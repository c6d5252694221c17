"""How soon a streaming `pretrain` takes its first step: it tokenizes only what the first batches need.

    python scripts/benchmarks/streaming_start.py --size-mb 250 --work-dir /tmp/streaming-start

Generates English-like text as `data_memory.py` does (files of 10 MB; reused when present), then in a fresh process
runs `gpt-scratch pretrain --dataset text --data-files 'DIR/*.txt' --streaming --max-steps 3` with a tiny model
(2 layers, 32 dims, context 256, batch 8) and records, when the first training batch reaches the model and when
the first optimizer step is done: the seconds since `pretrain` was called and the tokens tokenized so far (every
`Encoder` call is counted: the training stream, the first training windows kept for the train loss, and the
validation stream's documents). Then the throughput of one process's stream: `StreamingWindows` (context 1024)
over the corpus's first two files, tokens/s. The corpus's own token count is read from a prepared folder when one is given
(`--corpus-tokens`), else estimated at the corpus's bytes per token from its first file.

The machine is shared: timings are noisy; the CPU and the load average are printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from data_memory import ROOT, folder_bytes, generate_corpus

CHILD = """
import json, sys, time
from gpt_scratch.data import prepare
import gpt_scratch.training as training
import gpt_scratch.training.loop as loop
from gpt_scratch.cli import main

counted = {"tokens": 0, "marks": {}}
encode = prepare.Encoder.__call__
def counting_encode(self, text):
    ids = encode(self, text)
    counted["tokens"] += len(ids)
    return ids
prepare.Encoder.__call__ = counting_encode

loss = training.CausalLMTask.loss
def marking_loss(self, model, batch):
    counted["marks"].setdefault("first_batch", (time.time() - start, counted["tokens"]))
    return loss(self, model, batch)
training.CausalLMTask.loss = marking_loss

step = loop._sum_over_processes
def marking_step(value, accelerator):
    counted["marks"].setdefault("first_step_done", (time.time() - start, counted["tokens"]))
    return step(value, accelerator)
loop._sum_over_processes = marking_step

start = time.time()
code = main(sys.argv[1:])
print(json.dumps({"marks": counted["marks"], "tokens_total": counted["tokens"], "wall_s": time.time() - start, "code": code}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=250)
    parser.add_argument("--work-dir", default="/tmp/gpt_scratch_streaming_start")
    parser.add_argument("--corpus-tokens", type=int, default=None, help="the corpus's tokens, if known")
    args = parser.parse_args()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    corpus = work / f"corpus-{args.size_mb}mb"
    if not corpus.is_dir():
        generate_corpus(corpus, args.size_mb)
    tiny = work / "tiny.json"
    tiny.write_text(json.dumps({"emb_dim": 32, "n_layers": 2, "n_heads": 2, "context_length": 256}))
    size = folder_bytes(corpus, "*.txt")
    tokens = args.corpus_tokens
    if tokens is None:
        import tiktoken

        first = sorted(corpus.glob("*.txt"))[0]
        text = first.read_text()
        tokens = round(size / (len(text.encode()) / len(tiktoken.get_encoding("gpt2").encode(text))))
    cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line)
    import torch

    print(f"CPU: {cpu} ({torch.backends.cpu.get_cpu_capability()}), load average {os.getloadavg()[0]:.1f}")
    run = work / "run"
    subprocess.run(["rm", "-rf", str(run)], check=True)
    flags = [
        "pretrain", "--dataset", "text", "--data-files", str(corpus / "*.txt"), "--streaming",
        "--config", str(tiny), "--max-steps", "3", "--batch-size", "8", "--eval-freq", "100", "--eval-iter", "1",
        "--final-eval-iter", "1", "--no-progress-bar", "--start-context", "", "--output-dir", str(run),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, *flags], capture_output=True, text=True, env=env, cwd=ROOT
    )
    if out.returncode != 0:
        raise RuntimeError(out.stdout[-2000:] + out.stderr[-3000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result |= {"corpus_bytes": size, "corpus_tokens": tokens, "load_average": os.getloadavg()[0], "cpu": cpu}
    for name, (seconds, tokenized) in result["marks"].items():
        print(f"{name}: {seconds:.1f} s after the call, {tokenized:,} tokens tokenized of ~{tokens:,} "
              f"({100 * tokenized / tokens:.3f}%)")  # fmt: skip
    result["stream_tokens_per_s"] = stream_throughput(sorted(corpus.glob("*.txt"))[:2])
    print(f"one process streams {result['stream_tokens_per_s']:,.0f} tokens/s (windows of 1024)")
    print(json.dumps(result))


def stream_throughput(files: list[Path], max_length: int = 1024) -> float:
    import time

    from gpt_scratch.data.prepare import load_source_dataset
    from gpt_scratch.data.streaming import StreamingWindows
    from gpt_scratch.tokenization_gpt_scratch import GPTScratchTokenizer

    source = load_source_dataset("text", None, [str(f) for f in files], "train", streaming=True)
    windows = StreamingWindows(source, GPTScratchTokenizer(), max_length)
    start, count = time.perf_counter(), 0
    for _ in windows:
        count += 1
    return count * max_length / (time.perf_counter() - start)


if __name__ == "__main__":
    main()
