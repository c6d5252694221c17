"""GPTScratchTokenizer against tiktoken, transformers' own GPT-2 tokenizer and the book's sample ids."""

import json
import pickle
import socket
import time

import pytest
import tiktoken
import tiktoken.registry
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer, GPT2TokenizerFast

from gpt_scratch.tokenization_gpt_scratch import (
    GPT2VocabularyNotFoundError,
    GPTScratchTokenizer,
    register_auto_tokenizer,
)

from conftest import BOOK_IDS, BOOK_TEXT, ENCODER_JSON, VOCAB_BPE, run_clean_python, tiny_config

pytestmark = pytest.mark.needs_shared  # GPT-2's BPE files or the book's data, from ../shared

TRICKY_TEXTS = [
    "",
    " ",
    "Hello world",
    " Hello  world   ",
    "line one\nline two\n\n\nthree\r\n\tindented\t\t",
    "trailing spaces    \n    leading spaces",
    "emoji 🤗🦙👩‍👩‍👧 flags 🇫🇷 and skin 👍🏽",
    "中文字符 日本語のテキスト 한국어",
    "combining: e\u0301 a\u0308 n\u0303 \u0301alone Zalgo: Z\u0351\u036b\u0343a\u0310l",
    "it's they're we've I'm you'll he'd 'S 'T",
    "numbers 123 4567890 3.14159 1,000,000",
    "code: def f(x):\n    return x**2  # ok\n",
    "<|endoftext|>",
    "a<|endoftext|>b <|endoftext|><|endoftext|> c",
    "<|endoftext",
    "<|unk|> [PAD] </s>",
]


@pytest.fixture(scope="module")
def tok() -> GPTScratchTokenizer:
    return GPTScratchTokenizer()


@pytest.fixture(scope="module")
def enc() -> tiktoken.Encoding:
    return tiktoken.get_encoding("gpt2")


@pytest.fixture(scope="module")
def hf_gpt2(gpt2_files) -> GPT2TokenizerFast:
    """transformers' own GPT-2 tokenizer on the same vocabulary."""
    hf = GPT2TokenizerFast.from_pretrained(gpt2_files)
    hf.pad_token = "<|endoftext|>"
    return hf


def test_book_sample_ids(tok):
    assert tok(BOOK_TEXT)["input_ids"] == BOOK_IDS
    assert tok.encode(BOOK_TEXT) == BOOK_IDS
    assert tok.decode(BOOK_IDS) == BOOK_TEXT


@pytest.mark.parametrize("text", TRICKY_TEXTS)
def test_ids_equal_tiktoken_and_transformers_gpt2(tok, enc, hf_gpt2, text):
    ids = tok.encode(text)
    assert ids == enc.encode(text, allowed_special={"<|endoftext|>"})
    assert ids == hf_gpt2.encode(text)
    assert tok.decode(ids) == text
    assert tok.convert_ids_to_tokens(ids) == hf_gpt2.convert_ids_to_tokens(ids)
    assert tok.tokenize(text) == hf_gpt2.tokenize(text)


def test_batch_equals_one_by_one_and_transformers(tok, hf_gpt2):
    batch = tok(TRICKY_TEXTS)
    assert batch["input_ids"] == [tok.encode(text) for text in TRICKY_TEXTS]
    assert batch["input_ids"] == hf_gpt2(TRICKY_TEXTS)["input_ids"]
    assert batch["attention_mask"] == [[1] * len(ids) for ids in batch["input_ids"]]


def test_generic_transformers_path_agrees_with_the_tiktoken_path(tok):
    # return_special_tokens_mask sends the call through transformers' tokenize() + convert_tokens_to_ids()
    for text in TRICKY_TEXTS:
        generic = tok(text, return_special_tokens_mask=True)
        assert generic["input_ids"] == tok(text)["input_ids"]
        assert generic["special_tokens_mask"] == [0] * len(generic["input_ids"])


def test_vocabulary_from_gpt2_files_equals_tiktoken(tok, gpt2_files):
    from_files = GPTScratchTokenizer(
        vocab_file=str(gpt2_files / "vocab.json"), merges_file=str(gpt2_files / "merges.txt")
    )
    assert from_files.encoding._mergeable_ranks == tok.encoding._mergeable_ranks
    assert from_files.encode(BOOK_TEXT) == BOOK_IDS


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80))
def test_roundtrip_and_equality_on_any_text(tok, enc, hf_gpt2, text):
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert ids == enc.encode(text, allowed_special={"<|endoftext|>"})
    assert ids == hf_gpt2.encode(text)


def test_lone_surrogate_is_replaced_as_tiktoken_does(tok, enc):
    text = "a\ud800b \udfff"
    ids = tok.encode(text)
    assert ids == enc.encode(text)
    assert tok.decode(ids) == "a\ufffdb \ufffd"
    assert tok([text, "ok"])["input_ids"][0] == ids


def test_special_tokens_and_vocabulary_size(tok):
    assert len(tok) == 50257
    assert tok.vocab_size == 50257
    assert tok.eos_token == tok.bos_token == tok.pad_token == "<|endoftext|>"
    assert tok.eos_token_id == tok.bos_token_id == tok.pad_token_id == 50256
    assert tok.padding_side == "right"
    assert tok.model_input_names == ["input_ids", "attention_mask"]
    assert tok.get_vocab()["Ġthe"] == 262


def test_endoftext_in_text_and_split_special_tokens(tok, enc):
    text = "one<|endoftext|>two"
    assert tok.encode(text) == [505, 50256, 11545]
    plain = enc.encode_ordinary(text)
    assert 50256 not in plain
    assert tok.encode(text, split_special_tokens=True) == plain
    assert tok([text], split_special_tokens=True)["input_ids"] == [plain]
    assert GPTScratchTokenizer(split_special_tokens=True).encode(text) == plain


def test_padding_right_and_left_with_tensors(tok):
    batch = ["Every effort moves you", "Every day"]
    right = tok(batch, padding=True, return_tensors="pt")
    assert right["input_ids"].tolist() == [[6109, 3626, 6100, 345], [6109, 1110, 50256, 50256]]
    assert right["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert right["input_ids"].dtype == torch.long
    left = tok(batch, padding=True, padding_side="left")
    assert left["input_ids"] == [[6109, 3626, 6100, 345], [50256, 50256, 6109, 1110]]
    assert left["attention_mask"] == [[1, 1, 1, 1], [0, 0, 1, 1]]
    padded = tok(batch, padding="max_length", max_length=6, return_tensors="pt")
    assert padded["input_ids"].shape == (2, 6)
    assert padded["attention_mask"].sum(dim=1).tolist() == [4, 2]
    assert tok(batch, padding=True, pad_to_multiple_of=8)["input_ids"][1][2:] == [50256] * 6
    single = tok("Every day", padding="max_length", max_length=4, return_tensors="pt")
    assert single["input_ids"].tolist() == [[6109, 1110, 50256, 50256]]


def test_padding_matches_transformers_gpt2(tok, hf_gpt2):
    for side in ("right", "left"):
        ours = tok(TRICKY_TEXTS, padding=True, padding_side=side, return_tensors="pt")
        theirs = hf_gpt2(TRICKY_TEXTS, padding=True, padding_side=side, return_tensors="pt")
        assert torch.equal(ours["input_ids"], theirs["input_ids"])
        assert torch.equal(ours["attention_mask"], theirs["attention_mask"])


def test_truncation(tok, hf_gpt2):
    ids = tok(BOOK_TEXT, truncation=True, max_length=5)["input_ids"]
    assert ids == BOOK_IDS[:5]
    batch = tok([BOOK_TEXT, "Hi"], truncation=True, max_length=5, padding=True, return_tensors="pt")
    assert batch["input_ids"].tolist() == [BOOK_IDS[:5], [17250, 50256, 50256, 50256, 50256]]
    assert batch["attention_mask"].tolist() == [[1] * 5, [1, 0, 0, 0, 0]]
    left = GPTScratchTokenizer(truncation_side="left")
    assert left(BOOK_TEXT, truncation=True, max_length=5)["input_ids"] == BOOK_IDS[-5:]
    assert ids == hf_gpt2(BOOK_TEXT, truncation=True, max_length=5)["input_ids"]
    assert len(tok("word " * 2000, truncation=True)["input_ids"]) == 1024  # GPT-2's model_max_length


def test_decoding(tok):
    assert tok.decode(BOOK_IDS, skip_special_tokens=True) == BOOK_TEXT.replace("<|endoftext|>", "")
    assert tok.batch_decode([BOOK_IDS, [6109, 1110, 50256, 50256]], skip_special_tokens=True) == [
        BOOK_TEXT.replace("<|endoftext|>", ""),
        "Every day",
    ]
    assert tok.batch_decode(torch.tensor([[6109, 1110], [6109, 3626]])) == ["Every day", "Every effort"]
    assert tok.decode(torch.tensor(6109)) == "Every"
    assert tok.decode([6109, 50256]) == "Every<|endoftext|>"
    assert tok.decode(tok.encode(" ,  .  ?")) == " ,  .  ?"  # no clean-up of spaces before punctuation
    fr = tok.convert_tokens_to_ids("Ġfr")
    assert tok.decode([fr]) == tok.convert_tokens_to_string(["Ġfr"]) == " fr"


def test_convert_ids_to_tokens(tok):
    assert tok.convert_ids_to_tokens([15496, 11, 466, 50256]) == ["Hello", ",", "Ġdo", "<|endoftext|>"]
    assert tok.convert_ids_to_tokens([15496, 50256], skip_special_tokens=True) == ["Hello"]
    assert tok.convert_tokens_to_ids(["Hello", "Ġdo", "<|endoftext|>"]) == [15496, 466, 50256]


def test_pad_token_can_be_changed(tmp_path):
    tok = GPTScratchTokenizer()
    tok.add_special_tokens({"pad_token": "<|pad|>"})
    assert tok.pad_token_id == 50257 and len(tok) == 50258
    batch = tok(["Every effort moves you", "Every day"], padding=True)
    assert batch["input_ids"][1] == [6109, 1110, 50257, 50257]
    assert tok.encode("a<|pad|>b") == [64, 50257, 65]
    assert tok.decode(batch["input_ids"][1]) == "Every day<|pad|><|pad|>"
    assert tok.decode(batch["input_ids"][1], skip_special_tokens=True) == "Every day"
    tok.save_pretrained(tmp_path)
    reloaded = GPTScratchTokenizer.from_pretrained(tmp_path)
    assert reloaded.pad_token == "<|pad|>" and reloaded.pad_token_id == 50257 and len(reloaded) == 50258
    assert GPTScratchTokenizer(pad_token="!").pad_token_id == 0


def test_pair_inputs_use_transformers_generic_path(tok, hf_gpt2):
    assert tok("Every effort", "moves you")["input_ids"] == hf_gpt2("Every effort", "moves you")["input_ids"]


def test_pickle_roundtrip(tok):
    clone = pickle.loads(pickle.dumps(tok))
    assert clone(BOOK_TEXT)["input_ids"] == BOOK_IDS


def test_save_pretrained_writes_gpt2_files_and_reloads(tok, shared, tmp_path):
    tok.save_pretrained(tmp_path)
    files = {path.name for path in tmp_path.iterdir()}
    assert {"tokenizer_config.json", "vocab.json", "merges.txt", "tokenizer.json"} <= files
    assert "tokenization_gpt_scratch.py" not in files  # the tokenizer ships no code: tokenizer.json is enough
    # exactly GPT-2's own files: the vocabulary and the 50,000 merges in their order
    assert json.loads((tmp_path / "vocab.json").read_text()) == json.loads(
        (shared / "tiktoken-cache" / ENCODER_JSON).read_text()
    )
    assert (tmp_path / "merges.txt").read_bytes() == (shared / "tiktoken-cache" / VOCAB_BPE).read_bytes()
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "GPTScratchTokenizer" and "auto_map" not in config

    reloaded = GPTScratchTokenizer.from_pretrained(tmp_path)
    assert reloaded.encode(BOOK_TEXT) == BOOK_IDS
    assert reloaded.encoding.name == "gpt2-from-files"  # the folder's files, not tiktoken's cache
    assert len(reloaded) == 50257 and reloaded.pad_token_id == 50256
    assert GPT2TokenizerFast.from_pretrained(tmp_path).encode(BOOK_TEXT) == BOOK_IDS

    register_auto_tokenizer()
    auto = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(auto, GPTScratchTokenizer)
    assert auto.encode(BOOK_TEXT) == BOOK_IDS


def test_saved_model_folder_loads_in_process_without_trust_remote_code(tok, tmp_path):
    """With the package imported, a saved folder (the model's code listed in auto_map) loads with the package's
    classes, no prompt, with or without trust_remote_code."""
    from transformers import AutoModelForCausalLM

    import gpt_scratch

    model = gpt_scratch.GPTScratchForCausalLM(
        tiny_config(emb_dim=8, n_layers=1, context_length=16, drop_rate=0.1)
    )
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    assert "auto_map" in json.loads((tmp_path / "config.json").read_text())
    for trust_remote_code in (None, False, True):
        auto = AutoTokenizer.from_pretrained(tmp_path, trust_remote_code=trust_remote_code)
        # the package's class (tiktoken's speed), not transformers' own
        assert type(auto) is GPTScratchTokenizer
        assert auto.encode(BOOK_TEXT) == BOOK_IDS
    assert type(AutoModelForCausalLM.from_pretrained(tmp_path)) is gpt_scratch.GPTScratchForCausalLM


@pytest.fixture
def no_cached_vocabulary(tmp_path, monkeypatch):
    """An empty tiktoken cache and no encoding loaded in this process."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})


def _blocked(*args, **kwargs):
    raise OSError("network blocked by the test")


def test_offline_mode_without_cache_raises_a_clear_error(no_cached_vocabulary, monkeypatch):
    monkeypatch.setattr(socket, "create_connection", _blocked)
    monkeypatch.setattr(socket, "getaddrinfo", _blocked)
    start = time.perf_counter()
    with pytest.raises(GPT2VocabularyNotFoundError) as info:
        GPTScratchTokenizer()
    assert time.perf_counter() - start < 5
    message = str(info.value)
    for needed in ("TIKTOKEN_CACHE_DIR", "vocab.json", "merges.txt", ENCODER_JSON, VOCAB_BPE, "offline"):
        assert needed in message


def test_blocked_network_without_cache_fails_fast(no_cached_vocabulary, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(socket, "create_connection", _blocked)
    monkeypatch.setattr(socket, "getaddrinfo", _blocked)
    start = time.perf_counter()
    with pytest.raises(GPT2VocabularyNotFoundError, match="cannot be reached") as info:
        GPTScratchTokenizer()
    assert time.perf_counter() - start < 5
    assert "TIKTOKEN_CACHE_DIR" in str(info.value)


def test_folder_loads_without_any_cache(tok, no_cached_vocabulary, tmp_path):
    tok.save_pretrained(tmp_path / "saved")
    assert GPTScratchTokenizer.from_pretrained(tmp_path / "saved").encode(BOOK_TEXT) == BOOK_IDS


def test_mismatched_vocabulary_files_are_named(gpt2_files, tmp_path):
    merges = (gpt2_files / "merges.txt").read_text(encoding="utf-8").split("\n")
    merges[1], merges[2] = merges[2], merges[1]  # swap the first two merges: ids no longer follow merge order
    (tmp_path / "merges.txt").write_text("\n".join(merges), encoding="utf-8")
    with pytest.raises(ValueError, match=r"merges.txt: merge 1 "):
        GPTScratchTokenizer(
            vocab_file=str(gpt2_files / "vocab.json"), merges_file=str(tmp_path / "merges.txt")
        )


def test_benchmark_reports_every_case():
    from bench_tokenizer import benchmark_tokenizer, format_tokenizer_benchmark

    report = benchmark_tokenizer(texts=TRICKY_TEXTS * 5, repeats=1)
    assert report["n_texts"] == len(TRICKY_TEXTS) * 5
    assert set(report["results"]) == {
        "tiktoken_loop",
        "tiktoken_batch",
        "gpt_scratch_single",
        "gpt_scratch_batched",
        "gpt_scratch_batched_padded_pt",
        "hf_gpt2_fast_batched",
        "saved_tokenizer_json_batched",
    }
    assert all(r["mb_per_s_min"] <= r["mb_per_s"] <= r["mb_per_s_max"] for r in report["results"].values())
    reference = report["results"][report["tiktoken_reference"]]["mb_per_s"]
    assert (
        report["ratio_batched_vs_tiktoken"]
        == report["results"]["gpt_scratch_batched"]["mb_per_s"] / reference
    )
    assert "gpt_scratch_batched / tiktoken_" in format_tokenizer_benchmark(report)


@pytest.mark.slow  # a timing assertion: opt-in, so that a busy CI machine cannot make the default run flaky
def test_batched_encoding_keeps_up_with_tiktoken_on_the_instruction_data():
    from bench_tokenizer import benchmark_tokenizer

    report = benchmark_tokenizer(repeats=7)
    assert report["n_texts"] == 1100
    assert report["ratio_batched_vs_tiktoken"] >= report["target_ratio"] == 0.85


# ---- offsets and words, as GPT-2's fast tokenizer gives them -----------------------------------------------------

OFFSET_TEXTS = [BOOK_TEXT, "Hello, wörld 日本 tea?<|endoftext|> x", "a  b\n\n  c", "", "👍🏽 naïve café"]


@pytest.mark.parametrize("text", OFFSET_TEXTS)
def test_offsets_and_word_ids_equal_gpt2_fast(tok, hf_gpt2, text):
    ours = tok(text, return_offsets_mapping=True)
    theirs = hf_gpt2(text, return_offsets_mapping=True)
    assert ours["input_ids"] == theirs["input_ids"]
    assert ours["offset_mapping"] == theirs["offset_mapping"]
    assert ours.word_ids() == theirs.word_ids()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cn")), max_size=60))
def test_offsets_equal_gpt2_fast_on_any_text(tok, hf_gpt2, text):
    """Any text of assigned characters (unassigned code points can fall into other words: the Unicode tables of
    Python's regex and of tokenizers' Rust regex differ there; ids and offsets still agree)."""
    ours = tok(text, return_offsets_mapping=True)
    theirs = hf_gpt2(text, return_offsets_mapping=True)
    assert ours["offset_mapping"] == theirs["offset_mapping"]
    assert ours.word_ids() == theirs.word_ids()


@pytest.mark.parametrize("side", ["right", "left"])
def test_offsets_of_a_padded_truncated_batch_equal_gpt2_fast(tok, hf_gpt2, side):
    texts = OFFSET_TEXTS[:3]
    kwargs = dict(return_offsets_mapping=True, padding=True, truncation=True, max_length=9, padding_side=side)
    ours, theirs = tok(texts, return_tensors="pt", **kwargs), hf_gpt2(texts, return_tensors="pt", **kwargs)
    for key in ("input_ids", "attention_mask", "offset_mapping"):
        assert torch.equal(ours[key], theirs[key]), key
    assert [ours.word_ids(i) for i in range(3)] == [theirs.word_ids(i) for i in range(3)]


# ---- what a fast tokenizer gives: encodings from the same vocabulary as a Rust tokenizers.Tokenizer ------------

HARD_TEXTS = [
    "naïve café, Ünïcödé ß ẞ Ω ℕ ﬁ ａｂｃ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "emoji 🤗🦙👩‍👩‍👧‍👦 🇫🇷🇯🇵 👍🏽👍🏿 ❤️‍🔥",
    "before<|endoftext|>after <|endoftext|> <|endoftext|><|endoftext|>",
    " " * 300 + "x" + "\t" * 40 + "\n" * 70 + "   \r\n  \u00a0\u2003 end   ",
    "مرحبا بالعالم עברית हिन्दी ไทย",
]


def book_texts(shared) -> list[str]:
    """The book's texts: chapter 2's short story and chapter 7's instruction records."""
    records = json.loads((shared / "data" / "instruction-data.json").read_text(encoding="utf-8"))
    return [(shared / "data" / "the-verdict.txt").read_text(encoding="utf-8")] + [
        "\n".join(str(v) for v in record.values()) for record in records
    ]


def test_the_rust_tokenizer_gives_tiktokens_ids_on_the_books_texts_and_hard_cases(tok, enc, shared):
    texts = book_texts(shared) + HARD_TEXTS + TRICKY_TEXTS
    rust = [e.ids for e in tok._tokenizer.encode_batch(texts, add_special_tokens=False)]
    assert rust == enc.encode_batch(texts, allowed_special={"<|endoftext|>"})
    assert tok(texts).input_ids == rust


@pytest.mark.parametrize("side", ["right", "left"])
def test_encodings_without_offsets_equal_gpt2_fasts(tok, hf_gpt2, side):
    """tokens(), word_ids(), char_to_token(), encodings[i].offsets: as GPT-2's fast tokenizer, padded and truncated,
    without asking for offsets (made on first use from the Rust tokenizer)."""
    texts = HARD_TEXTS + OFFSET_TEXTS
    kwargs = dict(padding=True, truncation=True, max_length=40, padding_side=side)
    ours, theirs = tok(texts, **kwargs), hf_gpt2(texts, **kwargs)
    assert ours.input_ids == theirs.input_ids
    for i, text in enumerate(texts):
        assert ours.tokens(i) == theirs.tokens(i)
        assert ours.word_ids(i) == theirs.word_ids(i)
        assert ours.encodings[i].offsets == theirs.encodings[i].offsets
        chars = [c for c in range(len(text)) if theirs.char_to_token(i, c) is not None or c % 3 == 0]
        assert [ours.char_to_token(i, c) for c in chars] == [theirs.char_to_token(i, c) for c in chars]
    one, gpt2_one = tok(HARD_TEXTS[1]), hf_gpt2(HARD_TEXTS[1])  # one text: no batch index
    assert one.tokens() == gpt2_one.tokens() and one.char_to_token(7) == gpt2_one.char_to_token(7) == 5


def test_encodings_are_made_only_when_asked_for(tok):
    batch = tok(["Hello world", "tea?"], padding=True, return_tensors="pt")
    assert batch.is_fast and batch.__dict__.get("_made_encodings") is None  # ids alone: tiktoken's speed
    assert batch.tokens(0) == ["Hello", "Ġworld", "<|endoftext|>"]  # padded as the ids are
    assert pickle.loads(pickle.dumps(batch)).tokens(1) == batch.tokens(1)


def test_encodings_honour_split_special_tokens(tok, enc):
    text = "a<|endoftext|>b"
    split = tok(text, split_special_tokens=True)
    assert split.input_ids == enc.encode_ordinary(text)
    assert len(split.tokens()) == len(split.input_ids) and "<|endoftext|>" not in split.tokens()


def test_assistant_tokens_mask_covers_the_responses_alone(tok, hf_gpt2):
    """The Alpaca template's {% generation %} block: the mask is the response and its <|endoftext|>, as the book's
    exercise 7.2 masks the prompt; GPT-2's fast tokenizer with the template gives the same mask."""
    from gpt_scratch.tokenization_gpt_scratch import ALPACA_CHAT_TEMPLATE

    conversations = [
        [{"role": "system", "content": "Rewrite the sentence."}, {"role": "user", "content": "It is cold."},
         {"role": "assistant", "content": "The weather is chilly. 🥶"}],
        [{"role": "user", "content": "Name a color."}, {"role": "assistant", "content": "Blue"}],
    ]  # fmt: skip
    masks = {}
    for name, tokenizer in (("ours", tok), ("gpt2", hf_gpt2)):
        out = tokenizer.apply_chat_template(conversations, chat_template=ALPACA_CHAT_TEMPLATE, return_dict=True,
                                            return_assistant_tokens_mask=True)  # fmt: skip
        masks[name] = (out["input_ids"], out["assistant_masks"])
    assert masks["ours"] == masks["gpt2"]
    for ids, mask, conversation in zip(*masks["ours"], conversations, strict=True):
        response = [i for i, m in zip(ids, mask, strict=True) if m]
        assert tok.decode(response) == conversation[-1]["content"] + "<|endoftext|>"
        assert mask == sorted(mask)  # the response closes the text: zeros, then ones


AUTO_TOKENIZER_WITHOUT_THE_PACKAGE = """
import importlib.util, json, sys
from transformers import AutoTokenizer

assert importlib.util.find_spec("gpt_scratch") is None, "gpt_scratch must not be importable here"
folder, texts = sys.argv[1], json.loads(sys.argv[2])
for trust_remote_code in (None, False, True):  # None: the custom-code question is asked of a closed stdin
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    encoded = tokenizer(texts, return_offsets_mapping=True)
    print(json.dumps({"trust": trust_remote_code, "class": type(tokenizer).__name__, "is_fast": tokenizer.is_fast,
                      "ids": encoded.input_ids, "offsets": encoded["offset_mapping"], "tokens": encoded.tokens(3),
                      "pad": tokenizer.pad_token, "eos": tokenizer.eos_token, "max": tokenizer.model_max_length,
                      "template": tokenizer.chat_template, "decoded": tokenizer.batch_decode(encoded.input_ids)}))
"""


def test_auto_tokenizer_without_the_package_is_fast_with_tiktokens_ids(tok, enc, tmp_path):
    """Issue 21: every saved folder holds tokenizer.json and names no tokenizer code, so AutoTokenizer where
    gpt_scratch is not installed (with or without trust_remote_code) is transformers' fast tokenizer with tiktoken's
    ids, offsets and tokens, the folder's special tokens and chat template; offline, tiktoken's cache empty."""
    import gpt_scratch
    from gpt_scratch.tokenization_gpt_scratch import ALPACA_CHAT_TEMPLATE

    folder = tmp_path / "saved"
    gpt_scratch.GPTScratchForCausalLM(tiny_config(context_length=64)).save_pretrained(folder)
    tokenizer = GPTScratchTokenizer(model_max_length=64)
    tokenizer.chat_template = ALPACA_CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    texts = HARD_TEXTS + TRICKY_TEXTS
    empty_cache = tmp_path / "empty-tiktoken-cache"
    empty_cache.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIKTOKEN_CACHE_DIR", str(empty_cache))  # the folder must be enough, offline
        result = run_clean_python(
            AUTO_TOKENIZER_WITHOUT_THE_PACKAGE, str(folder), json.dumps(texts), cwd=tmp_path
        )
    assert result.returncode == 0, result.stderr[-3000:]
    # (the unanswered question has no newline: a run's line may start with it)
    runs = [
        json.loads(line[line.index('{"trust"') :])
        for line in result.stdout.splitlines()
        if '{"trust"' in line
    ]
    assert [run["trust"] for run in runs] == [None, False, True]
    ours = tok(texts, return_offsets_mapping=True)
    for run in runs:
        assert run["class"] == "TokenizersBackend" and run["is_fast"], run["class"]
        assert run["ids"] == enc.encode_batch(texts, allowed_special={"<|endoftext|>"})
        assert run["offsets"] == [[list(pair) for pair in row] for row in ours["offset_mapping"]]
        assert run["tokens"] == ours.tokens(3)
        assert run["decoded"] == texts
        assert (run["pad"], run["eos"], run["max"]) == ("<|endoftext|>", "<|endoftext|>", 64)
        assert run["template"] == ALPACA_CHAT_TEMPLATE
    reloaded = GPTScratchTokenizer.from_pretrained(folder)  # reads tokenizer.json, no rebuild
    assert reloaded.tokenizer_file and reloaded(texts).tokens(3) == tok(texts).tokens(3)
