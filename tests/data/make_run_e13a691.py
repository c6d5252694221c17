"""How tests/data/run-e13a691/ was made: a run folder saved by gpt_scratch at commit e13a691, before issue 23's move.

    git worktree add /tmp/e13a691 e13a691
    cd /tmp/e13a691 && PYTHONPATH=. python /path/to/tests/data/make_run_e13a691.py /path/to/tests/data/run-e13a691

A tiny model (a 128-token vocabulary, so the folder stays small) trained 2 steps on random ids, with the GPT-2
tokenizer saved beside it (its vocab.json and merges.txt removed: without them it reads the same BPE from the
tiktoken cache). `run-e13a691.reference.json` (beside it) holds what that code computed from the saved weights: the logits of one input
and 5 greedy tokens; tests/test_layout.py checks the moved code loads the folder to the same numbers.
"""

import json
import sys
from pathlib import Path

import torch

import gpt_scratch
from gpt_scratch.configuration_gpt_scratch import GPTScratchConfig
from gpt_scratch.modeling_gpt_scratch import GPTScratchForCausalLM
from gpt_scratch.tokenization_gpt_scratch import GPTScratchTokenizer
from gpt_scratch.training import CausalLMTask, TrainingConfig, train

CONFIG = dict(vocab_size=128, context_length=16, emb_dim=8, n_heads=2, n_layers=1, drop_rate=0.0)
PROMPT = [[1, 2, 3, 4]]


def windows(seed: int = 0, count: int = 8, length: int = 16) -> list[dict[str, torch.Tensor]]:
    ids = torch.randint(
        0, CONFIG["vocab_size"], (count, length + 1), generator=torch.Generator().manual_seed(seed)
    )
    return [{"input_ids": row[:-1], "target_ids": row[1:]} for row in ids]


def training_config(output_dir: str, **overrides) -> TrainingConfig:
    settings = dict(max_steps=2, batch_size=2, eval_freq=1, eval_iter=1, progress_bar=False)
    return TrainingConfig(output_dir=output_dir, **{**settings, **overrides})


if __name__ == "__main__":
    output_dir = Path(sys.argv[1])
    print("gpt_scratch from", gpt_scratch.__file__)
    torch.manual_seed(123)
    model = GPTScratchForCausalLM(GPTScratchConfig(**CONFIG))
    task = CausalLMTask(start_context=None)
    train(
        model, windows(0), windows(1, count=2), training_config(str(output_dir)), task, GPTScratchTokenizer()
    )
    for name in ("vocab.json", "merges.txt"):
        (output_dir / name).unlink()
    saved = GPTScratchForCausalLM.from_pretrained(output_dir).eval()
    with torch.no_grad():
        logits = saved(input_ids=torch.tensor(PROMPT)).logits
        greedy = saved.generate(torch.tensor(PROMPT), max_new_tokens=5, do_sample=False)
    reference = {"prompt": PROMPT, "logits": logits[0, -1].tolist(), "greedy": greedy[0].tolist()}
    # beside the run folder, not in it: a run folder holds only the run's files (issue 22)
    output_dir.with_name(f"{output_dir.name}.reference.json").write_text(json.dumps(reference) + "\n")
