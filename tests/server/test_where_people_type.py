"""Completions where people type (issue 18), over stdio with a real client: the rest of
a half-written function, the automatic-trigger rules, manual mode, typing along."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from lsp_session import script, session
from lsprotocol import types

from cascode.server import edits

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

PARTIAL = '''import math


def area(r):
    """Area of a circle of radius r."""
    if r < 0:
        raise ValueError("negative")


def other():
    return 1
'''
LAST = 6  # the `raise` line: the last written line of `area`
CONTINUATION = "    return math.pi * r * r\n```"
AREA_TESTS = ["1) == math.pi\nassert area(2) == 4 * math.pi\n```"]

STUB = '''def add(a, b):
    """Return the sum of a and b."""
{line}
'''


def _script() -> dict:
    member = {"area": {"solutions": [CONTINUATION], "tests": AREA_TESTS},
              "add": {"solutions": ["    return a + b\n```"],
                      "tests": ["1, 2) == 3\nassert add(2, 2) == 4\n```"]}}
    return script(members={"small": member, "large": member})


def _apply(source: str, item) -> str:  # type: ignore[no-untyped-def]
    rng = item.range
    edit = edits.Edit((rng.start.line, rng.start.character),
                      (rng.end.line, rng.end.character), item.insert_text)
    return edits.apply(source, edit)


def _tasks(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


async def test_the_rest_of_a_function_is_inserted_at_the_cursor(tmp_path):
    async with session(tmp_path, _script()) as s:
        uri = s.open(PARTIAL)
        end = len(PARTIAL.splitlines()[LAST])
        (item,) = (await s.inline(uri, LAST, end)).items
        assert (item.range.start.line, item.range.start.character) == (LAST, end)
        assert item.range.start == item.range.end  # an empty range at the cursor
        assert item.insert_text == "\n    return math.pi * r * r"
        after = _apply(PARTIAL, item)
        old, new = PARTIAL.splitlines(), after.splitlines()
        assert new[: LAST + 1] == old[: LAST + 1]  # every written line, byte for byte
        assert new[LAST + 1] == "    return math.pi * r * r"
        assert new[LAST + 2:] == old[LAST + 1:]
        # On the line right below, indented as the body: the same continuation.
        below = PARTIAL.replace('"negative")\n', '"negative")\n    \n', 1)
        uri2 = s.open(below, uri="file:///work/below.py")
        (item,) = (await s.inline(uri2, LAST + 1, 4)).items
        assert item.insert_text == "return math.pi * r * r"
        assert item.range.start == item.range.end


async def test_written_lines_below_the_cursor_get_no_answer(tmp_path):
    async with session(tmp_path, _script()) as s:
        uri = s.open(PARTIAL)
        assert not (await s.inline(uri, LAST - 1, 16)).items  # end of the `if` line
        # Moved past: a blank line after the function, then the cursor.
        assert not (await s.inline(uri, LAST + 2, 4, automatic=True)).items


@pytest.mark.parametrize(("body", "at", "why"), [
    ("    ", (0, 5), "in the middle of a word"),  # def a|dd(a, b):
    ("    ", (0, 7), "code right of the cursor"),  # def add|(a, b):
    ("    x = 1  # note", (2, 17), "inside a comment"),
    ('    s = "abc', (2, 12), "inside a string"),
])
async def test_automatic_requests_are_declined_where_a_completion_gets_in_the_way(
        tmp_path, body, at, why):
    tasks = tmp_path / "tasks.jsonl"
    source = STUB.format(line=body)
    async with session(tmp_path, _script(),
                       extra_env={"CASCODE_TEST_TASKS": str(tasks)}) as s:
        uri = s.open(source)
        assert not (await s.inline(uri, *at, automatic=True)).items
        logged = await s.wait_for_log(
            f"automatic inline request at {uri}:{at[0] + 1}:{at[1] + 1}")
        assert logged.endswith(f"not answered: {why}")
        assert _tasks(tasks) == 0  # declined before any run
        # Asked for explicitly, the same place is answered.
        assert (await s.inline(uri, *at)).items
        assert _tasks(tasks) == 1


async def test_automatic_requests_answer_where_it_fits(tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    async with session(tmp_path, _script(),
                       extra_env={"CASCODE_TEST_TASKS": str(tasks)}) as s:
        uri = s.open(STUB.format(line="    "))
        assert (await s.inline(uri, 2, 4, automatic=True)).items
        # Inside the docstring (right before its closing quotes): declined.
        assert not (await s.inline(uri, 1, 33, automatic=True)).items
        assert (await s.wait_for_log(f"{uri}:2:34")).endswith("inside a string")
        # At the end of the docstring line: answered.
        assert (await s.inline(uri, 1, 36, automatic=True)).items
        # A docstring still open: declined automatically, answered when asked.
        open_doc = 'def add(a, b):\n    """Return the sum of a and b.\n'
        uri2 = s.open(open_doc, uri="file:///work/open.py")
        runs = _tasks(tasks)
        assert not (await s.inline(uri2, 1, 33, automatic=True)).items
        assert (await s.wait_for_log(f"{uri2}:2:34")).endswith("the docstring is still open")
        assert _tasks(tasks) == runs
        assert (await s.inline(uri2, 1, 33)).items
        assert _tasks(tasks) == runs + 1


async def test_manual_mode_answers_only_when_asked(tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    async with session(tmp_path, _script(), settings={"trigger": "manual"},
                       extra_env={"CASCODE_TEST_TASKS": str(tasks)}) as s:
        uri = s.open(STUB.format(line="    "))
        assert not (await s.inline(uri, 2, 4, automatic=True)).items
        assert "manual mode" in await s.wait_for_log(f"automatic inline request at {uri}:3:5")
        assert _tasks(tasks) == 0  # no cascade ran
        assert (await s.inline(uri, 2, 4)).items
        assert _tasks(tasks) == 1


async def test_completion_requests_offer_only_a_computed_answer(tmp_path):
    """As VS Code's quick suggestions send them while the user types: no run, and the
    inline request in flight on the document is not cancelled."""
    tasks = tmp_path / "tasks.jsonl"
    script_data = _script() | {"steps": 20, "step_seconds": 0.05}
    async with session(tmp_path, script_data, client_name="visual-studio-code",
                       extra_env={"CASCODE_TEST_TASKS": str(tasks)}) as s:
        uri = s.open(STUB.format(line="    "))
        assert not (await s.completion(uri, 2, 4)).items
        assert "no answer computed yet" in await s.wait_for_log(
            f"automatic completion request at {uri}:3:5")
        assert _tasks(tasks) == 0
        # A completion request while an inline run is in flight leaves the run alone.
        inline = asyncio.ensure_future(s.inline(uri, 2, 4, automatic=True))
        await asyncio.sleep(0.5)
        assert not (await s.completion(uri, 2, 4)).items
        (item,) = (await inline).items
        assert _tasks(tasks) == 1
        # Once computed, the suggestion list offers it too, still without a run.
        (entry,) = (await s.completion(uri, 2, 4)).items
        assert entry.text_edit.new_text.endswith("return a + b")
        assert _tasks(tasks) == 1


async def test_completion_requests_run_when_the_client_says_they_are_explicit(tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    async with session(tmp_path, _script(), settings={"completionRequests": "explicit",
                                                      "trigger": "manual"},
                       extra_env={"CASCODE_TEST_TASKS": str(tasks)}) as s:
        uri = s.open(STUB.format(line="    "))
        (entry,) = (await s.completion(uri, 2, 4)).items
        assert entry.text_edit.new_text.endswith("return a + b")
        assert _tasks(tasks) == 1


async def test_typing_along_the_ghost_text_keeps_it_without_a_new_run(tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    async with session(tmp_path, _script(),
                       extra_env={"CASCODE_TEST_TASKS": str(tasks)}) as s:
        uri = s.open(PARTIAL)
        end = len(PARTIAL.splitlines()[LAST])
        (item,) = (await s.inline(uri, LAST, end, automatic=True)).items
        assert _tasks(tasks) == 1
        # The user types the first characters of the ghost text: a newline, then "    ret".
        s.insert(uri, 2, (LAST, end), "\n")
        s.insert(uri, 3, (LAST + 1, 0), "    ret")
        (again,) = (await s.inline(uri, LAST + 1, 7, automatic=True)).items
        assert _tasks(tasks) == 1  # no new cascade run
        assert again.insert_text == item.insert_text
        assert (again.range.start.line, again.range.start.character) == (LAST, end)
        assert (again.range.end.line, again.range.end.character) == (LAST + 1, 7)
        last = json.loads(json.dumps(await s.command("cascode.lastAnswer", {"uri": uri})))
        assert last["id"] == item.command.arguments[0]["id"]
        # Typing something else ends it: the next request runs the cascade again.
        s.insert(uri, 4, (LAST + 1, 7), "xyz")
        await s.inline(uri, LAST + 1, 10)
        assert _tasks(tasks) == 2


AWKWARD = '''import functools


class Box:
    size = 1

    @functools.cache
    def weight(self) -> int:
        """The weight."""
        ...

    def volume(self) -> int:
        """The volume."""
        x = (1,
        return x ** 3

    def half_typed(self, a
'''


@pytest.mark.parametrize(("line", "column"), [
    (6, 10),   # in a decorator
    (10, 4),   # in the class body between methods
    (16, 26),  # on a def line still being typed
    (14, 21),  # after a body line that leaves a bracket open (a syntax error above)
])
async def test_awkward_places_get_no_answer_or_one_that_keeps_the_users_lines(
        tmp_path, line, column):
    member = {"*": {"solutions": ["    return 1\n```"], "tests": ["1) == 1\n```"]}}
    async with session(tmp_path, script(members={"small": member, "large": member})) as s:
        uri = s.open(AWKWARD)
        for automatic in (True, False):
            for item in (await s.inline(uri, line, column, automatic=automatic)).items:
                after = _apply(AWKWARD, item)
                rng = item.range
                old = AWKWARD.splitlines()
                kept = old[: rng.start.line] + old[rng.end.line + 1:]
                new = after.splitlines()
                # The lines outside the item's range are all still there, in order.
                assert new[: rng.start.line] == old[: rng.start.line]
                assert new[len(new) - len(old[rng.end.line + 1:]):] == old[rng.end.line + 1:]
                assert kept
        assert await s.command("cascode.listTiers")  # still answering


async def test_a_taken_answer_does_not_start_a_run_for_its_rest(tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    async with session(tmp_path, _script(),
                       extra_env={"CASCODE_TEST_TASKS": str(tasks)}) as s:
        source = STUB.format(line="    ")
        uri = s.open(source)
        (item,) = (await s.inline(uri, 2, 4, automatic=True)).items
        assert item.insert_text == "    return a + b"
        # The user takes it (Tab): the client replaces the item's range.
        s.client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[types.TextDocumentContentChangePartial(
                range=item.range, text=item.insert_text)]))
        # The editor asks again at the end of the inserted line: nothing, and no run.
        assert not (await s.inline(uri, 2, 16, automatic=True)).items
        assert _tasks(tasks) == 1
        # Asked for explicitly, the rest is looked for.
        await s.inline(uri, 2, 16)
        assert _tasks(tasks) == 2


async def test_manual_mode_keeps_an_answer_asked_again_where_nothing_changed(tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    async with session(tmp_path, _script(), settings={"trigger": "manual"},
                       extra_env={"CASCODE_TEST_TASKS": str(tasks)}) as s:
        uri = s.open(STUB.format(line="    "))
        (item,) = (await s.inline(uri, 2, 4)).items
        (again,) = (await s.inline(uri, 2, 4, automatic=True)).items
        assert again.insert_text == item.insert_text and _tasks(tasks) == 1
