"""Engine test helpers: `engine_fakes` (a scripted backend, an in-process sandbox)
is importable from this folder's tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from engine_fakes import InProcessSandbox  # noqa: E402


@pytest.fixture
def sandbox() -> InProcessSandbox:
    return InProcessSandbox()
