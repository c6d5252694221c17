"""The LLM judge client against small HTTP servers on 127.0.0.1 that speak Ollama's and OpenAI's chat APIs."""

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gpt_scratch.data.instructions import format_input
from gpt_scratch.workflows.judge import (
    JudgeClient,
    JudgeError,
    JudgeResult,
    JudgeUnreachableError,
    generate_model_scores,
    parse_score,
    score_prompt,
)

ENTRIES = [
    {
        "instruction": "Rewrite the sentence using a simile.",
        "input": "The car is very fast.",
        "output": "The car is as fast as lightning.",
        "model_response": "The car is as fast as lightning.",
    },
    {
        "instruction": "What type of cloud is typically associated with thunderstorms?",
        "input": "",
        "output": "The type of cloud typically associated with thunderstorms is cumulonimbus.",
        "model_response": "A thunderstorm cloud.",
    },
    {
        "instruction": "Name the author of 'Pride and Prejudice'.",
        "input": "",
        "output": "Jane Austen.",
        "model_response": "Charles Dickens.",
    },
]


def judge_answer(prompt: str) -> str:
    """A deterministic 'judge': 100 for an exact answer, 40 otherwise, -- as long as the prompt is the book's."""
    entry = next(e for e in ENTRIES if score_prompt(e) == prompt)
    return "100" if entry["model_response"] == entry["output"] else "40"


@contextmanager
def serve(respond: Callable[[BaseHTTPRequestHandler, dict], None]) -> Iterator[tuple[str, list]]:
    """Run a chat server on an ephemeral port in a thread; yield its URL and the JSON requests it received."""
    requests: list = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
            respond(self, body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True  # closing does not wait for a handler still sleeping
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


def send(
    handler: BaseHTTPRequestHandler, body: bytes, status: int = 200, content_type: str = "application/json"
):
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def ollama(handler, request):
    """Ollama's /api/chat, streamed: one JSON object a line, the answer in pieces, then `done`."""
    answer = judge_answer(request["messages"][0]["content"])
    lines = [
        {"model": request["model"], "message": {"role": "assistant", "content": c}, "done": False}
        for c in answer
    ]
    lines.append({"model": request["model"], "message": {"role": "assistant", "content": ""}, "done": True})
    send(
        handler,
        "".join(json.dumps(line) + "\n" for line in lines).encode(),
        content_type="application/x-ndjson",
    )


def openai(handler, request):
    answer = judge_answer(request["messages"][0]["content"])
    send(
        handler,
        json.dumps(
            {"choices": [{"index": 0, "message": {"role": "assistant", "content": f"Score: {answer}"}}]}
        ).encode(),
    )


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_score_prompt_is_the_books():
    entry = ENTRIES[0]
    assert score_prompt(entry) == (
        f"Given the input `{format_input(entry)}` and correct output `{entry['output']}`, "
        f"score the model response `{entry['model_response']}` on a scale from 0 to 100, "
        "where 100 is the best score. Respond with the integer number only."
    )


@pytest.mark.parametrize(
    "answer, score",
    [
        ("85", 85),
        (" 85\n", 85),
        ("Score: 72", 72),
        ("72/100", 72),
        ("100", 100),
        ("0", 0),
        ("87.6", 88),
        ("I'd say 101", None),
        # The answers the book's chapter 7 prints from llama3 (prose, not "the integer number only")
        (
            "I'd rate the model response \"The car is as fast as a bullet.\" an 85 out of 100.\n\nHere's why:\n\n"
            "* The response uses a simile correctly, comparing the speed of the car to something else (in this case, "
            "a bullet).\n* The comparison is relevant and makes sense.\n\nOverall, I think the model did a great job!",
            85,
        ),
        (
            "I'd score this model response as 40 out of 100.\n\nHere's why:\n\n* The model correctly identifies that "
            "thunderstorms are related to clouds.",
            40,
        ),
        (
            "I'd rate my own response as 95 out of 100. Here's why:\n\n* The response accurately answers the question "
            "by naming the author of 'Pride and Prejudice' as Jane Austen.",
            95,
        ),
        # The case: the scale comes first ("0", "100"), the score last
        ("On a scale from 0 to 100, where 100 is the best score, I would give this response 85.", 85),
        ("Given the scale of 0-100, the response deserves 70", 70),
        ("**Score: 90**\n\nThe answer misses 1 detail of 3.", 90),
        ("Score of 55/100 (it misses 2 of the 3 facts)", 55),
        ('{"score": 85, "explanation": "correct, but 2 details are missing"}', 85),
        ('```json\n{"score": 60, "reason": "partly right"}\n```', 60),
        ('Sure! {"rating": 30} because of 4 mistakes', 30),
        ("The response is correct.\n\n100", 100),
        ("-5", None),
        ("no idea", None),
        ("", None),
    ],
)
def test_parse_score(answer, score):
    assert parse_score(answer) == score


def test_ollama_protocol_streamed():
    with serve(ollama) as (url, requests):
        judge = JudgeClient(url)  # the book's defaults: model llama3, /api/chat
        result = generate_model_scores(ENTRIES, judge)
    assert result.scores == [100, 40, 40]
    assert (result.num_scored, result.num_unscored, result.reasons) == (3, 0, {})
    assert result.average == pytest.approx(60.0)
    assert requests[0]["path"] == "/api/chat"
    assert requests[0]["body"] == {
        "model": "llama3",
        "messages": [{"role": "user", "content": score_prompt(ENTRIES[0])}],
        "options": {"seed": 123, "temperature": 0, "num_ctx": 2048},
    }


def test_openai_protocol():
    with serve(openai) as (url, requests):
        judge = JudgeClient(url + "/v1", model="judge-model", api="openai", api_key="sk-test")
        result = generate_model_scores(ENTRIES, judge)
    assert result.scores == [100, 40, 40] and result.num_unscored == 0
    assert requests[0]["path"] == "/v1/chat/completions"
    assert requests[0]["auth"] == "Bearer sk-test"
    body = requests[0]["body"]
    assert body["model"] == "judge-model" and body["stream"] is False and body["temperature"] == 0
    assert body["messages"] == [{"role": "user", "content": score_prompt(ENTRIES[0])}]


def test_endpoint_from_url():
    assert JudgeClient().endpoint == "http://localhost:11434/api/chat"
    assert JudgeClient("http://h:1/api/chat").endpoint == "http://h:1/api/chat"
    assert JudgeClient("http://h:1/", api="openai").endpoint == "http://h:1/v1/chat/completions"
    assert (
        JudgeClient("http://h:1/v1/chat/completions", api="openai").endpoint
        == "http://h:1/v1/chat/completions"
    )
    with pytest.raises(ValueError, match="api must be"):
        JudgeClient(api="anthropic")


def test_garbage_answers_are_counted_not_raised():
    def garbage(handler, request):
        prompt = request["messages"][0]["content"]
        if ENTRIES[0]["model_response"] in prompt:  # a chat answer without a number
            send(handler, json.dumps({"message": {"content": "It is a fine answer."}, "done": True}).encode())
        elif ENTRIES[1]["model_response"] in prompt:  # not JSON at all
            send(handler, b"<html>502 bad gateway</html>", content_type="text/html")
        else:  # an HTTP error with a message, as Ollama sends for an unknown model
            send(handler, json.dumps({"error": "model 'llama3' not found"}).encode(), status=404)

    with serve(garbage) as (url, _):
        result = generate_model_scores(ENTRIES, JudgeClient(url, timeout=5))
    assert result.scores == [None, None, None]
    assert (result.num_scored, result.num_unscored, result.average) == (0, 3, None)
    assert "no score in 0..100" in result.reasons[0] and "fine answer" in result.reasons[0]
    assert "sent no chat response" in result.reasons[1]
    assert "HTTP 404" in result.reasons[2] and "not found" in result.reasons[2]
    assert "Scored 0 of 3 records" in result.summary()


def test_some_scored_some_not_keeps_the_scores():
    def flaky(handler, request):
        if ENTRIES[1]["model_response"] in request["messages"][0]["content"]:
            send(handler, json.dumps({"message": {"content": "I cannot judge this."}, "done": True}).encode())
        else:
            ollama(handler, request)

    with serve(flaky) as (url, _):
        result = generate_model_scores(ENTRIES, JudgeClient(url))
    assert result.scores == [100, None, 40]
    assert (result.num_scored, result.num_unscored, result.average) == (2, 1, 70.0)
    assert list(result.reasons) == [1]
    assert result.to_dict()["num_unscored"] == 1 and json.dumps(result.to_dict())


def test_unreachable_judge_gives_up_after_failures_in_a_row():
    judge = JudgeClient(f"http://127.0.0.1:{unused_port()}", timeout=2)
    with pytest.raises(JudgeUnreachableError, match="cannot reach the judge"):
        judge.query_model("hello")
    entries = ENTRIES * 3
    start = time.perf_counter()
    result = generate_model_scores(entries, judge, max_connection_failures=2)
    assert time.perf_counter() - start < 5
    assert result.scores == [None] * 9 and result.num_unscored == 9 and result.average is None
    assert "cannot reach the judge" in result.reasons[0] and "cannot reach the judge" in result.reasons[1]
    assert "not tried" in result.reasons[2]


def test_slow_judge_times_out():
    def slow(handler, request):
        time.sleep(1.0)
        try:
            ollama(handler, request)
        except OSError:  # the client gave up: broken pipe
            pass

    with serve(slow) as (url, _):
        result = generate_model_scores(ENTRIES[:1], JudgeClient(url, timeout=0.3))
    assert result.scores == [None] and "no complete answer within 0.3 s" in result.reasons[0]


def test_judge_timeout_is_a_deadline_for_the_whole_answer():
    """A judge that sends one byte every 2 s never trips a per-read timeout; the deadline cuts it off anyway."""

    def trickle(handler, request):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        try:
            for _ in range(1000):
                handler.wfile.write(b" ")
                handler.wfile.flush()
                time.sleep(2.0)
        except OSError:  # the client hung up
            pass

    with serve(trickle) as (url, _):
        start = time.monotonic()
        result = generate_model_scores(ENTRIES[:1], JudgeClient(url, timeout=3.0))
        elapsed = time.monotonic() - start
    assert result.scores == [None] and "no complete answer within 3 s" in result.reasons[0]
    assert elapsed < 6.0, f"cut off after {elapsed:.1f} s, not at the 3 s deadline"


def test_callable_judge_and_bad_records():
    result = generate_model_scores(ENTRIES, judge_answer)
    assert isinstance(result, JudgeResult) and result.scores == [100, 40, 40]

    def broken(prompt):
        raise JudgeError("judge said no")

    assert generate_model_scores(ENTRIES[:1], broken).reasons == {0: "judge said no"}
    with pytest.raises(ValueError, match="record 1: missing"):
        generate_model_scores([ENTRIES[0], {"instruction": "x", "input": "", "output": "y"}], judge_answer)
    with pytest.raises(JudgeError):
        JudgeClient()._parse_body('{"nothing": 1}')
