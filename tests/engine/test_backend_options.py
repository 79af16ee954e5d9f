"""Backend options are typed settings, checked when the plan file loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cascode.engine.backends.options import (
    LlamaCppOptions,
    OpenAIOptions,
    TransformersOptions,
    markdown,
)
from cascode.engine.errors import PlanError
from cascode.engine.plans import load_plan, parse_plan

DOCS = Path(__file__).resolve().parents[2] / "docs" / "backends.md"


def _plan(member: str) -> str:
    return f"family:\n  - {member}\ntiers:\n  t: {{theta: 0.5, stages: {{m: {{k: 0}}}}}}\n"


@pytest.mark.parametrize(
    ("member", "message"),
    [
        ("{name: m, backend: llama_cpp, model: x.gguf, options: {n_ctxx: 4096}}",
         "my.yaml: family[0] (m): options.n_ctxx: unknown llama_cpp option "
         "(known: n_ctx, n_seq_max, n_threads, prefix_cache, model_server, keep_alive_s, port, "
         "speculative, concurrency)"),
        ("{name: m, backend: llama_cpp, model: x.gguf, options: {keep_alive_s: 0}}",
         "my.yaml: family[0] (m): options.keep_alive_s: must be a number of seconds above 0, "
         "or -1 for never; got 0"),
        ("{name: m, backend: llama_cpp, model: x.gguf, options: {n_ctx: lots}}",
         "my.yaml: family[0] (m): options.n_ctx: invalid value for type, expected int"),
        ("{name: m, backend: llama_cpp, model: x.gguf, options: {n_seq_max: 0}}",
         "my.yaml: family[0] (m): options.n_seq_max: must be greater than 0, got 0"),
        ("{name: m, backend: transformers, model: d, options: {device: cpu}}",
         "my.yaml: family[0] (m): options.device: unknown transformers option"),
        ("{name: m, backend: transformers, model: d, options: {threads: true}}",
         "my.yaml: family[0] (m): options.threads: invalid value for type"),
        ("{name: m, backend: openai, model: q}",
         "my.yaml: family[0] (m): options.base_url: required"),
        ("{name: m, backend: openai, model: q, options: {base_url: u, endpoint: responses}}",
         "my.yaml: family[0] (m): options.endpoint: must be one of 'completions', 'chat'"),
        ("{name: m, backend: openai, model: q, options: {base_url: u, max_retries: -1}}",
         "my.yaml: family[0] (m): options.max_retries: must be at least 0, got -1"),
        ("{name: m, backend: openai, model: q, options: [1, 2]}",
         "my.yaml: expected a mapping @ family[0].options"),
    ],
)
def test_a_bad_option_fails_when_the_plan_loads_naming_file_member_and_field(
    member: str, message: str
) -> None:
    with pytest.raises(PlanError) as info:
        parse_plan(_plan(member), "my.yaml")
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


def test_good_options_are_typed_with_their_defaults() -> None:
    plan = parse_plan(_plan("{name: m, backend: llama_cpp, model: x.gguf, options: {n_ctx: 2048}}"))
    assert plan.family[0].settings() == LlamaCppOptions(n_ctx=2048, n_seq_max=32, n_threads=None)
    remote = parse_plan(_plan("{name: m, backend: openai, model: q, "
                              "options: {base_url: 'http://h/v1', timeout_s: 5, n: false}}"))
    settings = remote.family[0].settings()
    assert isinstance(settings, OpenAIOptions)
    assert (settings.timeout_s, settings.n, settings.endpoint) == (5.0, False, "completions")
    tf = parse_plan(_plan("{name: m, backend: transformers, model: d, "
                          "options: {device_map: {'': 0}, dtype: bfloat16}}"))
    assert tf.family[0].settings() == TransformersOptions(device_map={"": 0}, dtype="bfloat16")
    # The shipped plan's options fit.
    assert all(m.settings() for m in load_plan().family)


def test_loading_a_plan_imports_no_backend_library() -> None:
    code = (
        "import sys\n"
        "from cascode.engine.plans import load_plan\n"
        "load_plan()\n"
        "print(sorted(m for m in ('llama_cpp', 'torch', 'httpx', 'transformers') "
        "if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_docs_option_tables_are_the_generated_ones() -> None:
    assert markdown() in DOCS.read_text(), (
        "regenerate: python -m cascode.engine.backends.options markdown")
