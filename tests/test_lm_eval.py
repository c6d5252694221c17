"""lm-evaluation-harness (`lm_eval --model hf`) on a gpt_scratch folder with trust_remote_code, side by side with
the folder's GPT-2 export: a small local task of each kind (multiple choice, rolling loglikelihood), equal scores."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from gpt_scratch import GPTScratchForCausalLM, GPTScratchTokenizer

from conftest import tiny_config

pytest.importorskip("lm_eval")
pytestmark = pytest.mark.needs_shared  # GPT-2's BPE files and the book's short story

MULTIPLE_CHOICE = [
    {"question": "The capital of France is", "choices": [" Paris", " Rome", " a teapot"], "label": 0},
    {"question": "Two plus two is", "choices": [" four", " seven"], "label": 0},
    {"question": "Tea is served in a", "choices": [" shoe", " cup", " cloud"], "label": 1},
    {"question": "The sun rises in the", "choices": [" west", " east"], "label": 1},
]

TASKS = {
    "scratch_mc.yaml": """
        task: scratch_mc
        dataset_path: json
        dataset_kwargs: {data_files: {test: DATA/mc.jsonl}}
        test_split: test
        output_type: multiple_choice
        doc_to_text: "{{question}}"
        doc_to_choice: "{{choices}}"
        doc_to_target: "{{label}}"
        metric_list: [{metric: acc}, {metric: acc_norm}]
    """,
    "scratch_rolling.yaml": """
        task: scratch_rolling
        dataset_path: json
        dataset_kwargs: {data_files: {test: DATA/texts.jsonl}}
        test_split: test
        output_type: loglikelihood_rolling
        doc_to_text: ""
        doc_to_target: "{{text}}"
        metric_list: [{metric: word_perplexity}, {metric: byte_perplexity}, {metric: bits_per_byte}]
    """,
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory, shared) -> dict[str, Path]:
    """The two folders (ours, saved for remote code; its GPT-2 export) and the tasks' folder with their data."""
    root = tmp_path_factory.mktemp("lm_eval")
    torch.manual_seed(0)
    model = GPTScratchForCausalLM(tiny_config(qkv_bias=True, tie_word_embeddings=True))
    model.save_pretrained(root / "ours")
    GPTScratchTokenizer().save_pretrained(root / "ours")
    model.save_gpt2(root / "gpt2")
    tasks = root / "tasks"
    tasks.mkdir()
    story = (shared / "data" / "the-verdict.txt").read_text(encoding="utf-8")
    paragraphs = [p for p in story.split("\n\n") if p.strip()][
        :3
    ]  # longer than the context of 64: rolling windows
    (tasks / "mc.jsonl").write_text("".join(json.dumps(d) + "\n" for d in MULTIPLE_CHOICE))
    (tasks / "texts.jsonl").write_text("".join(json.dumps({"text": p}) + "\n" for p in paragraphs))
    for name, yaml in TASKS.items():
        (tasks / name).write_text(textwrap.dedent(yaml).replace("DATA", str(tasks)))
    return {"ours": root / "ours", "gpt2": root / "gpt2", "tasks": tasks}


def scores(folder: Path, tasks: Path, trust_remote_code: bool) -> dict:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    model_args = f"pretrained={folder},trust_remote_code={trust_remote_code},dtype=float32"
    results = simple_evaluate(model="hf", model_args=model_args, tasks=["scratch_mc", "scratch_rolling"],
                              task_manager=TaskManager(include_path=str(tasks)), device="cpu", batch_size=4,
                              log_samples=False, bootstrap_iters=0)  # fmt: skip
    return {
        task: {k: v for k, v in metrics.items() if k != "alias"}
        for task, metrics in results["results"].items()
    }


def test_harness_loglikelihoods_equal_the_gpt2_exports(setup):
    """The two request kinds the tasks make, straight through lm_eval's HF model (fast)."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    story = (setup["tasks"] / "texts.jsonl").read_text().splitlines()
    choices = [Instance("loglikelihood", {}, (d["question"], c), i) for i, d in enumerate(MULTIPLE_CHOICE)
               for c in d["choices"]]  # fmt: skip
    rolling = [
        Instance("loglikelihood_rolling", {}, (json.loads(line)["text"],), i) for i, line in enumerate(story)
    ]
    got = {}
    for name in ("ours", "gpt2"):
        lm = HFLM(pretrained=str(setup[name]), trust_remote_code=name == "ours", device="cpu", batch_size=4)
        assert lm.max_length == 64
        got[name] = (lm.loglikelihood(choices), lm.loglikelihood_rolling(rolling))
    (ours_choices, ours_rolling), (gpt2_choices, gpt2_rolling) = got["ours"], got["gpt2"]
    assert [greedy for _, greedy in ours_choices] == [greedy for _, greedy in gpt2_choices]
    assert [ll for ll, _ in ours_choices] == pytest.approx([ll for ll, _ in gpt2_choices], rel=1e-4)
    assert ours_rolling == pytest.approx(gpt2_rolling, rel=1e-4)


@pytest.mark.slow  # two evaluations through lm_eval's task machinery (~20 s)
def test_lm_eval_scores_equal_the_gpt2_exports(setup):
    ours = scores(setup["ours"], setup["tasks"], trust_remote_code=True)
    theirs = scores(setup["gpt2"], setup["tasks"], trust_remote_code=False)
    assert set(ours) == {"scratch_mc", "scratch_rolling"}
    for task in ours:
        for metric, value in ours[task].items():
            if isinstance(value, float):
                assert value == pytest.approx(theirs[task][metric], rel=1e-4), (task, metric)
    assert ours["scratch_rolling"]["word_perplexity,none"] > 1.0
    print(json.dumps({"ours": ours, "gpt2": theirs}, indent=1))


@pytest.mark.slow  # the lm_eval command line in a fresh process (~20 s)
def test_lm_eval_command_line_runs_on_the_folder(setup, tmp_path):
    lm_eval = Path(sys.executable).parent / "lm_eval"
    result = subprocess.run(
        [str(lm_eval), "--model", "hf", "--model_args", f"pretrained={setup['ours']},trust_remote_code=True",
         "--tasks", "scratch_mc,scratch_rolling", "--include_path", str(setup["tasks"]), "--device", "cpu",
         "--batch_size", "4", "--output_path", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "scratch_rolling" in result.stdout and "word_perplexity" in result.stdout
