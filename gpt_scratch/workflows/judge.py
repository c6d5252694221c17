"""An LLM judge for instruction responses (chapter 7): a bigger model scores each response from 0 to 100.

The judge is reached over HTTP with the standard library only, speaking either Ollama's `/api/chat` (the book's
choice: `http://localhost:11434`, model `llama3`) or the OpenAI-compatible `/v1/chat/completions`:

    judge = JudgeClient("http://localhost:11434", model="llama3")            # api="ollama"
    result = generate_model_scores(records_with_responses, judge)
    print(result.summary())   # "Scored 108 of 110 records, average score 48.73; 2 unscored ..."

A judge that cannot be reached, or answers without a score, never stops the run: the record is counted as
unscored with the reason, and what was scored is kept. After `max_connection_failures` failed connections in a
row the remaining records are not tried (a judge that is down would otherwise cost a timeout per record).
"""

from __future__ import annotations

import http.client
import json
import logging
import re
import socket
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpt_scratch.data.instructions import format_input

logger = logging.getLogger(__name__)

OLLAMA_PATH = "/api/chat"
OPENAI_PATH = "/v1/chat/completions"


class JudgeError(RuntimeError):
    """The judge answered, but not with a usable chat response (HTTP error, bad JSON)."""


class JudgeUnreachableError(JudgeError):
    """No connection to the judge: refused, timed out, unknown host."""


@dataclass
class JudgeClient:
    """A chat model behind an HTTP API. `url` is the server (`http://host:port`) or the full endpoint."""

    url: str = "http://localhost:11434"
    model: str = "llama3"
    api: str = "ollama"  # "ollama" (/api/chat, streamed JSON lines) or "openai" (/v1/chat/completions)
    timeout: float = 120.0  # seconds for a whole answer: connecting, sending and reading it to the end
    seed: int = 123
    temperature: float = 0.0
    num_ctx: int = 2048  # Ollama's context size, as the book sets it
    api_key: str | None = None  # sent as a Bearer token to OpenAI-compatible servers that need one

    def __post_init__(self) -> None:
        if self.api not in ("ollama", "openai"):
            raise ValueError(f"api must be 'ollama' or 'openai', got {self.api!r}")

    @property
    def endpoint(self) -> str:
        url = self.url.rstrip("/")
        if url.endswith((OLLAMA_PATH, "/chat/completions")):
            return url
        if self.api == "openai":
            return url + ("/chat/completions" if url.endswith("/v1") else OPENAI_PATH)
        return url + OLLAMA_PATH

    def payload(self, prompt: str) -> dict[str, Any]:
        messages = [{"role": "user", "content": prompt}]
        if self.api == "ollama":  # the book's request
            options = {"seed": self.seed, "temperature": self.temperature, "num_ctx": self.num_ctx}
            return {"model": self.model, "messages": messages, "options": options}
        return {
            "model": self.model,
            "messages": messages,
            "seed": self.seed,
            "temperature": self.temperature,
            "stream": False,
        }

    def query_model(self, prompt: str) -> str:
        """The judge's answer to one user message (the book's `query_model`), within `timeout` seconds in all."""
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        status, body = self._post(json.dumps(self.payload(prompt)).encode("utf-8"), headers)
        if status >= 400:
            raise JudgeError(f"judge at {self.endpoint} answered HTTP {status}: {body[:200]}")
        return self._parse_body(body)

    def _post(self, data: bytes, headers: dict[str, str]) -> tuple[int, str]:
        """POST to the endpoint; (status, body). A watchdog closes the connection when `timeout` is over, so a
        server that trickles its answer cannot hold the run (a socket timeout only bounds each read)."""
        url = urllib.parse.urlsplit(self.endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise JudgeError(f"judge url {self.endpoint!r} is not an http:// or https:// address")
        connection_class = (
            http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        )
        connection = connection_class(url.hostname, url.port, timeout=self.timeout)
        expired = threading.Event()
        sockets: list[socket.socket] = []  # http.client forgets its socket once the response owns it

        def cut_off() -> None:
            expired.set()
            for sock in sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes a read blocked in another thread
                except OSError:
                    pass

        watchdog = threading.Timer(self.timeout, cut_off)
        watchdog.daemon = True
        watchdog.start()
        try:
            connection.connect()
            sockets.append(connection.sock)
            connection.request("POST", url.path + (f"?{url.query}" if url.query else ""), data, headers)
            response = connection.getresponse()
            body = response.read().decode("utf-8", errors="replace")
            if expired.is_set():
                raise TimeoutError
            return response.status, body
        except (OSError, http.client.HTTPException) as e:
            if expired.is_set() or isinstance(e, TimeoutError):
                raise JudgeUnreachableError(
                    f"judge at {self.endpoint} sent no complete answer within {self.timeout:g} s (--judge-timeout)"
                ) from e
            if isinstance(e, http.client.HTTPException):  # answered, but not in HTTP
                raise JudgeError(f"judge at {self.endpoint} sent no valid HTTP response: {e!r}") from e
            raise JudgeUnreachableError(f"cannot reach the judge at {self.endpoint}: {e}") from e
        finally:
            watchdog.cancel()
            connection.close()

    def _parse_body(self, body: str) -> str:
        try:
            if self.api == "openai":
                return json.loads(body)["choices"][0]["message"]["content"]
            # Ollama streams one JSON object a line, each with a piece of the message; one line when not streamed
            pieces = []
            for line in body.splitlines():
                if line.strip():
                    chunk = json.loads(line)
                    if "error" in chunk:
                        raise JudgeError(f"judge at {self.endpoint} answered an error: {chunk['error']}")
                    pieces.append(chunk["message"]["content"])
            return "".join(pieces)
        except (json.JSONDecodeError, KeyError, IndexError, TypeError) as e:
            raise JudgeError(f"judge at {self.endpoint} sent no chat response ({e!r}): {body[:200]!r}") from e


def score_prompt(entry: dict[str, str], response_key: str = "model_response") -> str:
    """The book's scoring prompt for one record with its model response."""
    return (
        f"Given the input `{format_input(entry)}` "
        f"and correct output `{entry['output']}`, "
        f"score the model response `{entry[response_key]}`"
        f" on a scale from 0 to 100, where 100 is the best score. "
        f"Respond with the integer number only."
    )


_NUMBER = r"-?\d+(?:\.\d+)?"
_JSON_OBJECT = re.compile(r"\{[^{}]*\}")
# "85 out of 100", "85/100", "score: 85", "Score of 85"; then the scale, which is not an answer ("0 to 100")
_OUT_OF_100 = re.compile(rf"({_NUMBER})\s*(?:/|out of)\s*100\b", re.IGNORECASE)
_SCORE_IS = re.compile(rf"\bscore\b[^0-9\n]{{0,20}}?({_NUMBER})(?!\s*(?:to|-|/|out of)\s*\d)", re.IGNORECASE)
_SCALE = re.compile(rf"{_NUMBER}\s*(?:to|-|–)\s*{_NUMBER}")


def _in_range(text: str | float | int | None) -> int | None:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return round(value) if 0 <= value <= 100 else None


def parse_score(answer: str) -> int | None:
    """The score in the judge's answer (0..100, rounded to an integer), or None when it holds none.

    The prompt asks for "the integer number only", but judges also answer in prose: "I'd rate the model response
    ... an 85 out of 100. Here's why: ..." (the book's llama3), "Score: 72", or JSON (`{"score": 85}`). In that
    order of trust: a JSON object's `score`, a number "out of 100" or "/100", a number after the word "score",
    and otherwise the last number in 0..100 once ranges such as the scale's "0 to 100" are set aside.
    """
    for candidate in _JSON_OBJECT.findall(answer):
        try:
            data = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        scores = [v for k, v in data.items() if k.lower() in ("score", "rating", "grade")]
        if scores and not isinstance(scores[0], bool):
            return _in_range(scores[0])
    for pattern in (_OUT_OF_100, _SCORE_IS):
        match = pattern.search(answer)
        if match:
            return _in_range(match.group(1))
    scores = [_in_range(n) for n in re.findall(_NUMBER, _SCALE.sub(" ", answer))]
    scores = [s for s in scores if s is not None]
    return scores[-1] if scores else None


@dataclass
class JudgeResult:
    """Scores of one judging run: `scores[i]` is None for a record that got no score, `reasons` says why."""

    scores: list[int | None] = field(default_factory=list)
    reasons: dict[int, str] = field(default_factory=dict)  # record index -> why it is unscored

    @property
    def num_scored(self) -> int:
        return sum(score is not None for score in self.scores)

    @property
    def num_unscored(self) -> int:
        return len(self.scores) - self.num_scored

    @property
    def average(self) -> float | None:
        scored = [score for score in self.scores if score is not None]
        return sum(scored) / len(scored) if scored else None

    def summary(self) -> str:
        average = "no average" if self.average is None else f"average score {self.average:.2f}"
        text = f"Scored {self.num_scored} of {len(self.scores)} records, {average}"
        if self.num_unscored:
            first = next(iter(self.reasons.items()))
            text += f"; {self.num_unscored} unscored (first: record {first[0]}: {first[1]})"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "average": self.average,
            "num_scored": self.num_scored,
            "num_unscored": self.num_unscored,
            "scores": self.scores,
            "reasons": {str(i): reason for i, reason in self.reasons.items()},
        }


def generate_model_scores(
    entries: Sequence[dict[str, str]],
    judge: JudgeClient | Callable[[str], str],
    response_key: str = "model_response",
    max_connection_failures: int = 3,
) -> JudgeResult:
    """Ask the judge to score every record's `response_key` against its `output` (the book's function).

    `judge`: a `JudgeClient`, or any function prompt -> answer. Never raises for a judge problem: failures are
    recorded per record in `JudgeResult.reasons` and logged.
    """
    for index, entry in enumerate(entries):
        missing = [key for key in ("instruction", "output", response_key) if key not in entry]
        if missing:
            raise ValueError(f"record {index}: missing {missing}; nothing was sent to the judge")
    query = judge.query_model if isinstance(judge, JudgeClient) else judge
    result = JudgeResult()
    failures_in_a_row = 0
    for index, entry in enumerate(entries):
        if failures_in_a_row >= max_connection_failures:
            result.scores.append(None)
            result.reasons[index] = f"not tried: the judge was unreachable {failures_in_a_row} times in a row"
            continue
        try:
            answer = query(score_prompt(entry, response_key))
        except JudgeUnreachableError as e:
            failures_in_a_row += 1
            answer, reason = None, str(e)
        except JudgeError as e:
            failures_in_a_row = 0
            answer, reason = None, str(e)
        else:
            failures_in_a_row = 0
            reason = f"no score in 0..100 in the answer {answer[:100]!r}"
        score = parse_score(answer) if answer is not None else None
        result.scores.append(score)
        if score is None:
            result.reasons[index] = reason
    if result.num_unscored:
        logger.warning(result.summary())
    return result
