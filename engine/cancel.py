"""A cancellation flag shared between the caller and long-running work.

Backends check it between decode steps and the cascade between stages, so that a
`$/cancelRequest` stops generation within one step.
"""

from __future__ import annotations

import threading

from .errors import Cancelled


class CancelToken:
    """Set once by the caller; checked by whoever does the work."""

    __slots__ = ("_event", "reason")

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def cancel(self, reason: str = "cancelled") -> None:
        self.reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled(self.reason or "cancelled")


def check(token: CancelToken | None) -> None:
    """Raise `Cancelled` if `token` is set; a missing token never cancels."""
    if token is not None:
        token.raise_if_cancelled()
