"""The real thing: `cascode serve` with the embedded 0.5B model, the real sandbox, over stdio."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from lsp_session import Session
from lsprotocol import types
from pytest_lsp import ClientServerConfig, client_capabilities

from cascode.server import edits

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(600)]

PLAN = Path(__file__).parent / "plans" / "real-small.yaml"
SOURCE = '''import math


def is_even(n):
    """Return True if the integer n is even, False otherwise."""
'''


@pytest.fixture(scope="module")
def model_installed() -> None:
    from cascode.engine.errors import ModelError
    from cascode.engine.models import resolve_model_file

    try:
        resolve_model_file("embedded:qwen2.5-coder-0.5b-instruct-q4_k_m")
    except ModelError as e:  # pragma: no cover - CI installs the models
        pytest.skip(f"embedded model not installed: {e}")
    pytest.importorskip("llama_cpp")


async def test_cascode_serve_completes_a_stub_with_the_real_model(tmp_path, model_installed):
    config = ClientServerConfig(server_command=[sys.executable, "-m", "cascode", "serve"])
    client = await config.start()
    s = Session(client)
    client.set_configuration({"planFile": str(PLAN)}, section="cascode")
    await client.initialize_session(types.InitializeParams(
        capabilities=client_capabilities("neovim@v0.11.0"), root_uri=tmp_path.as_uri()))
    try:
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
        assert last["verified"] == bool(last["asserts"])
    finally:
        await client.shutdown_session()
        await client.stop()
