"""End-to-end protocol tests: a pytest-lsp client, the server over stdio, a scripted backend."""

from __future__ import annotations

import pytest
from lsp_session import ADD_LINE, ADD_STUB, CLIENTS, session

from cascode.server import edits

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("client_name", CLIENTS)
async def test_inline_completion_on_a_stub(tmp_path, client_name):
    async with session(tmp_path, client_name=client_name) as s:
        uri = s.open(ADD_STUB)
        result = await s.inline(uri, ADD_LINE)
        assert len(result.items) == 1
        item = result.items[0]
        r = item.range
        edit = edits.Edit((r.start.line, r.start.character), (r.end.line, r.end.character),
                          item.insert_text)
        assert edits.apply(ADD_STUB, edit) == ADD_STUB.replace("    ...\n", "    return a + b\n")
        assert item.command.command == "cascode.accepted"
