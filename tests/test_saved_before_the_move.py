"""A folder saved by gpt_scratch at e13a691, before issue 23 moved the code (tests/data/run-e13a691, made by
tests/data/make_run_e13a691.py with that commit's code), loads after the move: the model to the same logits and
greedy tokens that code computed, the tokenizer to GPT-2's ids, and the run resumes from its checkpoint."""

import json
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import PROJECT_ROOT

FOLDER = PROJECT_ROOT / "tests" / "data" / "run-e13a691"
REFERENCE = FOLDER.with_name("run-e13a691.reference.json")  # what e13a691's code computed from the folder
sys.path.insert(0, str(FOLDER.parent))
from make_run_e13a691 import CONFIG, training_config, windows  # noqa: E402  (the fixture's own data and settings)

LOAD = """
import json, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
import gpt_scratch

folder = sys.argv[1]
model = AutoModelForCausalLM.from_pretrained(folder).eval()
tokenizer = AutoTokenizer.from_pretrained(folder)
prompt = torch.tensor(json.load(open(sys.argv[2]))["prompt"])
with torch.no_grad():
    logits = model(input_ids=prompt).logits[0, -1].tolist()
    greedy = model.generate(prompt, max_new_tokens=5, do_sample=False)[0].tolist()
print(json.dumps({
    "module": type(model).__module__, "logits": logits, "greedy": greedy,
    "tokenizer": type(tokenizer).__name__, "ids": tokenizer("Every effort moves you")["input_ids"],
}))
"""


@pytest.fixture
def run_folder(tmp_path):
    folder = tmp_path / "run-e13a691"
    shutil.copytree(FOLDER, folder)
    return folder


def test_the_saved_folder_loads_to_the_same_numbers_in_a_clean_process(run_folder):
    result = subprocess.run(
        [sys.executable, "-c", LOAD, str(run_folder), str(REFERENCE)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=run_folder,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    reference = json.loads(REFERENCE.read_text())
    assert loaded["module"] == "gpt_scratch.modeling_gpt_scratch"  # today's code, not the folder's copy
    torch.testing.assert_close(torch.tensor(loaded["logits"]), torch.tensor(reference["logits"]))
    assert loaded["greedy"] == reference["greedy"]
    assert loaded["tokenizer"] == "GPTScratchTokenizer" and loaded["ids"] == [6109, 3626, 6100, 345]


def test_the_saved_run_resumes_after_the_move(run_folder):
    from gpt_scratch.configuration_gpt_scratch import GPTScratchConfig
    from gpt_scratch.modeling_gpt_scratch import GPTScratchForCausalLM
    from gpt_scratch.tokenization_gpt_scratch import GPTScratchTokenizer
    from gpt_scratch.training import CausalLMTask, train

    model = GPTScratchForCausalLM(GPTScratchConfig(**CONFIG))  # as the run made it; the checkpoint loads
    config = training_config(str(run_folder), resume=True, max_steps=4)
    result = train(model, windows(0), windows(1, count=2), config, CausalLMTask(None), GPTScratchTokenizer())
    assert result.summary["steps"] == 4
    assert [r["step"] for r in result.summary["resumes"]] == [2]
    assert [r["step"] for r in result.history] == [1, 2, 3, 4]  # the saved history, continued


def test_its_tokenizer_saved_again_lists_no_code(run_folder, tmp_path):
    """The folder's tokenizer_config.json lists tokenization_gpt_scratch.py in an auto_map (remote code); loaded and
    saved again (a fine-tuning or convert from it) it lists none and gains tokenizer.json, as a new folder."""
    from transformers import AutoTokenizer

    import gpt_scratch  # noqa: F401  (registers the Auto classes)

    assert "auto_map" in json.loads((run_folder / "tokenizer_config.json").read_text())
    AutoTokenizer.from_pretrained(run_folder).save_pretrained(tmp_path / "again")
    assert "auto_map" not in json.loads((tmp_path / "again" / "tokenizer_config.json").read_text())
    assert (tmp_path / "again" / "tokenizer.json").is_file()
    assert AutoTokenizer.from_pretrained(tmp_path / "again")("Every effort moves you")["input_ids"] == [
        6109, 3626, 6100, 345
    ]  # fmt: skip
