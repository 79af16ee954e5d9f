"""`cascode serve`: TCP transport, log file, bad arguments."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _send(sock: socket.socket, message: dict) -> None:
    body = json.dumps(message).encode()
    sock.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)


def _receive(sock: socket.socket) -> dict:
    header = b""
    while not header.endswith(b"\r\n\r\n"):
        header += sock.recv(1)
    length = int(header.split(b"Content-Length:")[1].split(b"\r\n")[0])
    body = b""
    while len(body) < length:
        body += sock.recv(length - len(body))
    return json.loads(body)


def test_serve_over_tcp_with_a_log_file(tmp_path):
    port = _free_port()
    log = tmp_path / "server.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cascode", "serve", "--tcp", f"127.0.0.1:{port}",
         "--log-file", str(log), "-v"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "the server did not listen"
                time.sleep(0.2)
        with sock:
            _send(sock, {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                         "params": {"processId": None, "rootUri": None, "capabilities": {}}})
            reply = _receive(sock)
            caps = reply["result"]["capabilities"]
            assert "inlineCompletionProvider" in caps
            assert reply["result"]["serverInfo"]["name"] == "cascode"
            _send(sock, {"jsonrpc": "2.0", "id": 2, "method": "shutdown"})
            while _receive(sock).get("id") != 2:
                pass
            _send(sock, {"jsonrpc": "2.0", "method": "exit"})
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "INFO" in log.read_text()
    assert proc.stdout.read() == b""  # type: ignore[union-attr]


def test_a_bad_tcp_address_is_a_one_line_error():
    proc = subprocess.run([sys.executable, "-m", "cascode", "serve", "--tcp", "nowhere"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "cascode: error: --tcp 'nowhere': expected HOST:PORT, e.g. 127.0.0.1:2087")
