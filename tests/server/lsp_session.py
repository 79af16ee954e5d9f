"""A real LSP client (pytest-lsp) talking over stdio to the server with a scripted backend."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

HERE = Path(__file__).parent
LAUNCHER = HERE / "launch_server.py"
SCRIPTED_PLAN = HERE / "plans" / "scripted.yaml"
CLIENTS = ("neovim@v0.11.0", "visual-studio-code")

ADD_STUB = '''import math


def add(a, b):
    """Return the sum of a and b."""
    ...


def other():
    return 1
'''
ADD_LINE = 5  # the `...` line

# Bodies (what follows the prompt), then test continuations after `assert add(`.
GOOD = "    return a + b\n```"
BAD = "    return a - b\n```"
ADD_TESTS = ["1, 2) == 3\nassert add(2, 2) == 4\n```"]


def script(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "steps": 2,
        "step_seconds": 0.0,
        "members": {
            "small": {"add": {"solutions": [GOOD], "tests": ADD_TESTS}},
            "large": {"add": {"solutions": [GOOD], "tests": ADD_TESTS}},
        },
    }
    base.update(overrides)
    return base


class Session:
    """A started client plus what the server sent it besides responses."""

    def __init__(self, client: LanguageClient) -> None:
        self.client = client
        self.statuses: list[dict[str, Any]] = []
        self.initialize_result: types.InitializeResult | None = None

        @client.feature("cascode/status")
        def on_status(params: Any) -> None:
            self.statuses.append(_plain(params))

    @property
    def messages(self) -> list[str]:
        return [m.message for m in self.client.messages]

    @property
    def log_messages(self) -> list[str]:
        """What the server wrote to the client's log (window/logMessage)."""
        return [m.message for m in self.client.log_messages]

    async def wait_for_log(self, text: str, timeout: float = 10.0) -> str:
        return await _wait_for(lambda: self.log_messages, text, "log message", timeout)

    async def wait_for_status(self, state: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            for s in self.statuses:
                if s["state"] == state:
                    return s
            await asyncio.sleep(0.02)
        raise AssertionError(f"no status {state!r}; got {self.statuses}")

    async def wait_for_message(self, text: str, timeout: float = 10.0) -> str:
        return await _wait_for(lambda: self.messages, text, "message", timeout)

    def insert(self, uri: str, version: int, at: tuple[int, int], text: str) -> None:
        """The user typed `text` at `at`."""
        pos = types.Position(line=at[0], character=at[1])
        self.client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[types.TextDocumentContentChangePartial(
                range=types.Range(start=pos, end=pos), text=text)]))

    def open(self, text: str, uri: str = "file:///work/example.py") -> str:
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1,
                                                     text=text)
            )
        )
        return uri

    async def inline(self, uri: str, line: int, character: int = 4,
                     token: str | None = None,
                     automatic: bool = False) -> types.InlineCompletionList:
        kind = (types.InlineCompletionTriggerKind.Automatic if automatic
                else types.InlineCompletionTriggerKind.Invoked)
        return await self.client.text_document_inline_completion_async(
            types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(line=line, character=character),
                context=types.InlineCompletionContext(trigger_kind=kind),
                work_done_token=token,
            )
        )

    async def completion(self, uri: str, line: int, character: int = 4) -> Any:
        return await self.client.text_document_completion_async(
            types.CompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(line=line, character=character),
            )
        )

    async def command(self, name: str, *args: Any) -> Any:
        return await self.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command=name, arguments=list(args))
        )

    async def change_settings(self, **settings: Any) -> None:
        current = self.client.get_configuration(section="cascode") or {}
        self.client.set_configuration({**current, **settings}, section="cascode")
        self.client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings=None)
        )


async def _wait_for(items: Any, text: str, what: str, timeout: float) -> str:
    """The first of `items()` containing `text`, once it arrives within `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        for m in items():
            if text in m:
                return str(m)
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {what} containing {text!r}; got {items()}")


def _plain(obj: Any) -> Any:
    """pygls hands custom notifications over as named tuples: back to plain data."""
    if hasattr(obj, "_asdict"):
        return {k: _plain(v) for k, v in obj._asdict().items()}
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


@contextlib.asynccontextmanager
async def session(
    tmp_path: Path,
    script_data: dict[str, Any] | None = None,
    *,
    client_name: str = "neovim@v0.11.0",
    settings: dict[str, Any] | None = None,
    init_options: Any = None,
    wait_ready: bool = True,
    extra_env: dict[str, str] | None = None,
    configuration: bool = True,
) -> AsyncIterator[Session]:
    script_file = tmp_path / "script.json"
    script_file.write_text(json.dumps(script_data or script()))
    env = {**os.environ, "CASCODE_TEST_SCRIPT": str(script_file), **(extra_env or {})}
    config = ClientServerConfig(server_command=[sys.executable, str(LAUNCHER)], server_env=env)
    client = await config.start()
    s = Session(client)
    client.set_configuration(
        {"planFile": str(SCRIPTED_PLAN), **(settings or {})}, section="cascode"
    )
    capabilities = client_capabilities(client_name)
    if not configuration and capabilities.workspace is not None:
        capabilities.workspace.configuration = False
    s.initialize_result = await client.initialize_session(
        types.InitializeParams(capabilities=capabilities, initialization_options=init_options,
                               root_uri=tmp_path.as_uri())
    )
    try:
        if wait_ready:
            await s.wait_for_status("ready")
        yield s
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.shutdown_session(), 10)
        await client.stop()
