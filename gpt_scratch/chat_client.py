"""``gpt-scratch chat --url``: talk to an OpenAI-compatible server (``gpt-scratch serve``, ``transformers serve``,
vLLM, ...) through its ``/v1/chat/completions`` endpoint, the answer streamed as server-sent events.

Standard library only: the client needs nothing of the server's dependencies.
"""

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator


def stream_chat_completion(
    url: str, model: str, messages: list[dict[str, str]], max_tokens: int = 256, timeout: float = 300.0
) -> Iterator[str]:
    """The pieces of the server's answer to ``messages``, as they arrive (``stream: true``)."""
    body = {"model": model, "messages": messages, "max_tokens": max_tokens, "stream": True}
    request = urllib.request.Request(
        url.rstrip("/") + "/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
    )
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        raise ValueError(f"{url}: the server answered {error.code}: {error.read().decode()[:500]}") from None
    except urllib.error.URLError as error:
        raise ConnectionError(
            f"{url}: no server answers ({error.reason}); start one with gpt-scratch serve"
        ) from None
    with response:
        for raw in response:
            line = raw.decode("utf-8").strip()
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            for choice in json.loads(line[len("data:") :]).get("choices", []):
                if piece := (choice.get("delta") or {}).get("content"):
                    yield piece


def chat_loop(
    url: str,
    model: str,
    lines: Iterable[str],
    write: Callable[[str], object] = sys.stdout.write,
    max_tokens: int = 256,
    system: str | None = None,
) -> list[dict[str, str]]:
    """A conversation: each line is a user message (``exit`` or the end of input stops), each answer streamed to
    ``write``. Returns the conversation's messages."""
    messages = [{"role": "system", "content": system}] if system else []
    for line in lines:
        text = line.strip()
        if text in ("exit", "!exit"):
            break
        if not text:
            continue
        messages.append({"role": "user", "content": text})
        pieces = []
        for piece in stream_chat_completion(url, model, messages, max_tokens):
            write(piece)
            pieces.append(piece)
        write("\n")
        messages.append({"role": "assistant", "content": "".join(pieces)})
    return messages


__all__ = ["stream_chat_completion", "chat_loop"]
