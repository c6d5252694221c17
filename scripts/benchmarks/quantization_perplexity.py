"""Validation perplexity of a model pretrained here on the-verdict, in fp32, int8 and bf16 (gpt_scratch.quantize).

    python scripts/benchmarks/quantization_perplexity.py --output-dir runs/verdict-small   # trains, then evaluates
    python scripts/benchmarks/quantization_perplexity.py --model runs/verdict-small        # evaluates a saved folder

The model is a small GPT (4 layers, 256 wide, context 128: minutes on 2 CPU cores); the validation split is the
book's: the last 10% of the-verdict, in non-overlapping windows.
"""

import argparse
import copy
import json
import math

import torch

from gpt_scratch.configuration_gpt_scratch import GPTScratchConfig
from gpt_scratch.data.pretraining import build_pretraining_datasets
from gpt_scratch.generation.inference import load_model as load
from gpt_scratch.quantization import quantize
from gpt_scratch.tokenization_gpt_scratch import GPTScratchTokenizer
from gpt_scratch.training import TrainingConfig
from gpt_scratch.workflows.pretrain import pretrain


@torch.no_grad()
def perplexity(model: torch.nn.Module, windows) -> float:
    """exp of the mean next-token cross-entropy over every validation window."""
    total, count = 0.0, 0
    for row in windows:
        ids, targets = torch.tensor([row["input_ids"]]), torch.tensor([row["target_ids"]])
        logits = model(ids).logits.float()
        total += torch.nn.functional.cross_entropy(logits[0], targets[0], reduction="sum").item()
        count += targets.numel()
    return math.exp(total / count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a saved folder to evaluate (skips training)")
    parser.add_argument("--output-dir", default="runs/verdict-small")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    folder = args.model
    if folder is None:
        config = GPTScratchConfig.from_preset(
            "gpt2-small", emb_dim=256, n_layers=4, n_heads=4, context_length=128
        )
        training = TrainingConfig(output_dir=args.output_dir, num_epochs=args.epochs, batch_size=2,
                                  learning_rate=4e-4, weight_decay=0.1, eval_freq=50)  # fmt: skip
        folder = str(pretrain("the-verdict", training, model_config=config).output_dir)
    fp32, _ = load(folder)
    windows = build_pretraining_datasets("the-verdict", GPTScratchTokenizer(), fp32.config.context_length)
    results = {"fp32": perplexity(fp32, windows["validation"])}
    for mode in ("int8", "bf16"):
        results[mode] = perplexity(quantize(copy.deepcopy(fp32), mode), windows["validation"])
    print(json.dumps({"model": folder, "validation_windows": len(windows["validation"]), "perplexity": results,
                      "change_vs_fp32": {m: results[m] / results["fp32"] - 1 for m in ("int8", "bf16")}},
                     indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
