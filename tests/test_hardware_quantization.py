"""The bf16 probe and its warnings, int8/bf16 quantization and the decoding layout, against transformers' GPT-2."""

import argparse
import json
import math

import pytest
import torch
from datasets import Dataset
from transformers import GPT2LMHeadModel

import gpt_scratch
from gpt_scratch import hardware
from gpt_scratch.generation.fast_generate import generate_fast
from gpt_scratch.modeling_gpt_scratch import GPTScratchForCausalLM
from gpt_scratch.quantization import layout_for_decoding, quantize, weight_bytes
from gpt_scratch.training import CausalLMTask, TrainingConfig, train

import benchmark
from conftest import tiny_config

TINY = dict(vocab_size=512, emb_dim=64, n_heads=4)  # overrides of conftest.tiny_config
# An AVX2-only CPU as the issue measured it: bf16 0.3 GFLOP/s, fp32 40 GFLOP/s.
SLOW = hardware.Bf16Speed(fp32_flops=40e9, bf16_flops=0.3e9, capability="AVX2")
FAST = hardware.Bf16Speed(fp32_flops=200e9, bf16_flops=900e9, capability="AVX512")


@pytest.fixture
def slow_bf16(monkeypatch):
    monkeypatch.setattr(hardware, "bf16_speed", lambda device="cpu", size=256: SLOW)


@pytest.fixture
def gpt2_pair(tmp_path):
    """Ours and transformers' GPT2LMHeadModel on the same random weights (written as a GPT-2 checkpoint)."""
    torch.manual_seed(0)
    GPTScratchForCausalLM(tiny_config(**TINY)).save_gpt2(str(tmp_path / "gpt2"))
    ours = GPTScratchForCausalLM.from_gpt2(str(tmp_path / "gpt2")).eval()
    return ours, GPT2LMHeadModel.from_pretrained(tmp_path / "gpt2").eval()


def test_probe_measures_both_dtypes_once():
    hardware.bf16_speed.cache_clear()
    speed = hardware.bf16_speed()
    assert speed.fp32_flops > 0 and speed.bf16_flops > 0
    assert speed.capability == torch.backends.cpu.get_cpu_capability()
    assert hardware.bf16_speed() is speed  # cached: measured once per process


def test_slow_bf16_warns_with_the_measured_slowdown(slow_bf16):
    with pytest.warns(UserWarning, match=r"133x slower than fp32.*AVX2.*use fp32"):
        assert hardware.warn_if_slow_bf16("--mixed-precision bf16")
    assert SLOW.slowdown == pytest.approx(133.3, abs=0.1) and not SLOW.fast


def test_fast_bf16_does_not_warn(monkeypatch, recwarn):
    monkeypatch.setattr(hardware, "bf16_speed", lambda device="cpu", size=256: FAST)
    assert not hardware.warn_if_slow_bf16("--mixed-precision bf16") and FAST.fast
    assert not [w for w in recwarn if "bf16" in str(w.message)]


def test_training_loop_warns_on_slow_bf16(tmp_path, slow_bf16, fresh_accelerate_state):
    ids = torch.randint(0, 128, (8, 17), generator=torch.Generator().manual_seed(0))
    data = Dataset.from_dict({"input_ids": ids[:, :-1].tolist(), "target_ids": ids[:, 1:].tolist()})
    model = GPTScratchForCausalLM(tiny_config(**{**TINY, "vocab_size": 128, "context_length": 32}))
    config = TrainingConfig(output_dir=str(tmp_path / "run"), max_steps=1, batch_size=4, eval_iter=1,
                            final_eval_iter=1, progress_bar=False, mixed_precision="bf16")  # fmt: skip
    with pytest.warns(UserWarning, match="mixed_precision='bf16'.*slower than fp32.*use fp32"):
        train(model, data, None, config, CausalLMTask(None))


def test_decoding_layout_keeps_gpt2s_logits(gpt2_pair):
    ours, hf = gpt2_pair
    ids = torch.randint(0, 512, (2, 9), generator=torch.Generator().manual_seed(1))
    tied = ours.out_head.weight is ours.model.tok_emb.weight
    layout_for_decoding(ours)
    qkv = ours.model.trf_blocks[0].att.qkv.weight
    assert qkv.shape == (3 * 64, 64) and qkv.stride() == (1, 3 * 64)  # (out, in) shape, (in, out) in memory
    assert (ours.out_head.weight is ours.model.tok_emb.weight) == tied  # the head's tying unchanged
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, hf(ids).logits, rtol=1e-4, atol=1e-4)


def test_int8_stays_close_to_gpt2_and_generate_takes_the_int8_path(gpt2_pair):
    ours, hf = gpt2_pair
    fp32_bytes = weight_bytes(ours)
    ids = torch.randint(0, 512, (1, 9), generator=torch.Generator().manual_seed(2))
    model = gpt_scratch.quantize(ours, "int8")
    assert isinstance(model.out_head, torch.ao.nn.quantized.dynamic.Linear)
    assert isinstance(model.model.trf_blocks[0].ff.layers[0], torch.ao.nn.quantized.dynamic.Linear)
    assert weight_bytes(model) < fp32_bytes  # int8 linears (the fp32 embeddings stay)
    with torch.no_grad():
        got, expected = model(ids).logits, hf(ids).logits
    assert (got - expected).abs().max() < 0.05 * expected.abs().max()  # int8 rounding, not a different model
    greedy = model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert torch.equal(generate_fast(model, ids, 6), greedy)


def test_bf16_weights_stay_close_to_gpt2(gpt2_pair):
    ours, hf = gpt2_pair
    ids = torch.randint(0, 512, (1, 9), generator=torch.Generator().manual_seed(3))
    model = quantize(ours, "bf16")
    assert model.model.tok_emb.weight.dtype == torch.bfloat16
    with torch.no_grad():
        got, expected = model(ids).logits.float(), hf(ids).logits
    assert (got - expected).abs().max() < 0.05 * expected.abs().max()
    assert generate_fast(model, ids, 4).shape == (1, 13)


def test_bf16_on_slow_cpu_warns_and_bad_mode_is_an_error(gpt2_pair, slow_bf16):
    ours, _ = gpt2_pair
    with pytest.raises(ValueError, match="int8, bf16.*'int4'"):
        quantize(ours, "int4")
    with pytest.warns(UserWarning, match="bf16 weights.*slower than fp32"):
        quantize(ours, "bf16")


def test_generate_and_chat_verbs_take_quantize(tmp_path, capsys):
    from gpt_scratch.cli import build_parser, main
    from gpt_scratch.generation.inference import load_model as load
    from gpt_scratch.tokenization_gpt_scratch import GPTScratchTokenizer

    torch.manual_seed(0)
    GPTScratchForCausalLM(tiny_config(**{**TINY, "vocab_size": 50257})).save_pretrained(tmp_path)
    GPTScratchTokenizer().save_pretrained(tmp_path)
    assert main(["generate", str(tmp_path), "--prompt", "Every effort", "--max-new-tokens", "4",
                 "--quantize", "int8"]) == 0  # fmt: skip
    assert capsys.readouterr().out.startswith("Every effort")
    model, _ = load(tmp_path, quantize="int8")
    assert isinstance(model.out_head, torch.ao.nn.quantized.dynamic.Linear)
    args = build_parser("chat").parse_args(
        ["chat", str(tmp_path), "--instruction", "Hi", "--quantize", "bf16"]
    )
    assert args.quantize == "bf16"
    with pytest.raises(SystemExit):
        build_parser("generate").parse_args(["generate", str(tmp_path), "--quantize", "int4"])


def test_benchmark_skips_bf16_and_its_peak_on_slow_cpu(tmp_path, slow_bf16, monkeypatch):
    measured = []
    monkeypatch.setattr(benchmark, "measure_matmul_peak", lambda dtype, **kw: measured.append(dtype) or 1e10)
    parser = argparse.ArgumentParser()
    benchmark.add_arguments(parser)
    args = parser.parse_args(
        ["--tiny", "--threads", "1", "--repeats", "1", "--tasks", "train,decode", "--dtypes", "fp32,bf16",
         "--train-shapes", "2x16", "--decode-batches", "1", "--new-tokens", "3", "--prompt-tokens", "4",
         "--book-simple-tokens", "2", "--json", str(tmp_path / "bench.json")]
    )  # fmt: skip
    assert benchmark.run(args) == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    assert set(measured) == {torch.float32}  # no bf16 peak on a CPU that would take minutes for it
    assert all("slower than fp32" in r["skipped"] for r in report["results"]["train bf16 2x16"].values())
    decode = report["results"]["decode batch 1"]
    assert "slower than fp32" in decode["gpt_scratch_bf16"]["skipped"]
    int8 = decode["gpt_scratch_int8"]
    assert int8["weights_mib"] < decode["gpt_scratch"]["weights_mib"]
    limit = report["read_bytes_per_s"] / (int8["weights_mib"] * 2**20)
    assert int8["bandwidth_limit_tokens_per_s"] == pytest.approx(limit)
    assert any(t["ours"] == "gpt_scratch_int8" and t["target"] == 2.0 for t in report["targets"])
    table = benchmark.format_report(report)
    assert "limit tok/s" in table and "bf16 slow:" in table and "memory read:" in table


def test_matmul_peak_grows_its_size_within_the_budget():
    assert math.isfinite(benchmark.measure_matmul_peak(torch.float32, seconds=0.2, max_size=512))
