"""Language server overhead: the same request through `cascode serve` and as a direct call.

    python -m cascode.benchmarks.server_bench [--requests 20] [--real] [--json OUT]

The server runs as a subprocess over stdio, driven by a pygls client that
advertises work-done progress and answers `workspace/configuration` (cache
off, so every request runs the cascade). The direct call is
`Cascade(plan, family, sandbox).run(task, tier)` in this process for the same
function. Both use the same backend and a real sandbox; the difference of the
medians is what the server adds (LSP transport, context extraction, edits,
progress and status notifications, thread hand-off). Time to first progress
is from sending the request to the first `$/progress` report (the first
stage's message), and to the `begin`.

By default the backend is a constant one (the same answer at once), so that
the overhead is not lost in generation noise. `--real` uses the embedded
0.5B model (one greedy solution and one greedy test per request).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from cascode.engine.backends.scripted import ScriptedBackend
from cascode.engine.types import SampleSpec

DEFAULT_OUT = Path(__file__).parent / "results" / "server_bench.json"

SOURCE = '''import math


def hypotenuse(a, b):
    """Return the length of the hypotenuse of a right triangle with legs a and b."""
    ...
'''
LINE, CHARACTER = 5, 4

_PLAN = """
family:
  - {name: qwen-0.5b, backend: llama_cpp, model: "embedded:qwen2.5-coder-0.5b-instruct-q4_k_m",
     options: {n_ctx: 2048, n_seq_max: 4}}
default_tier: bench
tiers:
  bench:
    description: one greedy solution and one greedy test of 2 asserts
    theta: 1.0
    stages: {qwen-0.5b: {k: 1, l: 2}}
"""

# The constant backend's answer: the body after the prompt, and a test after `assert NAME(`.
_BODY = "    return math.sqrt(a * a + b * b)\n```"
_TEST = "3, 4) == 5.0\nassert hypotenuse(5, 12) == 13.0\n```"


class ConstantBackend(ScriptedBackend):
    """Answers every spec with the same text at once (no model)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def pick(self, spec: SampleSpec, i: int) -> str:
        return _TEST if spec.prefix.endswith("(") else _BODY


def constant_factory(member: Any) -> ConstantBackend:
    return ConstantBackend(member.name)


def serve_constant() -> None:
    """The server subprocess of the default mode."""
    from cascode.server.server import create_language_server

    create_language_server(backend_factory=constant_factory).start_io()


# ---------------------------------------------------------------------------


def direct(plan_path: str, real: bool, n: int, warmup: int) -> list[float]:
    from cascode.engine.cascade import Cascade
    from cascode.engine.context import function_at
    from cascode.engine.family import Family
    from cascode.engine.plans import load_plan
    from cascode.engine.sandbox import create_sandbox

    plan = load_plan(plan_path)
    family = Family(plan.family, None if real else constant_factory)
    sandbox = create_sandbox()
    try:
        fc = function_at(SOURCE, LINE, CHARACTER)
        assert fc is not None
        task = fc.task()
        family.load_all()
        times = []
        for i in range(warmup + n):
            start = time.perf_counter()
            Cascade(plan, family.get, sandbox if sandbox.available else None).run(task, "bench")
            if i >= warmup:
                times.append(time.perf_counter() - start)
        return times
    finally:
        family.close()
        sandbox.close()


def served_plan(folder: Path, model_server: bool = True, plan: Path | None = None) -> Path:
    """`plan` (default: the shipped one) with every llama_cpp member in the machine's model
    servers (`model_server: true`), or with `model_server=False` in the client's process,
    written to `folder`."""
    import yaml

    from cascode.engine.plans import load_plan, plan_to_dict

    data = plan_to_dict(load_plan(plan))
    for m in data["family"]:
        if m["backend"] == "llama_cpp":
            m["options"] = {**(m.get("options") or {}), "model_server": model_server}
    path = folder / ("served.yaml" if model_server else "in-process.yaml")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


Handler = Callable[[Callable[..., Any]], Callable[..., Any]]


def feature(client: Any, name: str) -> Handler:
    """pygls' `client.feature(name)` decorator, typed: the handlers keep their own
    signatures (pygls' decorator is untyped)."""
    return cast(Handler, client.feature(name))


async def start_client(client: Any, command: list[str]) -> None:
    """Start `command` as the server of a pygls `client` over stdio and initialize it as an
    editor would: it answers `workspace/configuration` (the caller's handler) and
    accepts work-done progress tokens."""
    from lsprotocol import types

    @client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)  # type: ignore[untyped-decorator]
    def create(params: Any) -> None:
        return None

    await client.start_io(*command)
    await client.initialize_async(types.InitializeParams(
        process_id=os.getpid(),
        capabilities=types.ClientCapabilities(
            workspace=types.WorkspaceClientCapabilities(configuration=True),
            window=types.WindowClientCapabilities(work_done_progress=True),
        ),
    ))
    client.initialized(types.InitializedParams())


async def through_server(
    command: list[str], plan_path: str, n: int, warmup: int
) -> dict[str, list[float]]:
    from lsprotocol import types
    from pygls.lsp.client import LanguageClient

    client = LanguageClient("cascode-bench", "0")

    def on(name: str) -> Handler:
        return feature(client, name)
    events: dict[str, list[tuple[float, str]]] = {}
    ready = asyncio.Event()

    @on(types.WORKSPACE_CONFIGURATION)
    def configuration(params: Any) -> list[dict[str, Any]]:
        return [{"planFile": plan_path, "tier": "bench", "cacheSize": 0}]

    @on(types.PROGRESS)
    def progress(params: Any) -> None:
        value = params.value
        kind = str(value.get("kind") if isinstance(value, dict) else getattr(value, "kind", ""))
        events.setdefault(str(params.token), []).append((time.perf_counter(), kind))

    @on("cascode/status")
    def status(params: Any) -> None:
        if getattr(params, "state", None) == "ready":
            ready.set()

    @on(types.WINDOW_SHOW_MESSAGE)
    def show(params: Any) -> None:
        print(f"server says: {params.message}", file=sys.stderr)

    await start_client(client, command)
    await asyncio.wait_for(ready.wait(), 600)
    uri = "file:///bench/example.py"
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1,
                                             text=SOURCE)))
    out: dict[str, list[float]] = {"request_s": [], "first_report_s": [], "begin_s": []}
    try:
        for i in range(warmup + n):
            token = f"bench-{i}"
            start = time.perf_counter()
            result = await client.text_document_inline_completion_async(
                types.InlineCompletionParams(
                    text_document=types.TextDocumentIdentifier(uri=uri),
                    position=types.Position(line=LINE, character=CHARACTER),
                    context=types.InlineCompletionContext(
                        trigger_kind=types.InlineCompletionTriggerKind.Invoked),
                    work_done_token=token,
                ))
            elapsed = time.perf_counter() - start
            if not isinstance(result, types.InlineCompletionList) or not result.items:
                raise RuntimeError("the server answered no items")
            if i < warmup:
                continue
            out["request_s"].append(elapsed)
            marks = events.get(token, [])
            begins = [t for t, kind in marks if kind == "begin"]
            reports = [t for t, kind in marks if kind == "report"]
            if begins:
                out["begin_s"].append(begins[0] - start)
            if reports:
                out["first_report_s"].append(reports[0] - start)
    finally:
        await stop_client(client)
    return out


async def stop_client(client: Any, timeout: float = 10.0) -> None:
    """Shut the server of `client` down as an editor does (`shutdown`, `exit`), and stop
    the client, whatever the server answered: a server that did not start is left
    alone, one that does not answer `shutdown` within `timeout` seconds or is still
    running `timeout` seconds after `exit` is killed (pygls's `stop` only waits)."""
    server = getattr(client, "_server", None)
    if server is None:
        return
    try:
        if server.returncode is None and not getattr(client, "stopped", False):
            await asyncio.wait_for(client.shutdown_async(None), timeout)
    except Exception:  # noqa: BLE001 - a server that fails shutdown is stopped all the same
        pass
    finally:
        if server.returncode is None:
            try:
                client.exit(None)
                await asyncio.wait_for(server.wait(), timeout)
            except Exception:  # noqa: BLE001 - a server that ignores exit is killed
                server.kill()
        await client.stop()


class Window:
    """An editor window: `cascode serve` over stdio, driven by a pygls client that
    answers `workspace/configuration` with `settings` (changed by `apply`) and records
    what the server says: its log and shown messages (`messages`, each after its kind;
    `logs`, the log messages alone) and its `cascode/status` notifications."""

    def __init__(self, name: str, settings: dict[str, Any]) -> None:
        from pygls.lsp.client import LanguageClient

        self.name = name
        self.client = LanguageClient(f"cascode-{name}", "0")
        self.settings = dict(settings)
        self.pulled = asyncio.Event()
        self.messages: list[str] = []
        self.logs: list[str] = []
        self.statuses: list[dict[str, Any]] = []
        self.pid = 0

    async def start(self, env: dict[str, str]) -> None:
        """Start the language server in this process's environment updated with `env`
        (its runtime directory: which model servers it shares)."""
        from lsprotocol import types

        client = self.client

        def on(name: str) -> Handler:
            return feature(client, name)

        @on(types.WORKSPACE_CONFIGURATION)
        def configuration(params: Any) -> list[dict[str, Any]]:
            self.pulled.set()
            return [dict(self.settings)]

        @on(types.WINDOW_LOG_MESSAGE)
        def log(params: Any) -> None:
            self.logs.append(params.message)
            self.messages.append(f"logMessage: {params.message}")

        @on(types.WINDOW_SHOW_MESSAGE)
        def show(params: Any) -> None:
            self.messages.append(f"showMessage: {params.message}")
            print(f"{self.name}: the server says: {params.message}", file=sys.stderr)

        @on("cascode/status")
        def status(params: Any) -> None:
            self.statuses.append({"state": getattr(params, "state", None),
                                  "message": getattr(params, "message", None)})

        @on(types.PROGRESS)
        def progress(params: Any) -> None:
            return None  # a request's stages: not measured here

        os.environ.update(env)
        await start_client(client, [sys.executable, "-m", "cascode", "serve"])
        self.pid = int(getattr(getattr(client, "_server", None), "pid", 0) or 0)

    async def ready(self, timeout: float = 900) -> None:
        """Wait until the server has reported `ready` (its models loaded)."""
        deadline = time.monotonic() + timeout
        while not any(s["state"] == "ready" for s in self.statuses):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: the server did not get ready in "
                                   f"{timeout:g} s: {self.statuses}")
            await asyncio.sleep(0.1)

    async def apply(self, **changes: Any) -> None:
        """Change settings as an editor does: notify, and wait for the server to pull
        them."""
        from lsprotocol import types

        self.settings.update(changes)
        self.pulled.clear()
        self.client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings=None))
        await asyncio.wait_for(self.pulled.wait(), 30)
        await asyncio.sleep(0.3)

    def open(self, uri: str, text: str) -> None:
        from lsprotocol import types

        self.client.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1,
                                                 text=text)))

    async def complete(self, uri: str, line: int, character: int) -> Any:
        """The server's answer to an invoked inline completion at (line, character)."""
        from lsprotocol import types

        return await self.client.text_document_inline_completion_async(
            types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(line=line, character=character),
                context=types.InlineCompletionContext(
                    trigger_kind=types.InlineCompletionTriggerKind.Invoked)))

    async def stop(self) -> None:
        await stop_client(self.client)


def _ms(values: list[float], q: float = 0.5) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cascode.benchmarks.server_bench",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=None,
                    help="measured requests per side (default 20, or 3 with --real)")
    ap.add_argument("--warmup", type=int, default=2, help="unmeasured requests first")
    ap.add_argument("--real", action="store_true", help="use the embedded 0.5B model")
    ap.add_argument("--json", type=Path, default=DEFAULT_OUT, help="where to write the JSON")
    ap.add_argument("--serve-constant", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve_constant:
        serve_constant()
        return 0
    n = args.requests or (3 if args.real else 20)
    warmup = min(args.warmup, 1) if args.real else args.warmup
    with tempfile.TemporaryDirectory() as tmp:
        plan_path = str(Path(tmp) / "bench.yaml")
        Path(plan_path).write_text(_PLAN)
        command = ([sys.executable, "-m", "cascode", "serve"] if args.real else
                   [sys.executable, "-m", "cascode.benchmarks.server_bench", "--serve-constant"])
        load_before = os.getloadavg()
        direct_s = direct(plan_path, args.real, n, warmup)
        served = asyncio.run(through_server(command, plan_path, n, warmup))
        load_after = os.getloadavg()
    overhead_p50 = _ms(served["request_s"]) - _ms(direct_s)
    rows = [
        ("direct engine call", _ms(direct_s), _ms(direct_s, 0.95)),
        ("through the server", _ms(served["request_s"]), _ms(served["request_s"], 0.95)),
        ("first progress report", _ms(served["first_report_s"]),
         _ms(served["first_report_s"], 0.95)),
        ("progress begin", _ms(served["begin_s"]), _ms(served["begin_s"], 0.95)),
    ]
    backend = "embedded 0.5B (k=1, l=2)" if args.real else "constant backend"
    print(f"server overhead: {backend}, real sandbox, {n} requests after {warmup} warm-up, "
          f"{os.cpu_count()} cores, load {load_before[0]:.1f} -> {load_after[0]:.1f}")
    print(f"{'':<24} {'p50':>9} {'p95':>9}")
    for name, p50, p95 in rows:
        print(f"{name:<24} {p50:>7.1f}ms {p95:>7.1f}ms")
    verdict = ("generation time varies far more than this: indicative only" if args.real
               else ("meets" if overhead_p50 < 50 else "misses") + " the 50 ms target")
    print(f"{'overhead (p50 - p50)':<24} {overhead_p50:>7.1f}ms  ({verdict})")
    out = {
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                    "python": platform.python_version(),
                    "loadavg_before": load_before, "loadavg_after": load_after},
        "backend": backend, "requests": n, "warmup": warmup,
        "direct_s": direct_s, **served,
        "summary_ms": {name: {"p50": p50, "p95": p95} for name, p50, p95 in rows},
        "overhead_p50_ms": round(overhead_p50, 1),
        "target_ms": 50,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
