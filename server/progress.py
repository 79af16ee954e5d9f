"""Work-done progress (`$/progress`) for one request or one model load.

`Progress.start` returns at once: where the server must create the token itself
(`window/workDoneProgress/create`, a round trip to the client), the token is created
in the background while the work runs; what is reported before the client answered
is sent once it has (the latest message), and an end that comes first is sent after
the begin. The work never waits for the client.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from lsprotocol import types
from pygls.lsp.server import LanguageServer

log = logging.getLogger(__name__)

CREATE_TIMEOUT_S = 5.0


class Progress:
    """Work-done progress for one request; silent when the client has no way to show it."""

    def __init__(self, ls: LanguageServer, token: types.ProgressToken | None, title: str) -> None:
        self._ls = ls
        self.token = token
        self._title = title
        self._open = False
        self._pending: str | None = None  # the latest report while the token is created
        self._ended: str | None = None  # an end that came before the token
        self.creating: asyncio.Task[None] | None = None

    @classmethod
    def start(cls, ls: LanguageServer, token: types.ProgressToken | None,
              title: str) -> Progress:
        """Progress on the client's `token`, or on one the server creates (in the
        background) where the client supports it; no progress otherwise."""
        progress = cls(ls, token, title)
        if token is not None:
            progress._begin()
        elif _supports_progress(ls):
            progress.creating = asyncio.get_running_loop().create_task(progress._create())
        return progress

    async def _create(self) -> None:
        token = f"cascode-{uuid.uuid4().hex[:12]}"
        try:
            await asyncio.wait_for(self._ls.work_done_progress.create_async(token),
                                   CREATE_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - progress is a courtesy, never a failure
            log.debug("client refused progress token", exc_info=True)
            return
        self.token = token
        self._begin()
        if self._ended is not None:
            self.end(self._ended)
        elif self._pending is not None:
            self.report(self._pending)

    def _begin(self) -> None:
        assert self.token is not None
        self._ls.work_done_progress.begin(
            self.token, types.WorkDoneProgressBegin(title=self._title, cancellable=False))
        self._open = True

    def report(self, message: str) -> None:
        log.info("progress: %s", message)
        if self._open and self.token is not None:
            self._ls.work_done_progress.report(
                self.token, types.WorkDoneProgressReport(message=message)
            )
        else:
            self._pending = message

    def end(self, message: str) -> None:
        if self._open and self.token is not None:
            self._open = False
            self._ls.work_done_progress.end(self.token, types.WorkDoneProgressEnd(message=message))
        elif self.creating is not None and not self.creating.done():
            self._ended = message


def _supports_progress(ls: LanguageServer) -> bool:
    window = ls.client_capabilities.window
    return bool(window and window.work_done_progress)
