"""A member on a llama.cpp server elsewhere (`backend: llama_server`,
engine/backends/remote.py), against the real llama-server that install.sh builds,
started here as a team would start it on its GPU machine (`--api-key-file`,
`--metrics`), on loopback, with the real embedded 0.5B; and tiers that follow that
server's load (engine/load.py), on a real queue."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from cascode.engine import model_server, prompts
from cascode.engine.backends import create_backend
from cascode.engine.cancel import CancelToken
from cascode.engine.errors import BackendError, ModelError
from cascode.engine.host import EngineHost
from cascode.engine.plans import parse_plan
from cascode.engine.types import SampleSpec, Task

from ..conftest import need
from .test_model_server import _long_spec

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

KEY = "team-key-0123456789"
TASK = Task(
    prompt='def add(a: int, b: int) -> int:\n    """Return the sum of a and b."""\n',
    entry_point="add",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _key_file(tmp: Path, key: str = KEY, mode: int = 0o600) -> Path:
    path = tmp / f"key-{abs(hash((key, mode)))}"
    path.write_text(key + "\n")
    path.chmod(mode)
    return path


def _start(model: Path, key_file: Path, slots: int) -> tuple[subprocess.Popen[bytes], str]:
    binary = Path(sys.prefix) / "bin" / model_server.BINARY_NAME
    need(os.access(binary, os.X_OK), f"{binary} is not built (./install.sh builds it)")
    port = _free_port()
    proc = subprocess.Popen(
        [str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
         "--api-key-file", str(key_file), "-c", "4096", "-np", str(slots), "--kv-unified",
         "--metrics", "-t", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            pass
        assert proc.poll() is None, "llama-server exited while starting"
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("llama-server did not start in 180 s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def team(qwen05b_path: Path, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[str, Path]]:
    """The team's server: two slots, an API key; (url, the key's file)."""
    tmp = tmp_path_factory.mktemp("team")
    key_file = _key_file(tmp)
    proc, url = _start(qwen05b_path, key_file, slots=2)
    yield url, key_file
    _stop(proc)


def _plan(url: str, key_file: Path | None, **options: object) -> str:
    extra = "".join(f", {k}: {json.dumps(v)}" for k, v in options.items())
    key = f", api_key_file: {json.dumps(str(key_file))}" if key_file else ""
    member = (f"{{url: {json.dumps(url)}{key}{extra}}}")
    return f"""
family:
- {{name: small, backend: llama_server, model: qwen-0.5b, options: {member}}}
- {{name: big, backend: llama_server, model: qwen-0.5b, options: {member}}}
default_tier: dear
tiers:
  cheap:
    theta: 0.5
    stages: {{small: {{k: 0}}}}
    measured: {{all: {{problems: 10, pass_at_1: 0.5, seconds_per_1k: 2000}}}}
  dear:
    theta: 0.5
    stages: {{small: {{k: 0}}, big: {{k: 0}}}}
    measured: {{all: {{problems: 10, pass_at_1: 0.7, seconds_per_1k: 4000}}}}
"""


def _backend(url: str, key_file: Path | None, **options: object):  # type: ignore[no-untyped-def]
    plan = parse_plan(_plan(url, key_file, **options), "team.yaml")
    return create_backend(plan.member("small"))


def _greedy() -> SampleSpec:
    return prompts.solution_spec(TASK, 1, sampled=False)


def test_a_remote_member_answers_with_its_key(team) -> None:
    url, key_file = team
    backend = _backend(url, key_file)
    [[g]] = backend.sample([_greedy()])
    assert "return a + b" in g.text
    assert g.prompt_tokens_evaluated == g.prompt_tokens > 20
    # The server's prompt cache: asked again, only the last token is evaluated.
    [[again]] = backend.sample([_greedy()])
    assert again.text == g.text and again.prompt_tokens_evaluated <= 2
    # k sequences of one prompt, seeded; the server's own tokenizer.
    [samples] = backend.sample([prompts.solution_spec(TASK, 2, sampled=True, seed=5)])
    assert len(samples) == 2 and all(s.generated_tokens > 0 for s in samples)
    assert len(backend.tokenize("def add(a, b):")) > 3


def _one_line_error(fn, kind=BackendError) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(kind) as e:
        fn()
    message = str(e.value)
    assert "\n" not in message, message
    return message


def test_a_wrong_or_missing_key_is_one_line_naming_the_member_and_its_source(
        team, tmp_path: Path) -> None:
    url, _ = team
    wrong = _key_file(tmp_path, "not-the-key")
    message = _one_line_error(lambda: _backend(url, wrong).sample([_greedy()]))
    assert message.startswith("small: the model server at " + url)
    assert f"refused the key in {wrong} (options.api_key_file): HTTP 401" in message
    message = _one_line_error(lambda: _backend(url, None).sample([_greedy()]))
    assert "refused no key (set options.api_key_file or options.api_key_env)" in message


def test_a_key_from_the_environment(team, monkeypatch) -> None:
    url, _ = team
    monkeypatch.setenv("TEAM_KEY", KEY)
    [[g]] = _backend(url, None, api_key_env="TEAM_KEY").sample([_greedy()])
    assert "return a + b" in g.text
    monkeypatch.delenv("TEAM_KEY")
    message = _one_line_error(lambda: _backend(url, None, api_key_env="TEAM_KEY"), ModelError)
    assert "TEAM_KEY (options.api_key_env) is not set" in message


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    loose = _key_file(tmp_path, mode=0o644)
    message = _one_line_error(lambda: _backend("http://127.0.0.1:1", loose), ModelError)
    assert f"member small: options.api_key_file {loose} can be read by other users" in message
    assert f"chmod 600 {loose}" in message
    missing = tmp_path / "nowhere"
    message = _one_line_error(lambda: _backend("http://127.0.0.1:1", missing), ModelError)
    assert "does not exist" in message


def test_a_url_that_is_not_http_is_named(tmp_path: Path) -> None:
    message = _one_line_error(lambda: _backend("ftp://gpu.example", _key_file(tmp_path)),
                              ModelError)
    assert message == ("member small: options.url: expected an http:// or https:// URL, "
                       "got 'ftp://gpu.example'")


def test_a_path_prefix_and_the_model_name_are_kept(tmp_path: Path) -> None:
    from cascode.engine.backends.remote import RemoteEndpoint

    ep = RemoteEndpoint("https://gpu.example/big/", "qwen-1.5b", "k", 5.0, 60.0)
    assert ep.path("/completion") == "/big/completion"
    assert ep.path("/slots") == "/big/slots?model=qwen-1.5b"
    assert ep.headers()["Authorization"] == "Bearer k"
    assert ep.address == "https://gpu.example/big"
    assert "Authorization" not in RemoteEndpoint("http://h", "m", None, 1, 1).headers()


def test_a_server_that_is_down_is_retried_then_named(tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there
    backend = _backend(f"http://127.0.0.1:{port}", _key_file(tmp_path), max_retries=2,
                       backoff_s=0.05)
    t0 = time.monotonic()
    message = _one_line_error(lambda: backend.sample([_greedy()]))
    assert time.monotonic() - t0 < 5
    assert message == (f"small: cannot reach the model server at http://127.0.0.1:{port}: "
                       "connection refused (is it running?) (tried 3 times)")


class _Garbage(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = b"<html>hello from a proxy</html>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_server_that_answers_garbage_or_nothing(tmp_path: Path) -> None:
    garbage = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    threading.Thread(target=garbage.serve_forever, daemon=True).start()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts connections, never answers
    try:
        url = f"http://127.0.0.1:{garbage.server_address[1]}"
        message = _one_line_error(lambda: _backend(url, _key_file(tmp_path)).sample([_greedy()]))
        assert message.startswith(f"small: the model server at {url} answered /props with "
                                  "something that is not JSON: <html>hello")
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        message = _one_line_error(lambda: _backend(url, _key_file(tmp_path), timeout_s=1,
                                                   max_retries=0).sample([_greedy()]))
        assert message == f"small: the model server at {url} sent nothing for 1 s " \
                          "(options.timeout_s)"
    finally:
        garbage.shutdown()
        silent.close()


def test_a_server_killed_mid_request(qwen05b_path: Path, tmp_path: Path) -> None:
    key_file = _key_file(tmp_path)
    proc, url = _start(qwen05b_path, key_file, slots=1)
    try:
        backend = _backend(url, key_file, max_retries=0)
        box: dict[str, object] = {}
        long = _long_spec()

        def run() -> None:
            try:
                backend.sample([long])
            except BackendError as e:
                box["error"] = e

        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 60
        while backend.server_load() is None or backend.server_load().running == 0:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        thread.join(30)
        message = str(box.get("error"))
        assert message.startswith(f"small: cannot reach the model server at {url}"), message
        assert "\n" not in message
    finally:
        proc.kill()
        proc.wait()


def _long_request(url: str, seed: int) -> threading.Thread:
    body = json.dumps({"prompt": f"Count from {seed} upwards, one number a line:\n",
                       "n_predict": 200, "temperature": 0, "ignore_eos": True,
                       "cache_prompt": False}).encode()

    def run() -> None:
        request = urllib.request.Request(url + "/completion", data=body, headers={
            "Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=600).read()
        except OSError:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_the_load_rule_runs_a_cheaper_tier_on_a_real_queue(team) -> None:
    url, key_file = team
    host = EngineHost()
    host.set_plan(parse_plan(_plan(url, key_file), "team.yaml"))
    try:
        # Idle: the tier asked for runs, and nothing is said.
        idle = host.answer(TASK, "dear", cancel=CancelToken(), max_seconds=10)
        assert idle.result.tier == "dear" and idle.result.load == ""
        loads = host.server_loads()  # both members, though only the last one has run
        assert loads["small"] is not None and loads["small"].slots == 2
        assert loads["big"] == loads["small"]
        # Four long requests from other users on two slots: two run, two wait.
        for i in range(4):
            _long_request(url, i)
        deadline = time.monotonic() + 60
        while True:
            load = host.server_loads()["big"]
            if load is not None and load.running == 2 and load.waiting >= 1:
                break
            assert time.monotonic() < deadline, load
            time.sleep(0.1)
        # With w waiting (the queue moves while the request is read): dear takes
        # 4 s x (2 + w + 1) >= 12 s > 10 s; cheap 2 s x (2 + w + 1) <= 10 s fits.
        busy = host.answer(Task(prompt=TASK.prompt.replace("sum", "total"),
                                entry_point="add"), "dear", cancel=CancelToken(),
                           max_seconds=10)
        assert busy.result.tier == "cheap", busy.result.load
        said = re.fullmatch(
            r"server busy: small 2 running(?:, (\d+) waiting)?; big 2 running(?:, \d+ waiting)?; "
            r"cheap tier \(about (\d+) s\) instead of dear \(about (\d+) s\) for a 10 s budget",
            busy.result.load)
        assert said, busy.result.load
        ahead = 2 + int(said.group(1) or 0) + 1
        assert (int(said.group(2)), int(said.group(3))) == (2 * ahead, 4 * ahead)
        # Load-following off: the tier asked for, whatever the queue.
        off = host.follow_load("dear", 0)
        assert off is None
    finally:
        host.close()


def test_doctor_checks_the_plans_remote_members(team, tmp_path: Path) -> None:
    url, key_file = team
    good = tmp_path / "good.yaml"
    good.write_text(_plan(url, key_file))
    bad = tmp_path / "bad.yaml"
    bad.write_text(_plan(url, _key_file(tmp_path, "not-the-key")))

    def doctor(plan: Path) -> tuple[int, list[dict[str, object]]]:
        proc = subprocess.run([sys.executable, "-m", "cascode", "doctor", "--plan", str(plan),
                               "--json"], capture_output=True, text=True, timeout=300)
        return proc.returncode, json.loads(proc.stdout)["remote_members"]

    code, rows = doctor(good)
    assert [r["member"] for r in rows] == ["small", "big"]
    assert all(r["ok"] for r in rows), rows
    verdict = str(rows[0]["verdict"])
    assert verdict.startswith("ok: key accepted, qwen2.5-coder-0.5b-instruct-q4_k_m.gguf "
                              "loaded, 2 slots, ")
    assert float(rows[0]["decode_tokens_per_s"]) > 1  # type: ignore[arg-type]
    code, rows = doctor(bad)
    assert code == 1 and not rows[0]["ok"]
    assert "refused the key in" in str(rows[0]["verdict"])


STUB = '''def add(a, b):
    """Return the sum of a and b.

    >>> add(2, 3)
    5
    """
'''


async def test_the_language_server_names_a_dead_server_and_answers_once_it_is_back(
        team, tmp_path: Path) -> None:
    """`cascode serve` over stdio (a real LSP client), its plan's members on a server
    that is down, then on the team's server: one line naming the member and the cause,
    and the language server stays up and answers."""
    from lsprotocol import types
    from pytest_lsp import ClientServerConfig, client_capabilities

    from ..server.lsp_session import Session

    url, key_file = team
    down = tmp_path / "down.yaml"
    down_url = f"http://127.0.0.1:{_free_port()}"
    down.write_text(_plan(down_url, key_file, max_retries=0))
    up = tmp_path / "up.yaml"
    up.write_text(_plan(url, key_file))
    client = await ClientServerConfig(
        server_command=[sys.executable, "-m", "cascode", "serve"]).start()
    client.set_configuration({"planFile": str(down), "tier": "cheap", "preload": False},
                             section="cascode")
    await client.initialize_session(types.InitializeParams(
        capabilities=client_capabilities("neovim@v0.11.0"), root_uri=tmp_path.as_uri()))
    s = Session(client)
    try:
        await s.wait_for_status("ready", timeout=60)
        uri = s.open(STUB)
        result = await s.inline(uri, 5, 0)
        assert result is None or not result.items
        shown = await s.wait_for_message("cannot reach the model server", timeout=30)
        assert shown == (f"cascode: small: cannot reach the model server at {down_url}: "
                         "connection refused (is it running?)")
        await s.change_settings(planFile=str(up))
        deadline = time.monotonic() + 120
        while True:  # the new plan loads in the background; then the request is answered
            answered = await s.inline(uri, 5, 0)
            if answered is not None and answered.items:
                break
            assert time.monotonic() < deadline, s.messages
            await asyncio.sleep(0.5)
        assert "return" in answered.items[0].insert_text
        last = await s.command("cascode.lastAnswer")
        assert last["tier"] == "cheap" and last["member"] == "small"
    finally:
        await client.shutdown_session()
        await client.stop()


def _tls_proxy(upstream: str, cert: Path, key: Path) -> tuple[str, threading.Event]:
    """An https front for `upstream` on loopback, as a team's reverse proxy is: TLS
    ends here and the bytes go on to the server, streamed."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    host, port = upstream.removeprefix("http://").split(":")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                tls = context.wrap_socket(raw, server_side=True)
            except (OSError, ssl.SSLError):
                raw.close()
                continue
            back = socket.create_connection((host, int(port)))
            threading.Thread(target=pipe, args=(tls, back), daemon=True).start()
            threading.Thread(target=pipe, args=(back, tls), daemon=True).start()
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return f"https://127.0.0.1:{listener.getsockname()[1]}", stop


def test_a_member_over_https_with_the_teams_ca(team, tmp_path: Path) -> None:
    url, key_file = team
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)], capture_output=True, check=False)
    need(made.returncode == 0, f"openssl could not make a certificate: {made.stderr!r}")
    https, stop = _tls_proxy(url, cert, key)
    try:
        backend = _backend(https, key_file, ca_file=str(cert))
        [[g]] = backend.sample([_greedy()])
        assert "return a + b" in g.text
        # Cancelling a streamed request over TLS closes it (the reader wakes up).
        token = CancelToken()
        threading.Timer(1.0, token.cancel, args=("a newer request",)).start()
        with pytest.raises(Exception) as cancelled:
            backend.sample([_long_spec()], cancel=token)
        assert "cancel" in type(cancelled.value).__name__.lower() or \
            "newer request" in str(cancelled.value)
        # Without the team's CA the certificate is not trusted: one line says so.
        message = _one_line_error(lambda: _backend(https, key_file, max_retries=0)
                                  .sample([_greedy()]))
        assert message.startswith(f"small: cannot reach the model server at {https}: TLS")
        assert "options.ca_file" in message
    finally:
        stop.set()
