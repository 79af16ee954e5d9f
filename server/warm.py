"""Warm while the user types (`cascode.prefill`): after a pause in the edits of a
document, the prompt of the function at the edit is evaluated on the tier's first
members, as the next request would send it (`EngineHost.prefill`), so that the
request evaluates only what changed since (docs/method.md 6).

The cursor is where the last content change of a `didChange` ends (LSP sends no
cursor with it). A warm-up runs on the engine thread only when no request runs;
a request that starts the models cancels it (`stop`), keeping whatever prompt
chunks it evaluated before; a newer edit of the document replaces its pending one,
but not one already running.
It never shows anything to the user: what it did goes to the log.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from lsprotocol import types

from cascode.engine.cancel import CancelToken
from cascode.engine.errors import Cancelled

from .completion import Completer, Declined
from .state import ServerState

log = logging.getLogger(__name__)

Span = tuple[tuple[int, int], tuple[int, int]]


class Warmer:
    PAUSE_S = 0.3  # after the last edit of a document

    def __init__(self, state: ServerState, completer: Completer) -> None:
        self.state = state
        self.completer = completer
        self._pending: dict[str, asyncio.Task[None]] = {}
        self._tokens: set[CancelToken] = set()

    def changed(self, uri: str, changes: list[tuple[Span | None, str]]) -> None:
        """A didChange: warm the function where its last change ends, after a pause."""
        if not self.state.settings.prefill or not changes:
            return
        span, text = changes[-1]
        if span is None:
            return  # the whole document: no place where the user types
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not on the server's loop (a direct call): nothing to schedule on
        previous = self._pending.pop(uri, None)
        if previous is not None:
            previous.cancel()
        self._pending[uri] = loop.create_task(
            self._warm(uri, span[0], text))

    def stop(self, reason: str) -> None:
        """A request needs the engine thread: stop every warm-up, now."""
        for token in self._tokens:
            token.cancel(reason)

    def forget(self, uri: str) -> None:
        task = self._pending.pop(uri, None)
        if task is not None:
            task.cancel()

    def close(self) -> None:
        self.stop("the server is shutting down")
        for task in self._pending.values():
            task.cancel()
        self._pending.clear()

    async def _warm(self, uri: str, start: tuple[int, int], text: str) -> None:
        me = asyncio.current_task()
        try:
            await asyncio.sleep(self.PAUSE_S)
            # From here on a newer edit does not cancel this one: what it evaluates (the
            # file's context, the function's opening) mostly stays valid, and the newer
            # one's prefill, queued behind it, evaluates only what changed.
            if self._pending.get(uri) is me:
                del self._pending[uri]
            doc = self.state.ls.workspace.text_documents.get(uri)
            if doc is not None:
                await self._warm_now(uri, end_of(doc, start, text))
        except (asyncio.CancelledError, Cancelled):
            pass
        except Exception:  # noqa: BLE001 - warming is best effort, never the user's problem
            log.exception("warming the prompt of %s", uri)
        finally:
            if self._pending.get(uri) is me:
                del self._pending[uri]

    async def _warm_now(self, uri: str, position: types.Position) -> None:
        state, host = self.state, self.state.host
        if state.busy or host.loading:
            return  # a request runs, or the models load: it would wait behind this
        asked = self.completer.ask(uri, position, automatic=False, run=True)
        if asked is None:
            return
        prepared = await self.completer.prepare(asked)
        if isinstance(prepared, Declined):
            log.debug("not warming %s at %s: %s", uri, asked.cursor, prepared.reason)
            return
        if state.busy:
            return
        task = prepared.task
        cancel = CancelToken()
        self._tokens.add(cancel)
        try:
            done = await asyncio.wrap_future(
                host.run_blocking(host.prefill, task, state.tier, cancel=cancel))
        except asyncio.CancelledError:
            cancel.cancel("a newer edit")
            raise
        finally:
            self._tokens.discard(cancel)
        if done:
            # In the client's log, where a user who wonders what runs can read it.
            message = (f"cascode: warmed tier {state.tier} for {task.entry_point} at {uri}:"
                       f"{asked.cursor[0] + 1}: " + ", ".join(
                           f"{m} evaluated {n} prompt tokens" for m, n in done.items()))
            log.info("%s", message)
            state.ls.window_log_message(
                types.LogMessageParams(type=types.MessageType.Log, message=message))


def end_of(doc: Any, start: tuple[int, int], text: str) -> types.Position:
    """Where the text inserted at `start` (client units) ends in `doc`, in client units."""
    codec = doc.position_codec
    at = codec.position_from_client_units(
        doc.lines, types.Position(line=start[0], character=start[1]))
    line, character = at.line, at.character
    if "\n" in text:
        line += text.count("\n")
        character = 0
        text = text.rsplit("\n", 1)[1]
    end = types.Position(line=line, character=character + len(text))
    position: types.Position = codec.position_to_client_units(doc.lines, end)
    return position
