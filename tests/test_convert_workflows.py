"""Every workflow starts from what `convert` reads (the book's .pth, nanoGPT's ckpt.pt), and pretraining reads
nanoGPT's data folder: against the book's own GPTModel and tiktoken's GPT-2 ids."""

import json

import numpy as np
import pytest
import tiktoken
import torch

from gpt_scratch.cli import main
from gpt_scratch.data.prepared import PreparedCorpus

from conftest import SHARED_PATH

pytestmark = pytest.mark.needs_shared  # GPT-2's BPE files and the book's data

ch04 = pytest.importorskip("llms_from_scratch.ch04")

BOOK = dict(
    vocab_size=50257, context_length=32, emb_dim=24, n_heads=3, n_layers=2, drop_rate=0.0, qkv_bias=False
)
IDS = torch.tensor([[6109, 3626, 6100, 345, 11, 257, 1110]])
FAST = [
    "--max-steps",
    "1",
    "--batch-size",
    "2",
    "--eval-iter",
    "1",
    "--final-eval-iter",
    "1",
    "--no-progress-bar",
]


@pytest.fixture
def book_pth(tmp_path):
    torch.manual_seed(123)
    book = ch04.GPTModel(BOOK).eval()
    torch.save(book.state_dict(), tmp_path / "model.pth")
    return book, tmp_path / "model.pth"


def pretrain_from(pth, output_dir) -> list[str]:
    """`gpt-scratch pretrain` on the-verdict from the book's file (width 24: its 3 heads given)."""
    return ["pretrain", "the-verdict", "--model", str(pth), "--n-heads", "3", "--output-dir", str(output_dir)]


def test_pretrain_continues_from_a_book_pth(tmp_path, book_pth):
    """One step at a learning rate of ~0 (and no weight decay) leaves the book's logits."""
    from transformers import AutoModelForCausalLM

    import gpt_scratch  # noqa: F401  (registers the Auto classes)

    book, pth = book_pth
    out = tmp_path / "run"
    args = pretrain_from(pth, out)
    assert main([*args, *FAST, "--max-new-tokens", "2", "--lr", "1e-30", "--weight-decay", "0"]) == 0
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["steps"] == 1 and summary["base_model"] == str(pth)
    assert f"Pretraining continued from `{pth}`" in (out / "README.md").read_text()
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(IDS).logits, book(IDS), atol=1e-5, rtol=0)


def test_pretrain_with_a_base_model_refuses_another_shape(tmp_path, book_pth):
    _, pth = book_pth
    args = pretrain_from(pth, tmp_path / "r")
    assert main([*args, *FAST, "--context-length", "16"]) == 2
    with pytest.raises(SystemExit, match="2"):  # argparse: one or the other
        main(["pretrain", "--model", str(pth), "--preset", "gpt2-small"])


def test_finetune_classifier_starts_from_a_book_pth(tmp_path, book_pth):
    """Chapter 6 starts from the pretrained .pth: the classifier's backbone is the book's model."""
    book, pth = book_pth
    rows = [f"{'win a free prize now' if i % 2 else 'see you at lunch'} {i},{i % 2}" for i in range(20)]
    (tmp_path / "messages.csv").write_text("text,label\n" + "\n".join(rows) + "\n")
    out = tmp_path / "spam"
    args = ["finetune-classifier", str(tmp_path / "messages.csv"), "--model", str(pth), "--n-heads", "3"]
    assert main([*args, "--output-dir", str(out), *FAST, "--lr", "0", "--trainable", "head"]) == 0
    from gpt_scratch import GPTScratchForSequenceClassification

    model = GPTScratchForSequenceClassification.from_pretrained(out)
    assert torch.equal(model.model.tok_emb.weight, book.tok_emb.weight)
    assert torch.equal(model.model.trf_blocks[1].att.qkv.weight[:24], book.trf_blocks[1].att.W_query.weight)
    assert json.loads((out / "training_summary.json").read_text())["base_model"] == str(pth)


def nanogpt_data_folder(folder, shared):
    """nanoGPT's data/<name>/prepare.py: GPT-2 ids (tiktoken) of the text, eot-joined, as uint16 train.bin/val.bin."""
    import tiktoken

    text = (shared / "data" / "the-verdict.txt").read_text(encoding="utf-8")
    ids = np.array(tiktoken.get_encoding("gpt2").encode_ordinary(text), dtype=np.uint16)
    folder.mkdir()
    split = int(len(ids) * 0.9)
    ids[:split].tofile(folder / "train.bin")
    ids[split:].tofile(folder / "val.bin")
    return ids, split


def test_pretrain_reads_nanogpts_data_folder_without_tokenizing(tmp_path, shared):
    ids, split = nanogpt_data_folder(tmp_path / "verdict", shared)
    corpus = PreparedCorpus(tmp_path / "verdict")
    assert corpus.num_tokens("train") == split and corpus.num_tokens("validation") == len(ids) - split
    window = corpus.windows("train", 32)[3]
    assert (
        window["input_ids"].tolist() == ids[96:128].tolist()
        and window["target_ids"].tolist() == ids[97:129].tolist()
    )

    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({**BOOK, "emb_dim": 16, "n_heads": 2}))
    out = tmp_path / "run"
    args = ["pretrain", str(tmp_path / "verdict"), "--config", str(config), "--output-dir", str(out)]
    assert main([*args, *FAST, "--max-new-tokens", "2"]) == 0
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["hyperparameters"]["sampling"] == "random"  # nanoGPT's get_batch
    assert summary["hyperparameters"]["train_windows"] == split // 32


def test_a_character_level_nanogpt_folder_is_refused(tmp_path):
    (tmp_path / "shakespeare_char").mkdir()
    np.zeros(100, dtype=np.uint16).tofile(tmp_path / "shakespeare_char" / "train.bin")
    (tmp_path / "shakespeare_char" / "meta.pkl").write_bytes(b"not read")
    with pytest.raises(ValueError, match="meta.pkl, nanoGPT's character-level vocabulary"):
        PreparedCorpus(tmp_path / "shakespeare_char")


def test_generate_reads_a_book_pth_with_n_heads(tmp_path, book_pth, capsys):
    """`gpt-scratch generate FILE --n-heads N` for a width without a book preset: the book's greedy tokens; a folder
    whose config.json says other heads is refused."""
    book, pth = book_pth
    with pytest.raises(ValueError, match="--n-heads"):  # width 24: no book preset to take the heads from
        main(["generate", str(pth), "--max-new-tokens", "5", "--debug"])
    capsys.readouterr()
    args = ["generate", str(pth), "--n-heads", "3", "--prompt", "Every effort moves you", "--max-new-tokens", "5"]  # fmt: skip
    assert main(args) == 0
    expected = ch04.generate_text_simple(
        book, IDS[:, :4], max_new_tokens=5, context_size=BOOK["context_length"]
    )
    tokenizer = tiktoken.get_encoding("gpt2")
    assert capsys.readouterr().out.strip() == tokenizer.decode(expected[0].tolist()).strip()
    assert main(["convert", str(pth), "--n-heads", "3", "--output-dir", str(tmp_path / "folder")]) == 0
    assert main(["generate", str(tmp_path / "folder"), "--n-heads", "4"]) == 2
    assert "its config.json says 3 heads; leave out --n-heads" in capsys.readouterr().err


def test_generate_reads_a_nanogpt_checkpoint(tmp_path, capsys):
    """`generate` (load_model) takes a ckpt.pt too, through the same loader."""
    from gpt_scratch.generation.inference import load_model

    model_py = SHARED_PATH / "reference" / "nanogpt" / "model.py"
    if not model_py.is_file():
        pytest.skip(f"nanoGPT's model.py not found at {model_py}")
    import importlib.util

    spec = importlib.util.spec_from_file_location("nanogpt_model", model_py)
    nanogpt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(nanogpt)
    torch.manual_seed(0)
    args = dict(n_layer=1, n_head=2, n_embd=16, block_size=32, bias=False, vocab_size=50304, dropout=0.0)
    reference = nanogpt.GPT(nanogpt.GPTConfig(**args)).eval()
    torch.save({"model": reference.state_dict(), "model_args": args, "iter_num": 1, "best_val_loss": 9.0},
               tmp_path / "ckpt.pt")  # fmt: skip
    model, tokenizer = load_model(tmp_path / "ckpt.pt")
    assert tokenizer.model_max_length == 32
    with torch.no_grad():
        torch.testing.assert_close(model(IDS).logits, reference(IDS, targets=IDS)[0], atol=1e-5, rtol=0)


def test_resume_optimizer_continues_the_books_adamw(tmp_path):
    """A second step from model_and_optimizer.pth gives the book's second step (its moments onto our fused q/k/v)."""
    import torch.nn.functional as F

    from gpt_scratch.convert import load_source
    from gpt_scratch.training import CausalLMTask, TrainingConfig, train

    cfg = {**BOOK, "qkv_bias": True}
    torch.manual_seed(123)
    book = ch04.GPTModel(cfg).train()
    optimizer = torch.optim.AdamW(book.parameters(), lr=4e-4, weight_decay=0.1)
    batches = [torch.randint(0, 50257, (2, 17)) for _ in range(2)]  # inputs and targets of 16 tokens, shifted
    for i, batch in enumerate(batches):
        loss = F.cross_entropy(book(batch[:, :-1]).flatten(0, 1), batch[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i == 0:  # chapter 5's save, after the first step
            saved = {"model_state_dict": book.state_dict(), "optimizer_state_dict": optimizer.state_dict()}
            torch.save(saved, tmp_path / "model_and_optimizer.pth")
    second = [{"input_ids": row[:-1], "target_ids": row[1:]} for row in batches[1]]

    def one_step(optimizer_state, folder):
        loaded = load_source(tmp_path / "model_and_optimizer.pth", n_heads=3, drop_rate=0.0)
        training = TrainingConfig(output_dir=str(tmp_path / folder), max_steps=1, batch_size=2, shuffle=False,
                                  eval_iter=1, final_eval_iter=1, progress_bar=False)  # fmt: skip
        state = loaded.optimizer_state if optimizer_state else None
        return train(
            loaded.model, second, None, training, CausalLMTask(start_context=None), optimizer_state=state
        )

    resumed = one_step(True, "resumed").model
    expected = torch.cat([book.trf_blocks[1].att.W_query.weight, book.trf_blocks[1].att.W_key.weight,
                          book.trf_blocks[1].att.W_value.weight])  # fmt: skip
    torch.testing.assert_close(resumed.model.trf_blocks[1].att.qkv.weight, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(resumed.out_head.weight, book.out_head.weight, atol=1e-6, rtol=0)
    fresh = one_step(False, "fresh").model  # a fresh AdamW takes another step
    assert (fresh.model.trf_blocks[1].att.qkv.weight - expected).abs().max() > 1e-5


def test_resume_optimizer_needs_a_model_and_optimizer_pth(tmp_path, book_pth):
    _, pth = book_pth
    args = pretrain_from(pth, tmp_path / "r")
    assert main([*args, *FAST, "--resume-optimizer"]) == 2


def test_finetune_instructions_starts_from_a_nanogpt_checkpoint(tmp_path):
    """Chapter 7 from a nanoGPT ckpt.pt: the same loader; the run names it as its base model."""
    from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM
    from gpt_scratch.conversion_book_nanogpt_gpt_scratch import save_nanogpt

    torch.manual_seed(0)
    config = GPTScratchConfig(vocab_size=50304, context_length=64, emb_dim=16, n_heads=2, n_layers=1,
                              tie_word_embeddings=True, qkv_bias=True, gelu_approximate="none")  # fmt: skip
    save_nanogpt(GPTScratchForCausalLM(config), tmp_path / "ckpt.pt")
    records = [{"instruction": f"Say {i}.", "input": "", "output": f"{i}"} for i in range(20)]
    (tmp_path / "data.json").write_text(json.dumps(records))
    out = tmp_path / "instruct"
    args = ["finetune-instructions", str(tmp_path / "data.json"), "--model", str(tmp_path / "ckpt.pt")]
    assert (
        main([*args, "--output-dir", str(out), *FAST, "--max-new-tokens", "2", "--max-test-responses", "1"])
        == 0
    )
    assert json.loads((out / "training_summary.json").read_text())["base_model"] == str(tmp_path / "ckpt.pt")


def test_chat_template_alpaca_is_the_books_prompt(tmp_path, book_pth):
    from transformers import AutoTokenizer

    ch07 = pytest.importorskip("llms_from_scratch.ch07")
    _, pth = book_pth
    args = [
        "convert",
        str(pth),
        "--n-heads",
        "3",
        "--output-dir",
        str(tmp_path / "sft"),
        "--chat-template",
        "alpaca",
    ]
    assert main(args) == 0
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "sft", trust_remote_code=True)
    entry = {"instruction": "Rewrite the sentence using a simile.", "input": "The car is very fast."}
    messages = [
        {"role": "system", "content": entry["instruction"]},
        {"role": "user", "content": entry["input"]},
    ]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt == ch07.format_input(entry) + "\n\n### Response:\n"
