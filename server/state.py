"""What the parts of the controller share: the server, the engine host, the settings
in force, the status the client is shown (`cascode/status`), last answer included,
the projects' test files (`TestExamples`) and the local statistics (`Stats`)."""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from cascode.engine.host import EngineHost

from .examples import TestExamples
from .settings import Settings
from .stats import Stats

log = logging.getLogger(__name__)

STATUS = "cascode/status"
_KEEP_ANSWERS = 64


class AnswerLog:
    """The provenance of the latest answers, by id and by document."""

    def __init__(self) -> None:
        self._answers: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._last: dict[str, Any] | None = None
        self._last_by_uri: dict[str, dict[str, Any]] = {}

    def remember(self, prov: dict[str, Any]) -> None:
        self._answers[prov["id"]] = prov
        while len(self._answers) > _KEEP_ANSWERS:
            self._answers.popitem(last=False)
        self._last = prov
        self._last_by_uri[prov["uri"]] = prov

    def last(self, uri: str | None) -> dict[str, Any] | None:
        """The last answer in document `uri`, or anywhere when `uri` is None."""
        if uri is not None:
            return self._last_by_uri.get(uri)
        return self._last

    def accepted(self, answer_id: Any) -> None:
        prov = self._answers.get(answer_id) if isinstance(answer_id, str) else None
        if prov is None:
            log.info("accepted an unknown answer %r", answer_id)
            return
        prov["accepted"] = True
        log.info("answer %s accepted (%s, tier %s)", answer_id, prov["member"], prov["tier"])


class ServerState:
    """The state the configuration, the preloader and the completer share."""

    def __init__(self, ls: LanguageServer, host: EngineHost) -> None:
        self.ls = ls
        self.host = host
        self.settings = Settings()
        self.status = "loading"  # loading, ready, busy or error
        self.message = "starting"
        self.busy = 0  # requests running in the engine
        self.answers = AnswerLog()
        # Whether the client may set the settings that load or run things (settings.py,
        # `remote`): over stdio the editor started the server; over TCP only when the
        # user said so (`cascode serve --allow-remote-settings`).
        self.client_trusted = True
        self.test_examples = TestExamples()  # the projects' test files, as example lines
        # Shown, accepted and dismissed answers (`cascode stats`), written off the loop.
        self.stats = Stats(on_set_aside=self._stats_set_aside)

    @property
    def tier(self) -> str:
        plan = self.host.plan
        return self.settings.tier or (plan.default_tier if plan else "")

    def send_status(self, status: str | None = None, message: str | None = None) -> None:
        if status is not None:
            self.status = status
        if message is not None:
            self.message = message
        self.ls.protocol.notify(
            STATUS,
            {"state": self.status, "tier": self.tier, "message": self.message,
             "lastAnswer": self.answers.last(None)},
        )

    def show(self, message: str, kind: types.MessageType = types.MessageType.Error) -> None:
        log.warning("%s", message)
        self.ls.window_show_message(types.ShowMessageParams(type=kind, message=message))

    def _stats_set_aside(self, message: str) -> None:
        # Already logged by stats.py; the user sees it once, as a warning.
        self.ls.window_show_message(
            types.ShowMessageParams(type=types.MessageType.Warning, message=message))
