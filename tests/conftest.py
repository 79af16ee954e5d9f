"""Shared fixtures: the real embedded models, loaded once per test session; and
`need`, the one way a test says that a prerequisite is missing.

Under CI=true (`.ci/run`), everything a test needs is installed by install.sh and
`.ci/steps/*.sh`: a missing prerequisite there is a broken install and fails the
test instead of skipping it, so that a whole area cannot pass by not running.
Elsewhere (a developer's machine without Neovim, say) it skips. A skip that must
stay a skip even in CI (the host forbids what the test needs: no Landlock in the
kernel, user namespaces blocked) calls `pytest.skip` itself, and only on that
specific, independently identified reason.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

DATA = Path(__file__).parent / "data"
SMALL_PLAN = DATA / "plan-small.yaml"
MODEL_05B = "embedded:qwen2.5-coder-0.5b-instruct-q4_k_m"
MODEL_15B = "embedded:qwen2.5-coder-1.5b-instruct-q4_k_m"


def in_ci() -> bool:
    """True under CI=true, where `.ci/run` has installed every prerequisite."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing(why: str) -> NoReturn:
    """A prerequisite that install.sh or `.ci/steps` installs is missing: skip here,
    fail under CI=true."""
    __tracebackhide__ = True
    if in_ci():
        pytest.fail(f"CI=true and a prerequisite that .ci/run installs is missing: {why}",
                    pytrace=False)
    pytest.skip(why)


def need(condition: object, why: str) -> None:
    """Go on when `condition` holds; else `missing(why)`."""
    __tracebackhide__ = True
    if not condition:
        missing(why)


def need_module(name: str, why: str = "") -> ModuleType:
    """`pytest.importorskip` that fails under CI=true: the module, imported."""
    __tracebackhide__ = True
    try:
        return importlib.import_module(name)
    except ImportError as e:
        missing(f"{name} is not importable ({e})" + (f": {why}" if why else ""))


def need_model(spec: str) -> Path:
    """The file of an embedded model (`cascode models install`)."""
    __tracebackhide__ = True
    from cascode.engine.errors import ModelError
    from cascode.engine.models import resolve_model_file

    try:
        return resolve_model_file(spec)
    except ModelError as e:
        missing(f"embedded model not installed: {e}")


def need_sandbox(sandbox) -> None:  # type: ignore[no-untyped-def]
    """A sandbox from `create_sandbox()` must work. The one legitimate skip: the
    host permits no isolation path at all (no user namespaces and no Landlock,
    probed by tests/host_facts.py, not by the sandbox)."""
    __tracebackhide__ = True
    if sandbox.available:
        return
    sandbox.close()
    from .host_facts import expected_auto_path

    if expected_auto_path() is None:
        pytest.skip(f"the host permits no isolation path: {sandbox.reason}")
    missing(f"no sandbox path works on a host that permits one: {sandbox.reason}")


@pytest.fixture(scope="session")
def qwen05b_path() -> Path:
    return need_model(MODEL_05B)


@pytest.fixture(scope="session")
def qwen05b(qwen05b_path):  # type: ignore[no-untyped-def]
    """The real 0.5B model through the llama.cpp backend, loaded once."""
    from cascode.engine.backends.llama_cpp import LlamaCppBackend

    backend = LlamaCppBackend(qwen05b_path, name="qwen-0.5b", n_ctx=4096, n_seq_max=8)
    yield backend
    backend.close()


@pytest.fixture(autouse=True)
def _state_dir(tmp_path_factory, monkeypatch):  # type: ignore[no-untyped-def]
    """The local statistics (`cascode stats`) and the model servers' runtime directory
    are temporary folders, never the user's; servers that tests start inherit them."""
    monkeypatch.setenv("CASCODE_STATE_DIR", str(tmp_path_factory.mktemp("state")))
    # The model servers' runtime directory (their state, key, turns) is the test's own;
    # a llama_cpp member runs in a model server by default, so the servers a test (or a
    # `cascode` process it ran) started there are stopped after it.
    runtime = tmp_path_factory.mktemp("run")
    monkeypatch.setenv("CASCODE_RUNTIME_DIR", str(runtime))
    yield
    if any(runtime.glob("server-*.json")):
        from cascode.engine.model_server import stop_servers

        stop_servers(runtime)


_area_seconds: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Wall time per area (the folder under tests/), for CI's summary."""
    parts = report.nodeid.split("/")
    area = parts[1] if len(parts) > 2 and parts[0] == "tests" else "tests"
    _area_seconds[area] = _area_seconds.get(area, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if not _area_seconds:
        return
    terminalreporter.section("wall time per area")
    for area, seconds in sorted(_area_seconds.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{area:<12} {seconds:8.1f} s")
