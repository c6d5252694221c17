"""Wall time of the book's chapter 5 run: the book's own code (llms_from_scratch) against `gpt-scratch pretrain`.

Both on one thread, in one process, alternating (book, ours, book, ours, ...) so that both meet the same load on a
shared machine; the CPU time of the process (`time.process_time`) is reported beside the wall time, as it depends
less on what else the machine runs. The book's time runs from the model's construction to the end of `train_model_simple` (as its
notebook times it); ours is the whole `pretrain()` call (tokenizing, training, saving the folder).

    python scripts/benchmarks/book_run_time.py --epochs 1 --repeats 2        # needs: pip install --no-deps llms-from-scratch
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import tempfile
import time

import torch


def book_run(text: str, epochs: int) -> tuple[float, float, list[float]]:
    import tiktoken
    from llms_from_scratch.ch02 import create_dataloader_v1
    from llms_from_scratch.ch04 import GPTModel
    from llms_from_scratch.ch05 import train_model_simple

    config = {"vocab_size": 50257, "context_length": 256, "emb_dim": 768, "n_heads": 12, "n_layers": 12,
              "drop_rate": 0.1, "qkv_bias": False}  # fmt: skip
    split = int(0.90 * len(text))
    torch.manual_seed(123)
    train_loader = create_dataloader_v1(text[:split], batch_size=2, max_length=256, stride=256, drop_last=True,
                                        shuffle=True, num_workers=0)  # fmt: skip
    val_loader = create_dataloader_v1(text[split:], batch_size=2, max_length=256, stride=256, drop_last=False,
                                      shuffle=False, num_workers=0)  # fmt: skip
    start, cpu_start = time.time(), time.process_time()
    torch.manual_seed(123)
    model = GPTModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0004, weight_decay=0.1)
    with contextlib.redirect_stdout(io.StringIO()):
        _, val_losses, _ = train_model_simple(
            model, train_loader, val_loader, optimizer, "cpu", num_epochs=epochs, eval_freq=5, eval_iter=5,
            start_context="Every effort moves you", tokenizer=tiktoken.get_encoding("gpt2"),
        )  # fmt: skip
    return time.time() - start, time.process_time() - cpu_start, val_losses


def our_run(epochs: int) -> tuple[float, float, list[float], float]:
    from gpt_scratch.training import TrainingConfig
    from gpt_scratch.workflows.pretrain import pretrain

    with tempfile.TemporaryDirectory() as folder, contextlib.redirect_stdout(io.StringIO()):
        start, cpu_start = time.time(), time.process_time()
        result = pretrain(
            "the-verdict", TrainingConfig(output_dir=folder, num_epochs=epochs, progress_bar=False)
        )
        losses = [r["val_loss"] for r in result.history]
        return time.time() - start, time.process_time() - cpu_start, losses, result.summary["wall_time_s"]


def main() -> None:
    from gpt_scratch.data.corpora import resolve_corpus

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    text = resolve_corpus("the-verdict").read_text(encoding="utf-8")
    print(f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__} "
          f"({torch.backends.cpu.get_cpu_capability()}), 1 thread, {args.epochs} epoch(s) of the chapter 5 run")  # fmt: skip
    for i in range(args.repeats):
        book_s, book_cpu, book_val = book_run(text, args.epochs)
        ours_s, our_cpu, our_val, our_loop_s = our_run(args.epochs)
        same = [round(v, 3) for v in book_val[:2]] == [round(v, 3) for v in our_val[:2]]
        print(f"repeat {i + 1}: wall book {book_s:.1f} s, ours {ours_s:.1f} s (ours/book {ours_s / book_s:.2f}); "
              f"CPU book {book_cpu:.1f} s, ours {our_cpu:.1f} s (ours/book {our_cpu / book_cpu:.2f}); "
              f"ours in the training loop (wall) {our_loop_s:.1f} s, the rest is data, final evaluation, saving; "
              f"first val losses {'equal' if same else 'DIFFER'} to the printed digit", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
