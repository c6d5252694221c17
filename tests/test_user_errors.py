"""Bad input as a user gives it: a clear error naming the file, line or field, never a silent fallback or a traceback."""

import pytest

from gpt_scratch.cli import main
from gpt_scratch.data import corpora
from gpt_scratch.data.classification import load_classification_rows


def test_cli_prints_one_error_line_and_exits_2(tmp_path, capsys):
    assert main(["generate", str(tmp_path / "no-such-run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpt-scratch generate: error: ") and "no-such-run" in err and "Traceback" not in err
    with pytest.raises(FileNotFoundError):  # --debug: the exception itself, for its traceback
        main(["generate", str(tmp_path / "no-such-run"), "--debug"])


def test_tsv_row_with_an_extra_field_names_the_file_and_line(tmp_path, capsys):
    table = tmp_path / "reviews.tsv"
    table.write_text("text\tlabel\ngood film\tpos\nbad film\tneg\tEXTRA\nfine\tpos\n")
    with pytest.raises(ValueError, match=r"reviews.tsv: line 3: Expected 2 fields in line 3, saw 3"):
        load_classification_rows(table)
    out = tmp_path / "run"
    assert main(["finetune-classifier", str(table), "--model", str(tmp_path), "--output-dir", str(out)]) == 2
    assert "gpt-scratch finetune-classifier: error:" in capsys.readouterr().err


def test_one_class_is_refused(tmp_path):
    table = tmp_path / "one.csv"
    table.write_text("text,label\n" + "".join(f"text {i},spam\n" for i in range(20)))
    with pytest.raises(ValueError, match="at least two classes"):
        load_classification_rows(table)
    with pytest.raises(ValueError, match="at least two classes"):
        load_classification_rows(table, label2id={"ham": 0, "spam": 1})


def test_missing_data_dir_is_named_and_offline_never_downloads(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(corpora.urllib.request, "urlopen", lambda *a, **k: calls.append(a) or 1 / 0)
    monkeypatch.setenv("GPT_SCRATCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GPT_SCRATCH_DATA_DIR", str(tmp_path / "missing"))
    with pytest.raises(
        corpora.CorpusNotAvailableError, match=r"GPT_SCRATCH_DATA_DIR=.*missing: no such folder"
    ):
        corpora.resolve_corpus("the-verdict")
    monkeypatch.setenv("GPT_SCRATCH_DATA_DIR", str(tmp_path))  # a folder without the file
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(corpora.CorpusNotAvailableError, match="offline: HF_HUB_OFFLINE is set"):
        corpora.resolve_corpus("the-verdict")
    assert calls == []


def test_empty_prompt_is_a_clear_error(tmp_path):
    from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM
    from gpt_scratch.generation.inference import generate_text
    from gpt_scratch.tokenization_gpt_scratch import GPTScratchTokenizer

    config = GPTScratchConfig(context_length=16, emb_dim=16, n_heads=2, n_layers=1)
    with pytest.raises(ValueError, match="the prompt is empty"):
        generate_text(GPTScratchForCausalLM(config).eval(), GPTScratchTokenizer(), "", max_new_tokens=2)
