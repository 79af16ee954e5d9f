"""Shared fixtures: the real embedded models, loaded once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
SMALL_PLAN = DATA / "plan-small.yaml"
MODEL_05B = "embedded:qwen2.5-coder-0.5b-instruct-q4_k_m"
MODEL_15B = "embedded:qwen2.5-coder-1.5b-instruct-q4_k_m"


def _model_or_skip(spec: str) -> Path:
    from cascode.engine.errors import ModelError
    from cascode.engine.models import resolve_model_file

    try:
        return resolve_model_file(spec)
    except ModelError as e:  # pragma: no cover - CI installs the models
        pytest.skip(f"embedded model not installed: {e}")


@pytest.fixture(scope="session")
def qwen05b_path() -> Path:
    return _model_or_skip(MODEL_05B)


@pytest.fixture(scope="session")
def qwen05b(qwen05b_path):  # type: ignore[no-untyped-def]
    """The real 0.5B model through the llama.cpp backend, loaded once."""
    from cascode.engine.backends.llama_cpp import LlamaCppBackend

    backend = LlamaCppBackend(qwen05b_path, name="qwen-0.5b", n_ctx=4096, n_seq_max=8)
    yield backend
    backend.close()
