"""The object the server's handlers call (`ls.controller`), made of small parts that
share one `ServerState` (state.py: server, engine host, settings, status, answers):

- `Configuration` (configuration.py): fetching and applying the client's settings;
- `Preloader` (preload.py): loading the active tier's models ahead of requests;
- `Completer` (completion.py): answering a request, and the `Answer` it returns;
- `TestExamples` (examples.py): the projects' test files, told what the editor does;
- `Warmer` (warm.py): evaluating the prompt of the function being written, ahead of
  its request;
- `Progress` (progress.py): work-done progress for a request or a load.

Everything runs on the event loop; every blocking step goes to the engine thread
(`EngineHost.run_blocking`) or to `asyncio.to_thread`, and is awaited, so that
`$/cancelRequest` and a newer request on the same document can cancel it.
"""

from __future__ import annotations

import logging
from typing import Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from cascode.engine.host import EngineHost

from .completion import Answer, Completer
from .configuration import Configuration
from .preload import Preloader
from .state import ServerState
from .warm import Warmer

__all__ = ["Answer", "Controller"]

log = logging.getLogger(__name__)


class Controller:
    def __init__(self, ls: LanguageServer, host: EngineHost) -> None:
        self.state = ServerState(ls, host)
        self.preloader = Preloader(self.state)
        self.configuration = Configuration(self.state, self.preloader)
        self.completer = Completer(self.state, self.configuration)
        self.warmer = Warmer(self.state, self.completer)
        self.completer.on_start = self.warmer.stop

    @property
    def init_options(self) -> Any:
        """The client's initializationOptions (settings are read from them too)."""
        return self.configuration.init_options

    @init_options.setter
    def init_options(self, value: Any) -> None:
        self.configuration.init_options = value

    async def refresh_settings(self, *, initial: bool = False, pushed: Any = None) -> None:
        await self.configuration.refresh(initial=initial, pushed=pushed)

    async def answer(
        self, uri: str, position: types.Position, token: types.ProgressToken | None,
        automatic: bool = False, run: bool = True, method: str = "inline",
    ) -> Answer | None:
        """The answer for the function at `position`, or None (nothing to complete there,
        declined, disabled, ...)."""
        return await self.completer.answer(uri, position, token, automatic, run, method)

    def list_tiers(self) -> list[dict[str, Any]]:
        plan = self.state.host.plan
        if plan is None:
            return []
        return [
            {
                "name": name,
                "description": tier.description,
                "default": name == plan.default_tier,
                "active": name == self.state.tier,
                "measured": dict(tier.measured) if tier.measured is not None else None,
            }
            for name, tier in plan.tiers.items()
        ]

    def last_answer(self, uri: str | None) -> dict[str, Any] | None:
        return self.state.answers.last(uri)

    def accepted(self, answer_id: Any) -> None:
        self.state.answers.accepted(answer_id)
        if isinstance(answer_id, str):
            self.state.stats.accepted(answer_id)

    def text_changed(self, uri: str, changes: list[tuple[Any, str]]) -> None:
        """The content changes of one didChange, in order: (start, end) or None (the
        whole document), and the new text. Tells the statistics what became of the
        answer shown in `uri`, and warms the prompt where the last change ends."""
        for span, text in changes:
            if span is None:
                self.state.stats.document_replaced(uri)
            else:
                self.state.stats.text_changed(uri, span[0], span[1], text)
        self.warmer.changed(uri, changes)

    def document_changed(self, uri: str) -> None:
        """A document was opened or changed (an open test file overrides the disk)."""
        doc = self.state.ls.workspace.text_documents.get(uri)
        if doc is not None:
            self.state.test_examples.changed(uri, doc.source, doc.version)

    def document_closed(self, uri: str) -> None:
        self.warmer.forget(uri)
        self.completer.document_closed(uri)
        self.state.stats.document_replaced(uri)
        self.state.test_examples.closed(uri)

    def files_changed(self, uris: list[str]) -> None:
        """Files were saved, or created, changed or deleted on disk."""
        for uri in uris:
            self.state.test_examples.invalidated(uri)

    def watch_python_files(self) -> None:
        """Ask the client for `workspace/didChangeWatchedFiles` on Python files, when it
        can register that dynamically (test files changed outside the editor)."""
        ls = self.state.ls
        workspace = ls.client_capabilities.workspace
        watched = workspace.did_change_watched_files if workspace is not None else None
        if watched is None or not watched.dynamic_registration:
            return
        options = types.DidChangeWatchedFilesRegistrationOptions(
            watchers=[types.FileSystemWatcher(glob_pattern="**/*.py")])
        future = ls.client_register_capability(types.RegistrationParams(registrations=[
            types.Registration(id="cascode-test-files",
                               method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
                               register_options=options)]))
        future.add_done_callback(_log_registration)

    def close(self) -> None:
        self.warmer.close()
        self.completer.cancel_all("the server is shutting down")
        self.state.stats.close_all()
        self.state.stats.flush()
        self.state.host.close()

    def exit(self) -> None:
        """The client exits (maybe without a shutdown): write the statistics."""
        self.state.stats.flush()


def _log_registration(future: Any) -> None:
    # Without the registration, saves in the editor still refresh the test files.
    if not future.cancelled() and future.exception() is not None:
        log.info("the client did not register file watching: %s", future.exception())
