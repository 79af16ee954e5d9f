"""Answering a completion request, in steps that each do one job:

- `ask`: the document, the cursor in code points, whether the editor asked as the user
  typed (`automatic`) and whether the request may start the models (`run`);
- `prepare`: the function under the cursor (`engine.context.request`), the trigger rules
  (server/trigger.py), the task with the project's test files' asserts: a `Prepared`
  request, or the `Declined` reason (sent to the client's log);
- `run`: the cascade on the engine thread, cancellable, after the debounce of an
  automatic request (a newer request on the same document cancels it);
- `place`: the edit that puts the answer in the file, its provenance, the `Answer`.

An answer the user types along stays shown without a new run (`_typed_along`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Callable
from typing import Any

from lsprotocol import types

from cascode.engine.cancel import CancelToken
from cascode.engine.context.package import package_task
from cascode.engine.context.request import Request, answer_edit, request_at, request_task
from cascode.engine.errors import Cancelled, CascodeError
from cascode.engine.types import Event, Result, Task

from . import edits
from .configuration import Configuration
from .examples import uri_path, workspace_folders
from .progress import Progress
from .provenance import event_message, finished_message, provenance
from .state import ServerState
from .trigger import Debounce, decline, same_code

log = logging.getLogger(__name__)


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


@dataclasses.dataclass(frozen=True)
class Asked:
    """A request as the completer sees it."""

    uri: str
    doc: Any  # the pygls TextDocument
    lines: list[str]
    cursor: edits.Pos
    automatic: bool  # the editor asked as the user typed (else the user asked)
    run: bool  # may start the models (False: only an answer already computed)
    method: str = "inline"  # the request: "inline" (ghost text) or "completion" (a list)


@dataclasses.dataclass(frozen=True)
class Prepared:
    """What the cascade is asked for a request that may be answered."""

    asked: Asked
    request: Request
    task: Task


@dataclasses.dataclass(frozen=True)
class Declined:
    """Why a request gets no answer."""

    reason: str


@dataclasses.dataclass
class _Shown:
    """The answer last shown in a document, to keep it while the user types along it."""

    source: str  # the document's lines joined with "\n"
    start: int  # offsets of the item's range in `source`
    end: int
    answer: Answer
    tier: str  # the tier that answered (a switch asks again)


class Completer:
    def __init__(self, state: ServerState, configuration: Configuration) -> None:
        self.state = state
        self.configuration = configuration
        self._inflight: dict[str, asyncio.Task[Any]] = {}
        self._tokens: set[CancelToken] = set()
        self._shown: dict[str, _Shown] = {}
        self._debounce = Debounce()
        # The completed functions answered in each document: once the user has taken
        # one, the cursor at its end must not start a run for "the rest" of it.
        self._answered: dict[str, list[str]] = {}
        # Told when a request is about to start the models (the warm-up stops).
        self.on_start: Callable[[str], None] = lambda _reason: None

    async def answer(
        self, uri: str, position: types.Position, token: types.ProgressToken | None,
        automatic: bool = False, run: bool = True, method: str = "inline",
    ) -> Answer | None:
        """The answer for the function at `position`, or None (no function to complete
        there, declined, disabled, ...). `automatic`: the editor asked as the user typed
        (server/trigger.py decides whether that gets an answer); else the user asked.
        `run` False: only an answer already computed (shown, or in the answer cache)."""
        await self.configuration.settled()
        asked = self.ask(uri, position, automatic, run, method)
        if asked is None:
            return None
        along = self._typed_along(asked)
        if along is not None:
            return along
        self._shown.pop(uri, None)
        prepared = await self.prepare(asked)
        if isinstance(prepared, Declined):
            self._log_declined(asked, prepared.reason)
            return None
        ran = await self.run(prepared, token)
        if ran is None:
            return None
        return self.place(prepared, *ran)

    def ask(self, uri: str, position: types.Position, automatic: bool,
            run: bool, method: str = "inline") -> Asked | None:
        """The request on an open Python document, or None (disabled, no plan yet, not
        Python, unknown document)."""
        state = self.state
        if not state.settings.enable or state.host.plan is None:
            return None
        doc = state.ls.workspace.text_documents.get(uri)
        if doc is None or not _is_python(uri, doc.language_id):
            return None
        pos = doc.position_codec.position_from_client_units(doc.lines, position)
        lines = edits.lines_of(doc.source)
        cursor = edits.clamp(lines, (pos.line, pos.character))
        return Asked(uri, doc, lines, cursor, automatic, run, method)

    async def prepare(self, asked: Asked) -> Prepared | Declined:
        """The task for the function at the cursor, or why the request gets no answer."""
        state = self.state
        settings = state.settings
        source = "\n".join(asked.lines)
        request = request_at(source, asked.cursor)
        if request is None:
            return Declined("no function to complete at the cursor")
        why = decline(asked.lines, asked.cursor, request.fc, automatic=asked.automatic,
                      manual=settings.trigger == "manual", rest=request.rest,
                      answered=self._answered.get(asked.uri, ()))
        if why is not None:
            return Declined(why)
        task = request_task(request, context_tokens=settings.context_tokens,
                            file_context=settings.file_context)
        path = uri_path(asked.uri)
        if path is not None and settings.file_context:
            # The sandbox gets the modules of the file's own project that it imports.
            task = await asyncio.to_thread(package_task, task, path, source)
        if settings.test_examples:
            task = await self._with_test_examples(asked.uri, task)
        if not asked.run and state.host.cached(task, state.tier) is None:
            return Declined("no answer computed yet for this function (a completion request "
                            "does not start the models: cascode.completionRequests)")
        return Prepared(asked, request, task)

    async def run(self, prepared: Prepared,
                  token: types.ProgressToken | None) -> tuple[Result, bool] | None:
        """(the answer, whether it came from the answer cache), or None when it failed
        (the user was told). A newer request on the same document cancels this one,
        also while an automatic request waits out its debounce."""
        state, asked = self.state, prepared.asked
        uri = asked.uri
        previous = self._inflight.get(uri)
        if asked.run and previous is not None and not previous.done():
            previous.cancel("superseded by a newer request on the same document")
        me = asyncio.current_task()
        assert me is not None
        if asked.run:
            self._inflight[uri] = me
        try:
            if asked.automatic and asked.run and state.host.cached(prepared.task,
                                                                   state.tier) is None:
                # Wait for the next keystroke (a newer request cancels this one here).
                await asyncio.sleep(self._debounce.delay(uri, state.settings.debounce_ms))
            log.info("%s %s request at %s:%d:%d: tier %s for %s", _kind(asked), asked.method,
                     uri, asked.cursor[0] + 1, asked.cursor[1] + 1, state.tier,
                     prepared.task.entry_point)
            return await self._run(prepared.task, token)
        except (Cancelled, asyncio.CancelledError):
            raise
        except CascodeError as e:
            state.show(f"cascode: {e}")
            state.send_status("error", str(e))
            return None
        except Exception as e:  # noqa: BLE001 - one failed request must not stop the server
            log.exception("completion failed")
            state.show(f"cascode: completion failed: {e}")
            return None
        finally:
            if self._inflight.get(uri) is me:
                del self._inflight[uri]

    def place(self, prepared: Prepared, result: Result, cached: bool) -> Answer | None:
        """The answer as an edit of the document, with its provenance (remembered for
        `cascode.lastAnswer` and for typing along); None when it cannot be placed."""
        state, asked, task = self.state, prepared.asked, prepared.task
        try:
            placed = answer_edit(prepared.request, result.code)
            if placed is None:
                state.send_status("ready", f"tier {result.tier}: the model added nothing")
                return None
            edit = edits.Edit(*placed)
            if not prepared.request.rest:
                source = "\n".join(asked.lines)
                edit = edits.minimal_edit(source, edits.apply(source, edit))
        except Exception as e:  # noqa: BLE001 - an answer that cannot be placed is dropped
            log.exception("placing the answer")
            state.show(f"cascode: the answer could not be placed in the file: {e}")
            return None
        plan = state.host.plan
        prov = provenance(result, answer_id=uuid.uuid4().hex[:12], uri=asked.uri,
                          function=task.entry_point, cached=cached,
                          evidence=plan.evidence if plan is not None else None)
        state.answers.remember(prov)
        state.send_status("busy" if state.busy else "ready",
                          f"tier {result.tier}: {finished_message(result, cached)}")
        doc = asked.doc
        answer = Answer(asked.uri, task.entry_point, asked.lines, asked.cursor, edit, prov,
                        doc.position_codec, doc.lines)
        shown = edits.covering(asked.lines, edit, asked.cursor)
        self._shown[asked.uri] = _Shown(
            "\n".join(asked.lines), edits.offset(asked.lines, shown.start),
            edits.offset(asked.lines, shown.end), answer, state.tier)
        answered = self._answered.setdefault(asked.uri, [])
        answered.append(same_code(result.code))
        del answered[:-16]
        return answer

    def _log_declined(self, asked: Asked, reason: str) -> None:
        """A request that gets no answer, and why: in the client's log (not a pop-up),
        where a user who wonders why nothing shows can read it."""
        message = (f"cascode: {_kind(asked)} {asked.method} request at {asked.uri}:"
                   f"{asked.cursor[0] + 1}:{asked.cursor[1] + 1} not answered: {reason}")
        log.info("%s", message)
        self.state.ls.window_log_message(
            types.LogMessageParams(type=types.MessageType.Log, message=message))

    def _typed_along(self, asked: Asked) -> Answer | None:
        """The shown answer again, when the only change since it was shown is text typed
        at the cursor that continues it: no new cascade run. Also, for an automatic
        request, when nothing changed (manual mode keeps what the user asked for); an
        explicit request then goes through the answer cache as usual."""
        uri, lines, cursor, doc = asked.uri, asked.lines, asked.cursor, asked.doc
        automatic = asked.automatic
        shown = self._shown.get(uri)
        if shown is None or shown.tier != self.state.tier:
            return None
        source = "\n".join(lines)  # offsets count one character per line end
        old, grown = shown.source, len(source) - len(shown.source)
        if grown == 0 and source == old and cursor == shown.answer.cursor:
            return shown.answer if automatic else None
        at = edits.offset(lines, cursor)
        typed_at = at - grown
        if grown <= 0 or not shown.start <= typed_at <= shown.end:
            return None
        if source[:typed_at] != old[:typed_at] or source[at:] != old[typed_at:]:
            return None
        answer = shown.answer
        covering = edits.covering(answer.lines, answer.edit, answer.cursor)
        end = shown.end + grown
        written = source[shown.start:at]
        if not covering.text.startswith(written) or len(written) >= len(covering.text):
            return None
        start_pos, end_pos = edits.position(lines, shown.start), edits.position(lines, end)
        along = dataclasses.replace(
            answer, lines=lines, cursor=cursor,
            edit=edits.Edit(start_pos, end_pos, covering.text),
            codec=doc.position_codec, codec_lines=doc.lines)
        self._shown[uri] = _Shown(source, shown.start, end, along, shown.tier)
        return along

    async def _with_test_examples(self, uri: str, task: Task) -> Task:
        """`task` with the asserts of its project's test files that call the function."""
        state = self.state
        tests = state.test_examples
        tests.configure(workspace_folders(state.ls.workspace), state.settings.test_scan_files)
        try:
            examples = await asyncio.to_thread(tests.examples, uri, task)
        except Exception:  # noqa: BLE001 - the request goes on with the docstring's examples
            log.exception("reading the test files")
            return task
        return dataclasses.replace(task, test_examples=examples)

    async def _run(self, task: Task, token: types.ProgressToken | None) -> tuple[Result, bool]:
        state, host = self.state, self.state.host
        tier = state.tier
        cached = host.cached(task, tier)
        if cached is not None:
            if token is not None:  # the client asked for progress on its own token: close it
                Progress.start(state.ls, token, "cascode").end(finished_message(cached, True))
            return cached, True
        self.on_start("a request")
        progress = Progress.start(state.ls, token, "cascode")
        cancel = CancelToken()
        self._tokens.add(cancel)
        loop = asyncio.get_running_loop()

        def on_event(event: Event) -> None:
            message = event_message(event)
            if message is not None:
                loop.call_soon_threadsafe(progress.report, message)

        state.busy += 1
        state.send_status("busy")
        try:
            pending = host.waiting_for(tier)
            if pending is not None:
                progress.report(f"waiting for {pending} to load")
            budget = state.settings.max_seconds
            future = host.run_blocking(host.answer, task, tier, cancel=cancel, on_event=on_event,
                                       max_seconds=None if budget < 0 else float(budget))
            try:
                answered = await asyncio.wrap_future(future)
            except asyncio.CancelledError:
                cancel.cancel("cancelled")
                progress.end("cancelled")
                if state.busy == 1:
                    state.send_status("ready", f"tier {tier}: cancelled")
                raise
            except CascodeError as e:
                progress.end(str(e))
                raise
        finally:
            self._tokens.discard(cancel)
            state.busy -= 1
            if state.busy == 0 and state.status == "busy":
                state.status = "ready"
        progress.end(finished_message(answered.result, answered.cached))
        return answered.result, answered.cached

    def document_closed(self, uri: str) -> None:
        self._shown.pop(uri, None)
        self._answered.pop(uri, None)
        self._debounce.forget(uri)
        task = self._inflight.get(uri)
        if task is not None and not task.done():
            task.cancel("the document was closed")

    def cancel_all(self, reason: str) -> None:
        """Cancel every request (the server is shutting down)."""
        for cancel in self._tokens:
            cancel.cancel(reason)
        for task in self._inflight.values():
            task.cancel()


def _kind(asked: Asked) -> str:
    return "automatic" if asked.automatic else "explicit"


def _is_python(uri: str, language_id: str | None) -> bool:
    if language_id:
        return language_id == "python"
    return uri.endswith((".py", ".pyi"))
