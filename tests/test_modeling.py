"""The model against real references: the book's formulas and parameter counts, and transformers' own behaviour."""

import math

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification

from gpt_scratch import (
    GPTScratchConfig,
    GPTScratchForCausalLM,
    GPTScratchForSequenceClassification,
    GPTScratchModel,
)
from gpt_scratch.modeling_gpt_scratch import GELU, LayerNorm, MultiHeadAttention

from conftest import tiny_config

# a small vocabulary, three heads and the qkv bias: shapes that catch transposed or mixed-up dimensions
MODELING = dict(vocab_size=97, context_length=32, emb_dim=24, n_heads=3, qkv_bias=True)
MODELING_IDS = dict(bos_token_id=0, eos_token_id=0, pad_token_id=0)


def tiny_lm(seed: int = 0, **overrides) -> GPTScratchForCausalLM:
    torch.manual_seed(seed)
    return GPTScratchForCausalLM(tiny_config(**{**MODELING, **overrides, **MODELING_IDS})).eval()


# ---- configuration -----------------------------------------------------------------------------------------


def test_book_config_parameter_counts():
    """Chapter 4: GPT_CONFIG_124M has 163,009,536 parameters, 124,412,160 without the output head."""
    config = GPTScratchConfig.from_preset("GPT_CONFIG_124M")
    assert (config.context_length, config.drop_rate, config.qkv_bias, config.tie_word_embeddings) == (
        1024,
        0.1,
        False,
        False,
    )
    with torch.device("meta"):
        model = GPTScratchForCausalLM(config)
    total = sum(p.numel() for p in model.parameters())
    assert total == 163_009_536
    assert total - model.out_head.weight.numel() == 124_412_160


@pytest.mark.parametrize(
    "preset, params",
    [
        ("gpt2-small", 124_439_808),
        ("gpt2-medium", 354_823_168),
        ("gpt2-large", 774_030_080),
        ("gpt2-xl", 1_557_611_200),
    ],
)
def test_gpt2_presets_match_gpt2_sizes(preset, params):
    with torch.device("meta"):
        model = GPTScratchForCausalLM(GPTScratchConfig.from_preset(preset))
    assert sum(p.numel() for p in model.parameters()) == params  # tied head counted once, as GPT-2 reports
    assert model.out_head.weight is model.model.tok_emb.weight


def test_preset_overrides_and_attribute_map():
    config = GPTScratchConfig.from_preset("GPT_CONFIG_124M", context_length=256)
    assert config.context_length == 256 == config.max_position_embeddings
    assert (config.hidden_size, config.num_attention_heads, config.num_hidden_layers) == (768, 12, 12)
    config.hidden_size = 96
    assert config.emb_dim == 96
    with pytest.raises(ValueError, match="Unknown preset 'gpt3'"):
        GPTScratchConfig.from_preset("gpt3")


@pytest.mark.parametrize(
    "bad, field",
    [(dict(emb_dim=10, n_heads=3), "emb_dim"), (dict(n_layers=0), "n_layers"), (dict(vocab_size=-1), "vocab_size"),
     (dict(drop_rate=1.0), "drop_rate"), (dict(drop_rate=-0.1), "drop_rate"), (dict(context_length=0), "context_length")],
)  # fmt: skip
def test_invalid_config_names_the_field(bad, field):
    with pytest.raises(ValueError, match=field):
        GPTScratchConfig(**bad)


# ---- modules against the book's formulas ----------------------------------------------------------------------


def test_layer_norm_is_the_books_formula():
    torch.manual_seed(1)
    norm = LayerNorm(8)
    norm.scale.data.uniform_(0.5, 1.5)
    norm.shift.data.uniform_(-1, 1)
    x = torch.randn(2, 5, 8) * 3 + 1
    mean, var = x.mean(-1, keepdim=True), x.var(-1, keepdim=True, unbiased=False)
    book = norm.scale * (x - mean) / torch.sqrt(var + 1e-5) + norm.shift
    torch.testing.assert_close(norm(x), book, atol=1e-5, rtol=1e-5)


def test_gelu_is_the_tanh_approximation():
    x = torch.linspace(-6, 6, 101)
    book = 0.5 * x * (1 + torch.tanh(torch.sqrt(torch.tensor(2.0 / torch.pi)) * (x + 0.044715 * x**3)))
    torch.testing.assert_close(GELU()(x), book, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("qkv_bias", [False, True])
def test_sdpa_and_explicit_attention_agree(qkv_bias):
    torch.manual_seed(0)
    config = tiny_config(emb_dim=16, n_heads=4, context_length=12, qkv_bias=qkv_bias)
    att = MultiHeadAttention(config).eval()
    x = torch.randn(3, 12, 16)
    config._attn_implementation = "sdpa"
    sdpa, no_weights = att(x)
    config._attn_implementation = "eager"
    eager, weights = att(x)  # the book's masked softmax
    torch.testing.assert_close(sdpa, eager, atol=1e-6, rtol=1e-5)
    assert no_weights is None and weights.shape == (3, 4, 12, 12)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4, 12))
    assert torch.all(weights.triu(diagonal=1) == 0)  # causal


def test_attention_is_causal():
    torch.manual_seed(0)
    att = MultiHeadAttention(tiny_config(emb_dim=16, n_heads=2, context_length=8)).eval()
    x = torch.randn(1, 8, 16)
    changed = x.clone()
    changed[:, 5:] = torch.randn(1, 3, 16)
    torch.testing.assert_close(att(x)[0][:, :5], att(changed)[0][:, :5])


def test_eager_and_sdpa_models_agree_with_padding():
    model = tiny_lm()
    ids = torch.randint(1, 97, (2, 9))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    sdpa = model(ids, attention_mask=mask).logits
    model.config._attn_implementation = "eager"
    eager = model(ids, attention_mask=mask).logits
    torch.testing.assert_close(sdpa[0, 3:], eager[0, 3:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sdpa[1], eager[1], atol=1e-5, rtol=1e-5)


def test_gpt2_initialisation():
    torch.manual_seed(0)
    model = GPTScratchForCausalLM(
        tiny_config(
            **{**MODELING, **MODELING_IDS, "emb_dim": 96, "n_heads": 4, "n_layers": 8, "vocab_size": 5000}
        )
    )
    block = model.model.trf_blocks[0]
    assert block.att.qkv.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert block.att.out_proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(16), rel=0.1)
    assert block.ff.layers[2].weight.std().item() == pytest.approx(0.02 / math.sqrt(16), rel=0.1)
    assert torch.all(block.norm1.scale == 1) and torch.all(block.norm1.shift == 0)
    assert torch.all(block.att.qkv.bias == 0)


# ---- inputs, padding, loss --------------------------------------------------------------------------------


def test_loss_is_shifted_cross_entropy_ignoring_minus_100():
    model = tiny_lm()
    ids = torch.randint(0, 97, (2, 7))
    labels = ids.clone()
    labels[1, 4:] = -100
    out = model(ids, labels=labels)
    logits = out.logits[:, :-1].reshape(-1, 97)
    target = labels[:, 1:].reshape(-1)
    keep = target != -100
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(logits[keep], target[keep]))


@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_does_not_change_real_tokens(side):
    model = tiny_lm()
    short, long = torch.randint(1, 97, (1, 5)), torch.randint(1, 97, (1, 8))
    pad = torch.zeros(1, 3, dtype=torch.long)
    padded = torch.cat([pad, short], 1) if side == "left" else torch.cat([short, pad], 1)
    mask = (
        torch.cat([torch.zeros_like(pad), torch.ones_like(short)], 1)
        if side == "left"
        else torch.cat([torch.ones_like(short), torch.zeros_like(pad)], 1)
    )
    batch = torch.cat([padded, long])
    logits = model(batch, attention_mask=torch.cat([mask, torch.ones_like(long)])).logits
    alone = model(short).logits[0]
    real = logits[0, 3:] if side == "left" else logits[0, :5]
    torch.testing.assert_close(real, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[1], model(long).logits[0], atol=1e-5, rtol=1e-5)


def test_input_longer_than_context_is_a_clear_error():
    model = tiny_lm()
    with pytest.raises(ValueError, match="exceeds the model's context_length of 32"):
        model(torch.zeros(1, 33, dtype=torch.long))


def test_hidden_states_and_tuple_outputs():
    model = tiny_lm()
    ids = torch.randint(0, 97, (1, 4))
    out = model(ids, output_hidden_states=True)
    assert len(out.hidden_states) == 3 and out.hidden_states[-1].shape == (1, 4, 24)
    as_tuple = model(ids, return_dict=False, use_cache=False)
    torch.testing.assert_close(as_tuple[0], out.logits)


# ---- generation ---------------------------------------------------------------------------------------------


def test_greedy_with_cache_equals_without_cache():
    model = tiny_lm()
    ids = torch.randint(1, 97, (2, 6))
    with_cache = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=False)
    no_cache = model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=20, do_sample=False, use_cache=False
    )
    assert with_cache.shape == (2, 26)
    assert torch.equal(with_cache, no_cache)


def test_static_cache_generation_equals_dynamic_cache():
    """transformers' StaticCache (cache_implementation="static", as for torch.compile) gives the same tokens."""
    model = tiny_lm()
    ids = torch.randint(1, 97, (2, 6))
    mask = torch.ones_like(ids)
    mask[0, :2] = 0  # left padding: generate() hands the model 4D masks with a static cache
    dynamic = model.generate(ids, attention_mask=mask, max_new_tokens=10, do_sample=False)
    static = model.generate(
        ids, attention_mask=mask, max_new_tokens=10, do_sample=False, cache_implementation="static"
    )
    assert torch.equal(dynamic, static)


def test_decoding_with_cache_runs_one_token_per_step():
    """With the cache, each step after the prompt feeds the model exactly one new token."""
    model = tiny_lm()
    seen = []
    model.model.tok_emb.register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[1]))
    model.generate(
        torch.randint(1, 97, (1, 7)), max_new_tokens=6, do_sample=False, attention_mask=torch.ones(1, 7)
    )
    assert seen == [7, 1, 1, 1, 1, 1]


def test_left_padded_batch_generation_matches_single_prompts():
    model = tiny_lm()
    a, b = torch.randint(1, 97, (1, 4)), torch.randint(1, 97, (1, 7))
    batch = torch.cat([torch.cat([torch.zeros(1, 3, dtype=torch.long), a], 1), b])
    mask = torch.ones_like(batch)
    mask[0, :3] = 0
    out = model.generate(batch, attention_mask=mask, max_new_tokens=10, do_sample=False, pad_token_id=0)
    alone_a = model.generate(a, attention_mask=torch.ones_like(a), max_new_tokens=10, do_sample=False)
    alone_b = model.generate(b, attention_mask=torch.ones_like(b), max_new_tokens=10, do_sample=False)
    assert torch.equal(out[0, 7:], alone_a[0, 4:]) and torch.equal(out[1], alone_b[0])


def test_sampling_options_and_eos_stopping():
    model = tiny_lm()
    ids = torch.randint(1, 97, (1, 5))
    mask = torch.ones_like(ids)
    torch.manual_seed(3)
    first = model.generate(
        ids, attention_mask=mask, do_sample=True, temperature=0.7, top_k=10, top_p=0.9, max_new_tokens=12
    )
    torch.manual_seed(3)
    again = model.generate(
        ids, attention_mask=mask, do_sample=True, temperature=0.7, top_k=10, top_p=0.9, max_new_tokens=12
    )
    assert torch.equal(first, again) and first.shape == (1, 17)
    greedy = model.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=12)
    stop_at = int(greedy[0, 7])
    stopped = model.generate(
        ids, attention_mask=mask, do_sample=False, max_new_tokens=12, eos_token_id=stop_at
    )
    assert stopped.shape[1] <= 8 and int(stopped[0, -1]) == stop_at


# ---- saving, loading, Auto classes -----------------------------------------------------------------------------


def test_save_and_load_bit_exact_without_pickle(tmp_path):
    model = tiny_lm(tie_word_embeddings=False)
    model.save_pretrained(tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert "model.safetensors" in files and "config.json" in files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pkl", ".pth"))]
    assert {"configuration_gpt_scratch.py", "modeling_gpt_scratch.py"} <= set(files)
    loaded = GPTScratchForCausalLM.from_pretrained(tmp_path)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    auto = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert isinstance(auto, GPTScratchForCausalLM)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), GPTScratchConfig)
    assert isinstance(AutoModel.from_pretrained(tmp_path), GPTScratchModel)


def test_tied_head_stays_tied_after_loading(tmp_path):
    tiny_lm(tie_word_embeddings=True).save_pretrained(tmp_path)
    loaded = GPTScratchForCausalLM.from_pretrained(tmp_path)
    assert loaded.out_head.weight.data_ptr() == loaded.model.tok_emb.weight.data_ptr()


def test_sequence_classifier_from_a_causal_lm_folder(tmp_path):
    lm = tiny_lm()
    lm.save_pretrained(tmp_path)
    clf = AutoModelForSequenceClassification.from_pretrained(
        tmp_path, num_labels=3, id2label={0: "a", 1: "b", 2: "c"}, label2id={"a": 0, "b": 1, "c": 2}
    ).eval()
    assert isinstance(clf, GPTScratchForSequenceClassification)
    torch.testing.assert_close(clf.model.tok_emb.weight, lm.model.tok_emb.weight)
    ids = torch.randint(1, 97, (2, 6))
    # the last non-padding token decides, with right or left padding alike
    right = torch.cat([ids[:1, :4], torch.zeros(1, 2, dtype=torch.long)], 1)
    left = torch.cat([torch.zeros(1, 2, dtype=torch.long), ids[:1, :4]], 1)
    mask_r, mask_l = torch.tensor([[1, 1, 1, 1, 0, 0]]), torch.tensor([[0, 0, 1, 1, 1, 1]])
    alone = clf(ids[:1, :4]).logits
    torch.testing.assert_close(clf(right, attention_mask=mask_r).logits, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(clf(left, attention_mask=mask_l).logits, alone, atol=1e-5, rtol=1e-5)
    out = clf(ids, labels=torch.tensor([0, 2]))
    assert out.logits.shape == (2, 3)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 2])))
    assert clf.config.id2label[2] == "c"


# ---- the book's own GPTModel (llms-from-scratch, chapter 4) as the reference ------------------------------------


@pytest.mark.parametrize("book_module", ["llms_from_scratch.ch04", "llms_from_scratch.kv_cache.gpt2"])
def test_the_books_gpt_model_with_our_weights_gives_our_logits(book_module):
    # Not skipped when the book's package is missing: the README's test line installs it (pip install --no-deps).
    import importlib

    from benchmark import book_config, book_state_dict

    GPTModel = importlib.import_module(book_module).GPTModel
    torch.manual_seed(0)
    ours = GPTScratchForCausalLM(
        tiny_config(vocab_size=512, context_length=128, emb_dim=64, n_heads=4, qkv_bias=True)
    )
    ours.eval()
    ids = torch.randint(0, 512, (2, 9))
    book = GPTModel(book_config(ours.config)).eval()
    missing, unexpected = book.load_state_dict(
        book_state_dict(ours.state_dict(), ours.config.n_layers), strict=False
    )
    assert not unexpected and all(".mask" in name for name in missing), (missing, unexpected)  # buffers only
    with torch.no_grad():
        torch.testing.assert_close(book(ids), ours(ids, use_cache=False).logits, rtol=1e-4, atol=1e-4)
