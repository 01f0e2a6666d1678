"""A small emulator of Gemini's streaming endpoint, bound to loopback, for the real
google-genai SDK pointed at it with `HttpOptions(base_url=...)`:

    POST /v1beta/models/<model>:streamGenerateContent?alt=sse                 (API key: x-goog-api-key; also /v1)
    POST /v1beta1/projects/<p>/locations/<l>/publishers/google/models/<model>:streamGenerateContent?alt=sse (also /v1)
                                                                              (Vertex AI: Authorization: Bearer)

It answers as the service does: Server-Sent Events, each `data:` a GenerateContentResponse
(candidates with text parts; the last with finishReason and usageMetadata), and errors as
Google's JSON error body. By default it plays a model that follows the newsletter's prompt:
it reads the entries from the request's JSON data and writes a summary of each, as the
response schema asks, split into small chunks. A test scripts anything else with `Script`s
taken one per request: slow chunks, a stall, an error mid-stream, a safety block, a 429, a
reply of its own (an invented link, an obeyed injection). Every request is recorded (`calls`),
with when its stream ended and how (`complete`, `client closed`, ...).

    python -m local.gemini_emulator --port 8124 --api-key local-key
"""

from __future__ import annotations

import argparse
import json
import re
import select
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

_API_KEY_PATH = re.compile(r"^/v1(?:beta)?/models/([^/:]+):streamGenerateContent$")
_VERTEX_PATH = re.compile(
    r"^/v1(?:beta1)?/projects/([^/]+)/locations/([^/]+)/publishers/google/models/([^/:]+):streamGenerateContent$"
)
STALL_LIMIT_SECONDS = 120.0  # a stalled stream gives up after this long if the client never goes


@dataclass
class Script:
    """What one request gets. `reply`: the model's text (None: summaries of the request's
    entries); `pieces`: the chunks' texts instead; `chunk_chars`: how a reply is split; `delay`: seconds before each chunk;
    `stall_after`: after this many chunks, send nothing more until the client goes;
    `error_after`: after this many chunks, an error event; `finish_reason`: the last
    chunk's (SAFETY for a blocked answer); `prompt_blocked`: refuse the prompt at once;
    `status`: answer this HTTP status with Google's error body instead of a stream."""

    reply: str | None = None
    pieces: list[str] | None = None  # the chunks' texts, as they are (instead of reply)
    chunk_chars: int = 40
    delay: float = 0.0
    first_delay: float = 0.0
    stall_after: int | None = None
    error_after: int | None = None
    finish_reason: str = "STOP"
    prompt_blocked: bool = False
    status: int | None = None


@dataclass
class Call:
    """One request as the emulator saw it."""

    path: str
    mode: str  # "api-key" or "vertex"
    model: str
    headers: dict
    body: dict
    started: float
    chunks_sent: int = 0
    first_chunk_at: float | None = None
    ended_at: float | None = None
    ended: str | None = None  # complete, client closed, error, refused, blocked, stalled too long


ERRORS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def error_body(code: int, message: str) -> dict:
    return {"error": {"code": code, "message": message, "status": ERRORS.get(code, "UNKNOWN")}}


def summaries_for(data_text: str) -> str:
    """The reply of a model that does what the newsletter's prompt asks: a summary per entry,
    as the schema's JSON. The entries are read as data, like the real model should."""
    try:
        data = json.loads(data_text)
        sources = data["sources"]
    except (ValueError, KeyError, TypeError):
        return json.dumps({"summaries": []})
    items = []
    for source in sources:
        for entry in source.get("entries", []):
            gist = " ".join(str(entry.get("summary") or "").split()[:12])
            summary = f"{entry.get('title')}, in short: {gist}" if gist else f"{entry.get('title')}."
            items.append({"entry": entry.get("id"), "summary": summary})
    return json.dumps({"summaries": items}, ensure_ascii=False)


class GeminiEmulator:
    def __init__(self, port: int = 0, api_key: str | None = "local-key", token: str | None = "local-token"):
        self.api_key = api_key  # None: any key
        self.token = token  # None: any bearer token
        self.default = Script()
        self.calls: list[Call] = []
        self._scripts: list[Script] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> GeminiEmulator:
        self._thread = threading.Thread(target=self.server.serve_forever, name="gemini-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def script(self, *scripts: Script) -> None:
        """The next requests' behaviour, one script each; after them, `default`."""
        with self._lock:
            self._scripts.extend(scripts)

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
            self.calls.clear()
            self.default = Script()

    def _next_script(self) -> Script:
        with self._lock:
            return self._scripts.pop(0) if self._scripts else self.default

    def wait_for_end(self, call: Call, timeout: float) -> bool:
        """Whether that call's stream ended within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while call.ended is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return call.ended is not None

    def _handler(self):
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                if match := _API_KEY_PATH.match(parts.path):
                    mode, model = "api-key", match.group(1)
                    key = self.headers.get("x-goog-api-key") or parse_qs(parts.query).get("key", [None])[0]
                    refused = None if emulator.api_key in (None, key) else (400, "API key not valid.")
                elif match := _VERTEX_PATH.match(parts.path):
                    mode, model = "vertex", match.group(3)
                    auth = self.headers.get("Authorization", "")
                    good = auth.startswith("Bearer ") and emulator.token in (None, auth[len("Bearer ") :])
                    refused = None if good else (401, "Request had invalid authentication credentials.")
                else:
                    self._json(404, error_body(404, f"No such method: {parts.path}"))
                    return
                call = Call(parts.path, mode, model, dict(self.headers), body, time.monotonic())
                with emulator._lock:
                    emulator.calls.append(call)
                if parse_qs(parts.query).get("alt") != ["sse"]:
                    refused = refused or (400, "This emulator serves streamGenerateContent with alt=sse only.")
                script = emulator._next_script()
                if refused is None and script.status is not None:
                    refused = (script.status, f"Emulated {script.status}.")
                if refused is not None:
                    self._json(refused[0], error_body(*refused))
                    self._end(call, "refused")
                    return
                self._stream(call, script, model)

            def _json(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _end(self, call: Call, how: str) -> None:
                call.ended, call.ended_at = how, time.monotonic()

            def _event(self, call: Call, payload: dict) -> bool:
                try:
                    self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\r\n\r\n")
                    self.wfile.flush()
                    return True
                except OSError:
                    self._end(call, "client closed")
                    return False

            def _client_gone(self, seconds: float) -> bool:
                """Wait up to `seconds`; True as soon as the client hangs up."""
                readable, _, _ = select.select([self.connection], [], [], seconds)
                if not readable:
                    return False
                try:
                    return self.connection.recv(1) == b""
                except OSError:
                    return True

            def _stream(self, call: Call, script: Script, model: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                if script.prompt_blocked:
                    self._event(call, {"promptFeedback": {"blockReason": "SAFETY"}, "modelVersion": model})
                    self._end(call, "blocked")
                    return
                text = script.reply if script.reply is not None else summaries_for(_user_text(call.body))
                pieces = [text[i : i + script.chunk_chars] for i in range(0, len(text), script.chunk_chars)] or [""]
                if script.pieces is not None:
                    text, pieces = "".join(script.pieces), script.pieces
                for number, piece in enumerate(pieces):
                    if script.stall_after is not None and number >= script.stall_after:
                        gone = self._client_gone(STALL_LIMIT_SECONDS)
                        self._end(call, "client closed" if gone else "stalled too long")
                        return
                    if script.error_after is not None and number >= script.error_after:
                        self._event(call, error_body(500, "Emulated error mid-stream."))
                        self._end(call, "error")
                        return
                    pause = script.first_delay if number == 0 else script.delay
                    if pause and self._client_gone(pause):
                        self._end(call, "client closed")
                        return
                    last = number == len(pieces) - 1
                    if not self._event(call, _chunk(piece, model, script.finish_reason if last else None, call, text)):
                        return
                    call.chunks_sent += 1
                    if call.first_chunk_at is None:
                        call.first_chunk_at = time.monotonic()
                self._end(call, "complete")

        return Handler


def _user_text(body: dict) -> str:
    texts = [
        part.get("text", "")
        for content in body.get("contents", [])
        if content.get("role", "user") == "user"
        for part in content.get("parts", [])
    ]
    return "\n".join(texts)


def _chunk(piece: str, model: str, finish_reason: str | None, call: Call, whole: str) -> dict:
    candidate: dict = {"content": {"role": "model", "parts": [{"text": piece}]}, "index": 0}
    chunk: dict = {"candidates": [candidate], "modelVersion": model}
    if finish_reason:
        candidate["finishReason"] = finish_reason
        prompt_tokens = max(len(json.dumps(call.body)) // 4, 1)
        output_tokens = max(len(whole) // 4, 1)
        chunk["usageMetadata"] = {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": output_tokens,
            "totalTokenCount": prompt_tokens + output_tokens,
        }
    return chunk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8124)
    parser.add_argument("--api-key", default="local-key")
    parser.add_argument("--delay", type=float, default=0.05, help="seconds before each chunk")
    args = parser.parse_args()
    emulator = GeminiEmulator(port=args.port, api_key=args.api_key).start()
    emulator.default = Script(delay=args.delay)
    print(f"Gemini emulator on {emulator.url} (API key {args.api_key!r})", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        emulator.stop()


if __name__ == "__main__":
    main()
