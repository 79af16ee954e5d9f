"""Loopback servers for the OpenAI backend's tests: a scripted HTTP server (failures),
and llama-cpp-python's own server on a real model."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.conftest import need_module

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


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_llama_server(model: Path, *, n_ctx: int = 4096, timeout_s: float = 240) -> tuple:
    """Start `python -m llama_cpp.server` on `model`; returns (process, base_url)."""
    import subprocess
    import time
    import urllib.request

    need_module("llama_cpp.server.app", "llama-cpp-python's server dependencies "
                "(.ci/steps/backends.sh)")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", "2", "--verbose", "false"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
            raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}: {err}")
        try:
            with urllib.request.urlopen(url + "/models", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    stop_llama_server(proc)
    raise RuntimeError(f"llama_cpp.server did not start within {timeout_s} s")


def stop_llama_server(proc) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
