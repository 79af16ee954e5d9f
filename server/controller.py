"""The server's state and the order of things: settings, loading, requests, answers.

Runs on the event loop; every blocking step goes to the engine thread
(`EngineHost.run_blocking`) or to `asyncio.to_thread`, and is awaited, so
that `$/cancelRequest` and a newer request on the same document can cancel it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from cascode.engine.cancel import CancelToken
from cascode.engine.errors import Cancelled, CascodeError, PlanError
from cascode.engine.plans import Plan
from cascode.engine.types import Event

from . import edits
from .provenance import event_message, finished_message, provenance
from .service import EngineHost, load_plan_file
from .settings import SECTION, ClientOptions, Problem, Settings, resolve, value_of, with_value

if TYPE_CHECKING:
    from .server import CascodeLanguageServer

log = logging.getLogger(__name__)

STATUS = "cascode/status"
_KEEP_ANSWERS = 64


@dataclasses.dataclass
class Answer:
    """A completion ready to be converted into LSP items."""

    uri: str
    function: str
    lines: list[str]
    cursor: edits.Pos
    edit: edits.Edit
    provenance: dict[str, Any]
    codec: Any  # the document's pygls PositionCodec
    codec_lines: list[str]


class Progress:
    """Work-done progress for one request; silent when the client has no way to show it."""

    def __init__(self, ls: CascodeLanguageServer, token: types.ProgressToken | None) -> None:
        self._ls = ls
        self.token = token
        self._open = False

    @classmethod
    async def start(
        cls, ls: CascodeLanguageServer, token: types.ProgressToken | None, title: str
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


def _supports_progress(ls: CascodeLanguageServer) -> bool:
    window = ls.client_capabilities.window
    return bool(window and window.work_done_progress)


class Controller:
    def __init__(self, ls: CascodeLanguageServer, host: EngineHost) -> None:
        self.ls = ls
        self.host = host
        self.settings = Settings()
        self.init_options: Any = None
        self.state = "loading"
        self.message = "starting"
        self._configured = asyncio.Event()
        self._settings_lock = asyncio.Lock()
        self._sandbox_made = False
        self._busy = 0
        self._inflight: dict[str, asyncio.Task[Any]] = {}
        self._tokens: set[CancelToken] = set()
        self._answers: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._last: dict[str, Any] | None = None
        self._last_by_uri: dict[str, dict[str, Any]] = {}

    # -- status and messages -------------------------------------------------

    @property
    def tier(self) -> str:
        plan = self.host.plan
        return self.settings.tier or (plan.default_tier if plan else "")

    def send_status(self, state: str | None = None, message: str | None = None) -> None:
        if state is not None:
            self.state = state
        if message is not None:
            self.message = message
        self.ls.protocol.notify(
            STATUS,
            {"state": self.state, "tier": self.tier, "message": self.message,
             "lastAnswer": self._last},
        )

    def show(self, message: str, kind: types.MessageType = types.MessageType.Error) -> None:
        log.warning("%s", message)
        self.ls.window_show_message(types.ShowMessageParams(type=kind, message=message))

    # -- settings ------------------------------------------------------------

    async def refresh_settings(self, *, initial: bool = False, pushed: Any = None) -> None:
        async with self._settings_lock:
            try:
                raw = await self._fetch_settings(pushed)
                await self._apply(ClientOptions.from_raw(raw), initial)
            except Exception as e:  # noqa: BLE001 - the server keeps serving
                log.exception("applying settings")
                self.show(f"cascode: settings not applied: {e}")
            finally:
                self._configured.set()

    async def _fetch_settings(self, pushed: Any) -> Any:
        merged: dict[str, Any] = {}
        init = self.init_options
        if isinstance(init, dict):
            merged.update(ClientOptions.from_raw(init.get(SECTION, init)).values)
        workspace = self.ls.client_capabilities.workspace
        if workspace is not None and workspace.configuration:
            try:
                result = await asyncio.wait_for(
                    self.ls.workspace_configuration_async(
                        types.ConfigurationParams(
                            items=[types.ConfigurationItem(section=SECTION)]
                        )
                    ),
                    10,
                )
            except Exception:  # noqa: BLE001 - fall back to what was pushed
                log.warning("workspace/configuration failed", exc_info=True)
            else:
                if result and isinstance(result[0], dict):
                    merged.update(ClientOptions.from_raw(result[0]).values)
                return merged
        if isinstance(pushed, dict):
            merged.update(ClientOptions.from_raw(pushed.get(SECTION, pushed)).values)
        return merged

    async def _apply(self, options: ClientOptions, initial: bool) -> None:
        old = self.settings
        new, problems = resolve(options, old)
        plan = self.host.plan
        plan_changed = False
        if plan is None or new.plan_file != old.plan_file:
            loaded, new = await self._load_plan(new, old, problems)
            if loaded is not None:
                plan, plan_changed = loaded, True
        if plan is not None and new.tier and new.tier not in plan.tiers:
            kept = old.tier if (not old.tier or old.tier in plan.tiers) else ""
            problems.append(Problem("tier", new.tier, _no_tier(plan, new.tier), kept))
            new = with_value(new, "tier", kept)
        if not self._sandbox_made or (new.sandbox_layers, new.sandbox_allow_unsafe) != (
            old.sandbox_layers, old.sandbox_allow_unsafe
        ):
            new = await self._make_sandbox(new, old, problems)
        self.settings = new
        self.host.cache.resize(new.cache_size)
        if plan_changed and plan is not None:
            self.host.set_plan(plan)
        for problem in problems:
            self.show(problem.message())
        if self.host.plan is None:
            self.send_status("error", "no plan could be loaded")
            return
        tier_changed = self.tier != (old.tier or self.host.plan.default_tier)
        enabled = new.enable and not old.enable
        if new.preload and new.enable and (initial or plan_changed or tier_changed or enabled):
            self._preload()
        elif self.state == "loading" and not self.host.loading:
            self.send_status("ready", f"tier {self.tier}")
        else:
            self.send_status()

    async def _load_plan(
        self, new: Settings, old: Settings, problems: list[Problem]
    ) -> tuple[Plan | None, Settings]:
        try:
            return await asyncio.to_thread(load_plan_file, new.plan_file), new
        except PlanError as e:
            problems.append(Problem("planFile", new.plan_file, str(e), old.plan_file))
            new = with_value(new, "planFile", old.plan_file)
        if self.host.plan is not None:
            return None, new
        # Nothing loaded yet: the previous value is the packaged plan.
        try:
            return await asyncio.to_thread(load_plan_file, new.plan_file), new
        except PlanError as e:
            self.show(f"cascode: {e}")
            return None, new

    async def _make_sandbox(
        self, new: Settings, old: Settings, problems: list[Problem]
    ) -> Settings:
        try:
            note = await asyncio.to_thread(
                self.host.make_sandbox, new.sandbox_layers, new.sandbox_allow_unsafe
            )
        except CascodeError as e:
            for key in ("sandbox.layers", "sandbox.allowUnsafe"):
                if value_of(new, key) != value_of(old, key):
                    problems.append(Problem(key, value_of(new, key), str(e), value_of(old, key)))
                    new = with_value(new, key, value_of(old, key))
            if not self._sandbox_made:
                self.show(f"cascode: sandbox: {e}; answers will be unverified")
            self._sandbox_made = True
            return new
        self._sandbox_made = True
        if note:
            self.show(
                f"cascode: sandbox unavailable: {note}; answers will be unverified",
                types.MessageType.Warning,
            )
        return new

    def _preload(self) -> None:
        try:
            names = self.host.members_of(self.tier)
        except PlanError as e:
            self.send_status("error", str(e))
            return
        loop = asyncio.get_running_loop()
        self.send_status("loading", f"loading {', '.join(names)}")
        started = loop.create_task(Progress.start(self.ls, None, "cascode: loading models"))

        def on_progress(name: str, i: int, n: int) -> None:
            message = f"loading {name} ({i + 1}/{n})"
            loop.call_soon_threadsafe(self._loading_report, started, message)

        future = self.host.preload(names, on_progress)
        loop.create_task(self._loaded(asyncio.wrap_future(future), started))

    def _loading_report(self, started: asyncio.Task[Progress], message: str) -> None:
        self.send_status("loading", message)
        if started.done() and not started.exception():
            started.result().report(message)

    async def _loaded(self, done: asyncio.Future[None], started: asyncio.Task[Progress]) -> None:
        progress = await started
        try:
            await done
        except CascodeError as e:
            progress.end(str(e))
            self.send_status("error", str(e))
            self.show(f"cascode: {e}")
            return
        except Exception as e:  # noqa: BLE001 - a backend that fails to load is reported
            log.exception("loading models")
            progress.end(str(e))
            self.send_status("error", f"loading models failed: {e}")
            self.show(f"cascode: loading models failed: {e}")
            return
        progress.end("models loaded")
        self.send_status("busy" if self._busy else "ready", f"tier {self.tier}")

    # -- completions ---------------------------------------------------------

    async def answer(
        self, uri: str, position: types.Position, token: types.ProgressToken | None
    ) -> Answer | None:
        """The answer for the function at `position`, or None (not a stub, disabled, ...)."""
        await self._configured.wait()
        async with self._settings_lock:
            pass  # a settings change that arrived first applies to this request
        if not self.settings.enable or self.host.plan is None:
            return None
        doc = self.ls.workspace.text_documents.get(uri)
        if doc is None or not _is_python(uri, doc.language_id):
            return None
        source = doc.source
        pos = doc.position_codec.position_from_client_units(doc.lines, position)
        lines = edits.lines_of(source)
        cursor = edits.clamp(lines, (pos.line, pos.character))
        fc = _function_at(source, *cursor)
        if fc is None:
            return None
        task = fc.task()
        if not self.settings.file_context:
            task = dataclasses.replace(task, context="")

        previous = self._inflight.get(uri)
        if previous is not None and not previous.done():
            previous.cancel("superseded by a newer request on the same document")
        me = asyncio.current_task()
        assert me is not None
        self._inflight[uri] = me
        try:
            result, cached = await self._run(task, token)
        except Cancelled:
            raise
        except CascodeError as e:
            self.show(f"cascode: {e}")
            self.send_status("error", str(e))
            return None
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - one failed request must not stop the server
            log.exception("completion failed")
            self.show(f"cascode: completion failed: {e}")
            return None
        finally:
            if self._inflight.get(uri) is me:
                del self._inflight[uri]

        try:
            edit = edits.minimal_edit(source, edits.new_source(source, fc, result.code, cursor))
        except Exception as e:  # noqa: BLE001 - an answer that cannot be placed is dropped
            log.exception("placing the answer")
            self.show(f"cascode: the answer could not be placed in the file: {e}")
            return None
        answer_id = uuid.uuid4().hex[:12]
        prov = provenance(result, answer_id=answer_id, uri=uri, function=task.entry_point,
                          cached=cached)
        self._remember(prov)
        self.send_status("busy" if self._busy else "ready",
                         f"tier {result.tier}: {finished_message(result, cached)}")
        return Answer(uri, task.entry_point, lines, cursor, edit, prov,
                      doc.position_codec, doc.lines)

    async def _run(self, task: Any, token: types.ProgressToken | None) -> tuple[Any, bool]:
        tier = self.tier
        key = self.host.cache_key(task, tier)
        cached = self.host.cache.get(key)
        if cached is not None:
            if token is not None:  # the client asked for progress on its own token: close it
                (await Progress.start(self.ls, token, "cascode")).end(
                    finished_message(cached, True))
            return cached, True
        progress = await Progress.start(self.ls, token, "cascode")
        cancel = CancelToken()
        self._tokens.add(cancel)
        loop = asyncio.get_running_loop()

        def on_event(event: Event) -> None:
            message = event_message(event)
            if message is not None:
                loop.call_soon_threadsafe(progress.report, message)

        self._busy += 1
        self.send_status("busy")
        try:
            pending = self.host.pending_member(tier)
            if pending is not None and self.host.loading:
                progress.report(f"waiting for {pending} to load")
            future = self.host.run_blocking(
                self.host.complete, task, tier, cancel=cancel, on_event=on_event
            )
            try:
                result = await asyncio.wrap_future(future)
            except asyncio.CancelledError:
                cancel.cancel("cancelled")
                progress.end("cancelled")
                if self._busy == 1:
                    self.send_status("ready", f"tier {tier}: cancelled")
                raise
            except CascodeError as e:
                progress.end(str(e))
                raise
        finally:
            self._tokens.discard(cancel)
            self._busy -= 1
            if self._busy == 0 and self.state == "busy":
                self.state = "ready"
        progress.end(finished_message(result, False))
        self.host.cache.put(key, result)
        return result, False

    def _remember(self, prov: dict[str, Any]) -> None:
        self._answers[prov["id"]] = prov
        while len(self._answers) > _KEEP_ANSWERS:
            self._answers.popitem(last=False)
        self._last = prov
        self._last_by_uri[prov["uri"]] = prov

    # -- commands ------------------------------------------------------------

    def list_tiers(self) -> list[dict[str, Any]]:
        plan = self.host.plan
        if plan is None:
            return []
        return [
            {
                "name": name,
                "description": tier.description,
                "default": name == plan.default_tier,
                "active": name == self.tier,
                "measured": dict(tier.measured) if tier.measured is not None else None,
            }
            for name, tier in plan.tiers.items()
        ]

    def last_answer(self, uri: str | None) -> dict[str, Any] | None:
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

    def document_closed(self, uri: str) -> None:
        task = self._inflight.get(uri)
        if task is not None and not task.done():
            task.cancel("the document was closed")

    def close(self) -> None:
        for cancel in self._tokens:
            cancel.cancel("the server is shutting down")
        for task in self._inflight.values():
            task.cancel()
        self.host.close()


def _is_python(uri: str, language_id: str | None) -> bool:
    if language_id:
        return language_id == "python"
    return uri.endswith((".py", ".pyi"))


def _function_at(source: str, line: int, character: int) -> Any:
    """The stub under the cursor, or None (not in a function, a real body, unparsable)."""
    from cascode.engine.context import function_at

    try:
        fc = function_at(source, line, character)
    except Exception:  # noqa: BLE001 - a file the scanner chokes on gets no completion
        log.exception("finding the function at %d:%d", line, character)
        return None
    if fc is None or not fc.is_stub:
        return None
    return fc


def _no_tier(plan: Plan, name: str) -> str:
    return f"no tier named {name!r} in {plan.path} (tiers: {', '.join(plan.tiers)})"
