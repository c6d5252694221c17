"""TRL's SFTTrainer with packing (padding-free, restarting position_ids) and with assistant-only loss, side by
side with GPT2LMHeadModel holding the same weights (save_gpt2): the same logged losses."""

import pytest
import torch

from gpt_scratch import GPTScratchForCausalLM, GPTScratchTokenizer
from gpt_scratch.tokenization_gpt_scratch import ALPACA_CHAT_TEMPLATE

from conftest import tiny_config

trl = pytest.importorskip("trl")
pytestmark = pytest.mark.needs_shared  # GPT-2's BPE files for the tokenizer

TEXTS = [
    "Every effort moves you forward, one small step at a time.",
    "The book builds a GPT from scratch: tokenizer, attention, training and fine-tuning.",
    "Hello, do you like tea? In the sunlit terraces of someunknownPlace.",
    "Packing puts several short texts in one row, each attending only to itself.",
] * 6  # 24 texts of ~15 tokens: rows of 64 tokens hold several

CONVERSATIONS = [
    [{"role": "system", "content": "Rewrite the sentence."}, {"role": "user", "content": "It is cold."},
     {"role": "assistant", "content": "The weather is chilly."}],
    [{"role": "user", "content": "Name a primary color."}, {"role": "assistant", "content": "Blue."}],
    [{"role": "system", "content": "Translate to French."}, {"role": "user", "content": "Good morning"},
     {"role": "assistant", "content": "Bonjour"}],
    [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4"}],
] * 4  # fmt: skip


@pytest.fixture(scope="module")
def models(tmp_path_factory, one_thread) -> dict:
    """A tiny gpt_scratch model (context 64) with its tokenizer, and its GPT-2 export with GPT-2's fast tokenizer."""
    from transformers import AutoTokenizer, GPT2LMHeadModel

    root = tmp_path_factory.mktemp("trl")
    torch.manual_seed(0)
    ours = GPTScratchForCausalLM(tiny_config(qkv_bias=True, tie_word_embeddings=True))
    tokenizer = GPTScratchTokenizer(model_max_length=64)
    tokenizer.chat_template = ALPACA_CHAT_TEMPLATE
    ours.save_pretrained(root / "ours")
    tokenizer.save_pretrained(root / "ours")
    ours.save_gpt2(root / "gpt2", chat_template=ALPACA_CHAT_TEMPLATE)
    return {
        "ours": (lambda: GPTScratchForCausalLM.from_pretrained(root / "ours"), tokenizer),
        "gpt2": (
            lambda: GPT2LMHeadModel.from_pretrained(root / "gpt2"),
            AutoTokenizer.from_pretrained(root / "gpt2"),
        ),
    }


def sft_losses(make_model, tokenizer, dataset, tmp_path, **config) -> tuple[list[float], object]:
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=2, learning_rate=1e-3, logging_steps=1,
        report_to=[], save_strategy="no", use_cpu=True, dataloader_num_workers=0, seed=0, max_length=64,
        **config,
    )  # fmt: skip
    trainer = SFTTrainer(model=make_model(), args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry], trainer


def test_sft_with_packing_trains_as_gpt2(models, tmp_path):
    """packing=True (best-fit, padding-free): rows of several texts longer than nothing, positions restarting per
    text; ours and GPT-2 log the same losses."""
    from datasets import Dataset

    dataset = Dataset.from_dict({"text": TEXTS})
    losses = {}
    for name, (make_model, tokenizer) in models.items():
        losses[name], trainer = sft_losses(make_model, tokenizer, dataset, tmp_path / name, packing=True)
        batch = next(iter(trainer.get_train_dataloader()))
        assert batch["input_ids"].shape[0] == 1 and batch["input_ids"].shape[1] > 64  # one flat row
        assert "position_ids" in batch and batch["position_ids"].max() < 64
        assert (batch["position_ids"] == 0).sum() > 2
    assert len(losses["ours"]) == 3
    assert losses["ours"] == pytest.approx(losses["gpt2"], rel=1e-4)


def test_sft_with_assistant_only_loss_trains_on_the_responses_as_gpt2(models, tmp_path):
    from datasets import Dataset

    dataset = Dataset.from_dict({"messages": CONVERSATIONS})
    losses = {}
    for name, (make_model, tokenizer) in models.items():
        losses[name], trainer = sft_losses(
            make_model, tokenizer, dataset, tmp_path / name, assistant_only_loss=True
        )
        row = trainer.train_dataset[0]  # labels: the assistant mask folded in, -100 elsewhere
        assert (
            tokenizer.decode([i for i in row["labels"] if i != -100]) == "The weather is chilly.<|endoftext|>"
        )
    assert losses["ours"] == pytest.approx(losses["gpt2"], rel=1e-4)
