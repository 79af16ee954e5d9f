"""Loading the active tier's models ahead of the first request, with progress."""

from __future__ import annotations

import asyncio
import logging

from cascode.engine.errors import CascodeError, PlanError

from .progress import Progress
from .state import ServerState

log = logging.getLogger(__name__)


class Preloader:
    def __init__(self, state: ServerState) -> None:
        self.state = state

    def start(self) -> None:
        """Start loading the members of the active tier (on the engine thread)."""
        state = self.state
        try:
            names = state.host.members_of(state.tier)
        except PlanError as e:
            state.send_status("error", str(e))
            return
        loop = asyncio.get_running_loop()
        state.send_status("loading", f"loading {', '.join(names)}")
        progress = Progress.start(state.ls, None, "cascode: loading models")

        def on_progress(name: str, i: int, n: int) -> None:
            message = f"loading {name} ({i + 1}/{n})"
            loop.call_soon_threadsafe(self._report, progress, message)

        future = state.host.preload(names, on_progress)
        loop.create_task(self._loaded(asyncio.wrap_future(future), progress))

    def _report(self, progress: Progress, message: str) -> None:
        self.state.send_status("loading", message)
        progress.report(message)

    async def _loaded(self, done: asyncio.Future[None], progress: Progress) -> None:
        state = self.state
        try:
            await done
        except CascodeError as e:
            progress.end(str(e))
            state.send_status("error", str(e))
            state.show(f"cascode: {e}")
            return
        except Exception as e:  # noqa: BLE001 - a backend that fails to load is reported
            log.exception("loading models")
            progress.end(str(e))
            state.send_status("error", f"loading models failed: {e}")
            state.show(f"cascode: loading models failed: {e}")
            return
        progress.end("models loaded")
        state.send_status("busy" if state.busy else "ready", f"tier {state.tier}")
