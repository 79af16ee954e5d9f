"""The OpenAI-compatible backend against scripted servers on loopback."""

from __future__ import annotations

import json
import threading
import time

import pytest
from backend_loopback import Loopback, completion

from cascode.engine import prompts
from cascode.engine.cancel import CancelToken
from cascode.engine.errors import BackendError, Cancelled, ModelError, PlanError
from cascode.engine.extract import AssertStop, CodeStop
from cascode.engine.plans import Member
from cascode.engine.prompts import solution_spec, solution_text
from cascode.engine.types import Task

from ..conftest import need_module


@pytest.fixture(autouse=True)
def _httpx() -> None:
    need_module("httpx", "the openai extra (.ci/steps/backends.sh)")


TASK = Task(prompt='def sq(x):\n    """Square x."""\n', entry_point="sq")


def backend(url: str, **options):
    from cascode.engine.backends import create_backend

    opts = {"base_url": url, "max_retries": 2, "backoff_s": 0.01, "timeout_s": 5}
    opts.update(options)
    return create_backend(Member("remote", "openai", "qwen", options=opts))


def ok(texts, **kw):
    return 200, completion(texts, **kw), {}


def test_completions_renders_the_template_sends_n_and_applies_the_stop_rule() -> None:
    replies = ["1) == 1\nassert sq(2) == 4\nassert sq(3) == 9\n", "0) == 0\n"]
    with Loopback(lambda i, p, b: ok(replies, usage={"prompt_tokens": 40,
                                                      "completion_tokens": 30})) as srv:
        out = backend(srv.base_url).sample([prompts.unit_test_spec(TASK, 2, 2, sampled=True,
                                                                   template=2)])[0]
    [(path, body, _)] = srv.requests
    assert path == "/v1/completions" and body["n"] == 2 and body["stop"] == ["```"]
    assert body["prompt"].startswith("<|im_start|>user\n```python\ndef sq(x):")
    assert body["prompt"].endswith("<|im_start|>assistant\n```python\nassert sq(")
    assert body["temperature"] == 0.8 and body["top_p"] == 0.95 and body["model"] == "qwen"
    # Cut after the 2nd assert line, as a local member would be.
    assert out[0].text == "1) == 1\nassert sq(2) == 4\n"
    assert prompts.unit_test_text(TASK, out[1].text) == "assert sq(0) == 0\n"
    assert [g.prompt_tokens for g in out] == [40, 40]
    assert sum(g.generated_tokens for g in out) == 30
    assert out[0].generated_tokens > out[1].generated_tokens  # split by length
    assert all(g.decode_seconds > 0 for g in out)


def test_completions_sends_a_plain_completion_as_it_is_with_its_stop_strings() -> None:
    with Loopback(lambda i, p, b: ok(["    return x * x\n\n"])) as srv:
        [[g]] = backend(srv.base_url).sample([solution_spec(TASK, 1, sampled=False,
                                                            template=3)])
    [(_, body, _)] = srv.requests
    assert body["prompt"] == TASK.prompt  # no chat template around the code
    assert body["stop"][0] == "```" and "\ndef " in body["stop"]
    assert solution_text(TASK, g.text) == TASK.prompt + "    return x * x\n"


def test_a_server_that_ignores_n_gets_the_rest_one_by_one() -> None:
    with Loopback(lambda i, p, b: ok([f"{i}) == {i}\n"])) as srv:
        b = backend(srv.base_url)
        out = b.sample([prompts.unit_test_spec(TASK, 3, 2, sampled=True, seed=5)])[0]
        again = b.sample([prompts.unit_test_spec(TASK, 3, 2, sampled=True, seed=5)])[0]
    assert len(out) == 3 and len(again) == 3
    bodies = [body for _, body, _ in srv.requests]
    assert bodies[0]["n"] == 3 and all("n" not in body for body in bodies[1:])
    # After the first answer the backend knows: k single requests, seeds seed+j.
    assert len(bodies) == 3 + 3
    assert sorted(body["seed"] for body in bodies[3:]) == [1_000_008, 1_000_009, 1_000_010]
    # No usage in the answers: the documented estimate, 4 characters a token.
    assert all(g.generated_tokens == 2 for g in out)


def test_500_is_retried_then_reported() -> None:
    with Loopback(lambda i, p, b: (500, b'{"error": "boom"}', {})) as srv:
        with pytest.raises(BackendError, match=r"HTTP 500: \{\"error\": \"boom\"\}.*3 attempts"):
            backend(srv.base_url).sample([solution_spec(TASK, 1, sampled=False)])
    assert len(srv.requests) == 3


def test_429_then_success() -> None:
    def script(i, path, body):
        if i == 0:
            return 429, b'{"error": "slow down"}', {"retry-after": "0.05"}
        return ok(["    return x * x\n"], usage={"prompt_tokens": 30, "completion_tokens": 7})

    with Loopback(script) as srv:
        [[g]] = backend(srv.base_url).sample([solution_spec(TASK, 1, sampled=False)])
    assert len(srv.requests) == 2
    assert solution_text(TASK, g.text) == TASK.prompt + "    return x * x\n"
    assert g.generated_tokens == 7 and g.prompt_tokens == 30


def test_malformed_json_and_missing_choices_are_clear_errors() -> None:
    with Loopback(lambda i, p, b: (200, b"<html>not json", {})) as srv:
        with pytest.raises(BackendError, match="malformed JSON: <html>not json"):
            backend(srv.base_url).sample([solution_spec(TASK, 1, sampled=False)])
    assert len(srv.requests) == 1  # garbage is not retried
    with Loopback(lambda i, p, b: (200, b'{"result": 1}', {})) as srv:
        with pytest.raises(BackendError, match="without choices"):
            backend(srv.base_url).sample([solution_spec(TASK, 1, sampled=False)])


def test_a_server_that_never_answers_times_out() -> None:
    with Loopback(lambda i, p, b: None) as srv:
        t0 = time.perf_counter()
        with pytest.raises(BackendError, match="did not answer within 0.3 s"):
            backend(srv.base_url, timeout_s=0.3).sample([solution_spec(TASK, 1, sampled=False)])
        assert time.perf_counter() - t0 < 3


def test_an_unreachable_endpoint_is_named() -> None:
    with Loopback(lambda i, p, b: None) as srv:
        url = srv.base_url
    with pytest.raises(BackendError, match=r"cannot reach http://127\.0\.0\.1:\d+/v1/completions"):
        backend(url, max_retries=1).sample([solution_spec(TASK, 1, sampled=False)])


def test_cancel_stops_waiting() -> None:
    token = CancelToken()
    with Loopback(lambda i, p, b: None) as srv:
        threading.Timer(0.2, token.cancel).start()
        t0 = time.perf_counter()
        with pytest.raises(Cancelled):
            backend(srv.base_url).sample([solution_spec(TASK, 1, sampled=False)], cancel=token)
        assert time.perf_counter() - t0 < 2


def test_chat_endpoint_realigns_the_reply_to_the_prefix() -> None:
    reply = ("Here you go:\n```python\ndef sq(x):\n    \"\"\"Square x.\"\"\"\n    return x * x\n"
             "```\nThis squares x.")
    tests_reply = "```python\nassert sq(2) == 4\nassert sq(3) == 9\nassert sq(4) == 16\n```"

    def script(i, path, body):
        wants_tests = "assert" in body["messages"][-1]["content"]
        return ok([tests_reply if wants_tests else reply], chat=True,
                  usage={"prompt_tokens": 50, "completion_tokens": 20})

    with Loopback(script) as srv:
        b = backend(srv.base_url, endpoint="chat", system_prompt="Be brief.")
        sols, tests = b.sample([solution_spec(TASK, 1, sampled=False, template=2),
                                prompts.unit_test_spec(TASK, 1, 2, sampled=False, template=2)])
    path, body, _ = srv.requests[0]
    assert path == "/v1/chat/completions" and "stop" not in body
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert solution_text(TASK, sols[0].text) == TASK.prompt + "    return x * x\n"
    assert prompts.unit_test_text(TASK, tests[0].text) == "assert sq(2) == 4\nassert sq(3) == 9\n"


def test_realign_without_the_prefix_keeps_the_block_after_a_newline() -> None:
    from cascode.engine.backends.openai import realign

    prefix = "```python\nassert sq("
    assert realign(prefix, "```python\nprint(sq(2) == 4)\n```") == "\nprint(sq(2) == 4)\n```"
    # The model restated the function differently: the later definition wins.
    sol_prefix = "```python\n" + TASK.prompt
    text = realign(sol_prefix, "def sq(y):\n    return y ** 2\n")
    ns: dict = {}
    exec(solution_text(TASK, text), ns)
    assert ns["sq"](3) == 9


def test_api_key_comes_from_the_named_environment_variable(monkeypatch) -> None:
    monkeypatch.setenv("CASCODE_TEST_KEY", "sk-test")
    with Loopback(lambda i, p, b: ok(["    return x * x\n"])) as srv:
        backend(srv.base_url, api_key_env="CASCODE_TEST_KEY").sample(
            [solution_spec(TASK, 1, sampled=False)]
        )
    headers = {k.lower(): v for k, v in srv.requests[0][2].items()}
    assert headers["authorization"] == "Bearer sk-test"
    assert "sk-test" not in json.dumps(srv.requests[0][1])
    monkeypatch.delenv("CASCODE_TEST_KEY")
    with pytest.raises(ModelError, match="CASCODE_TEST_KEY .* is not set"):
        backend("http://127.0.0.1:9/v1", api_key_env="CASCODE_TEST_KEY")


def test_bad_options_are_clear_errors() -> None:
    from cascode.engine.backends import create_backend

    # Options are typed (options.OpenAIOptions): a bad one is a PlanError naming the field,
    # at plan load (tests/engine/test_backend_options.py) and here alike.
    with pytest.raises(PlanError, match="member r: options.base_url: required"):
        create_backend(Member("r", "openai", "m"))
    with pytest.raises(PlanError, match="options.base: unknown openai option"):
        backend("http://127.0.0.1:9/v1", base="x")
    with pytest.raises(PlanError, match="options.endpoint: must be one of 'completions', 'chat'"):
        backend("http://127.0.0.1:9/v1", endpoint="responses")
    with pytest.raises(PlanError, match="options.timeout_s: invalid value for type"):
        backend("http://127.0.0.1:9/v1", timeout_s="soon")


def test_code_stop_applies_to_completions() -> None:
    body_text = "    return x * x\n\nprint(sq(3))\n"
    with Loopback(lambda i, p, b: ok([body_text])) as srv:
        [[g]] = backend(srv.base_url).sample([solution_spec(TASK, 1, sampled=False)])
    assert g.text == "    return x * x\n\n"
    assert isinstance(solution_spec(TASK, 1, sampled=False).stop, CodeStop)
    assert isinstance(prompts.unit_test_spec(TASK, 1, 2, sampled=False).stop, AssertStop)


def test_chat_endpoint_asks_for_a_plain_completion_in_words_and_realigns_the_reply() -> None:
    # Under the completion template a spec has no messages: its prefix is the whole
    # code. The chat endpoint cannot continue text, so it asks in words, and the
    # reply (which restates the function, not the file) is realigned to the prefix.
    task = Task(TASK.prompt, TASK.entry_point, context="import math\n\n\nTAU = 2 * math.pi\n")
    reply = "```python\n" + TASK.prompt + "    return x * x\n```"
    tests_reply = "```python\nassert sq(2) == 4\nassert sq(3) == 9\n```"

    def script(i, path, body):
        wants_tests = body["messages"][-1]["content"].count("assert sq(") > 0
        return ok([tests_reply if wants_tests else reply], chat=True,
                  usage={"prompt_tokens": 50, "completion_tokens": 20})

    with Loopback(script) as srv:
        b = backend(srv.base_url, endpoint="chat")
        sols, tests = b.sample([solution_spec(task, 1, sampled=False, template=3),
                                prompts.unit_test_spec(task, 1, 2, sampled=False, template=3)])
    question = srv.requests[0][1]["messages"][-1]["content"]
    assert question.startswith("```python\nimport math\n")
    assert "Continue the Python code" in question
    assert solution_text(task, sols[0].text) == TASK.prompt + "    return x * x\n"
    assert prompts.unit_test_text(task, tests[0].text) == "assert sq(2) == 4\nassert sq(3) == 9\n"
