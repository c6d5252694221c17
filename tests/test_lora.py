"""LoRA (appendix E) through PEFT: which weights train, counts, the saved adapter and the merged folder."""

import json

import pytest
import torch
from safetensors.torch import load_file

from gpt_scratch.configuration_gpt_scratch import GPTScratchConfig
from gpt_scratch.data.classification import SPAM_LABEL2ID, prepare_classification_data
from gpt_scratch.modeling_gpt_scratch import GPTScratchForCausalLM, GPTScratchForSequenceClassification
from gpt_scratch.training import TrainingConfig
from gpt_scratch.workflows.classify import (
    ClassifyOptions,
    finetune_classifier,
    load_classifier,
    parameter_counts,
)
from gpt_scratch.workflows.lora import LORA_TARGET_MODULES, add_lora, load_lora, merge_lora

from conftest import tiny_config

TINY = dict(context_length=128, drop_rate=0.1)  # overrides of conftest.tiny_config


pytestmark = [pytest.mark.needs_shared, pytest.mark.usefixtures("one_thread")]  # needs ../shared


def lora_parameters(d: int, n_layers: int, rank: int) -> int:
    # per block: qkv d -> 3d, out_proj d -> d, ff d -> 4d and 4d -> d; a rank-r adapter on in -> out has r * (in + out)
    return n_layers * rank * ((d + 3 * d) + (d + d) + (d + 4 * d) + (4 * d + d))


def test_lora_counts_for_gpt2_small_and_the_book():
    counts = parameter_counts(
        GPTScratchConfig.from_preset("gpt2-small", num_labels=2), lora_rank=16, lora_alpha=16
    )
    head = 768 * 2 + 2  # the new head stays trainable in full
    assert counts["lora"] == lora_parameters(768, 12, 16) + head == 2_360_834
    # The book's 2,666,528 has separate W_query/W_key/W_value (3 * r * 2d instead of r * 4d) and a LoRA head
    book = 12 * 16 * (3 * (768 + 768) + (768 + 768) + (768 + 3072) + (3072 + 768)) + 16 * (768 + 2)
    assert book == 2_666_528
    assert counts["lora"] - head + 12 * 16 * (3 * 2 * 768 - 4 * 768) + 16 * (768 + 2) == book


def test_add_lora_freezes_all_but_the_adapters_and_the_head():
    torch.manual_seed(0)
    model = add_lora(GPTScratchForSequenceClassification(tiny_config(**TINY)), rank=4)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n or ".score." in n for n in trainable)
    adapted = {n.split(".lora_A")[0] for n in trainable if ".lora_A." in n}
    assert adapted == {
        f"base_model.model.model.trf_blocks.{i}.{m}" for i in range(2) for m in LORA_TARGET_MODULES
    }
    assert (
        sum(p.numel() for n, p in model.named_parameters() if p.requires_grad)
        == lora_parameters(16, 2, 4) + 34
    )
    assert model.peft_config["default"].lora_alpha == 4  # alpha defaults to the rank (appendix E: 16 and 16)
    with pytest.raises(ValueError, match="rank must be >= 1"):
        add_lora(GPTScratchForSequenceClassification(tiny_config(**TINY)), rank=0)


def test_lora_run_saves_adapter_and_a_merged_plain_folder(tmp_path):
    from transformers import AutoModelForSequenceClassification

    import gpt_scratch  # noqa: F401  (registers the Auto classes)

    torch.manual_seed(0)
    lm = tmp_path / "lm"
    GPTScratchForCausalLM(tiny_config(**TINY)).save_pretrained(lm)
    out = tmp_path / "run"
    training = TrainingConfig(
        output_dir=str(out), max_steps=3, batch_size=8, learning_rate=1e-2, eval_freq=2, eval_iter=1,
        final_eval_iter=1, progress_bar=False,
    )  # fmt: skip
    result = finetune_classifier(lm, "sms-spam", training, ClassifyOptions(lora_rank=4, lora_alpha=8))

    adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"]) == (4, 8)
    assert (
        set(adapter["target_modules"]) == set(LORA_TARGET_MODULES) and "score" in adapter["modules_to_save"]
    )
    assert not (out / "adapter_config.json").exists()  # the run folder itself is a plain gpt_scratch model
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["hyperparameters"]["trainable"] == "lora"
    assert summary["parameters"]["trainable"] == lora_parameters(16, 2, 4) + 34
    assert {"test_accuracy", "test_precision", "test_recall", "test_f1"} <= set(summary["metrics"])

    # the merged folder: frozen weights as the pretrained LM's, adapted layers moved by the folded-in B A
    before, merged = load_file(str(lm / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert not any("lora" in k for k in merged) and merged["score.weight"].shape == (2, 16)
    assert torch.equal(before["model.tok_emb.weight"], merged["model.tok_emb.weight"])
    assert torch.equal(before["model.trf_blocks.0.norm1.scale"], merged["model.trf_blocks.0.norm1.scale"])
    assert torch.equal(
        before["model.trf_blocks.0.att.out_proj.bias"], merged["model.trf_blocks.0.att.out_proj.bias"]
    )
    assert not torch.equal(
        before["model.trf_blocks.1.ff.layers.2.weight"], merged["model.trf_blocks.1.ff.layers.2.weight"]
    )

    # the adapter on a fresh base classifier, the merged folder and the trained model all agree
    plain = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert type(plain).__name__ == "GPTScratchForSequenceClassification"
    with_adapter = load_lora(load_classifier(lm, SPAM_LABEL2ID), out / "adapter").eval()
    merged_again = load_lora(load_classifier(lm, SPAM_LABEL2ID), out / "adapter", merge=True).eval()
    batch = prepare_classification_data("sms-spam").dataset["test"].with_format("torch")[:8]
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        expected = with_adapter(**inputs).logits
        torch.testing.assert_close(plain(**inputs).logits, expected, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(merged_again(**inputs).logits, expected, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(result.model.eval()(**inputs).logits, expected, atol=1e-5, rtol=1e-4)


def test_merge_lora_is_the_wrapped_forward():
    torch.manual_seed(0)
    model = add_lora(GPTScratchForSequenceClassification(tiny_config(**TINY)).eval(), rank=4, alpha=8)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)  # B starts at zero: give the adapters something to merge
    ids = torch.randint(0, 50257, (2, 10))
    with torch.no_grad():
        wrapped = model(input_ids=ids).logits
        merged = merge_lora(model)
        assert type(merged) is GPTScratchForSequenceClassification
        torch.testing.assert_close(merged(input_ids=ids).logits, wrapped, atol=1e-5, rtol=1e-4)
