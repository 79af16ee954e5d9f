"""The asserts of a project's test files reach the task (server/examples.py), unsaved
buffers of open test files included, and a package module's sandbox gets its sibling
modules (engine/context/package.py); the server over stdio with a scripted backend."""

from __future__ import annotations

import json

import pytest
from lsp_session import ADD_LINE, ADD_STUB, ADD_TESTS, session
from lsprotocol import types

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ON_DISK = "from example import add\n\n\ndef test_add():\n    assert add(1, 1) == 2\n"
UNSAVED = "from example import add\n\n\ndef test_add():\n    assert add(2, 5) == 7\n"


def recorded(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def did_change(s, uri: str, version: int, text: str) -> None:
    s.client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)]))


async def test_an_unsaved_test_buffer_s_asserts_reach_the_task(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'example'\n")
    (tmp_path / "example.py").write_text(ADD_STUB)
    (tmp_path / "tests").mkdir()
    test_file = tmp_path / "tests" / "test_add.py"
    test_file.write_text(ON_DISK)
    tasks = tmp_path / "tasks.jsonl"
    async with session(tmp_path, extra_env={"CASCODE_TEST_TASKS": str(tasks)}) as s:
        uri = s.open(ADD_STUB, uri=(tmp_path / "example.py").as_uri())
        test_uri = s.open(UNSAVED, uri=test_file.as_uri())
        assert (await s.inline(uri, ADD_LINE)).items
        did_change(s, test_uri, 2, UNSAVED.replace("add(2, 5) == 7", "add(3, 4) == 7"))
        assert (await s.inline(uri, ADD_LINE)).items
        s.client.text_document_did_close(types.DidCloseTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=test_uri)))
        assert (await s.inline(uri, ADD_LINE)).items
        await s.change_settings(testExamples=False)
        assert (await s.inline(uri, ADD_LINE)).items

    examples = [[(e["text"], e["origin"]) for e in r["test_examples"]] for r in recorded(tasks)]
    assert examples == [
        [("assert add(2, 5) == 7", "tests/test_add.py")],  # the open buffer, not the disk
        [("assert add(3, 4) == 7", "tests/test_add.py")],  # its change
        [("assert add(1, 1) == 2", "tests/test_add.py")],  # closed: the disk again
        [],  # testExamples off
    ]
    assert recorded(tasks)[0]["test_examples"][0]["source"] == "assert add(2, 5) == 7\n"


async def test_saved_and_watched_new_test_files_are_listed(tmp_path):
    (tmp_path / "example.py").write_text(ADD_STUB)
    (tmp_path / "tests").mkdir()
    tasks = tmp_path / "tasks.jsonl"
    async with session(tmp_path, client_name="visual-studio-code",
                       extra_env={"CASCODE_TEST_TASKS": str(tasks)}) as s:
        uri = s.open(ADD_STUB, uri=(tmp_path / "example.py").as_uri())
        assert (await s.inline(uri, ADD_LINE)).items
        saved = tmp_path / "tests" / "test_saved.py"
        saved.write_text(ON_DISK)
        s.client.text_document_did_save(types.DidSaveTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=saved.as_uri())))
        assert (await s.inline(uri, ADD_LINE)).items
        watched = tmp_path / "tests" / "test_watched.py"
        watched.write_text(UNSAVED)
        s.client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(
            changes=[types.FileEvent(uri=watched.as_uri(), type=types.FileChangeType.Created)]))
        assert (await s.inline(uri, ADD_LINE)).items
        sync = s.initialize_result.capabilities.text_document_sync
        assert sync.save is not None  # the server asks for didSave

    # The listing is kept between requests: a new file counts once the editor says so.
    assert [[e["origin"] for e in r["test_examples"]] for r in recorded(tasks)] == [
        [], ["tests/test_saved.py"], ["tests/test_saved.py", "tests/test_watched.py"]]


PACKAGED = '''from .helpers import plus


def add(a, b):
    """Return the sum of a and b.

    >>> add(2, 5)
    7
    """
    ...
'''


async def test_a_package_module_s_answer_runs_with_its_sibling_modules(tmp_path):
    """The answer calls a helper of a sibling module (`from .helpers import plus`): the
    server carries the package to the sandbox, so the user's example passes there."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "helpers.py").write_text("def plus(a, b):\n    return a + b\n")
    (pkg / "example.py").write_text(PACKAGED)
    body = "    return plus(a, b)\n```"
    scripted = {"steps": 2, "step_seconds": 0.0, "members": {
        name: {"add": {"solutions": [body], "tests": ADD_TESTS}} for name in ("small", "large")}}
    async with session(tmp_path, scripted) as s:
        uri = s.open(PACKAGED, uri=(pkg / "example.py").as_uri())
        assert (await s.inline(uri, 9)).items
        last = await s.command("cascode.lastAnswer", {"uri": uri})
        # Unsaved (no file: URI), the same buffer has no package: the example fails.
        loose = s.open(PACKAGED, uri="untitled:Untitled-1")
        assert (await s.inline(loose, 9)).items
        alone = await s.command("cascode.lastAnswer", {"uri": loose})
    assert [(e["text"], e["passed"]) for e in last["examples"]] == [("assert add(2, 5) == 7", True)]
    assert last["verified"], last
    assert [e["passed"] for e in alone["examples"]] == [False], alone
    assert not alone["verified"], alone
