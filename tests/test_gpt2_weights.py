"""GPT-2 import and export against transformers' own GPT2LMHeadModel, and remote-code loading in a clean process."""

import json
import shutil
import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import GPT2Config, GPT2LMHeadModel

from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM
from gpt_scratch.conversion_gpt_scratch import gpt2_config_to_scratch

from conftest import run_clean_python, tiny_config

SHAPES = [
    dict(n_embd=32, n_layer=2, n_head=4, vocab_size=211, n_positions=64, tie_word_embeddings=True),
    dict(
        n_embd=30, n_layer=3, n_head=5, vocab_size=157, n_positions=48, tie_word_embeddings=False
    ),  # odd sizes
    dict(n_embd=12, n_layer=1, n_head=1, vocab_size=50, n_positions=80, tie_word_embeddings=True),
]


def random_gpt2(folder, seed=0, **shape) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(**shape, bos_token_id=0, eos_token_id=0, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # random biases and norms too, so that every tensor's mapping is exercised
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(folder)
    return model


@pytest.mark.parametrize("shape", SHAPES, ids=["tied", "odd-untied", "one-head"])
def test_import_matches_gpt2_logits_and_greedy_tokens(tmp_path, shape):
    reference = random_gpt2(tmp_path / "gpt2", **shape)
    model = GPTScratchForCausalLM.from_gpt2(tmp_path / "gpt2")
    assert model.config.tie_word_embeddings == shape["tie_word_embeddings"]
    ids = torch.randint(0, shape["vocab_size"], (3, 17))
    with torch.no_grad():
        diff = (model(ids).logits - reference(ids).logits).abs().max().item()
    assert diff < 1e-4, diff
    prompt = ids[:1, :5]
    ours = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=30, do_sample=False)
    theirs = reference.generate(
        prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=30, do_sample=False
    )
    assert torch.equal(ours, theirs)

    # export back: a plain GPT-2 checkpoint, loaded by transformers with no remote code
    model.save_gpt2(tmp_path / "exported")
    back = GPT2LMHeadModel.from_pretrained(tmp_path / "exported").eval()
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(back.state_dict()[name], tensor, atol=0, rtol=0, msg=name)
    assert torch.equal(
        back.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=30, do_sample=False),
        theirs,
    )


@pytest.mark.parametrize(
    "size, preset", [((768, 12, 12), "gpt2-small"), ((1024, 24, 16), "gpt2-medium"), ((1280, 36, 20), "gpt2-large"),
                     ((1600, 48, 25), "gpt2-xl"), ((32, 2, 4), None)],
)  # fmt: skip
def test_import_picks_the_matching_preset(size, preset):
    n_embd, n_layer, n_head = size
    config = gpt2_config_to_scratch(GPT2Config(n_embd=n_embd, n_layer=n_layer, n_head=n_head).to_dict())
    assert config.preset == preset
    if preset:
        expected = GPTScratchConfig.from_preset(preset)
        assert (
            config.emb_dim,
            config.n_layers,
            config.n_heads,
            config.context_length,
            config.vocab_size,
        ) == (
            expected.emb_dim,
            expected.n_layers,
            expected.n_heads,
            expected.context_length,
            expected.vocab_size,
        )
        assert config.qkv_bias and config.tie_word_embeddings


def test_book_config_exports_to_gpt2(tmp_path):
    """A model without q/k/v bias (the book's training config) exports zero biases and the same logits."""
    torch.manual_seed(0)
    config = tiny_config(vocab_size=64, context_length=16)
    model = GPTScratchForCausalLM(config).eval()
    model.save_gpt2(tmp_path)
    gpt2 = GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, 64, (2, 16))
    assert (model(ids).logits - gpt2(ids).logits).abs().max().item() < 1e-5


def test_mismatched_checkpoint_lists_every_problem(tmp_path):
    random_gpt2(tmp_path, **SHAPES[0])
    tensors = load_file(str(tmp_path / "model.safetensors"))
    del tensors["transformer.h.1.mlp.c_fc.bias"]
    tensors["transformer.h.0.attn.c_proj.weight"] = torch.zeros(32, 31)
    tensors["transformer.h.7.attn.c_attn.weight"] = torch.zeros(2, 2)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError) as err:
        GPTScratchForCausalLM.from_gpt2(tmp_path)
    message = str(err.value)
    assert "missing tensor transformer.h.1.mlp.c_fc.bias" in message
    assert "transformer.h.0.attn.c_proj.weight: shape (32, 31)" in message
    assert "unexpected tensor transformer.h.7.attn.c_attn.weight" in message


CLEAN_PROCESS = textwrap.dedent(
    """
    import json, sys, torch
    from transformers import AutoModelForCausalLM
    try:
        import gpt_scratch
        sys.exit("gpt_scratch must not be importable here")
    except ImportError:
        pass
    model = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
    ids = torch.tensor([[5, 17, 42, 3]])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False)
    logits = model(ids).logits
    print(json.dumps({"cls": type(model).__name__, "tokens": out[0].tolist(), "logit_sum": logits.sum().item()}))
    """
)


def test_saved_folder_loads_with_remote_code_in_a_clean_process(tmp_path):
    torch.manual_seed(0)
    config = tiny_config(vocab_size=64, context_length=32)
    model = GPTScratchForCausalLM(config).eval()
    model.save_pretrained(tmp_path / "saved")
    hub_copy = shutil.copytree(tmp_path / "saved", tmp_path / "elsewhere" / "model")
    result = run_clean_python(CLEAN_PROCESS, str(hub_copy), cwd=tmp_path / "elsewhere")
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    ids = torch.tensor([[5, 17, 42, 3]])
    expected = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False)
    assert got["cls"] == "GPTScratchForCausalLM"
    assert got["tokens"] == expected[0].tolist()
    assert abs(got["logit_sum"] - model(ids).logits.sum().item()) < 1e-3


@pytest.mark.slow
def test_full_size_gpt2_small_import_and_export(tmp_path):
    """The real 124M shape (random weights: no GPT-2 weights here): logits, 30 greedy tokens, export round trip."""
    torch.manual_seed(0)
    reference = GPT2LMHeadModel(GPT2Config(resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)).eval()
    reference.save_pretrained(tmp_path / "gpt2")
    model = GPTScratchForCausalLM.from_gpt2(tmp_path / "gpt2")
    assert model.config.preset == "gpt2-small"
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters())
    ids = torch.randint(0, 50257, (2, 128))
    with torch.no_grad():
        assert (model(ids).logits - reference(ids).logits).abs().max().item() < 1e-4
    prompt = ids[:1, :8]
    mask = torch.ones_like(prompt)
    ours = model.generate(prompt, attention_mask=mask, max_new_tokens=30, do_sample=False)
    assert torch.equal(
        ours, reference.generate(prompt, attention_mask=mask, max_new_tokens=30, do_sample=False)
    )
    model.save_gpt2(tmp_path / "exported")
    back = GPT2LMHeadModel.from_pretrained(tmp_path / "exported")
    for name, tensor in reference.state_dict().items():
        assert torch.equal(back.state_dict()[name], tensor), name


def test_export_carries_gpt2s_tokenizer_for_plain_transformers(tmp_path):
    """AutoTokenizer + pipeline of plain transformers on a save_gpt2 folder: GPT-2's vocabulary, real generation."""
    from transformers import AutoTokenizer, pipeline

    from gpt_scratch import GPTScratchTokenizer

    torch.manual_seed(0)
    model = GPTScratchForCausalLM(tiny_config(context_length=40, n_layers=1, drop_rate=0.1)).eval()
    model.save_gpt2(tmp_path / "exported")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "exported")
    assert len(tokenizer) == 50257 and tokenizer.model_max_length == 40
    text = "Every effort moves you"
    assert tokenizer(text)["input_ids"] == GPTScratchTokenizer()(text)["input_ids"]
    generated = pipeline("text-generation", model=str(tmp_path / "exported"))(
        text, max_new_tokens=5, do_sample=False
    )[0]["generated_text"]
    ids = GPTScratchTokenizer()(text, return_tensors="pt").input_ids
    expected = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=5, do_sample=False)
    assert generated == GPTScratchTokenizer().decode(expected[0]) and len(generated) > len(text)


def test_from_gpt2_on_a_gpt_scratch_folder_says_what_it_is(tmp_path):
    GPTScratchForCausalLM(
        tiny_config(vocab_size=64, context_length=8, emb_dim=8, n_layers=1, drop_rate=0.1)
    ).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="'gpt_scratch' config .*load it with from_pretrained"):
        GPTScratchForCausalLM.from_gpt2(tmp_path)
