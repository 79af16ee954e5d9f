"""`cascode serve`: TCP transport (loopback by default, a token elsewhere, remote settings
refused), log file, bad arguments."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cascode.cli import main
from cascode.server.cli import is_loopback, parse_address, refusal

HERE = Path(__file__).parent
TOKEN = "s3cret-token-for-the-tests-0123456789"

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
        "cascode: error: --tcp 'nowhere': expected [HOST:]PORT, e.g. 2087 or 127.0.0.1:2087")


def test_a_port_alone_is_on_loopback():
    assert parse_address("2087") == ("127.0.0.1", 2087)
    assert parse_address("[::1]:2087") == ("::1", 2087)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")
    assert not is_loopback("::")


def test_a_non_loopback_bind_without_a_token_is_refused_before_listening():
    port = _free_port()
    proc = subprocess.run(
        [sys.executable, "-m", "cascode", "serve", "--tcp", f"0.0.0.0:{port}"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"cascode: error: --tcp 0.0.0.0:{port}: 0.0.0.0 is not a loopback address, and a "
        "client of the server can make it load files and run code: give --token-file PATH "
        "(clients send the token as initializationOptions.token), or listen on 127.0.0.1")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_a_token_file_others_can_read_or_a_short_token_is_refused(tmp_path, capsys):
    token = tmp_path / "token"
    token.write_text(TOKEN)
    token.chmod(0o640)
    assert main(["serve", "--tcp", "0.0.0.0:2087", "--token-file", str(token)]) == 1
    assert capsys.readouterr().err.strip() == (
        f"cascode: error: --token-file {token}: others may read it (-rw-r-----); make it "
        f"yours alone: chmod 600 {token}")
    token.chmod(0o600)
    token.write_text("short\n")
    assert main(["serve", "--tcp", "0.0.0.0:2087", "--token-file", str(token)]) == 1
    assert "the token has 5 characters, it needs at least 16" in capsys.readouterr().err
    assert main(["serve", "--token-file", str(token)]) == 1
    assert capsys.readouterr().err.strip() == (
        "cascode: error: --token-file goes with --tcp (over stdio the editor owns the server)")
    assert main(["serve", "--tcp", "2087", "--token-file", str(tmp_path / "none")]) == 1
    assert "No such file or directory" in capsys.readouterr().err


def test_without_the_right_token_in_initialize_a_client_is_refused():
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                  "params": {"capabilities": {}, "initializationOptions": {"token": TOKEN}}}
    assert refusal(initialize, TOKEN) is None
    assert refusal(initialize, None) is None
    assert "wrong token" in refusal(_with_token(initialize, TOKEN + "x"), TOKEN)
    assert "requires a token" in refusal(_with_token(initialize, None), TOKEN)
    shutdown = {"jsonrpc": "2.0", "id": 1, "method": "shutdown"}
    assert "send initialize first" in refusal(shutdown, TOKEN)
    assert "send initialize first" in refusal([initialize], TOKEN)


def _with_token(message: dict, token: str | None) -> dict:
    params = dict(message["params"], initializationOptions={} if token is None else {
        "token": token})
    return dict(message, params=params)


# -- Over a real connection, with the scripted backend (launch_server.py) ---------------


def _start(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"members": {}}))
    env = {**os.environ, "CASCODE_TEST_SCRIPT": str(script), "CASCODE_TEST_SANDBOX": "fake"}
    stderr = (tmp_path / "server.err").open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "launch_server.py"), "--tcp", f"{args[0]}:{port}",
         *args[1:]], stdout=subprocess.PIPE, stderr=stderr, env=env)
    return proc, port


def _connect(proc: subprocess.Popen, port: int) -> socket.socket:
    deadline = time.monotonic() + 60
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=30)
        except OSError:
            assert proc.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "the server did not listen"
            time.sleep(0.2)


def _initialize(token: str | None = None, settings: dict | None = None) -> dict:
    options: dict = {"cascode": settings or {"preload": False}}
    if token is not None:
        options["token"] = token
    return {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"processId": None, "rootUri": None, "capabilities": {},
                       "initializationOptions": options}}


def _refused_with(sock: socket.socket, message: dict) -> str:
    """Send `message` first; the server answers it with an error and hangs up."""
    with sock:
        _send(sock, message)
        reply = _receive(sock)
        assert reply["id"] == message["id"] and "result" not in reply
        assert sock.recv(1) == b""  # closed
        return str(reply["error"]["message"])


def _stop(proc: subprocess.Popen, sock: socket.socket) -> None:
    with sock:
        _send(sock, {"jsonrpc": "2.0", "id": 99, "method": "shutdown"})
        while _receive(sock).get("id") != 99:
            pass
        _send(sock, {"jsonrpc": "2.0", "method": "exit"})
    assert proc.wait(timeout=30) == 0


def test_with_a_token_only_a_client_that_sends_it_is_served(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    proc, port = _start(tmp_path, "0.0.0.0", "--token-file", str(token_file))
    try:
        assert "requires a token" in _refused_with(_connect(proc, port), _initialize())
        assert _refused_with(_connect(proc, port), _initialize(TOKEN[:-1] + "x")) == (
            "cascode: wrong token (initializationOptions.token)")
        assert "send initialize first" in _refused_with(
            _connect(proc, port), {"jsonrpc": "2.0", "id": 7, "method": "shutdown"})
        served = _connect(proc, port)
        _send(served, _initialize(TOKEN))
        reply = _receive(served)
        assert reply["result"]["serverInfo"]["name"] == "cascode"
        # One client at a time: pygls holds one session.
        assert _refused_with(_connect(proc, port), _initialize(TOKEN)) == (
            "cascode: this server already serves a client")
        _stop(proc, served)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert TOKEN not in (tmp_path / "server.err").read_text()


def _tiers_and_messages(sock: socket.socket, settings: dict) -> tuple[list[str], list[str]]:
    """Start a session with `settings` (initializationOptions: the client answers no
    workspace/configuration); the plan's tiers and the messages shown."""
    _send(sock, _initialize(settings=settings))
    assert "result" in _receive(sock)
    _send(sock, {"jsonrpc": "2.0", "method": "initialized", "params": {}})
    messages = []
    while True:
        message = _receive(sock)
        if message.get("method") == "window/showMessage":
            messages.append(message["params"]["message"])
        if message.get("method") == "cascode/status" and message["params"]["state"] != (
                "loading"):
            break
    _send(sock, {"jsonrpc": "2.0", "id": 2, "method": "workspace/executeCommand",
                 "params": {"command": "cascode.listTiers", "arguments": []}})
    while (reply := _receive(sock)).get("id") != 2:
        pass
    return [t["name"] for t in reply["result"]], messages


@pytest.mark.parametrize("allowed", [False, True])
def test_a_remote_clients_plan_file_is_refused_unless_allowed(tmp_path, allowed):
    scripted = str(HERE / "plans" / "scripted.yaml")
    flags = ["--allow-remote-settings"] if allowed else []
    proc, port = _start(tmp_path, "127.0.0.1", *flags)
    try:
        sock = _connect(proc, port)
        tiers, messages = _tiers_and_messages(sock, {
            "planFile": scripted, "sandbox": {"allowUnsafe": True, "layers": "auto"},
            "preload": False})
        refused = [m for m in messages if "allow-remote-settings" in m]
        if allowed:
            assert "large-only" in tiers and refused == []
        else:
            assert "large-only" not in tiers  # the packaged plan stayed
            assert refused == [
                "cascode: cascode.planFile, cascode.sandbox.allowUnsafe from this client "
                "ignored: over TCP these settings keep their local values unless the server "
                "runs with `cascode serve --allow-remote-settings`"]
        _stop(proc, sock)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
