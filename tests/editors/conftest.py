"""The editor tests import their helpers (nvim_session) from this folder."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The real-VS-Code test runs after the rest of the suite (it is the longest, and a
    failure of a unit test below it says more)."""
    last = [i for i in items if i.path.name == "test_vscode_e2e.py"]
    if last:
        items[:] = [i for i in items if i not in last] + last
