"""The benchmark stays alive: one tiny run of every task, the report's shape, and the book's weights mapping."""

import argparse
import json

import pytest
import torch

from gpt_scratch import hardware

import benchmark


def tiny_args(tmp_path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    benchmark.add_arguments(parser)
    return parser.parse_args(
        ["--tiny", "--threads", "1", "--repeats", "1", "--tasks", "train,decode,prefill", "--dtypes", "fp32",
         "--train-shapes", "2x16", "--decode-batches", "1", "--new-tokens", "3", "--prompt-tokens", "4",
         "--book-simple-tokens", "2", "--prefill-tokens", "16", "--json", str(tmp_path / "bench.json"), *extra]
    )  # fmt: skip


@pytest.mark.slow  # the benchmark script's whole tiny run (~12 s); issue 22: a short default suite
def test_tiny_run_reports_every_task_and_writes_json(tmp_path, capsys):
    assert benchmark.run(tiny_args(tmp_path)) == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    results = report["results"]
    assert set(results) == {"train fp32 2x16", "decode batch 1", "prefill 16"}
    book = benchmark.book_available()
    expected_decode = [i for i in benchmark.DECODE_IMPLS if book or not i.startswith("book")]
    assert list(results["decode batch 1"]) == expected_decode
    slow_bf16 = hardware.slow_bf16_reason()
    for group in results.values():
        for impl, r in group.items():
            if impl == "gpt_scratch_bf16" and slow_bf16:  # an AVX2-only CPU: skipped with the measured reason
                assert r == {"skipped": slow_bf16}
                continue
            assert (
                r["tokens_per_s"] > 0 and r["tokens_per_s_min"] <= r["tokens_per_s"] <= r["tokens_per_s_max"]
            )
            assert r["peak_memory_mib"] >= r["weights_mib"] > 0, impl
            assert 0 < r["mfu"] < 5  # against the measured fp32 matmul peak
    # Same weights, same greedy decoding: every implementation starts with the same tokens.
    # (int8 and bf16 round the weights: their greedy tokens may differ, tests/test_hardware_quantization.py checks them)
    fp32 = {impl: r for impl, r in results["decode batch 1"].items() if not impl.endswith(("_int8", "_bf16"))}
    firsts = {impl: r["first_tokens"][:2] for impl, r in fp32.items()}
    assert len({tuple(tokens) for tokens in firsts.values()}) == 1, firsts
    ratio = report["ratios"]["decode batch 1"]["hf_gpt2_generate"]
    assert ratio == pytest.approx(
        results["decode batch 1"]["gpt_scratch"]["tokens_per_s"]
        / results["decode batch 1"]["hf_gpt2_generate"]["tokens_per_s"]
    )
    assert {t["versus"] for t in report["targets"]} >= {"hf_gpt2", "hf_gpt2_generate"}
    table = capsys.readouterr().out
    assert "decode batch 1" in table and "hf_gpt2_generate" in table and "target" in table


def test_book_kv_cache_decoding_is_the_books_greedy_decoding(tmp_path):
    pytest.importorskip("llms_from_scratch")
    from llms_from_scratch.ch04 import generate_text_simple

    benchmark.write_checkpoint(str(tmp_path), "gpt2-small", tiny=True)
    plain = benchmark.load_model("book", str(tmp_path)).eval()
    cached = benchmark.load_model("book_kv_cache", str(tmp_path)).eval()
    ids = torch.randint(0, 512, (2, 5), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = generate_text_simple(plain, ids, 8, 128)
    assert torch.equal(benchmark.book_generate_cached(cached, ids, 8), expected)


def test_targets_are_checked_per_shape():
    group = {"gpt_scratch": {"tokens_per_s": 26.0}, "hf_gpt2": {"tokens_per_s": 20.0}}
    checks = benchmark._check_targets({"train fp32 2x256": group, "train bf16 8x256": group})
    assert [(c["case"], c["met"]) for c in checks] == [("train fp32 2x256", True), ("train bf16 8x256", True)]
    assert checks[0]["ratio"] == pytest.approx(1.3)
