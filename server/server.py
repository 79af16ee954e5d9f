"""The language server: `create_language_server(...)` builds one; handlers stay thin.

Each handler converts LSP params, calls the `Controller` (the server's state:
settings in force, requests in flight, answers) or a plain function
(`edits`, `provenance`), and converts the result back. Blocking work goes to
the `EngineHost`'s engine thread. The protocol is written down in
docs/protocol.md.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams, JsonRpcRequestCancelled
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol

from cascode import __version__
from cascode.engine.family import BackendFactory
from cascode.engine.host import EngineHost, SandboxFactory

from . import edits
from .controller import Answer, Controller
from .provenance import markdown

log = logging.getLogger(__name__)

COMMANDS = ("cascode.listTiers", "cascode.lastAnswer", "cascode.accepted")


class CascodeProtocol(LanguageServerProtocol):
    """Answers a request whose params do not structure with an InvalidParams error.

    pygls only logs such a message, so the client would wait forever for a reply.
    """

    def structure_message(self, data: dict[str, Any]) -> Any:
        try:
            return super().structure_message(data)
        except JsonRpcException as e:
            if isinstance(data, dict) and "id" in data and "method" in data:
                cause = e.__cause__ or e
                error = JsonRpcInvalidParams(
                    f"cascode: invalid params for {data['method']}: {str(cause).splitlines()[0]}"
                )
                self._send_response(data["id"], error=error.to_response_error())
            raise


class CascodeLanguageServer(LanguageServer):
    controller: Controller

    def report_server_error(self, error: Exception, source: Any) -> None:
        # Malformed messages are answered (CascodeProtocol) and logged; no pop-up.
        if isinstance(error, JsonRpcException):
            log.warning("%s", error)
            return
        super().report_server_error(error, source)


def create_language_server(
    backend_factory: BackendFactory | None = None,
    sandbox_factory: SandboxFactory | None = None,
) -> CascodeLanguageServer:
    """A new server. `backend_factory(member) -> Backend` and `sandbox_factory(layers,
    allow_unsafe)` replace the real llama.cpp backends and sandbox (tests, benchmarks)."""
    server = CascodeLanguageServer(
        "cascode",
        __version__,
        text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
        protocol_cls=CascodeProtocol,
    )
    server.controller = Controller(server, EngineHost(backend_factory, sandbox_factory))

    @server.feature(types.INITIALIZE)
    def initialize(ls: CascodeLanguageServer, params: types.InitializeParams) -> None:
        ls.controller.init_options = params.initialization_options

    @server.feature(types.INITIALIZED)
    async def initialized(ls: CascodeLanguageServer, params: types.InitializedParams) -> None:
        ls.controller.watch_python_files()
        await ls.controller.refresh_settings(initial=True)

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(
        ls: CascodeLanguageServer, params: types.DidChangeConfigurationParams
    ) -> None:
        await ls.controller.refresh_settings(pushed=params.settings)

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(
        ls: CascodeLanguageServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList:
        started = time.monotonic()
        automatic = params.context.trigger_kind == types.InlineCompletionTriggerKind.Automatic
        uri, position = params.text_document.uri, params.position
        ls.controller.state.stats.request(uri, (position.line, position.character))
        answer = await _answer(ls, uri, position, params.work_done_token, automatic)
        if answer is None:
            return types.InlineCompletionList(items=[])
        edit = edits.covering(answer.lines, answer.edit, answer.cursor)
        rng = _client_range(answer, edit)
        _count_shown(ls, answer, rng, edit.text, started)
        return types.InlineCompletionList(
            items=[
                types.InlineCompletionItem(
                    insert_text=edit.text,
                    range=rng,
                    command=_accept_command(answer),
                )
            ]
        )

    @server.feature(
        types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(resolve_provider=False)
    )
    async def completion(
        ls: CascodeLanguageServer, params: types.CompletionParams
    ) -> types.CompletionList:
        started = time.monotonic()
        # Editors send these as the user types (VS Code's quick suggestions): unless the
        # client says its requests are the user asking, offer only a computed answer.
        explicit = ls.controller.state.settings.completion_requests == "explicit"
        answer = await _answer(ls, params.text_document.uri, params.position,
                               params.work_done_token, automatic=not explicit, run=explicit,
                               method="completion")
        if answer is None:
            return types.CompletionList(is_incomplete=False, items=[])
        edit = edits.covering(answer.lines, answer.edit, answer.cursor)
        _count_shown(ls, answer, _client_range(answer, edit), edit.text, started)
        main, extra = edits.completion_edits(answer.lines, edit, answer.cursor)
        item = types.CompletionItem(
            label=f"cascode: {answer.function}",
            kind=types.CompletionItemKind.Snippet,
            detail=f"{answer.provenance['member']} · tier {answer.provenance['tier']}",
            documentation=types.MarkupContent(
                kind=types.MarkupKind.Markdown, value=markdown(answer.provenance)
            ),
            insert_text_format=types.InsertTextFormat.PlainText,
            filter_text=edits.text_between(answer.lines, main.start, answer.cursor),
            sort_text="0",
            preselect=True,
            text_edit=types.TextEdit(range=_client_range(answer, main), new_text=main.text),
            additional_text_edits=[
                types.TextEdit(range=_client_range(answer, e), new_text=e.text) for e in extra
            ],
            command=_accept_command(answer),
        )
        return types.CompletionList(is_incomplete=False, items=[item])

    @server.command("cascode.listTiers")
    def list_tiers(ls: CascodeLanguageServer, *args: Any) -> list[dict[str, Any]]:
        return ls.controller.list_tiers()

    @server.command("cascode.lastAnswer")
    def last_answer(ls: CascodeLanguageServer, *args: Any) -> dict[str, Any] | None:
        uri = args[0].get("uri") if args and isinstance(args[0], dict) else None
        return ls.controller.last_answer(uri)

    @server.command("cascode.accepted")
    def accepted(ls: CascodeLanguageServer, *args: Any) -> None:
        arg = args[0] if args and isinstance(args[0], dict) else {}
        ls.controller.accepted(arg.get("id"))

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: CascodeLanguageServer, params: types.DidOpenTextDocumentParams) -> None:
        ls.controller.document_changed(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: CascodeLanguageServer, params: types.DidChangeTextDocumentParams) -> None:
        uri = params.text_document.uri
        ls.controller.text_changed(uri, [_span_and_text(c) for c in params.content_changes])
        ls.controller.document_changed(uri)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE, types.SaveOptions(include_text=False))
    def did_save(ls: CascodeLanguageServer, params: types.DidSaveTextDocumentParams) -> None:
        ls.controller.files_changed([params.text_document.uri])

    @server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def did_change_watched_files(
        ls: CascodeLanguageServer, params: types.DidChangeWatchedFilesParams
    ) -> None:
        ls.controller.files_changed([change.uri for change in params.changes])

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: CascodeLanguageServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.controller.document_closed(params.text_document.uri)

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: CascodeLanguageServer, params: Any) -> None:
        ls.controller.close()

    @server.feature(types.EXIT)
    def exit_server(ls: CascodeLanguageServer, params: Any) -> None:
        ls.controller.exit()

    return server


async def _answer(
    ls: CascodeLanguageServer,
    uri: str,
    position: types.Position,
    work_done_token: types.ProgressToken | None,
    automatic: bool = False,
    run: bool = True,
    method: str = "inline",
) -> Answer | None:
    from cascode.engine.errors import Cancelled

    try:
        return await ls.controller.answer(uri, position, work_done_token, automatic, run,
                                          method)
    except Cancelled as e:
        raise JsonRpcRequestCancelled(f"cascode: {e}") from None


def _span_and_text(
    change: types.TextDocumentContentChangeEvent,
) -> tuple[tuple[tuple[int, int], tuple[int, int]] | None, str]:
    """A content change as ((start, end), text) in the client's units; span None when
    the change replaces the whole document."""
    if isinstance(change, types.TextDocumentContentChangePartial):
        r = change.range
        return ((r.start.line, r.start.character), (r.end.line, r.end.character)), change.text
    return None, change.text


def _client_range(answer: Answer, edit: edits.Edit) -> types.Range:
    """A code-point range as the client counts (UTF-16 unless negotiated otherwise)."""
    rng = types.Range(
        start=types.Position(line=edit.start[0], character=edit.start[1]),
        end=types.Position(line=edit.end[0], character=edit.end[1]),
    )
    client_range: types.Range = answer.codec.range_to_client_units(answer.codec_lines, rng)
    return client_range


def _count_shown(ls: CascodeLanguageServer, answer: Answer, rng: types.Range, text: str,
                 started: float) -> None:
    """Local statistics (`cascode stats`): an answer shown, and how long it took."""
    prov = answer.provenance
    ls.controller.state.stats.shown(prov["id"], answer.uri, prov["tier"], prov["member"],
                                    time.monotonic() - started, text,
                                    (rng.start.line, rng.start.character))


def _accept_command(answer: Answer) -> types.Command:
    return types.Command(
        title="cascode: accepted",
        command="cascode.accepted",
        arguments=[{"uri": answer.uri, "id": answer.provenance["id"]}],
    )
