"""The sandbox the tests of this folder share (one per module)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cascode.engine.sandbox import create_sandbox
from cascode.engine.sandbox.process import ProcessSandbox


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ProcessSandbox]:
    sb = create_sandbox()
    if not sb.available:
        pytest.fail(f"no sandbox path works on this machine: {sb.reason}")
    yield sb
    sb.close()
