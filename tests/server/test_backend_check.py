"""`cascode serve` with a llama.cpp build that cannot run on this CPU: the check's
child dies of a real SIGILL (a stand-in `llama_cpp` package first on PYTHONPATH
kills its process when imported); the server says so in the editor, answers
each request with that error, and keeps serving."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from lsp_session import Session
from lsprotocol import types
from pytest_lsp import ClientServerConfig, client_capabilities

from cascode.benchmarks.server_bench import served_plan

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

PLAN = Path(__file__).parent / "plans" / "real-small.yaml"
SOURCE = 'def is_even(n):\n    """Return True if the integer n is even."""\n'


async def test_server_reports_a_build_that_cannot_run_and_keeps_serving(tmp_path: Path) -> None:
    pkg = tmp_path / "fake" / "llama_cpp"
    (pkg / "lib").mkdir(parents=True)
    (pkg / "__init__.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGILL)\n")
    (pkg / "lib" / "libllama.so").write_bytes(b"built for another CPU")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "fake"),
           "CASCODE_CHECK_DIR": str(tmp_path / "checks")}
    config = ClientServerConfig(server_command=[sys.executable, "-m", "cascode", "serve"],
                                server_env=env)
    client = await config.start()
    s = Session(client)
    # The plan's member in this process: the binding is what cannot run.
    plan = served_plan(tmp_path, model_server=False, plan=PLAN)
    client.set_configuration({"planFile": str(plan)}, section="cascode")
    await client.initialize_session(types.InitializeParams(
        capabilities=client_capabilities("neovim@v0.11.0"), root_uri=tmp_path.as_uri()))
    try:
        # Preloading the plan's member runs the check: its failure is shown.
        shown = await s.wait_for_message("llama.cpp cannot run on this CPU", timeout=120)
        assert "died of SIGILL" in shown and "./install.sh --rebuild-llama" in shown
        error = await s.wait_for_status("error", timeout=30)
        assert "llama.cpp cannot run on this CPU" in error["message"]
        # Each request gets no answer and the same error, twice: nothing exits.
        uri = s.open(SOURCE)
        for _ in range(2):
            before = len(s.messages)
            result = await s.inline(uri, 1, 4)
            assert result is None or not result.items
            await s.wait_for_message("llama.cpp cannot run on this CPU", timeout=30)
            assert len(s.messages) > before
        # The server still answers what needs no model.
        tiers = await s.command("cascode.listTiers")
        assert [t["name"] for t in tiers] == ["one"]
        assert client._server.returncode is None  # type: ignore[attr-defined]
    finally:
        await client.shutdown_session()
        await client.stop()
