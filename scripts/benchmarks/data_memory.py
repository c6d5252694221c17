"""Memory and speed of `gpt-scratch prepare` + a 3-step `pretrain` on a prepared folder, at two corpus sizes.

    python scripts/benchmarks/data_memory.py --sizes-mb 25 250 --work-dir /tmp/data-memory

For each size it generates English-like text (The Verdict's paragraphs, shuffled, with words swapped from its
vocabulary; files of 10 MB), then runs each step in a fresh process and reads that process's peak RSS:

- `prepare` (1 process, and `--num-proc 2`): peak RSS, wall time (after the imports: scan + tokenize + write)
  and MB/s per process from it, MB/s per process of the tokenizing phase alone (meta.json's seconds: read,
  tokenize, write), disk bytes per token;
- `pretrain` of a tiny model (2 layers, 32 dims, context 256) for 3 steps with random windows: peak RSS;
- raw tiktoken on one thread over the same files (read whole, `encode`): MB/s, the reference for throughput.

The machine is shared: timings are noisy; the CPU is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout (scripts/benchmarks/..)

CHILD = """
import resource, sys, time, json
from gpt_scratch.cli import main
import gpt_scratch.data.prepare, gpt_scratch.data.prepared, gpt_scratch.workflows.pretrain  # imports are not timed
start = time.time()
code = main(sys.argv[1:])
print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "children_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                  "wall_s": time.time() - start, "code": code}))
"""

RAW_TIKTOKEN = """
import json, sys, time, tiktoken
from pathlib import Path
enc = tiktoken.get_encoding("gpt2")
files = sorted(Path(sys.argv[1]).glob("*.txt"))[: int(sys.argv[2])]
size, seconds, tokens = 0, 0.0, 0
for f in files:
    text = f.read_text()
    size += len(text.encode())
    start = time.perf_counter()
    tokens += len(enc.encode(text, allowed_special={"<|endoftext|>"}))
    seconds += time.perf_counter() - start
print(json.dumps({"mb_per_s": size / 1e6 / seconds, "bytes": size, "tokens": tokens}))
"""


def generate_corpus(folder: Path, megabytes: int, seed: int = 0) -> None:
    from gpt_scratch.data.pretraining import load_text

    text = load_text("the-verdict")
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    words = sorted(set(re.findall(r"[A-Za-z]+", text)))
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    target, written, index = megabytes * 1_000_000, 0, 0
    while written < target:
        parts, size = [], 0
        while size < min(10_000_000, target - written):
            para = rng.choice(paragraphs)
            para = re.sub(
                r"[A-Za-z]+", lambda m: rng.choice(words) if rng.random() < 0.2 else m.group(), para
            )
            parts.append(para)
            size += len(para) + 2
        body = "\n\n".join(parts)
        (folder / f"part-{index:04d}.txt").write_text(body)
        written += len(body.encode())
        index += 1


def run_child(args: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, *args], capture_output=True, text=True, env=env, cwd=ROOT, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(out.stdout[-2000:] + out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def folder_bytes(folder: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in folder.glob(pattern))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[25, 250])
    parser.add_argument("--work-dir", default="/tmp/gpt_scratch_data_memory")
    parser.add_argument("--output", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    work = Path(args.work_dir)
    tiny = work / "tiny.json"
    work.mkdir(parents=True, exist_ok=True)
    tiny.write_text(json.dumps({"emb_dim": 32, "n_layers": 2, "n_heads": 2, "context_length": 256}))
    import torch

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    results = {"cpu": cpu, "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cores": os.cpu_count()}
    print(f"CPU: {cpu} ({results['cpu_capability']}, {results['cores']} cores; shared with other jobs)")
    for mb in args.sizes_mb:
        corpus = work / f"corpus-{mb}mb"
        if not corpus.is_dir():
            generate_corpus(corpus, mb)
        size = folder_bytes(corpus, "*.txt")
        row = {"text_bytes": size}
        for num_proc in (1, 2):
            out = work / f"prepared-{mb}mb-{num_proc}"
            subprocess.run(["rm", "-rf", str(out)], check=True)
            r = run_child(
                [
                    "prepare",
                    str(corpus),
                    "--output-dir",
                    str(out),
                    "--num-proc",
                    str(num_proc),
                    "--val-ratio",
                    "0.005",
                    "--no-progress-bar",
                ]
            )
            meta = json.loads((out / "meta.json").read_text())
            tokens = sum(meta["splits"][s]["tokens"] for s in meta["splits"])
            row[f"prepare_np{num_proc}"] = {
                "rss_mb": round(r["rss_mb"], 1),
                "workers_rss_mb": round(r["children_rss_mb"], 1),
                "wall_s": round(r["wall_s"], 2),
                "mb_per_s_per_process": round(size / 1e6 / r["wall_s"] / num_proc, 2),
                "tokenizing_mb_per_s_per_process": round(
                    size / 1e6 / sum(meta["splits"][s]["seconds"] for s in meta["splits"]) / num_proc, 2
                ),
                "tokens": tokens,
                "disk_bytes_per_token": round(
                    (folder_bytes(out, "*.bin") + (out / "meta.json").stat().st_size) / tokens, 4
                ),
            }
        raw = subprocess.run(
            [sys.executable, "-c", RAW_TIKTOKEN, str(corpus), "3"], capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        row["raw_tiktoken_1_thread_mb_per_s"] = round(json.loads(raw.stdout)["mb_per_s"], 2)
        run = work / f"run-{mb}mb"
        subprocess.run(["rm", "-rf", str(run)], check=True)
        start = time.time()
        r = run_child([
            "pretrain", str(work / f"prepared-{mb}mb-1"), "--config", str(tiny), "--max-steps", "3",
            "--batch-size", "8", "--eval-iter", "1", "--final-eval-iter", "1", "--no-progress-bar",
            "--start-context", "", "--output-dir", str(run),
        ])  # fmt: skip
        row["pretrain_3_steps"] = {"rss_mb": round(r["rss_mb"], 1), "wall_s": round(time.time() - start, 2)}
        results[f"{mb}mb"] = row
        print(json.dumps({f"{mb}mb": row}, indent=1))
    sizes = [f"{mb}mb" for mb in args.sizes_mb]
    if len(sizes) >= 2:
        a, b = results[sizes[0]], results[sizes[-1]]
        results["rss_ratio"] = {
            "prepare": round(b["prepare_np1"]["rss_mb"] / a["prepare_np1"]["rss_mb"], 3),
            "pretrain": round(b["pretrain_3_steps"]["rss_mb"] / a["pretrain_3_steps"]["rss_mb"], 3),
        }
        print("peak RSS ratio, largest / smallest corpus:", results["rss_ratio"])
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
