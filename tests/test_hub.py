"""Hub readiness: a Hub user loads saved folders without the package, the card carries the run's numbers,
validation refuses broken folders, and the upload is a thin, offline-testable use of huggingface_hub."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, ModelCard, metadata_load
from transformers import pipeline

from gpt_scratch.hub import write_card as write_model_card
from gpt_scratch.hub.push import InvalidFolderError, PushError, plan_upload, push_folder, validate_folder
from gpt_scratch.modeling_gpt_scratch import GPTScratchForCausalLM, GPTScratchForSequenceClassification
from gpt_scratch.tokenization_gpt_scratch import GPTScratchTokenizer

from conftest import run_clean_python, tiny_config

pytestmark = pytest.mark.needs_shared  # GPT-2's BPE files or the book's data, from ../shared

PROMPT = "Every effort moves you"
SPAM = "WINNER!! You have been selected to receive a £900 prize reward! Call now to claim."

SUMMARY = {
    "task": "classification",
    "base_model": "openai-community/gpt2",
    "datasets": [
        {
            "name": "sms-spam",
            "file": "SMSSpamCollection",
            "sha256": "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d",
        }
    ],
    "hyperparameters": {
        "output_dir": "/home/me/runs/spam",
        "learning_rate": 5e-05,
        "weight_decay": 0.1,
        "batch_size": 8,
        "num_epochs": 5,
        "max_steps": None,
    },  # fmt: skip
    "metrics": {
        "train_loss": 0.0831742,
        "val_loss": 0.0741958,
        "train_accuracy": 0.9625,
        "val_accuracy": 0.975,
        "test_accuracy": 0.9666666666666667,
        "test_precision": 0.95,
        "test_recall": 0.9823,
        "test_f1": 0.9659,
    },  # fmt: skip
    "tokens_seen": 1234567,
    "steps": 650,
    "epochs": 5.0,
    "wall_time_s": 321.5,
    "parameters": {"total": 124441346, "trainable": 7090178},
    "plots": ["loss.png"],
}
METRIC_SPLITS = {"train": "train", "val": "validation", "test": "test"}


def save_folder(model, tokenizer: GPTScratchTokenizer, folder: Path, summary: dict | None) -> Path:
    """What a workflow saves: model + tokenizer, the run's summary and plot, then the card."""
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if summary is not None:
        (folder / "training_summary.json").write_text(json.dumps(summary))
        (folder / "loss.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    write_model_card(folder)
    return folder


@pytest.fixture(scope="module")
def tokenizer() -> GPTScratchTokenizer:
    return GPTScratchTokenizer()


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tokenizer) -> dict:
    """A causal LM (no summary: a model saved by hand) and a ham/spam classifier (with a run summary)."""
    root = tmp_path_factory.mktemp("saved")
    torch.manual_seed(123)
    causal = GPTScratchForCausalLM(tiny_config()).eval()
    classifier = GPTScratchForSequenceClassification(
        tiny_config(id2label={0: "ham", 1: "spam"}, label2id={"ham": 0, "spam": 1})
    ).eval()
    return {
        "causal": causal,
        "classifier": classifier,
        "causal_dir": save_folder(causal, tokenizer, root / "gpt-scratch-tiny", None),
        "classifier_dir": save_folder(classifier, tokenizer, root / "gpt-scratch-spam", SUMMARY),
    }


HUB_USER = r"""
import importlib.util, json, sys
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, pipeline

causal_dir, classifier_dir, prompt, text = sys.argv[1:5]
assert importlib.util.find_spec("gpt_scratch") is None, "gpt_scratch must not be importable here"
tokenizer = AutoTokenizer.from_pretrained(causal_dir, trust_remote_code=True)
causal = AutoModelForCausalLM.from_pretrained(causal_dir, trust_remote_code=True)
classifier = AutoModelForSequenceClassification.from_pretrained(classifier_dir, trust_remote_code=True)
generator = pipeline("text-generation", model=causal_dir, trust_remote_code=True)
generated = generator(prompt, max_new_tokens=10, do_sample=False)[0]["generated_text"]
judged = pipeline("text-classification", model=classifier_dir, trust_remote_code=True)(text)[0]
print(json.dumps({
    "classes": [type(tokenizer).__name__, type(causal).__name__, type(classifier).__name__],
    "modules": [type(causal).__module__, type(classifier).__module__], "is_fast": tokenizer.is_fast,
    "offsets": tokenizer(prompt, return_offsets_mapping=True)["offset_mapping"],
    "ids": tokenizer(prompt)["input_ids"], "generated": generated, "label": judged["label"], "score": judged["score"],
}))
"""


def test_hub_user_loads_folders_without_the_package(saved, tokenizer, tmp_path):
    hub = tmp_path / "hub"
    causal_dir = shutil.copytree(saved["causal_dir"], hub / "causal")
    classifier_dir = shutil.copytree(saved["classifier_dir"], hub / "classifier")
    result = run_clean_python(HUB_USER, str(causal_dir), str(classifier_dir), PROMPT, SPAM, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])

    # the models run the folder's code; the tokenizer runs none: transformers' fast tokenizer reads tokenizer.json
    assert got["classes"] == [
        "TokenizersBackend",
        "GPTScratchForCausalLM",
        "GPTScratchForSequenceClassification",
    ]
    assert all(module.startswith("transformers_modules.") for module in got["modules"]), got["modules"]
    assert got["is_fast"] and got["ids"] == [6109, 3626, 6100, 345]  # the book's "Every effort moves you"
    assert got["offsets"] == [[0, 5], [5, 12], [12, 18], [18, 22]]
    generator = pipeline("text-generation", model=saved["causal"], tokenizer=tokenizer)
    expected = generator(PROMPT, max_new_tokens=10, do_sample=False)[0]["generated_text"]
    assert got["generated"] == expected and len(tokenizer(expected)["input_ids"]) > 4
    judged = pipeline("text-classification", model=saved["classifier"], tokenizer=tokenizer)(SPAM)[0]
    assert got["label"] == judged["label"] and got["label"] in {"ham", "spam"}
    assert abs(got["score"] - judged["score"]) < 1e-5


def test_card_metadata_parses_and_carries_the_runs_numbers(saved):
    folder = saved["classifier_dir"]
    card = ModelCard.load(folder / "README.md")
    metadata = metadata_load(folder / "README.md")
    assert metadata["library_name"] == "transformers" and card.data.library_name == "transformers"
    assert metadata["pipeline_tag"] == "text-classification"
    assert metadata["license"] == "apache-2.0"
    assert "gpt_scratch" in metadata["tags"]
    assert metadata["datasets"] == ["sms-spam"]
    assert metadata["base_model"] == "openai-community/gpt2"

    results = {r.metric_name: r for r in card.data.eval_results}
    assert set(results) == set(SUMMARY["metrics"])
    for key, value in SUMMARY["metrics"].items():
        assert results[key].metric_value == value, key  # exactly the run's number
        assert results[key].dataset_split == METRIC_SPLITS[key.split("_")[0]]
        assert results[key].metric_type == key.split("_", 1)[1]
        assert results[key].dataset_name == "sms-spam" and results[key].task_type == "text-classification"

    text = card.text
    assert SUMMARY["datasets"][0]["sha256"] in text
    assert "![loss.png](loss.png)" in text
    assert "124,441,346" in text and "1,234,567" in text  # parameters and tokens seen
    assert "| learning_rate | 5e-05 |" in text and "| test_f1 | 0.9659 |" in text
    assert "/home/me" not in text and "max_steps" not in text  # no local paths, no unset values
    assert "`0` = `ham`, `1` = `spam`" in text
    assert "AutoModelForSequenceClassification" in text and "trust_remote_code=True" in text
    assert 'pipeline("text-classification"' in text
    assert "Sebastian Raschka" in text and "Build a Large Language Model (From Scratch)" in text


def test_card_of_a_folder_saved_by_hand_uses_the_config(saved):
    folder = saved["causal_dir"]
    card = ModelCard.load(folder / "README.md")
    assert card.data.pipeline_tag == "text-generation"
    assert card.data.eval_results is None and card.data.base_model is None and card.data.datasets is None
    total = sum(p.numel() for p in saved["causal"].parameters())
    assert f"{total:,}" in card.text  # counted from model.safetensors' header
    assert "| n_layers | 2 |" in card.text and "| emb_dim | 16 |" in card.text
    assert "AutoModelForCausalLM" in card.text and ".generate(" in card.text
    assert "no `training_summary.json`" in card.text


def test_valid_folders_have_no_problems(saved):
    assert validate_folder(saved["causal_dir"]) == []
    assert validate_folder(saved["classifier_dir"]) == []


def _edit_json(name: str, change):
    def edit(folder: Path) -> None:
        data = json.loads((folder / name).read_text())
        change(data)
        (folder / name).write_text(json.dumps(data))

    return edit


BREAKAGES = {
    "no config": (lambda f: (f / "config.json").unlink(), "config.json is missing"),
    "config not json": (lambda f: (f / "config.json").write_text("{oops"), "config.json is not valid JSON"),
    "model_type": (_edit_json("config.json", lambda c: c.update(model_type="gpt2")), "model_type is 'gpt2'"),
    "no auto_map": (_edit_json("config.json", lambda c: c.pop("auto_map")), "config.json has no auto_map"),
    "auto_map of one class": (  # as saved before: AutoModel / AutoModelForCausalLM users could not load it
        _edit_json("config.json", lambda c: c["auto_map"].pop("AutoModel")), "config.json auto_map has no AutoModel",
    ),
    "no modeling code": (
        lambda f: (f / "modeling_gpt_scratch.py").unlink(), "but modeling_gpt_scratch.py is missing",
    ),
    "no weights": (lambda f: (f / "model.safetensors").unlink(), "model.safetensors is missing"),
    "truncated weights": (
        lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:5000]),
        "model.safetensors cannot be read",
    ),
    "wider config": (
        _edit_json("config.json", lambda c: c.update(emb_dim=32)),
        "model.tok_emb.weight has shape (50257, 16), config.json implies (50257, 32)",
    ),
    "deeper config": (
        _edit_json("config.json", lambda c: c.update(n_layers=3)),
        "model.safetensors lacks tensor model.trf_blocks.2.att.qkv.weight (48, 16)",
    ),
    "no vocab": (lambda f: (f / "vocab.json").unlink(), "tokenizer file vocab.json is missing"),
    "no merges": (lambda f: (f / "merges.txt").unlink(), "tokenizer file merges.txt is missing"),
    "no tokenizer.json": (lambda f: (f / "tokenizer.json").unlink(), "tokenizer file tokenizer.json is missing"),
    "an older folder's tokenizer auto_map without its code": (
        lambda f: (
            _edit_json("tokenizer_config.json", lambda c: c.update(
                auto_map={"AutoTokenizer": ["tokenization_gpt_scratch.GPTScratchTokenizer", None]}))(f),
            (f / "tokenization_gpt_scratch.py").unlink(),
        ),
        "but tokenization_gpt_scratch.py is missing",
    ),
    "no card": (lambda f: (f / "README.md").unlink(), "README.md (model card) is missing"),
    "broken card yaml": (
        lambda f: (f / "README.md").write_text("---\nlicense: [apache\n---\n# card\n"),
        "README.md metadata cannot be parsed",
    ),
    "pickle": (lambda f: torch.save({}, f / "pytorch_model.bin"), "pytorch_model.bin is a pickle file"),
}  # fmt: skip


@pytest.mark.parametrize("breakage", BREAKAGES, ids=list(BREAKAGES))
def test_validation_names_each_problem(saved, tmp_path, breakage):
    folder = shutil.copytree(saved["classifier_dir"], tmp_path / "run")
    breaker, expected = BREAKAGES[breakage]
    breaker(folder)
    problems = validate_folder(folder)
    assert any(expected in p for p in problems), problems


@pytest.fixture
def offline_hub(monkeypatch) -> list:
    """HfApi methods that record their calls instead of reaching the Hub."""
    calls = []

    def record(name, result=None):
        def method(self, *args, **kwargs):
            calls.append((name, args, kwargs))
            return result

        monkeypatch.setattr(HfApi, name, method)

    record("create_repo", type("RepoUrl", (), {"repo_id": "me/gpt-scratch-spam"})())
    record("create_branch")
    record("upload_folder", type("CommitInfo", (), {"commit_url": "https://huggingface.co/me/commit/1"})())
    record("create_commit")
    return calls


def test_broken_folder_is_refused_with_every_problem_and_nothing_uploaded(
    saved, tmp_path, offline_hub, capsys
):
    from gpt_scratch.cli import main

    folder = shutil.copytree(saved["classifier_dir"], tmp_path / "run")
    for breakage in ("no vocab", "wider config", "no card"):
        BREAKAGES[breakage][0](folder)
    with pytest.raises(InvalidFolderError) as error:
        push_folder(folder, "me/gpt-scratch-spam")
    assert len(error.value.problems) >= 3
    for breakage in ("no vocab", "wider config", "no card"):
        assert BREAKAGES[breakage][1] in str(error.value)
    assert main(["push", str(folder), "me/gpt-scratch-spam"]) == 1
    assert "nothing was uploaded" in capsys.readouterr().out
    assert offline_hub == []


def test_dry_run_lists_files_and_uploads_nothing(saved, tmp_path, offline_hub, capsys):
    from gpt_scratch.cli import main

    folder = shutil.copytree(saved["classifier_dir"], tmp_path / "run")
    (folder / "checkpoints" / "step-100").mkdir(parents=True)
    torch.save({"optimizer": 1}, folder / "checkpoints" / "step-100" / "optimizer.pt")
    (folder / "metrics.jsonl").write_text('{"step": 1, "train_loss": 10.9}\n')
    expected = ["README.md", "config.json", "configuration_gpt_scratch.py", "conversion_book_nanogpt_gpt_scratch.py", "conversion_gpt_scratch.py", "loss.png", "merges.txt",
                "metrics.jsonl", "model.safetensors", "modeling_gpt_scratch.py", "tokenization_gpt_scratch.py",
                "tokenizer.json", "tokenizer_config.json", "training_summary.json", "vocab.json"]  # fmt: skip
    assert validate_folder(folder) == []  # the pickled optimizer state in checkpoints/ is never uploaded
    assert push_folder(folder, "me/gpt-scratch-spam", dry_run=True) == expected
    assert main(["push", str(folder), "me/gpt-scratch-spam", "--dry-run", "--private"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {name}  (" in out for name in expected) and "checkpoints" not in out
    assert offline_hub == []


def test_push_is_create_repo_then_upload_folder(saved, offline_hub):
    folder = saved["classifier_dir"]
    result = push_folder(folder, "me/gpt-scratch-spam", private=True, revision="v1", token="hf_x")
    assert result.commit_url.endswith("/commit/1")
    names = [name for name, _, _ in offline_hub]
    assert names == ["create_repo", "create_branch", "upload_folder"]
    (_, args, kwargs), (_, branch_args, branch_kwargs), (_, _, upload) = offline_hub
    assert args == ("me/gpt-scratch-spam",) and kwargs["private"] is True and kwargs["exist_ok"] is True
    assert branch_args == ("me/gpt-scratch-spam",) and branch_kwargs["branch"] == "v1"
    assert upload["folder_path"] == folder and upload["revision"] == "v1"
    assert upload["allow_patterns"] == plan_upload(folder).files and "README.md" in upload["allow_patterns"]


def test_model_push_to_hub_sends_the_code_files_and_keeps_the_card(saved, monkeypatch):
    """transformers' own push_to_hub, with the Hub replaced by a recorder: what would it upload?"""
    import transformers.utils.hub as transformers_hub

    sent: dict[str, bytes] = {}

    class FakeApi:
        def create_repo(self, repo_id, **kwargs):
            return type("RepoUrl", (), {"repo_id": repo_id})()

        def create_commit(self, repo_id, operations, **kwargs):
            sent.update({op.path_in_repo: Path(op.path_or_fileobj).read_bytes() for op in operations})

    folder = saved["classifier_dir"]
    # The repo already holds the folder's card (pushed with `gpt-scratch push`): push_to_hub loads and keeps it.
    monkeypatch.setattr(transformers_hub, "hf_api", lambda: FakeApi())
    monkeypatch.setattr(
        ModelCard,
        "load",
        classmethod(lambda cls, repo_id, **kw: ModelCard((folder / "README.md").read_text())),
    )
    saved["classifier"].push_to_hub("me/gpt-scratch-spam")

    assert {"config.json", "model.safetensors", "configuration_gpt_scratch.py", "modeling_gpt_scratch.py",
            "README.md"} <= set(sent)  # fmt: skip
    assert not any(name.endswith((".bin", ".pt")) for name in sent)
    config = json.loads(sent["config.json"])
    assert config["auto_map"]["AutoModelForSequenceClassification"] == (
        "modeling_gpt_scratch.GPTScratchForSequenceClassification"
    )
    card = ModelCard(sent["README.md"].decode())
    assert card.data.pipeline_tag == "text-classification"
    assert {r.metric_name: r.metric_value for r in card.data.eval_results} == SUMMARY["metrics"]


def test_instruction_card_keeps_local_base_model_out_of_metadata_and_skips_nan(saved, tmp_path):
    folder = shutil.copytree(saved["causal_dir"], tmp_path / "instruct")
    local_base = tmp_path / "runs" / "pretrain"
    local_base.mkdir(parents=True)
    summary = {
        "task": "instruction", "base_model": str(local_base), "hyperparameters": {"learning_rate": 5e-5},
        "datasets": [{"name": "alpaca-book", "file": None, "sha256": None}],
        "metrics": {"train_loss": 0.52, "val_loss": 0.63, "perplexity": 1.877, "test_accuracy": float("nan")},
        "plots": ["loss.png"],
    }  # fmt: skip
    (folder / "training_summary.json").write_text(json.dumps(summary))
    card = ModelCard.load(write_model_card(folder, repo_id="me/gpt-scratch-instruct"))
    assert card.data.base_model is None and str(local_base) in card.text  # a local path is no Hub id
    results = {r.metric_name: r for r in card.data.eval_results}
    assert {name: r.metric_value for name, r in results.items()} == {
        "train_loss": 0.52, "val_loss": 0.63, "perplexity": 1.877,
    }  # fmt: skip
    assert results["perplexity"].dataset_split == "validation"  # the loop's perplexity is exp(val_loss)
    assert "| test_accuracy | nan |" in card.text and "not recorded" in card.text
    assert "instruction-tuned" in card.data.tags and "### Response:" in card.text
    assert 'model_id = "me/gpt-scratch-instruct"' in card.text
    assert "![loss.png]" not in card.text  # listed in the summary but not in the folder


def test_card_names_the_hub_commit_a_run_read(saved, tmp_path):
    folder = shutil.copytree(saved["causal_dir"], tmp_path / "stream")
    commit = "0123456789abcdef0123456789abcdef01234567"
    summary = {
        "task": "pretraining", "hyperparameters": {}, "metrics": {},
        "datasets": [{"name": "HuggingFaceFW/fineweb-edu (sample-10BT)", "dataset": "HuggingFaceFW/fineweb-edu",
                      "config": "sample-10BT", "revision": commit, "split": "train", "files": []}],
    }  # fmt: skip
    (folder / "training_summary.json").write_text(json.dumps(summary))
    card = ModelCard.load(write_model_card(folder))
    assert f"| `{commit}` | [HuggingFaceFW/fineweb-edu@0123456]" in card.text
    assert f"(https://huggingface.co/datasets/HuggingFaceFW/fineweb-edu/tree/{commit})" in card.text
    assert card.data.datasets == ["HuggingFaceFW/fineweb-edu"]  # the Hub id, which the Hub links


@pytest.mark.parametrize("kind", ["causal_dir", "classifier_dir"])
def test_card_usage_code_is_valid_python(saved, kind):
    text = (saved[kind] / "README.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    compile(code, "usage", "exec")
    assert "trust_remote_code=True" in code


def test_write_card_option_fills_in_a_missing_card(saved, tmp_path, offline_hub):
    folder = shutil.copytree(saved["causal_dir"], tmp_path / "by-hand")
    (folder / "README.md").unlink()
    with pytest.raises(InvalidFolderError, match="--write-card"):
        push_folder(folder, "me/tiny", dry_run=True)
    assert "README.md" in push_folder(folder, "me/tiny", dry_run=True, write_card=True)
    assert 'model_id = "me/tiny"' in (folder / "README.md").read_text()
    assert offline_hub == []


MODEL_AND_RECORD = ["README.md", "config.json", "configuration_gpt_scratch.py", "conversion_book_nanogpt_gpt_scratch.py", "conversion_gpt_scratch.py", "loss.png",
                    "merges.txt", "model.safetensors", "modeling_gpt_scratch.py", "tokenization_gpt_scratch.py",
                    "tokenizer.json", "tokenizer_config.json", "training_summary.json", "vocab.json"]  # fmt: skip
SECRETS = [".env", ".huggingface/token", "deploy.pem", "token"]


@pytest.fixture
def cluttered(saved, tmp_path) -> Path:
    """A run folder as a user leaves it: a link to a file outside, secrets, a 3 GB stray file, a link inside."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "passwords.json").write_text('{"me": "hunter2"}')
    folder = shutil.copytree(saved["classifier_dir"], tmp_path / "run")
    (folder / "notes.json").symlink_to(tmp_path / "elsewhere" / "passwords.json")  # outside the folder
    (folder / "curve.png").symlink_to("loss.png")  # inside: uploaded as the file it links to
    (folder / ".env").write_text("HF_TOKEN=hf_secret\n")
    (folder / "token").write_text("hf_secret")
    (folder / ".huggingface").mkdir()
    (folder / ".huggingface" / "token").write_text("hf_secret")
    (folder / "deploy.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    with open(folder / "corpus.tar", "wb") as stray:  # sparse: 3 GB listed, nothing written
        stray.truncate(3 * 1024**3)
    return folder


def test_push_refuses_credentials_and_names_each_one(cluttered, offline_hub, capsys):
    from gpt_scratch.cli import main

    problems = validate_folder(cluttered)
    for name in SECRETS:
        assert any(p.startswith(f"{name} looks like a credential") for p in problems), (name, problems)
    assert len(problems) == len(SECRETS)  # not tokenizer_config.json, not the model's files
    with pytest.raises(InvalidFolderError, match=r"\.huggingface/token looks like a credential"):
        push_folder(cluttered, "me/gpt-scratch-spam", dry_run=True)
    assert main(["push", str(cluttered), "me/gpt-scratch-spam"]) == 1
    assert "--exclude '.env'" in capsys.readouterr().out
    assert offline_hub == []


def test_push_uploads_only_the_model_and_the_runs_record(cluttered, offline_hub, capsys):
    excluded = [".env", "token", ".huggingface/", "*.pem"]
    plan = plan_upload(cluttered, exclude=excluded)
    assert plan.files == sorted([*MODEL_AND_RECORD, "curve.png"])
    assert plan.outside == {"notes.json": str(cluttered.parent / "elsewhere" / "passwords.json")}
    assert plan.not_needed == ["corpus.tar"] and plan.excluded == sorted(SECRETS) and plan.credentials == []

    assert push_folder(cluttered, "me/gpt-scratch-spam", dry_run=True, exclude=excluded) == plan.files
    err = capsys.readouterr().err
    assert "notes.json links to" in err and "outside" in err
    assert "corpus.tar (3.2 GB)" in err and "--include" in err

    with_stray = push_folder(
        cluttered, "me/gpt-scratch-spam", dry_run=True, exclude=excluded, include=["*.tar"]
    )
    assert with_stray == sorted([*plan.files, "corpus.tar"])
    # --include never lets a secret or a link to outside through
    assert plan_upload(cluttered, include=["*"]).credentials == sorted(SECRETS)
    assert "notes.json" not in plan_upload(cluttered, include=["*"], exclude=excluded).files
    assert any(
        "config.json is excluded, but a Hub user needs it" in p
        for p in validate_folder(cluttered, exclude=[*excluded, "config.json"])
    )
    (cluttered / "merges.txt").rename(cluttered.parent / "elsewhere" / "merges.txt")
    (cluttered / "merges.txt").symlink_to(
        cluttered.parent / "elsewhere" / "merges.txt"
    )  # a file the model needs
    assert any(
        p.startswith("merges.txt links to") and "never uploaded" in p
        for p in validate_folder(cluttered, exclude=excluded)
    )
    assert offline_hub == []


def test_upload_folder_sends_exactly_the_planned_files(cluttered, monkeypatch):
    """huggingface_hub's own upload_folder (its file listing and pattern matching), with only the commit recorded."""
    import huggingface_hub.hf_api as hf_api

    committed = []
    monkeypatch.setattr(
        hf_api, "is_xet_available", lambda: False
    )  # the single-commit path: one create_commit
    monkeypatch.setattr(HfApi, "_validate_yaml", lambda self, content, **kwargs: None)
    monkeypatch.setattr(
        HfApi, "create_repo", lambda self, repo_id, **kw: type("Url", (), {"repo_id": repo_id})()
    )
    monkeypatch.setattr(HfApi, "create_commit", lambda self, operations, **kw: committed.extend(operations))
    (cluttered / "weird[1]*.png").write_bytes(b"\x89PNG")  # glob characters in a name match only that name
    excluded = [".env", "token", ".huggingface/", "*.pem"]

    push_folder(cluttered, "me/gpt-scratch-spam", exclude=excluded)
    sent = {op.path_in_repo: Path(op.path_or_fileobj) for op in committed}
    assert sorted(sent) == plan_upload(cluttered, exclude=excluded).files
    assert "weird[1]*.png" in sent and "notes.json" not in sent and "corpus.tar" not in sent
    assert all(path.resolve().is_relative_to(cluttered.resolve()) for path in sent.values())


@pytest.mark.parametrize(
    "repo_id", ["me/gpt/scratch", "me/gpt scratch", "me/-gpt", "me/gpt--scratch", "me/x.git", ""]
)
def test_invalid_repo_id_fails_the_dry_run(saved, offline_hub, capsys, repo_id):
    from gpt_scratch.cli import main

    with pytest.raises(ValueError, match="is not a Hub repo id"):
        push_folder(saved["classifier_dir"], repo_id, dry_run=True)
    assert main(["push", str(saved["classifier_dir"]), repo_id, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"gpt-scratch push: error: {repo_id!r} is not a Hub repo id")
        and "Traceback" not in err
    )
    assert offline_hub == []


@pytest.fixture
def local_hub(monkeypatch):
    """huggingface_hub pointed at 127.0.0.1 with offline mode off: `serve(status)` answers every request with
    that HTTP status, `serve(None)` gives a port where nothing listens. No request leaves the machine."""
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from huggingface_hub import constants

    servers = []

    def serve(status: int | None) -> str:
        if status is None:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]  # closed again: connections are refused
        else:

            class Refuse(BaseHTTPRequestHandler):
                def answer(self):
                    body = json.dumps({"error": "Invalid credentials in Authorization header"}).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

                do_GET = do_POST = do_PUT = answer

                def log_message(self, *args):
                    pass

            server = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            servers.append(server)
            port = server.server_address[1]
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        return f"http://127.0.0.1:{port}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


PUSH_FAILURES = {
    "no network": (None, "cannot reach http://127.0.0.1:"),
    "bad token": (401, "the Hub did not accept the token"),
    "read-only token": (403, "the token may not write to me/gpt-scratch-spam"),
}


@pytest.mark.parametrize("failure", PUSH_FAILURES, ids=list(PUSH_FAILURES))
def test_a_failed_push_is_one_clear_error(saved, local_hub, capsys, failure):
    from gpt_scratch.cli import main

    status, expected = PUSH_FAILURES[failure]
    local_hub(status)
    folder = str(saved["classifier_dir"])
    with pytest.raises(PushError, match=expected):
        push_folder(folder, "me/gpt-scratch-spam", token="hf_not_a_real_token")
    assert main(["push", folder, "me/gpt-scratch-spam", "--token", "hf_not_a_real_token"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        "gpt-scratch push: error: could not create me/gpt-scratch-spam on the Hub, nothing was"
    )
    assert expected in err and "Traceback" not in err and len(err.splitlines()) <= 2
    if status == 401:
        assert "hf auth login" in err and "Invalid credentials" in err


def test_a_failed_upload_says_to_run_it_again(saved, offline_hub, monkeypatch, capsys):
    from gpt_scratch.cli import main

    def unreadable(self, **kwargs):
        raise PermissionError(13, "Permission denied", "model.safetensors")

    monkeypatch.setattr(HfApi, "upload_folder", unreadable)
    assert main(["push", str(saved["classifier_dir"]), "me/gpt-scratch-spam"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        "gpt-scratch push: error: the upload to me/gpt-scratch-spam failed (run the push again"
    )
    assert (
        "PermissionError: [Errno 13] Permission denied: 'model.safetensors'" in err
        and "cannot reach" not in err
    )


def test_push_with_hub_offline_mode_says_so(saved, capsys):
    from gpt_scratch.cli import main

    assert (
        main(["push", str(saved["classifier_dir"]), "me/gpt-scratch-spam"]) == 1
    )  # conftest: HF_HUB_OFFLINE=1
    assert "HF_HUB_OFFLINE is set: unset it to push" in capsys.readouterr().err
