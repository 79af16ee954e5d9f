"""The real thing: `cascode serve` with the embedded 0.5B model, the real sandbox, over stdio."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from lsp_session import Session
from lsprotocol import types
from pytest_lsp import ClientServerConfig, client_capabilities

from cascode.server import edits

from ..conftest import need_model, need_module, need_sandbox

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(600)]

PLAN = Path(__file__).parent / "plans" / "real-small.yaml"
SOURCE = '''import math


def is_even(n):
    """Return True if the integer n is even, False otherwise."""
'''


@pytest.fixture(scope="module")
def model_installed() -> None:
    need_model("embedded:qwen2.5-coder-0.5b-instruct-q4_k_m")
    need_module("llama_cpp", "llama-cpp-python (install.sh)")
    # The answer must be tested: the server needs a sandbox (see tests/host_facts.py).
    from cascode.engine.sandbox import create_sandbox

    with create_sandbox() as sandbox:
        need_sandbox(sandbox)


@contextlib.asynccontextmanager
async def _real_server(tmp_path: Path) -> AsyncIterator[tuple[Session, Any]]:
    """`cascode serve` itself, over stdio, with the real-small plan."""
    config = ClientServerConfig(server_command=[sys.executable, "-m", "cascode", "serve"])
    client = await config.start()
    client.set_configuration({"planFile": str(PLAN)}, section="cascode")
    await client.initialize_session(types.InitializeParams(
        capabilities=client_capabilities("neovim@v0.11.0"), root_uri=tmp_path.as_uri()))
    try:
        yield Session(client), client
    finally:
        await client.shutdown_session()
        await client.stop()


async def test_cascode_serve_completes_a_stub_with_the_real_model(tmp_path, model_installed):
    async with _real_server(tmp_path) as (s, client):
        uri = s.open(SOURCE)
        client.progress_reports["real"] = []
        result = await s.inline(uri, 5, 4, token="real")
        (item,) = result.items
        r = item.range
        completed = edits.apply(SOURCE, edits.Edit(
            (r.start.line, r.start.character), (r.end.line, r.end.character), item.insert_text))
        assert completed.startswith(SOURCE.rstrip("\n"))
        namespace: dict[str, object] = {}
        exec(compile(completed, "completed.py", "exec"), namespace)
        is_even = namespace["is_even"]
        assert [is_even(n) for n in (0, 3, 10, -7)] == [True, False, True, False]  # type: ignore[operator]

        messages = [getattr(r, "message", None) for r in client.progress_reports["real"]]
        assert "qwen-0.5b: 1 solution, 1 test" in messages
        last = await s.command("cascode.lastAnswer")
        assert last["member"] == "qwen-0.5b" and last["tier"] == "one"
        assert last["tokens"] > 0 and last["seconds"] > 0
        # The sandbox ran the model's one test (up to 2 asserts) on its one solution,
        # and theta = 1 accepts only a solution that passes every line of it.
        (stage,) = last["stages"]
        assert (stage["k"], stage["l"]) == (1, 2) and 1 <= stage["tests"] <= 2, last
        assert last["note"] != "execution unavailable: the answer was not tested", last
        assert last["verified"] == (len(last["asserts"]) == stage["tests"]), last
        # The asserts it reports as passed do pass on the inserted code, run here.
        for line in last["asserts"]:
            exec(compile(line, "<assert>", "exec"), dict(namespace))
        # The greedy 0.5B writes a correct test for is_even: the answer is verified.
        assert last["verified"] and last["asserts"], last


PARTIAL = '''def clamp(x, lo, hi):
    """Return x limited to the range [lo, hi].

    >>> clamp(5, 0, 3)
    3
    >>> clamp(-1, 0, 3)
    0
    """
    if x < lo:
        return lo
'''
# Written lines that do not fit the docstring: whatever the model adds, clamp(-1, 0, 3)
# returns -2, against the docstring's second example.
MISFIT = PARTIAL.replace("        return lo\n", "        return x - 1\n")


async def test_the_rest_of_a_function_with_the_real_model(tmp_path, model_installed):
    async with _real_server(tmp_path) as (s, client):
        last_line = len(PARTIAL.splitlines()) - 1
        end = len(PARTIAL.splitlines()[-1])
        uri = s.open(PARTIAL)
        (item,) = (await s.inline(uri, last_line, end)).items
        assert item.range.start == item.range.end  # inserted at the cursor
        assert (item.range.start.line, item.range.start.character) == (last_line, end)
        completed = edits.apply(PARTIAL, edits.Edit((last_line, end), (last_line, end),
                                                    item.insert_text))
        assert completed.startswith(PARTIAL.rstrip("\n"))  # every written line kept
        namespace: dict[str, object] = {}
        exec(compile(completed, "completed.py", "exec"), namespace)
        clamp = namespace["clamp"]
        assert [clamp(5, 0, 3), clamp(-1, 0, 3), clamp(2, 0, 3)] == [3, 0, 2]  # type: ignore[operator]
        last = await s.command("cascode.lastAnswer")
        assert [e["passed"] for e in last["examples"]] == [True, True], last
        assert "2 example" in last["proof"], last

        # Written lines that contradict the docstring's examples: the answer keeps them
        # and says so (failed examples are never hidden).
        uri2 = s.open(MISFIT, uri="file:///work/misfit.py")
        (item,) = (await s.inline(uri2, last_line, len(MISFIT.splitlines()[-1]))).items
        assert item.range.start == item.range.end
        completed = edits.apply(MISFIT, edits.Edit(
            (last_line, len(MISFIT.splitlines()[-1])), (last_line, len(MISFIT.splitlines()[-1])),
            item.insert_text))
        assert completed.startswith(MISFIT.rstrip("\n"))
        last = await s.command("cascode.lastAnswer", {"uri": uri2})
        assert not last["verified"], last
        assert "failed" in last["proof"] and "example" in last["proof"], last


WARM_SOURCE = '''import math

UNITS = {"m": 1.0, "km": 1000.0, "mi": 1609.344}


def to_metres(value, unit):
    """Return value, given in unit (a key of UNITS), in metres."""
    return value * UNITS[unit]


def distance(p, q):
'''


async def test_the_function_being_written_is_warmed_and_its_request_evaluates_little(
        tmp_path, model_installed):
    """`cascode.prefill`: typing the docstring (automatic requests are declined while it
    is open) warms the prompt; the request then evaluates only a few of its tokens."""
    async with _real_server(tmp_path) as (s, client):
        uri = s.open(WARM_SOURCE)
        await s.wait_for_status("ready", timeout=120)
        line = WARM_SOURCE.count("\n")
        typed = '    """Return the Euclidean distance between points'
        s.insert(uri, 2, (line, 0), typed)
        s.insert(uri, 3, (line, len(typed)), ' p and q, two (x, y) pairs."""\n    ')
        warmed = await s.wait_for_log("cascode: warmed tier one for distance", timeout=120)
        assert "qwen-0.5b evaluated" in warmed
        result = await s.inline(uri, line + 1, 4)
        assert result.items and "math" in result.items[0].insert_text
        (stage,) = (await s.command("cascode.lastAnswer"))["stages"]
        # Its solution prompt evaluates one token, its test prompt only what follows the
        # shared opening: a small part of the prompts.
        assert stage["promptTokens"] > 300, stage
        assert stage["promptTokensEvaluated"] < stage["promptTokens"] // 4, stage
        # Off: the next function's request evaluates what differs from the cache.
        await s.change_settings(prefill=False)
        await asyncio.sleep(1)  # the server pulls the new settings before the next edit
        end = line + 3
        s.insert(uri, 4, (end, 0), '\n\ndef half(x):\n    """Return x divided by two."""\n    ')
        await asyncio.sleep(1)
        assert sum("warmed" in m for m in s.log_messages) == 1, s.log_messages
