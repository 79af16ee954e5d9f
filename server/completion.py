"""Answering a completion request: the stub under the cursor (or the rest of a function
written up to it), the asserts of the project's test files that call it, the cascade on the
engine thread (cancellable), and the edit that places the answer (`Answer`). An automatic
request may be declined (server/trigger.py) and waits a debounce; an answer the user types
along stays shown without a new run."""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import logging
import uuid
from typing import Any

from lsprotocol import types

from cascode.engine.cancel import CancelToken
from cascode.engine.context import (
    FunctionContext,
    body_edit,
    continuation_edit,
    continues_at,
    function_at,
)
from cascode.engine.errors import Cancelled, CascodeError
from cascode.engine.types import Event, Task

from . import edits
from .configuration import Configuration
from .examples import workspace_folders
from .progress import Progress
from .provenance import event_message, finished_message, provenance
from .state import ServerState
from .trigger import Debounce, declined

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

    async def answer(
        self, uri: str, position: types.Position, token: types.ProgressToken | None,
        automatic: bool = False,
    ) -> Answer | None:
        """The answer for the function at `position`, or None (no function to complete
        there, declined, disabled, ...). `automatic`: the editor asked as the user typed
        (server/trigger.py decides whether that gets an answer); else the user asked."""
        state = self.state
        await self.configuration.settled()
        if not state.settings.enable or state.host.plan is None:
            return None
        doc = state.ls.workspace.text_documents.get(uri)
        if doc is None or not _is_python(uri, doc.language_id):
            return None
        source = doc.source
        pos = doc.position_codec.position_from_client_units(doc.lines, position)
        lines = edits.lines_of(source)
        cursor = edits.clamp(lines, (pos.line, pos.character))
        along = self._typed_along(uri, lines, cursor, doc, automatic)
        if along is not None:
            return along
        self._shown.pop(uri, None)
        if automatic and state.settings.trigger == "manual":
            return None
        found = _function_at(source, lines, *cursor)
        if found is None:
            return None
        fc, rest = found
        if automatic:
            why = declined(lines, cursor, fc)
            if why is None and rest and _same_code(fc.prompt) in self._answered.get(uri, ()):
                why = "the function is an answer already given"
            if why is not None:
                log.debug("automatic request at %s:%d:%d declined: %s", uri, *cursor, why)
                return None
        budget = state.settings.context_tokens
        task = fc.task(budget if budget >= 0 else None)
        if not state.settings.file_context:
            task = dataclasses.replace(fc.task(), context="")
        if state.settings.test_examples:
            task = await self._with_test_examples(uri, task)

        previous = self._inflight.get(uri)
        if previous is not None and not previous.done():
            previous.cancel("superseded by a newer request on the same document")
        me = asyncio.current_task()
        assert me is not None
        self._inflight[uri] = me
        try:
            if automatic and state.host.cached(task, state.tier) is None:
                # Wait for the next keystroke (a newer request cancels this one here).
                await asyncio.sleep(self._debounce.delay(uri, state.settings.debounce_ms))
            result, cached = await self._run(task, token)
        except Cancelled:
            raise
        except CascodeError as e:
            state.show(f"cascode: {e}")
            state.send_status("error", str(e))
            return None
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - one failed request must not stop the server
            log.exception("completion failed")
            state.show(f"cascode: completion failed: {e}")
            return None
        finally:
            if self._inflight.get(uri) is me:
                del self._inflight[uri]

        try:
            if rest:
                placed = continuation_edit(fc, result.code, lines, cursor)
                if placed is None:
                    state.send_status("ready", f"tier {result.tier}: the model added nothing")
                    return None
                edit = edits.Edit(*placed)
            else:
                start, end, text = body_edit(fc, result.code, cursor)
                edit = edits.minimal_edit(source,
                                          edits.apply(source, edits.Edit(start, end, text)))
        except Exception as e:  # noqa: BLE001 - an answer that cannot be placed is dropped
            log.exception("placing the answer")
            state.show(f"cascode: the answer could not be placed in the file: {e}")
            return None
        answer_id = uuid.uuid4().hex[:12]
        prov = provenance(result, answer_id=answer_id, uri=uri, function=task.entry_point,
                          cached=cached)
        state.answers.remember(prov)
        state.send_status("busy" if state.busy else "ready",
                          f"tier {result.tier}: {finished_message(result, cached)}")
        answer = Answer(uri, task.entry_point, lines, cursor, edit, prov,
                        doc.position_codec, doc.lines)
        shown = edits.covering(lines, edit, cursor)
        self._shown[uri] = _Shown("\n".join(lines), edits.offset(lines, shown.start),
                                  edits.offset(lines, shown.end), answer, state.tier)
        answered = self._answered.setdefault(uri, [])
        answered.append(_same_code(result.code))
        del answered[:-16]
        return answer

    def _typed_along(self, uri: str, lines: list[str], cursor: edits.Pos,
                     doc: Any, automatic: bool) -> Answer | None:
        """The shown answer again, when the only change since it was shown is text typed
        at the cursor that continues it: no new cascade run. Also, for an automatic
        request, when nothing changed (manual mode keeps what the user asked for); an
        explicit request then goes through the answer cache as usual."""
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

    async def _run(self, task: Any, token: types.ProgressToken | None) -> tuple[Any, bool]:
        state, host = self.state, self.state.host
        tier = state.tier
        cached = host.cached(task, tier)
        if cached is not None:
            if token is not None:  # the client asked for progress on its own token: close it
                (await Progress.start(state.ls, token, "cascode")).end(
                    finished_message(cached, True))
            return cached, True
        progress = await Progress.start(state.ls, token, "cascode")
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
            future = host.run_blocking(host.answer, task, tier, cancel=cancel, on_event=on_event)
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


def _same_code(code: str) -> str:
    """A function's text for comparison: no trailing whitespace, no blank lines."""
    return "\n".join(x.rstrip() for x in code.strip().splitlines() if x.strip())


def _header_complete(fc: FunctionContext) -> bool:
    unit = fc.body_indent[len(fc.indent):] or "    "
    try:
        ast.parse(fc.prompt + unit + "pass\n")
    except (SyntaxError, ValueError):
        return False
    return True


def _is_python(uri: str, language_id: str | None) -> bool:
    if language_id:
        return language_id == "python"
    return uri.endswith((".py", ".pyi"))


def _function_at(source: str, lines: list[str], line: int,
                 character: int) -> tuple[FunctionContext, bool] | None:
    """The function to complete at the cursor and whether only its rest is asked for
    (a body already written, the cursor at its end); None where there is nothing to
    complete (not in a function, written lines of it below the cursor, unparsable)."""
    try:
        fc = function_at(source, line, character)
    except Exception:  # noqa: BLE001 - a file the scanner chokes on gets no completion
        log.exception("finding the function at %d:%d", line, character)
        return None
    if fc is None:
        return None
    if fc.is_stub:
        # A header still being typed (`def f(a, b` with no colon yet) gets nothing.
        return (fc, False) if _header_complete(fc) else None
    if continues_at(fc, lines, (line, character)):
        return fc, True
    return None
