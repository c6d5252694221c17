"""Chapter 2's teaching tokenizers against the book's printed ids, and the from-scratch BPE against GPT-2."""

from collections import Counter

import pytest
import regex
import tiktoken
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpt_scratch.teaching.bpe import GPT2_SPLIT_PATTERN, BytePairTokenizer
from gpt_scratch.teaching.tokenizers import (
    ENDOFTEXT,
    UNK,
    SimpleTokenizerV1,
    SimpleTokenizerV2,
    UnknownTokenError,
    build_vocab,
    split_text,
)
from gpt_scratch.tokenization_gpt_scratch import GPTScratchTokenizer

from conftest import BOOK_IDS, BOOK_TEXT, ENCODER_JSON, VOCAB_BPE

pytestmark = pytest.mark.needs_shared  # GPT-2's BPE files or the book's data, from ../shared


@pytest.fixture(scope="module")
def the_verdict(shared) -> str:
    return (shared / "data" / "the-verdict.txt").read_text(encoding="utf-8")


# --- SimpleTokenizerV1 / V2 (sections 2.2-2.4) -------------------------------------------------------------------


def test_vocabulary_sizes_match_the_book(the_verdict):
    assert len(split_text(the_verdict)) == 4690
    assert len(build_vocab(the_verdict)) == 1130
    vocab = build_vocab(the_verdict, special_tokens=[ENDOFTEXT, UNK])
    assert len(vocab) == 1132
    assert list(vocab.items())[-5:] == [
        ("younger", 1127),
        ("your", 1128),
        ("yourself", 1129),
        ("<|endoftext|>", 1130),
        ("<|unk|>", 1131),
    ]


def test_split_text_keeps_punctuation():
    assert split_text("Hello, world. Is this-- a test?") == [
        "Hello",
        ",",
        "world",
        ".",
        "Is",
        "this",
        "--",
        "a",
        "test",
        "?",
    ]


def test_simple_tokenizer_v1_book_sample(the_verdict):
    tokenizer = SimpleTokenizerV1(build_vocab(the_verdict))
    text = '"It\'s the last he painted, you know," Mrs. Gisburn said with pardonable pride.'
    ids = tokenizer.encode(text)
    assert ids == [1, 56, 2, 850, 988, 602, 533, 746, 5, 1126, 596, 5, 1, 67, 7, 38, 851, 1108, 754, 793, 7]
    assert (
        tokenizer.decode(ids)
        == '" It\' s the last he painted, you know," Mrs. Gisburn said with pardonable pride.'
    )


def test_simple_tokenizer_v1_rejects_unknown_words(the_verdict):
    tokenizer = SimpleTokenizerV1(build_vocab(the_verdict))
    with pytest.raises(KeyError) as info:
        tokenizer.encode("Hello, do you like tea?")
    assert isinstance(info.value, UnknownTokenError)
    assert "'Hello' is not in the vocabulary (1130 tokens)" in str(info.value)


def test_simple_tokenizer_v2_book_sample(the_verdict):
    tokenizer = SimpleTokenizerV2(build_vocab(the_verdict, special_tokens=[ENDOFTEXT, UNK]))
    text = " <|endoftext|> ".join(("Hello, do you like tea?", "In the sunlit terraces of the palace."))
    ids = tokenizer.encode(text)
    assert ids == [1131, 5, 355, 1126, 628, 975, 10, 1130, 55, 988, 956, 984, 722, 988, 1131, 7]
    assert (
        tokenizer.decode(ids)
        == "<|unk|>, do you like tea? <|endoftext|> In the sunlit terraces of the <|unk|>."
    )


def test_simple_tokenizer_v2_needs_unk(the_verdict):
    with pytest.raises(ValueError, match="<|unk|>"):
        SimpleTokenizerV2(build_vocab(the_verdict))


# --- byte-pair encoding from scratch -----------------------------------------------------------------------------

SAMPLES = [
    BOOK_TEXT,
    "Akwirw ier",
    "  runs   of spaces\n\n\ttabs\r\n and trailing  ",
    "emoji 🤗👩‍👩‍👧, CJK 日本語の文, combining e\u0301 and it's they're we'll",
]


@pytest.fixture(scope="module")
def gpt2_bpe(shared) -> BytePairTokenizer:
    cache = shared / "tiktoken-cache"
    return BytePairTokenizer.from_gpt2_files(str(cache / ENCODER_JSON), str(cache / VOCAB_BPE))


@pytest.fixture(scope="module")
def trained(the_verdict) -> BytePairTokenizer:
    return BytePairTokenizer.train(the_verdict, vocab_size=400)


@pytest.mark.parametrize("text", SAMPLES)
def test_bpe_with_gpt2_merges_reproduces_gpt2_ids(gpt2_bpe, text):
    expected = tiktoken.get_encoding("gpt2").encode(text, allowed_special={ENDOFTEXT})
    assert gpt2_bpe.encode(text) == expected
    assert gpt2_bpe.decode(expected) == text


def test_bpe_book_sample_and_the_verdict(gpt2_bpe, the_verdict):
    assert gpt2_bpe.encode(SAMPLES[0]) == BOOK_IDS
    assert gpt2_bpe.encode("Akwirw ier") == [33901, 86, 343, 86, 220, 959]  # the book's unknown-word example
    ids = gpt2_bpe.encode(the_verdict)
    assert len(ids) == 5145
    assert ids == GPTScratchTokenizer().encode(the_verdict)
    assert len(gpt2_bpe) == 50257


def test_bpe_loads_files_written_by_save_pretrained(gpt2_bpe, tmp_path):
    GPTScratchTokenizer().save_vocabulary(str(tmp_path))
    bpe = BytePairTokenizer.from_gpt2_files(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    assert bpe.merges == gpt2_bpe.merges
    assert bpe.encode(SAMPLES[3]) == gpt2_bpe.encode(SAMPLES[3])


def test_trained_bpe_size_special_token_and_compression(trained, the_verdict):
    assert len(trained) == 400
    assert len(trained.merges) == 400 - 256 - 1
    assert trained.special_tokens == {ENDOFTEXT: 399}
    assert trained.encode("a<|endoftext|>b")[1] == 399
    ids = trained.encode(the_verdict)
    assert trained.decode(ids) == the_verdict
    assert len(ids) < 0.6 * len(the_verdict.encode("utf-8"))  # merges compress the training text


def test_first_merge_is_the_most_frequent_pair(trained, the_verdict):
    pairs = Counter()
    for chunk in regex.findall(GPT2_SPLIT_PATTERN, the_verdict):
        data = chunk.encode("utf-8")
        pairs.update(zip(data, data[1:], strict=False))
    first_pair, first_id = next(iter(trained.merges.items()))
    assert first_id == 256
    assert pairs[first_pair] == max(pairs.values())
    assert trained.vocab[256] == bytes(first_pair)


def test_train_rejects_too_small_vocabulary(the_verdict):
    with pytest.raises(ValueError, match="below 256 bytes"):
        BytePairTokenizer.train(the_verdict, vocab_size=200)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_trained_bpe_roundtrips_any_text(trained, text):
    assert trained.decode(trained.encode(text, allowed_special=())) == text
