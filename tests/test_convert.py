"""The book's .pth files and nanoGPT's ckpt.pt in and out, against the book's own GPTModel (llms_from_scratch) and
nanoGPT's own GPT (../shared/reference/nanogpt/model.py), the converted folder loaded in a clean process."""

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch

from gpt_scratch.cli import main
from gpt_scratch.convert import load_source, write_folder

from conftest import SHARED_PATH, run_clean_python

pytestmark = pytest.mark.needs_shared  # GPT-2's BPE files for the folder's tokenizer

ch04 = pytest.importorskip("llms_from_scratch.ch04")

SMALL = dict(
    vocab_size=50257, context_length=48, emb_dim=24, n_heads=3, n_layers=2, drop_rate=0.0, qkv_bias=False
)
BOOK_124M = dict(
    vocab_size=50257, context_length=1024, emb_dim=768, n_heads=12, n_layers=12, drop_rate=0.1, qkv_bias=False
)  # fmt: skip  (the book's GPT_CONFIG_124M)
SHAPES = [pytest.param(SMALL, id="small"), pytest.param(BOOK_124M, id="124M", marks=pytest.mark.slow)]
PROMPT_IDS = [6109, 3626, 6100, 345]  # "Every effort moves you"
NANOGPT_MODEL = SHARED_PATH / "reference" / "nanogpt" / "model.py"


def heads_flag(cfg: dict) -> list[str]:
    """--n-heads for a width without a book preset (the tiny twin); the book's sizes need none."""
    return [] if cfg["emb_dim"] in (768, 1024, 1280, 1600) else ["--n-heads", str(cfg["n_heads"])]


def book_model(cfg: dict, seed: int = 123, num_classes: int | None = None) -> torch.nn.Module:
    """The book's GPTModel, seeded, with random norms and biases (so that every tensor's mapping shows)."""
    torch.manual_seed(seed)
    model = ch04.GPTModel(cfg)
    if num_classes is not None:  # chapter 6
        model.out_head = torch.nn.Linear(cfg["emb_dim"], num_classes)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("shift", "scale", "bias")):
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


CLEAN_PROCESS = """
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
folder, ids = sys.argv[1], json.loads(sys.argv[2])
model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
x = torch.tensor([ids])
with torch.no_grad():
    logits = model(x).logits[0]
out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=30, do_sample=False)
for how, path in json.loads(sys.argv[3]).items():  # the remote code's own way back out
    getattr(model, f"save_{how}")(path)
print(json.dumps({"cls": type(model).__name__, "logits": logits.tolist(), "tokens": out[0].tolist(),
                  "max_length": tokenizer.model_max_length}))
"""


def clean_process_run(folder: Path, tmp_path: Path, ids=PROMPT_IDS, save: dict | None = None) -> dict:
    result = run_clean_python(
        CLEAN_PROCESS, str(folder), json.dumps(ids), json.dumps(save or {}), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_same_as_book(book, cfg: dict, folder: Path, tmp_path: Path) -> None:
    """Logits (1e-5) and 30 greedy tokens of the folder, in a clean process, equal the book's; its save_book
    (the remote code's) gives the book's state dict back, masks included."""
    got = clean_process_run(folder, tmp_path, save={"book": str(tmp_path / "back.pth")})
    back = torch.load(tmp_path / "back.pth", weights_only=True)
    assert back.keys() == book.state_dict().keys() and json.loads((tmp_path / "back.json").read_text()) == {
        **cfg,
        "drop_rate": 0.1,  # the book's dropout is not in its weights: GPT_CONFIG_124M's
    }
    for name, tensor in book.state_dict().items():
        torch.testing.assert_close(back[name], tensor, atol=0, rtol=0)
    idx = torch.tensor([PROMPT_IDS])
    with torch.no_grad():
        expected_logits = book(idx)[0]
    torch.testing.assert_close(torch.tensor(got["logits"]), expected_logits, atol=1e-5, rtol=0)
    expected = ch04.generate_text_simple(book, idx, 30, cfg["context_length"])
    assert got["tokens"] == expected[0].tolist()
    assert got["max_length"] == cfg["context_length"]


# qkv_bias=False (the book's GPT_CONFIG_124M) also runs in the slow 124M test: slow here (issue 22: a short suite)
@pytest.mark.parametrize("qkv_bias", [pytest.param(False, marks=pytest.mark.slow), True])
def test_book_state_dict_converts_to_the_same_model(tmp_path, qkv_bias):
    cfg = {**SMALL, "qkv_bias": qkv_bias}
    book = book_model(cfg)
    torch.save(book.state_dict(), tmp_path / "model.pth")
    assert (
        main(
            ["convert", str(tmp_path / "model.pth"), "--output-dir", str(tmp_path / "out"), "--n-heads", "3"]
        )
        == 0
    )
    assert_same_as_book(book, cfg, tmp_path / "out", tmp_path)
    summary = json.loads((tmp_path / "out" / "training_summary.json").read_text())
    card = (tmp_path / "out" / "README.md").read_text()
    assert summary["origin"]["format"] == "book GPTModel state dict"
    assert summary["origin"]["file"] == "model.pth" and summary["origin"]["sha256"] in card
    for name in ("config.json", "model.safetensors", "generation_config.json", "vocab.json", "merges.txt"):
        assert (tmp_path / "out" / name).is_file(), name


@pytest.mark.parametrize("cfg", SHAPES)
def test_model_and_optimizer_pth_converts_to_the_same_model(tmp_path, cfg):
    book = book_model(cfg)
    optimizer = torch.optim.AdamW(book.parameters(), lr=4e-4, weight_decay=0.1)
    book.train()
    loss = book(torch.tensor([PROMPT_IDS])).logsumexp(-1).mean()
    loss.backward()
    optimizer.step()  # moments in the optimizer's state, as after the book's chapter 5 run
    book.eval()
    torch.save(
        {"model_state_dict": book.state_dict(), "optimizer_state_dict": optimizer.state_dict()},
        tmp_path / "model_and_optimizer.pth",
    )
    loaded = load_source(tmp_path / "model_and_optimizer.pth", n_heads=cfg["n_heads"])
    assert loaded.origin["format"] == "book GPTModel (model_and_optimizer.pth)"
    write_folder(loaded, tmp_path / "out")
    assert_same_as_book(book, cfg, tmp_path / "out", tmp_path)


CLASSIFY = """
import json, sys
from transformers import pipeline
labels = []
for folder in json.loads(sys.argv[1]):
    classifier = pipeline("text-classification", model=folder, trust_remote_code=True)
    labels.append([r["label"] for r in classifier(json.loads(sys.argv[2]))])
print(json.dumps(labels))
"""


@pytest.mark.parametrize("cfg", SHAPES)
def test_book_classifier_gives_classify_reviews_label_in_a_pipeline(tmp_path, cfg):
    import tiktoken

    ch06 = pytest.importorskip("llms_from_scratch.ch06")
    texts = ["You are a winner you have been specially selected to receive $1000 cash", "Hey, are we still on?",
             "Call now for your free prize", "See you at lunch tomorrow"]  # fmt: skip
    tokenizer = tiktoken.get_encoding("gpt2")
    books = [book_model(cfg, seed=seed, num_classes=2) for seed in range(4 if cfg is SMALL else 1)]
    expected = [[ch06.classify_review(t, b, tokenizer, "cpu", max_length=len(tokenizer.encode(t))) for t in texts]
                for b in books]  # fmt: skip
    if cfg is SMALL:  # both labels are tested
        assert {label for labels in expected for label in labels} == {"spam", "not spam"}
    for seed, book in enumerate(books):
        torch.save(book.state_dict(), tmp_path / f"review_classifier_{seed}.pth")
        out = tmp_path / f"out{seed}"
        args = ["convert", str(tmp_path / f"review_classifier_{seed}.pth"), "--output-dir", str(out)]
        assert main([*args, *heads_flag(cfg), "--labels", "not spam,spam"]) == 0
        architectures = json.loads((out / "config.json").read_text())["architectures"]
        assert architectures == ["GPTScratchForSequenceClassification"]
    folders = [str(tmp_path / f"out{seed}") for seed in range(len(books))]
    result = run_clean_python(CLASSIFY, json.dumps(folders), json.dumps(texts), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == expected


def test_book_classifier_without_labels_numbers_its_classes(tmp_path):
    torch.save(book_model(SMALL, num_classes=3).state_dict(), tmp_path / "classifier.pth")
    model = load_source(tmp_path / "classifier.pth", n_heads=3).model
    assert model.config.num_labels == 3 and model.config.id2label == {0: "0", 1: "1", 2: "2"}
    with pytest.raises(ValueError, match="3 classes, but 2 labels"):
        load_source(tmp_path / "classifier.pth", n_heads=3, labels=["a", "b"])


@pytest.mark.slow
def test_book_124m_converts_to_the_same_model(tmp_path):
    book = book_model(BOOK_124M)
    torch.save(book.state_dict(), tmp_path / "model.pth")
    assert (
        main(["convert", str(tmp_path / "model.pth"), "--output-dir", str(tmp_path / "out")]) == 0
    )  # 12 heads
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["n_heads"] == 12 and config["preset"] == "GPT_CONFIG_124M"
    assert_same_as_book(book, BOOK_124M, tmp_path / "out", tmp_path)


# ---- Back out: the book's GPTModel -------------------------------------------------------------------------------


@pytest.mark.parametrize("num_classes", [None, 2])
def test_save_book_loads_strictly_into_the_books_gptmodel(tmp_path, num_classes):
    from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM

    torch.manual_seed(0)  # ours, GPT-2 style: tied head, q/k/v bias
    config = GPTScratchConfig(vocab_size=300, context_length=16, emb_dim=24, n_heads=4, n_layers=2, qkv_bias=True,
                              tie_word_embeddings=True, drop_rate=0.0)  # fmt: skip
    model = GPTScratchForCausalLM(config).eval()
    if num_classes:
        book = book_model({**SMALL, "qkv_bias": True}, num_classes=num_classes)
        torch.save(book.state_dict(), tmp_path / "classifier.pth")
        model = load_source(tmp_path / "classifier.pth", n_heads=3).model
    model.save_book(tmp_path / "back.pth")
    cfg = json.loads((tmp_path / "back.json").read_text())
    book = ch04.GPTModel(cfg)
    if num_classes:
        book.out_head = torch.nn.Linear(cfg["emb_dim"], num_classes)
    book.load_state_dict(torch.load(tmp_path / "back.pth", weights_only=True), strict=True)
    idx = torch.tensor([[5, 17, 42, 3, 7]])
    with torch.no_grad():
        ours = model(idx).logits
        theirs = book.eval()(idx)
    torch.testing.assert_close(theirs[:, -1] if num_classes else theirs, ours, atol=1e-5, rtol=0)


# ---- nanoGPT -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nanogpt():
    if not NANOGPT_MODEL.is_file():
        pytest.skip(f"nanoGPT's model.py not found at {NANOGPT_MODEL}")
    spec = importlib.util.spec_from_file_location("nanogpt_model", NANOGPT_MODEL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def nanogpt_checkpoint(nanogpt, path: Path, bias: bool, **shape) -> torch.nn.Module:
    """nanoGPT's GPT, seeded, saved as train.py saves ckpt.pt after torch.compile (keys prefixed `_orig_mod.`)."""
    torch.manual_seed(0)
    model_args = dict(n_layer=2, n_head=3, n_embd=24, block_size=48, bias=bias, vocab_size=50304, dropout=0.0)
    model_args |= shape
    model = nanogpt.GPT(nanogpt.GPTConfig(**model_args)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    state_dict = {f"_orig_mod.{k}": v for k, v in model.state_dict().items()}
    checkpoint = {"model": state_dict, "model_args": model_args, "iter_num": 5000,
                  "best_val_loss": torch.tensor(3.25), "config": {"dataset": "openwebtext", "dropout": 0.0}}  # fmt: skip
    torch.save(checkpoint, path)
    return model


def nanogpt_logits(model, idx):
    with torch.no_grad():
        return model(idx, targets=idx)[0]  # with targets: the logits of every position


GPT2_124M = dict(n_layer=12, n_head=12, n_embd=768, block_size=1024)  # nanoGPT's train_gpt2.py


@pytest.mark.parametrize(
    "bias, shape",
    [  # biases as zeros (bias=False) in the default suite; bias=True, a plain copy, slow (issue 22: a short suite)
        pytest.param(True, {}, marks=pytest.mark.slow),
        (False, {}),
        pytest.param(False, GPT2_124M, id="False-124M", marks=pytest.mark.slow),
    ],
)
def test_nanogpt_checkpoint_converts_to_the_same_model_and_back(tmp_path, nanogpt, bias, shape):
    reference = nanogpt_checkpoint(nanogpt, tmp_path / "ckpt.pt", bias, **shape)
    assert main(["convert", str(tmp_path / "ckpt.pt"), "--output-dir", str(tmp_path / "out")]) == 0
    idx = torch.tensor([PROMPT_IDS + [50300]])  # a padded row of the vocabulary too
    got = clean_process_run(
        tmp_path / "out", tmp_path, idx[0].tolist(), save={"nanogpt": str(tmp_path / "remote.pt")}
    )
    torch.testing.assert_close(
        torch.tensor(got["logits"]), nanogpt_logits(reference, idx)[0], atol=1e-5, rtol=0
    )
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert (
        config["vocab_size"] == 50304
        and json.loads((tmp_path / "out" / "training_summary.json").read_text())["origin"]["iter_num"] == 5000
    )
    assert "best_val_loss" in (tmp_path / "out" / "README.md").read_text()

    assert (
        main(["convert", str(tmp_path / "out"), "--to", "nanogpt", "--output", str(tmp_path / "back.pt")])
        == 0
    )
    for path in (tmp_path / "back.pt", tmp_path / "remote.pt"):  # the CLI's, the remote code's
        checkpoint = torch.load(path, weights_only=True)
        back = nanogpt.GPT(nanogpt.GPTConfig(**checkpoint["model_args"])).eval()
        back.load_state_dict(checkpoint["model"], strict=True)
        assert checkpoint["model_args"]["bias"] is bias
        torch.testing.assert_close(
            nanogpt_logits(back, idx), nanogpt_logits(reference, idx), atol=1e-6, rtol=0
        )


def test_save_nanogpt_of_a_model_trained_here_loads_into_nanogpt(tmp_path, nanogpt):
    from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM

    torch.manual_seed(0)
    config = GPTScratchConfig(vocab_size=300, context_length=16, emb_dim=24, n_heads=4, n_layers=2, qkv_bias=False,
                              tie_word_embeddings=True, gelu_approximate="none", drop_rate=0.0)  # fmt: skip
    model = GPTScratchForCausalLM(config).eval()
    model.save_nanogpt(tmp_path / "ckpt.pt")
    checkpoint = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    back = nanogpt.GPT(nanogpt.GPTConfig(**checkpoint["model_args"])).eval()
    back.load_state_dict(checkpoint["model"], strict=True)
    idx = torch.tensor([[5, 17, 42, 3, 7]])
    torch.testing.assert_close(nanogpt_logits(back, idx), model(idx).logits, atol=1e-5, rtol=0)
    with pytest.warns(UserWarning, match="the book's GPTModel uses gelu approximate='tanh'"):
        model.save_book(tmp_path / "book.pth")  # nanoGPT's exact GELU is not the book's: said, not hidden
    untied = GPTScratchForCausalLM(GPTScratchConfig(**{**config.to_dict(), "tie_word_embeddings": False}))
    with pytest.raises(ValueError, match="nanoGPT ties"):
        untied.save_nanogpt(tmp_path / "untied.pt")


# ---- Nothing runs, nothing is guessed ----------------------------------------------------------------------------


class RunsCode:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path, capsys):
    marker = tmp_path / "pwned"
    torch.save({"model_state_dict": RunsCode(str(marker))}, tmp_path / "evil.pth")
    assert main(["convert", str(tmp_path / "evil.pth"), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"gpt-scratch convert: error: {tmp_path / 'evil.pth'}: refused" in err
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_a_llama_shaped_dict_is_refused_with_its_keys_named(tmp_path):
    d, v = (
        16,
        100,
    )  # the book's Llama (bonus material): RMSNorm weights, SwiGLU fc1/fc2/fc3, no position embedding
    llama = {
        "tok_emb.weight": torch.zeros(v, d),
        "final_norm.weight": torch.ones(d),
        "out_head.weight": torch.zeros(v, d),
    }
    for i in range(2):
        b = f"trf_blocks.{i}."
        llama |= {
            b + f"att.{w}.weight": torch.zeros(d, d) for w in ("W_query", "W_key", "W_value", "out_proj")
        }
        llama |= {b + f"ff.{fc}.weight": torch.zeros(d, d) for fc in ("fc1", "fc2", "fc3")}
        llama |= {b + "norm1.weight": torch.ones(d), b + "norm2.weight": torch.ones(d)}
    torch.save(llama, tmp_path / "llama.pth")
    with pytest.raises(ValueError) as error:
        load_source(tmp_path / "llama.pth", n_heads=2)
    message = str(error.value)
    assert str(tmp_path / "llama.pth") in message
    for key in (
        "trf_blocks.0.ff.fc1.weight",
        "trf_blocks.1.norm2.weight",
        "final_norm.weight",
        "missing pos_emb.weight",
    ):
        assert key in message


def test_a_shape_mismatch_names_the_tensor_and_both_shapes(tmp_path):
    state_dict = book_model(SMALL).state_dict()
    state_dict["trf_blocks.1.ff.layers.0.weight"] = torch.zeros(90, 24)
    torch.save(state_dict, tmp_path / "model.pth")
    with pytest.raises(ValueError, match=r"trf_blocks\.1\.ff\.layers\.0\.weight: shape \(90, 24\), the configuration needs \(96, 24\)"):  # fmt: skip
        load_source(tmp_path / "model.pth", n_heads=3)


def test_heads_from_the_book_preset_else_a_clear_error(tmp_path):
    cfg = dict(
        vocab_size=10, context_length=8, emb_dim=1024, n_heads=16, n_layers=1, drop_rate=0.0, qkv_bias=False
    )
    torch.save(book_model(cfg).state_dict(), tmp_path / "medium.pth")
    assert load_source(tmp_path / "medium.pth").model.config.n_heads == 16  # gpt2-medium's width
    assert load_source(tmp_path / "medium.pth", n_heads=8).model.config.n_heads == 8
    with pytest.raises(ValueError, match="7 attention heads do not divide the width 1024"):
        load_source(tmp_path / "medium.pth", n_heads=7)
    torch.save(book_model(SMALL).state_dict(), tmp_path / "small.pth")
    with pytest.raises(ValueError, match="width 24 has no book preset.*--n-heads"):
        load_source(tmp_path / "small.pth")


def test_an_output_that_holds_something_is_refused_without_overwrite(tmp_path, capsys):
    torch.save(book_model(SMALL).state_dict(), tmp_path / "model.pth")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    args = ["convert", str(tmp_path / "model.pth"), "--output-dir", str(tmp_path / "out"), "--n-heads", "3"]
    assert main(args) == 2
    assert "already holds files (notes.txt): pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 2  # --overwrite removes only what gpt-scratch wrote (issue 22)
    assert "did not write (notes.txt)" in capsys.readouterr().err
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"
    (tmp_path / "out" / "notes.txt").unlink()
    assert main([*args, "--chat-template", "alpaca"]) == 0
    assert (tmp_path / "out" / "chat_template.jinja").is_file()
    assert main(args) == 2
    assert "already holds files" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0 and (tmp_path / "out" / "model.safetensors").is_file()
    assert not (tmp_path / "out" / "chat_template.jinja").exists()  # nothing of the folder it replaced stays
    back = ["convert", str(tmp_path / "out"), "--to", "book", "--output", str(tmp_path / "model.pth")]
    assert main(back) == 2
    assert "already exist" in capsys.readouterr().err
    assert main([*back, "--overwrite"]) == 0


def test_gpt2_and_gpt_scratch_folders_convert_as_they_load(tmp_path):
    """What already loads (a GPT-2 folder through from_gpt2, a gpt_scratch folder) is a SOURCE too."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from gpt_scratch import GPTScratchForCausalLM

    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=24, n_layer=2, n_head=3, vocab_size=120, n_positions=16)).eval()
    gpt2.save_pretrained(tmp_path / "gpt2")
    assert main(["convert", str(tmp_path / "gpt2"), "--output-dir", str(tmp_path / "out")]) == 0
    model = GPTScratchForCausalLM.from_pretrained(tmp_path / "out").eval()
    idx = torch.tensor([[5, 17, 42, 3]])
    with torch.no_grad():
        torch.testing.assert_close(model(idx).logits, gpt2(idx).logits, atol=1e-5, rtol=0)
    origin = json.loads((tmp_path / "out" / "training_summary.json").read_text())["origin"]
    assert origin == {"format": "GPT-2 (transformers)"}
    assert (
        main(["convert", str(tmp_path / "out"), "--output-dir", str(tmp_path / "again"), "--n-heads", "4"])
        == 2
    )
    assert main(["convert", str(tmp_path / "out"), "--output-dir", str(tmp_path / "again")]) == 0
    again = GPTScratchForCausalLM.from_pretrained(tmp_path / "again").eval()
    with torch.no_grad():
        torch.testing.assert_close(again(idx).logits, gpt2(idx).logits, atol=1e-5, rtol=0)
