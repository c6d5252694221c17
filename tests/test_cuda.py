"""The CUDA and mixed-precision paths, side by side with GPT2LMHeadModel on the same GPU: skipped without a GPU.

Run on a GPU machine with `python -m pytest tests/test_cuda.py`; BENCHMARK.md says when it last ran and where.
"""

import json

import pytest
import torch
from datasets import Dataset
from transformers import GPT2LMHeadModel

from gpt_scratch.generation.fast_generate import generate_fast
from gpt_scratch.modeling_gpt_scratch import GPTScratchForCausalLM
from gpt_scratch.training import CausalLMTask, TrainingConfig, train

from conftest import tiny_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here)")

CUDA = torch.device("cuda")


@pytest.fixture
def gpt2_pair(tmp_path):
    """Ours and GPT2LMHeadModel on the same random weights, on the GPU."""
    torch.manual_seed(0)
    GPTScratchForCausalLM(tiny_config(emb_dim=64, n_heads=4, context_length=128)).save_gpt2(
        str(tmp_path / "gpt2")
    )
    ours = GPTScratchForCausalLM.from_gpt2(str(tmp_path / "gpt2")).to(CUDA).eval()
    return ours, GPT2LMHeadModel.from_pretrained(tmp_path / "gpt2").to(CUDA).eval()


def ids(batch: int = 2, length: int = 100) -> torch.Tensor:
    return torch.randint(0, 50257, (batch, length), generator=torch.Generator().manual_seed(1)).to(CUDA)


def test_logits_equal_gpt2s_on_the_gpu_in_fp32_and_under_bf16_autocast(gpt2_pair):
    ours, gpt2 = gpt2_pair
    x = ids()
    with torch.no_grad():
        assert torch.allclose(ours(x).logits, gpt2(x).logits, atol=1e-4)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            ours_bf16, gpt2_bf16 = ours(x).logits.float(), gpt2(x).logits.float()
    assert (ours_bf16 - gpt2_bf16).abs().max() < 0.05  # bf16 rounding, both in the same kernels' precision
    assert (ours_bf16.argmax(-1) == gpt2_bf16.argmax(-1)).float().mean() > 0.95


@pytest.mark.parametrize("implementation", ["eager", "flex_attention", "flash_attention_2"])
def test_every_attention_implementation_gives_sdpa_logits_on_the_gpu(gpt2_pair, implementation):
    ours, _ = gpt2_pair
    if implementation == "flash_attention_2":
        pytest.importorskip("flash_attn", reason="flash-attn is not installed")
    x = ids()
    with torch.no_grad():
        reference = ours(x).logits
        ours.set_attn_implementation(implementation)
        assert torch.allclose(ours(x).logits, reference, atol=1e-4)


def test_greedy_decoding_on_the_gpu_equals_gpt2s_generate(gpt2_pair):
    ours, gpt2 = gpt2_pair
    prompt = ids(1, 8)
    settings = dict(max_new_tokens=40, do_sample=False, eos_token_id=None, pad_token_id=50256)
    expected = gpt2.generate(prompt, **settings)
    assert torch.equal(ours.generate(prompt, **settings), expected)
    assert torch.equal(generate_fast(ours, prompt, max_new_tokens=40), expected)


def test_a_bf16_model_decodes_on_the_gpu_without_the_cpu_warning(gpt2_pair, recwarn):
    ours, _ = gpt2_pair
    out = generate_fast(ours.to(torch.bfloat16), ids(1, 8), max_new_tokens=10)
    assert out.shape == (1, 18) and not [w for w in recwarn if "bf16" in str(w.message)]


def windows(n: int) -> Dataset:
    data = torch.randint(0, 500, (n, 33), generator=torch.Generator().manual_seed(0))
    return Dataset.from_dict({"input_ids": data[:, :-1].tolist(), "target_ids": data[:, 1:].tolist()})


@pytest.mark.parametrize("precision", ["no", "bf16", "fp16"])
def test_the_loop_trains_on_the_gpu_in_every_precision(tmp_path, precision, fresh_accelerate_state):
    torch.manual_seed(0)
    model = GPTScratchForCausalLM(tiny_config(emb_dim=64, n_heads=4, context_length=32))
    config = TrainingConfig(output_dir=str(tmp_path / "run"), num_epochs=4, batch_size=8, eval_freq=4,
                            eval_iter=2, progress_bar=False, mixed_precision=precision, lr_schedule="cosine",
                            warmup_steps=2, max_grad_norm=1.0)  # fmt: skip
    result = train(model, windows(64), windows(16), config, CausalLMTask(None))
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert str(next(result.model.parameters()).device).startswith("cuda")
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 0.2  # it learns (random ids: memorising)


def test_torch_compile_trains_on_the_gpu_with_the_eager_losses(gpt2_pair):
    ours, _ = gpt2_pair
    ours.train()
    x = ids(4, 128)
    eager_loss = ours(x, labels=x).loss
    compiled = torch.compile(ours, fullgraph=True)
    loss = compiled(x, labels=x).loss
    loss.backward()
    assert torch.allclose(loss, eager_loss, atol=1e-3)  # tiny_config has no dropout
    assert all(p.grad is not None for p in ours.parameters() if p.requires_grad)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_a_run_stopped_after_a_checkpoint_resumes_exactly_on_the_gpu(
    tmp_path, precision, monkeypatch, fresh_accelerate_state
):
    """Dropout on the GPU's generator, fp16's grad scaler, accumulation, cosine schedule: stopped, resumed, equal."""
    from accelerate.state import AcceleratorState
    from safetensors.torch import load_file

    from gpt_scratch.training import loop as training_module

    def run(folder, resume=False):
        torch.manual_seed(0)
        model = GPTScratchForCausalLM(tiny_config(emb_dim=64, n_heads=4, context_length=32, drop_rate=0.1))
        config = TrainingConfig(output_dir=str(tmp_path / folder), num_epochs=2, batch_size=4, eval_freq=5,
                                eval_iter=2, progress_bar=False, mixed_precision=precision, lr_schedule="cosine",
                                warmup_steps=2, max_grad_norm=1.0, gradient_accumulation_steps=2,
                                checkpoint_every=3, resume=resume)  # fmt: skip
        return train(model, windows(64), windows(16), config, CausalLMTask(None))

    run("reference")
    AcceleratorState._reset_state(reset_partial_state=True)
    save = training_module.save_checkpoint

    def save_then_stop(r):
        path = save(r)
        if r.state.step == 6:  # 8 optimizer steps an epoch: in the first
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(training_module, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run("stopped")
    AcceleratorState._reset_state(reset_partial_state=True)
    monkeypatch.setattr(training_module, "save_checkpoint", save)
    run("stopped", resume=True)
    reference = load_file(tmp_path / "reference" / "model.safetensors")
    resumed = load_file(tmp_path / "stopped" / "model.safetensors")
    assert reference.keys() == resumed.keys()
    assert all(torch.allclose(reference[k], resumed[k], atol=1e-6) for k in reference)
