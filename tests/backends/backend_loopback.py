"""A scripted HTTP server on a free loopback port, for the OpenAI backend's failure tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# A handler gets (request number from 0, path, parsed body) and returns
# (status, body bytes, headers), or None to never answer.
Script = Callable[[int, str, dict[str, Any]], tuple[int, bytes, dict[str, str]] | None]


class Loopback:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with outer._lock:
                    number = len(outer.requests)
                    outer.requests.append((self.path, body, dict(self.headers)))
                answer = outer.script(number, self.path, body)
                if answer is None:
                    outer.release.wait(10)  # never answers (until the test ends)
                    return
                status, payload, headers = answer
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> Loopback:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def completion(texts: list[str], *, usage: dict[str, int] | None = None,
               chat: bool = False, finish: str = "stop") -> bytes:
    choices = [
        {"index": i, "finish_reason": finish,
         **({"message": {"role": "assistant", "content": t}} if chat else {"text": t})}
        for i, t in enumerate(texts)
    ]
    data: dict[str, Any] = {"object": "text_completion", "choices": choices}
    if usage is not None:
        data["usage"] = usage
    return json.dumps(data).encode()
