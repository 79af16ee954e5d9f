"""The OpenAI-compatible backend against llama-cpp-python's own server, serving the
embedded 0.5B model on a free loopback port."""

from __future__ import annotations

import pytest

from cascode.engine import prompts
from cascode.engine.extract import pooled_suite
from cascode.engine.plans import Member
from cascode.engine.types import Task

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

TASK = Task(
    prompt='def add(a: int, b: int) -> int:\n    """Return the sum of a and b."""\n',
    entry_point="add",
)
MODEL_05B = "embedded:qwen2.5-coder-0.5b-instruct-q4_k_m"


def remote(url: str, **options):
    from cascode.engine.backends.openai import OpenAIBackend

    return OpenAIBackend.from_member(
        Member("qwen-0.5b-remote", "openai", "qwen-0.5b",
               options={"base_url": url, "chat_template": MODEL_05B, "timeout_s": 300, **options})
    )


def test_completions_continue_the_same_prompt_as_the_local_member(llama_server_05b, qwen05b):
    backend = remote(llama_server_05b)
    specs = prompts.stage_specs(TASK, 1, 2)  # one greedy solution, one greedy test
    # The prompt sent is the one the local llama.cpp member evaluates, token for token.
    for spec in specs:
        assert backend.render(spec) == qwen05b.render(spec)
    [solution], [test] = backend.sample(specs)
    assert solution.prompt_tokens == len(qwen05b.tokenize(qwen05b.render(specs[0])))
    assert solution.generated_tokens > 0 and solution.decode_seconds > 0
    ns: dict = {}
    exec(prompts.solution_text(TASK, solution.text), ns)
    assert ns["add"](2, 3) == 5
    suite = pooled_suite([prompts.unit_test_text(TASK, test.text)], "add", 2)
    assert 1 <= len(suite) <= 2
    # Greedy decoding of the same prompt by the same engine: the same answer.
    [local_solution], _ = qwen05b.sample(specs)
    assert solution.text == local_solution.text


def test_k_samples_when_the_server_ignores_n(llama_server_05b):
    backend = remote(llama_server_05b)
    spec = prompts.solution_spec(TASK, 2, sampled=True, seed=3)
    sols = backend.sample([spec])[0]
    assert len(sols) == 2
    assert backend._tally.n_supported is False  # one choice came back: the rest one by one
    for g in sols:
        compile(prompts.solution_text(TASK, g.text), "<solution>", "exec")


def test_chat_endpoint_answers_through_realignment(llama_server_05b):
    backend = remote(llama_server_05b, endpoint="chat")
    [[g]] = backend.sample([prompts.solution_spec(TASK, 1, sampled=False)])
    ns: dict = {}
    exec(prompts.solution_text(TASK, g.text), ns)
    assert ns["add"](20, 22) == 42
