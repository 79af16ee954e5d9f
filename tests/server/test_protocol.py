"""End-to-end protocol tests: a pytest-lsp client, the server over stdio, a scripted backend.

Each test starts `launch_server.py` (the real server with the scripted backend
of fake_backend.py and the real sandbox) and talks LSP to it with the
capability sets of Neovim and VS Code.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time

import pytest
from lsp_session import (
    ADD_LINE,
    ADD_STUB,
    ADD_TESTS,
    BAD,
    CLIENTS,
    GOOD,
    SCRIPTED_PLAN,
    script,
    session,
)
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcRequestCancelled

from cascode.engine.plans import load_plan
from cascode.server import edits

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

COMPLETED = ADD_STUB.replace("    ...\n", "    return a + b\n")

# A slow function: 3 sequences x 400 steps x 50 ms = a minute if nothing stops it.
SLOW_STUB = ADD_STUB + '''

def slow(n):
    """Return n doubled."""
'''
SLOW_LINE = len(SLOW_STUB.splitlines())  # the line after the docstring
SLOW = {"solutions": ["    return 2 * n\n```"], "tests": ["1) == 2\n```"],
        "steps": 400, "step_seconds": 0.05}


def _apply_inline(source: str, item: types.InlineCompletionItem) -> str:
    r = item.range
    edit = edits.Edit((r.start.line, r.start.character), (r.end.line, r.end.character),
                      item.insert_text)
    return edits.apply(source, edit)


def _apply_completion(source: str, item: types.CompletionItem) -> str:
    # Apply the later edit first so that positions stay valid.
    all_edits = [item.text_edit, *(item.additional_text_edits or [])]
    all_edits.sort(key=lambda e: (e.range.start.line, e.range.start.character), reverse=True)
    for e in all_edits:
        r = e.range
        source = edits.apply(source, edits.Edit(
            (r.start.line, r.start.character), (r.end.line, r.end.character), e.new_text))
    return source


@pytest.mark.parametrize("client_name", CLIENTS)
async def test_inline_completion_and_completion_on_a_stub(tmp_path, client_name):
    async with session(tmp_path, client_name=client_name) as s:
        caps = s.initialize_result.capabilities
        assert caps.inline_completion_provider is not None
        assert caps.completion_provider is not None
        assert set(caps.execute_command_provider.commands) >= {
            "cascode.listTiers", "cascode.lastAnswer", "cascode.accepted"}

        uri = s.open(ADD_STUB)
        inline = await s.inline(uri, ADD_LINE)
        assert len(inline.items) == 1
        assert _apply_inline(ADD_STUB, inline.items[0]) == COMPLETED
        command = inline.items[0].command
        assert command.command == "cascode.accepted"

        completion = await s.completion(uri, ADD_LINE)
        (item,) = completion.items
        assert _apply_completion(ADD_STUB, item) == COMPLETED
        doc = item.documentation.value
        assert "small" in doc and "assert add(1, 2) == 3" in doc

        last = await s.command("cascode.lastAnswer")
        assert last["member"] == "small" and last["tier"] == "balanced"
        assert last["verified"] is True
        assert last["asserts"] == ["assert add(1, 2) == 3", "assert add(2, 2) == 4"] * 3
        # No examples in the stub: the generated asserts proved it, first in the docs.
        assert last["examples"] == [] and last["proof"].endswith(" generated asserts")
        assert doc.startswith(f"**{last['proof']}**")
        assert last["score"] >= last["threshold"]
        assert last["stages"][0]["k"] == 3

        await s.command("cascode.accepted", *item.command.arguments)
        last = await s.command("cascode.lastAnswer", {"uri": uri})
        assert last["accepted"] is True
        assert any(st["lastAnswer"] and st["lastAnswer"]["function"] == "add"
                   for st in s.statuses)


async def test_progress_messages_arrive_in_order(tmp_path):
    # The small member's answers fail its own tests: it escalates to the large one.
    data = script(members={
        "small": {"add": {"solutions": [BAD], "tests": ADD_TESTS}},
        "large": {"add": {"solutions": [GOOD], "tests": ADD_TESTS}},
    })
    async with session(tmp_path, data) as s:
        uri = s.open(ADD_STUB)
        s.client.progress_reports["req-1"] = []
        result = await s.inline(uri, ADD_LINE, token="req-1")
        assert _apply_inline(ADD_STUB, result.items[0]) == COMPLETED
        reports = s.client.progress_reports["req-1"]
        assert reports[0].kind == "begin"
        messages = [r.message for r in reports[1:-1]]
        assert messages == [
            "small: 3 solutions, 3 tests",
            "running 18 asserts",
            "escalating to large",
            "large: 1 solution, 1 test",
            "running 2 asserts",
        ]
        assert reports[-1].kind == "end" and reports[-1].message.startswith("large answered")
        last = await s.command("cascode.lastAnswer")
        assert [st["member"] for st in last["stages"]] == ["small", "large"]


async def test_tier_switch_applies_to_the_next_request_and_a_bad_tier_is_kept(tmp_path):
    async with session(tmp_path) as s:
        uri = s.open(ADD_STUB)
        await s.inline(uri, ADD_LINE)
        assert (await s.command("cascode.lastAnswer"))["tier"] == "balanced"

        await s.change_settings(tier="large-only")
        await s.inline(uri, ADD_LINE)
        last = await s.command("cascode.lastAnswer")
        assert (last["tier"], last["member"]) == ("large-only", "large")
        tiers = {t["name"]: t for t in await s.command("cascode.listTiers")}
        assert tiers["large-only"]["active"] and tiers["balanced"]["default"]
        assert tiers["large-only"]["measured"] == {"cost_per_1k_s": 1234.5, "pass_at_1": 0.5}
        assert tiers["fast"]["measured"] is None

        # A bad tier is reported by name and value; the other field (enable) still applies.
        await s.change_settings(tier="fastest", enable=False)
        message = await s.wait_for_message("cascode.tier")
        assert '"fastest"' in message and '"large-only"' in message
        assert (await s.inline(uri, ADD_LINE)).items == ()
        await s.change_settings(tier="fastest", enable=True)
        await s.inline(uri, ADD_LINE)
        assert (await s.command("cascode.lastAnswer"))["tier"] == "large-only"
        assert any(st["tier"] == "large-only" for st in s.statuses)


async def test_cancel_request_returns_promptly_and_the_server_serves_the_next(tmp_path):
    data = script()
    data["members"]["small"]["slow"] = SLOW
    async with session(tmp_path, data) as s:
        uri = s.open(SLOW_STUB)
        s.client.progress_reports["slow"] = []
        params = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=SLOW_LINE, character=4),
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Invoked),
            work_done_token="slow",
        )
        pending = asyncio.ensure_future(s.client.protocol.send_request_async(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id="slow-request"))
        await _wait_for_report(s, "slow", "small: 3 solutions, 3 tests")
        cancelled_at = time.monotonic()
        s.client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="slow-request"))
        with pytest.raises(JsonRpcRequestCancelled):
            await pending
        assert time.monotonic() - cancelled_at < 5  # the scripted generation takes a minute

        result = await s.inline(uri, ADD_LINE)
        assert _apply_inline(SLOW_STUB, result.items[0]) == SLOW_STUB.replace(
            "    ...\n", "    return a + b\n")


async def test_a_new_request_on_the_same_document_cancels_the_one_in_flight(tmp_path):
    data = script()
    data["members"]["small"]["slow"] = SLOW
    async with session(tmp_path, data) as s:
        uri = s.open(SLOW_STUB)
        s.client.progress_reports["slow"] = []
        first = asyncio.ensure_future(s.inline(uri, SLOW_LINE, token="slow"))
        await _wait_for_report(s, "slow", "small: 3 solutions, 3 tests")
        second = await asyncio.wait_for(s.inline(uri, ADD_LINE), 20)
        assert len(second.items) == 1
        with pytest.raises(JsonRpcRequestCancelled):
            await first
        assert s.client.progress_reports["slow"][-1].message == "cancelled"


async def test_asking_twice_is_answered_from_the_cache(tmp_path):
    async with session(tmp_path) as s:
        uri = s.open(ADD_STUB)
        first = await s.inline(uri, ADD_LINE)
        assert (await s.command("cascode.lastAnswer"))["cached"] is False
        second = await s.inline(uri, ADD_LINE)
        assert second.items[0].insert_text == first.items[0].insert_text
        assert (await s.command("cascode.lastAnswer"))["cached"] is True
        # Another tier is another cache entry.
        await s.change_settings(tier="fast")
        await s.inline(uri, ADD_LINE)
        last = await s.command("cascode.lastAnswer")
        assert (last["cached"], last["tier"]) == (False, "fast")


async def test_a_request_sent_while_models_load_waits_then_succeeds(tmp_path):
    data = script(load={"small": {"seconds": 2}})
    async with session(tmp_path, data, wait_ready=False) as s:
        uri = s.open(ADD_STUB)
        s.client.progress_reports["early"] = []
        result = await s.inline(uri, ADD_LINE, token="early")
        assert _apply_inline(ADD_STUB, result.items[0]) == COMPLETED
        messages = [r.message for r in s.client.progress_reports["early"][1:]]
        assert messages[0] == "waiting for small to load"
        assert "small: 3 solutions, 3 tests" in messages
        states = [st["state"] for st in s.statuses]
        assert states[0] == "loading" and "ready" in states


async def test_no_items_outside_a_stub_and_no_crash_on_bad_input(tmp_path):
    async with session(tmp_path) as s:
        uri = s.open(ADD_STUB)
        assert (await s.inline(uri, 0, 0)).items == ()  # `import math`
        assert (await s.inline(uri, 9)).items == ()  # `other` has a body
        assert (await s.completion(uri, 0, 0)).items == ()
        assert (await s.inline("file:///nowhere/unknown.py", 3)).items == ()
        assert (await s.inline(uri, 500, 3)).items == ()  # past the end of the file

        with pytest.raises(JsonRpcException):
            await _send_raw(s, types.TEXT_DOCUMENT_INLINE_COMPLETION,
                            {"textDocument": 5, "position": "x"})
        with pytest.raises(JsonRpcException):
            await _send_raw(s, types.TEXT_DOCUMENT_COMPLETION, None)
        with pytest.raises(JsonRpcException):
            await s.command("cascode.nonexistent")
        assert await s.command("cascode.accepted", {"id": "no-such-answer"}) is None
        assert await s.command("cascode.accepted", "garbage") is None

        # Still serving.
        assert _apply_inline(ADD_STUB, (await s.inline(uri, ADD_LINE)).items[0]) == COMPLETED


async def test_a_plan_file_that_fails_to_load_is_reported_and_the_previous_one_kept(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("family: [}\n")
    async with session(tmp_path) as s:
        uri = s.open(ADD_STUB)
        await s.change_settings(planFile=str(bad), cacheSize=0)
        message = await s.wait_for_message("cascode.planFile")
        assert str(bad) in message and str(SCRIPTED_PLAN) in message
        assert "not valid YAML" in message
        result = await s.inline(uri, ADD_LINE)
        assert _apply_inline(ADD_STUB, result.items[0]) == COMPLETED
        assert (await s.command("cascode.lastAnswer"))["cached"] is False  # cacheSize applied

        bad_type = tmp_path / "missing.yaml"
        await s.change_settings(planFile=str(bad_type), cacheSize="many")
        await s.wait_for_message(str(bad_type))
        await s.wait_for_message("cascode.cacheSize")


async def test_a_plan_file_that_fails_at_start_falls_back_to_the_packaged_plan(tmp_path):
    async with session(tmp_path, settings={"planFile": str(tmp_path / "nope.yaml")},
                       wait_ready=False) as s:
        await s.wait_for_message("cascode.planFile")
        tiers = await s.command("cascode.listTiers")
        assert {t["name"] for t in tiers} == set(load_plan().tiers)  # the packaged default


async def test_a_missing_model_is_reported_and_answers_no_items(tmp_path):
    data = script(load={"small": {"fail": "small is not installed; run: cascode models install"}})
    async with session(tmp_path, data, wait_ready=False) as s:
        await s.wait_for_status("error")
        await s.wait_for_message("small is not installed")
        uri = s.open(ADD_STUB)
        assert (await s.inline(uri, ADD_LINE)).items == ()
        # Switching to a tier without that member works.
        await s.change_settings(tier="large-only")
        result = await s.inline(uri, ADD_LINE)
        assert _apply_inline(ADD_STUB, result.items[0]) == COMPLETED


async def test_settings_from_initialization_options_without_configuration_support(tmp_path):
    # A client that cannot answer workspace/configuration: initializationOptions and the
    # didChangeConfiguration payload carry the settings.
    async with session(
        tmp_path, configuration=False,
        init_options={"cascode": {"planFile": str(SCRIPTED_PLAN), "tier": "fast"}},
    ) as s:
        uri = s.open(ADD_STUB)
        await s.inline(uri, ADD_LINE)
        assert (await s.command("cascode.lastAnswer"))["tier"] == "fast"


async def _send_raw(s, method: str, params: object) -> object:
    """A request the typed client would refuse to send: raw JSON on the wire."""
    msg_id = f"raw-{time.monotonic_ns()}"
    future: concurrent.futures.Future[object] = concurrent.futures.Future()
    s.client.protocol._request_futures[msg_id] = future
    body = json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
    data = body.encode()
    s.client.protocol.writer.write(b"Content-Length: %d\r\n\r\n" % len(data) + data)
    return await asyncio.wait_for(asyncio.wrap_future(future), 10)


async def _wait_for_report(s, token: str, message: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(getattr(r, "message", None) == message for r in s.client.progress_reports[token]):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"no progress {message!r}: {s.client.progress_reports[token]}")


async def test_the_engine_does_not_wait_for_the_clients_progress_token(tmp_path):
    """A request with no token of its own: the server creates one (a round trip to the
    client) while the engine already runs; progress still begins and ends on it."""
    tasks = tmp_path / "tasks.jsonl"
    async with session(tmp_path, extra_env={"CASCODE_TEST_TASKS": str(tasks)}) as s:
        created: list[tuple[str, float]] = []

        async def slow_create(params: types.WorkDoneProgressCreateParams) -> None:
            await asyncio.sleep(4.0)
            created.append((str(params.token), time.time()))
            s.client.progress_reports.setdefault(params.token, [])

        # The client answers window/workDoneProgress/create after 4 s.
        s.client.protocol.fm.features[types.WINDOW_WORK_DONE_PROGRESS_CREATE] = slow_create
        uri = s.open(ADD_STUB)
        asked = time.time()
        result = await s.inline(uri, ADD_LINE)
        assert _apply_inline(ADD_STUB, result.items[0]) == COMPLETED
        started = json.loads(tasks.read_text().splitlines()[0])["started"]
        for _ in range(400):
            if created and [r.kind for r in s.client.progress_reports[created[0][0]]][-1:] \
                    == ["end"]:
                break
            await asyncio.sleep(0.02)
        token, answered_at = created[0]
        # The engine started before the client answered: it did not wait for the token.
        assert asked < started < answered_at
        reports = s.client.progress_reports[token]
        assert reports[0].kind == "begin" and reports[-1].kind == "end"
        assert reports[-1].message.startswith("small answered")
