"""Work-done progress (`$/progress`) for one request or one model load."""

from __future__ import annotations

import asyncio
import logging
import uuid

from lsprotocol import types
from pygls.lsp.server import LanguageServer

log = logging.getLogger(__name__)


class Progress:
    """Work-done progress for one request; silent when the client has no way to show it."""

    def __init__(self, ls: LanguageServer, token: types.ProgressToken | None) -> None:
        self._ls = ls
        self.token = token
        self._open = False

    @classmethod
    async def start(
        cls, ls: LanguageServer, token: types.ProgressToken | None, title: str
    ) -> Progress:
        if token is None and _supports_progress(ls):
            token = f"cascode-{uuid.uuid4().hex[:12]}"
            try:
                await asyncio.wait_for(ls.work_done_progress.create_async(token), 5)
            except Exception:  # noqa: BLE001 - progress is a courtesy, never a failure
                log.debug("client refused progress token", exc_info=True)
                token = None
        progress = cls(ls, token)
        if token is not None:
            ls.work_done_progress.begin(
                token, types.WorkDoneProgressBegin(title=title, cancellable=False)
            )
            progress._open = True
        return progress

    def report(self, message: str) -> None:
        log.info("progress: %s", message)
        if self._open and self.token is not None:
            self._ls.work_done_progress.report(
                self.token, types.WorkDoneProgressReport(message=message)
            )

    def end(self, message: str) -> None:
        if self._open and self.token is not None:
            self._open = False
            self._ls.work_done_progress.end(self.token, types.WorkDoneProgressEnd(message=message))


def _supports_progress(ls: LanguageServer) -> bool:
    window = ls.client_capabilities.window
    return bool(window and window.work_done_progress)
