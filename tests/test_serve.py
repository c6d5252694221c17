"""`gpt-scratch serve` (transformers' own OpenAI-compatible server) and `gpt-scratch chat --url`, side by side with
`transformers serve` of the model's GPT-2 export (save_gpt2): the same answers, on 127.0.0.1 only."""

import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from gpt_scratch import GPTScratchForCausalLM, GPTScratchTokenizer
from gpt_scratch.tokenization_gpt_scratch import ALPACA_CHAT_TEMPLATE

from conftest import run_clean_python, tiny_config

pytestmark = pytest.mark.needs_shared  # GPT-2's BPE files for the tokenizer

pytest.importorskip("fastapi", reason="transformers serve needs pip install 'transformers[serving]'")


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """A tiny gpt_scratch model folder (Alpaca chat template) and its GPT-2 export."""
    root = tmp_path_factory.mktemp("serve")
    torch.manual_seed(0)
    model = GPTScratchForCausalLM(tiny_config(qkv_bias=True, tie_word_embeddings=True)).eval()
    tokenizer = GPTScratchTokenizer()
    tokenizer.chat_template = ALPACA_CHAT_TEMPLATE
    model.save_pretrained(root / "ours")
    tokenizer.save_pretrained(root / "ours")
    GPTScratchForCausalLM.from_pretrained(root / "ours").save_gpt2(root / "gpt2")
    return {"ours": root / "ours", "gpt2": root / "gpt2"}


# ---- fast: the loader of the model's process ------------------------------------------------------------------

LOAD_IN_A_FRESH_PROCESS = """
import json, pickle, sys
loader = pickle.loads(bytes.fromhex(sys.argv[1]))  # as transformers serve hands it to the spawned model process
try:
    model, processor = loader.load_model_and_processor(sys.argv[2])
    print(json.dumps([type(model).__name__, type(processor).__name__, type(processor._tokenizer).__name__]))
except AttributeError as error:
    print(json.dumps(str(error)))
"""


@pytest.mark.parametrize(
    "loader_name, expected",
    [
        pytest.param("ModelLoader", "module transformers has no attribute GPTScratchForCausalLM",
                     marks=pytest.mark.slow),  # transformers' own failure, documented (~15 s)
        ("GPTScratchModelLoader", ["GPTScratchForCausalLM", "GPTScratchTokenizer", "Tokenizer"]),
    ],
)  # fmt: skip
def test_the_model_process_finds_our_classes_only_with_our_loader(folders, tmp_path, loader_name, expected):
    """transformers serve's own loader looks the architecture up in the transformers namespace (the failure of
    `transformers serve --trust-remote-code FOLDER`); ours, unpickled in a fresh interpreter, makes it resolvable."""
    from transformers.cli.serving import model_manager

    from gpt_scratch import serve

    loader = getattr(model_manager, loader_name, None) or getattr(serve, loader_name)
    # the package importable there, as under gpt-scratch serve (unpickling our loader imports it)
    script = f"import sys; sys.path.insert(0, {str(Path(__file__).parents[1])!r})\n" + LOAD_IN_A_FRESH_PROCESS
    pickled = pickle.dumps(loader(device="cpu", trust_remote_code=True)).hex()
    result = run_clean_python(script, pickled, str(folders["ours"]), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == expected


def test_serve_refuses_a_folder_without_a_model(tmp_path):
    from gpt_scratch.cli import main

    assert main(["serve", str(tmp_path)]) == 2


def test_chat_without_instruction_or_url_is_a_clear_error(folders, capsys):
    from gpt_scratch.cli import main

    assert main(["chat", str(folders["ours"])]) == 2
    assert "--instruction is required" in capsys.readouterr().err


def test_chat_with_no_server_says_so(capsys):
    from gpt_scratch.cli import main

    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    assert main(["chat", "model", "--url", url, "--instruction", "Hi"]) == 1
    assert "no server answers" in capsys.readouterr().err


# ---- slow: both servers started, asked and stopped by the test ------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict, timeout: float = 60) -> bytes:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


def start(command: list[str], port: int, log: Path) -> subprocess.Popen:
    """A server on 127.0.0.1:port, its own process group; returns once /health answers (at most 180 s)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
                               start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command[0]} stopped: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return process
        except OSError:
            time.sleep(1)
    stop(process)
    raise TimeoutError(f"{command} did not answer in 180 s: {log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def ask(port: int, model: str) -> dict:
    """The three answers: chat (plain and streamed as server-sent events) and completion, greedy."""
    base = f"http://127.0.0.1:{port}/v1"
    messages = [
        {"role": "system", "content": "Rewrite the sentence."},
        {"role": "user", "content": "It is cold."},
    ]
    chat = json.loads(
        post(f"{base}/chat/completions", {"model": model, "messages": messages, "max_tokens": 8})
    )
    events = post(
        f"{base}/chat/completions", {"model": model, "messages": messages, "max_tokens": 8, "stream": True}
    )
    chunks = [json.loads(line[6:]) for line in events.decode().splitlines() if line.startswith("data: {")]
    streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    completion = json.loads(
        post(f"{base}/completions", {"model": model, "prompt": "Hello, do you", "max_tokens": 8})
    )
    return {
        "chat": chat["choices"][0]["message"]["content"],
        "streamed": streamed,
        "completion": completion["choices"][0]["text"],
        "chat_tokens": chat["usage"]["completion_tokens"],
    }


@pytest.mark.slow  # two servers and their model processes: about a minute
@pytest.mark.timeout(600)
def test_gpt_scratch_serve_answers_as_transformers_serve_of_the_gpt2_export(folders, tmp_path):
    ports = {"ours": free_port(), "gpt2": free_port()}
    bin_dir = Path(sys.executable).parent
    commands = {
        "ours": [str(bin_dir / "gpt-scratch"), "serve", str(folders["ours"]), "--port", str(ports["ours"]),
                 "--serve-args", "--device cpu"],
        "gpt2": [str(bin_dir / "transformers"), "serve", str(folders["gpt2"]), "--host", "127.0.0.1",
                 "--port", str(ports["gpt2"]), "--device", "cpu"],
    }  # fmt: skip
    servers = {}
    try:
        for name, command in commands.items():
            servers[name] = start(command, ports[name], tmp_path / f"{name}.log")
        answers = {name: ask(ports[name], str(folders[name])) for name in servers}
        assert answers["ours"] == answers["gpt2"]
        assert answers["ours"]["chat"] == answers["ours"]["streamed"] and answers["ours"]["chat_tokens"] == 8

        # gpt-scratch chat --url: one instruction, and a conversation from stdin
        url = f"http://127.0.0.1:{ports['ours']}/v1"
        gpt_scratch = [
            str(bin_dir / "gpt-scratch"),
            "chat",
            str(folders["ours"]),
            "--url",
            url,
            "--max-new-tokens",
            "8",
        ]
        one = subprocess.run([*gpt_scratch, "--instruction", "Rewrite the sentence.", "--input", "It is cold."],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
        assert one.returncode == 0, one.stderr
        assert one.stdout.strip() == answers["gpt2"]["chat"].strip()
        talk = subprocess.run(gpt_scratch, input="Hi\nexit\n", capture_output=True, text=True, timeout=120)
        assert talk.returncode == 0 and talk.stdout.strip(), talk.stderr

        # transformers chat, transformers' own client, against our server. Its HTTP client refuses any address
        # under HF_HUB_OFFLINE, loopback too: offline mode off, the Hub endpoint an unreachable local port instead.
        offline_off = {
            k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
        }
        offline_off.update(HF_ENDPOINT="http://127.0.0.1:9", COLUMNS="200")
        client = subprocess.run([str(bin_dir / "transformers"), "chat", str(folders["ours"]), url,
                                 "max_new_tokens=8"], input="Hi\nn\n!exit\n", capture_output=True, text=True,
                                timeout=120, env=offline_off)  # fmt: skip
        assert client.returncode == 0, client.stdout[-2000:] + client.stderr[-2000:]
        assert "8 tokens in" in client.stdout  # an answer (transformers chat samples: its text is its own)
    finally:
        for process in servers.values():
            stop(process)
    log = (tmp_path / "ours.log").read_text()
    assert log.count('POST /v1/chat/completions HTTP/1.1" 200') >= 4, log[-3000:]
