"""The llama.cpp backend's prefix cache and chunked prompt evaluation, on the real 0.5B.

A request evaluates only the prompt tokens after the longest prefix it shares with
the previous request's prompt; the answer is the same as without the cache; a
changed token invalidates everything after it; memory stays bounded; and a
cancel during a long prompt stops within one chunk.
"""

from __future__ import annotations

import dataclasses
import os

import pytest
from test_llama_cpp import CountingToken

from cascode.engine.backends.chat import shared_prefix
from cascode.engine.backends.llama_cpp import PREFILL_BATCH, PROMPT_BATCH
from cascode.engine.cancel import CancelToken
from cascode.engine.errors import Cancelled
from cascode.engine.prompts import solution_spec, unit_test_spec
from cascode.engine.types import SampleSpec, Task

pytestmark = pytest.mark.slow

HELPERS = "".join(
    f"def helper_{i}(x):\n    \"\"\"Return x scaled by {i}.\"\"\"\n    return x * {i}\n\n\n"
    for i in range(12)
)
FIRST = Task('def double_all(xs):\n    """Return each element of xs doubled."""\n', "double_all",
             context=HELPERS)
SECOND = Task('def negate_all(xs):\n    """Return each element of xs negated."""\n', "negate_all",
              context=HELPERS)


def _greedy(task: Task, max_tokens: int = 48) -> SampleSpec:
    return dataclasses.replace(solution_spec(task, 1, sampled=False), max_tokens=max_tokens)


def _tokens(backend, spec: SampleSpec) -> list[int]:  # type: ignore[no-untyped-def]
    return backend.tokenize(backend.render(spec))


@pytest.fixture
def backend(qwen05b):  # type: ignore[no-untyped-def]
    qwen05b.prefix_cache = True
    qwen05b._forget_prompt()
    yield qwen05b
    qwen05b.prefix_cache = True
    qwen05b._forget_prompt()


def test_a_second_request_evaluates_only_the_tokens_after_the_shared_prefix(backend) -> None:
    a, b = _greedy(FIRST), _greedy(SECOND)
    (first,), = backend.sample([a])
    assert first.prompt_tokens_evaluated == len(_tokens(backend, a))  # nothing cached yet
    (second,), = backend.sample([b])
    ta, tb = _tokens(backend, a), _tokens(backend, b)
    shared = shared_prefix(ta, tb)
    assert shared > 200  # the system prompt and the file's helpers
    assert second.prompt_tokens_evaluated == len(tb) - shared
    assert second.prompt_tokens == len(tb)
    # The same request again: only its last token is evaluated (its logits start decoding).
    (again,), = backend.sample([b])
    assert again.prompt_tokens_evaluated == 1
    assert again.text == second.text


def test_the_greedy_answer_is_the_same_with_the_cache_off(backend) -> None:
    a, b = _greedy(FIRST), _greedy(SECOND)
    backend.sample([a])
    (with_cache,), = backend.sample([b])
    assert with_cache.prompt_tokens_evaluated < with_cache.prompt_tokens
    backend.prefix_cache = False
    backend._forget_prompt()
    backend.sample([a])
    (without,), = backend.sample([b])
    assert without.prompt_tokens_evaluated == without.prompt_tokens
    assert without.text == with_cache.text


def test_a_changed_token_in_the_middle_invalidates_everything_after_it(backend) -> None:
    a = _greedy(FIRST)
    edited = _greedy(dataclasses.replace(FIRST, context=HELPERS.replace("scaled by 6",
                                                                        "multiplied by 6")))
    backend.sample([a])
    (g,), = backend.sample([edited])
    ta, te = _tokens(backend, a), _tokens(backend, edited)
    change = shared_prefix(ta, te)
    assert 0 < change < len(te) - 100  # the edit sits in the middle of the prompt
    assert g.prompt_tokens_evaluated == len(te) - change
    backend.prefix_cache = False
    backend._forget_prompt()
    (fresh,), = backend.sample([edited])
    assert fresh.text == g.text


def test_a_stage_shares_the_cached_prefix_between_its_solution_and_test_prompts(backend) -> None:
    from cascode.engine.prompts import stage_specs

    backend.sample([_greedy(FIRST)])
    sols, tests = backend.sample(stage_specs(SECOND, 3, 2, seed=1))
    evaluated = sum(g.prompt_tokens_evaluated or 0 for g in sols + tests)
    full = sols[0].prompt_tokens + tests[0].prompt_tokens
    # Each distinct prompt counted once, and far less than both prompts in full.
    assert 0 < evaluated < full // 2
    assert [g.prompt_tokens_evaluated for g in sols[1:] + tests[1:]] == [0, 0, 0, 0]


def test_the_completion_template_evaluates_a_stages_code_once(backend) -> None:
    from cascode.engine.prompts import stage_specs

    specs = stage_specs(SECOND, 2, 2, seed=1, template=3)
    sols, tests = backend.sample(specs)
    # The test prompt is the solution prompt and one more line: only that line is new.
    assert sols[0].prompt_tokens_evaluated == sols[0].prompt_tokens
    assert 0 < tests[0].prompt_tokens_evaluated <= 16
    assert tests[0].prompt_tokens - tests[0].prompt_tokens_evaluated >= sols[0].prompt_tokens - 2
    # And what it writes is a body and assert lines, cut where they end.
    assert all(not line or line[0].isspace() for s in sols for line in s.text.splitlines())
    assert all(t.text.count("assert ") <= 1 for t in tests)  # l = 2: the first is the prefix's


def _rss_mib() -> float:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def test_fifty_requests_over_different_files_keep_memory_bounded(backend) -> None:
    lib = backend._lib
    backend.sample([_greedy(FIRST, 1)])
    start = _rss_mib()
    for i in range(50):
        context = "".join(f"VALUE_{i}_{j} = {i * j}\n" for j in range(1 + i % 4))
        task = Task(f'def f_{i}(x):\n    """Return x plus {i}."""\n', f"f_{i}", context=context)
        backend.sample([_greedy(task, 1)])
        # One prompt cached, at most half the context; every stage sequence freed.
        assert 0 < backend.cached_prompt_tokens <= backend.n_ctx // 2
        for seq_id in range(backend.n_seq_max):
            assert lib.llama_memory_seq_pos_max(backend._mem, seq_id) == -1
        assert lib.llama_memory_seq_pos_max(backend._mem, backend.n_seq_max) == (
            backend.cached_prompt_tokens - 1)
    assert _rss_mib() - start < 64  # no growth with the number of requests


def _cancelled_request(backend, spec, token) -> list[int]:  # type: ignore[no-untyped-def]
    """Run `spec` with `token`, which must cancel it; the return code of every
    llama_decode call it made."""
    results: list[int] = []
    real = backend._lib

    class Counting:
        def __getattr__(self, name):  # type: ignore[no-untyped-def]
            attr = getattr(real, name)
            if name == "llama_decode":
                def counted(*args):  # type: ignore[no-untyped-def]
                    rc = attr(*args)
                    results.append(rc)
                    return rc
                return counted
            return attr

    backend._lib = Counting()
    try:
        with pytest.raises(Cancelled):
            backend.sample([spec], cancel=token)
    finally:
        backend._lib = real
    return results


def test_a_cancel_during_a_long_prompt_stops_within_one_chunk(backend) -> None:
    long_context = HELPERS * 10
    spec = _greedy(dataclasses.replace(FIRST, context=long_context), 8)
    n = len(_tokens(backend, spec))
    chunks = -(-n // PROMPT_BATCH)
    assert chunks >= 5, n
    token = CountingToken(after=2)  # cancelled from its 3rd check on
    decode_calls = _cancelled_request(backend, spec, token)
    # Checked before the prompt and before each chunk: cancelled on the 3rd look,
    # after at most 2 of its >= 5 chunks were evaluated.
    assert len(decode_calls) <= 2 < chunks
    # Nothing half-evaluated is kept: the next request evaluates its whole prompt.
    assert backend.cached_prompt_tokens == 0
    (g,), = backend.sample([_greedy(FIRST)])
    assert g.prompt_tokens_evaluated == g.prompt_tokens


def test_a_cancel_lands_inside_the_chunk_being_evaluated(backend) -> None:
    """llama.cpp's abort callback stops the chunk in flight: the cancel that comes
    after the checks before the prompt and before the first chunk (it turns on at
    the callback's first look, inside that chunk) ends the request with that one
    decode call, which llama.cpp reports as aborted."""
    spec = _greedy(dataclasses.replace(FIRST, context=HELPERS * 10), 8)
    token = CountingToken(after=2)
    results = _cancelled_request(backend, spec, token)
    assert results == [2]  # one decode call, aborted in the middle
    # The context is still sound: the next request answers, its whole prompt evaluated.
    (g,), = backend.sample([_greedy(FIRST)])
    assert g.prompt_tokens_evaluated == g.prompt_tokens and g.text


class _AfterFirstChunk(CancelToken):
    """Cancelled once the backend's prompt cache holds something: after one chunk."""

    def __init__(self, backend) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.backend = backend

    @property
    def cancelled(self) -> bool:
        if self.backend.cached_prompt_tokens:
            self.cancel("a request")
        return super().cancelled


def test_a_prefilled_prompt_leaves_one_token_to_its_request_and_the_same_answer(backend) -> None:
    a, b = _greedy(FIRST), _greedy(SECOND)
    (cold,), = backend.sample([b])  # the answer with nothing cached before it
    backend._forget_prompt()
    backend.sample([a])  # another function of the file: what the cache held before
    n = len(_tokens(backend, b))
    shared = shared_prefix(_tokens(backend, a), _tokens(backend, b))
    # The warm-up evaluates what the cache does not hold, all but the last token.
    assert backend.prefill(b) == n - 1 - shared
    assert backend.cached_prompt_tokens == n - 1
    assert backend.prefill(b) == 0  # held already
    (warm,), = backend.sample([b])
    assert warm.prompt_tokens_evaluated == 1
    assert warm.text == cold.text
    # A stage's test prompt opens like its solution prompt: it shares the warm-up too.
    test_spec = dataclasses.replace(unit_test_spec(SECOND, 1, 2, sampled=False), max_tokens=8)
    backend.prefill(b)
    (_, ), (t,), = backend.sample([b, test_spec])
    assert t.prompt_tokens_evaluated < len(_tokens(backend, test_spec)) - 200


def test_a_cancelled_prefill_keeps_the_chunks_it_evaluated(backend) -> None:
    spec = _greedy(dataclasses.replace(FIRST, context=HELPERS * 2), 8)
    n = len(_tokens(backend, spec))
    assert n > 4 * PREFILL_BATCH, n
    with pytest.raises(Cancelled):
        backend.prefill(spec, cancel=_AfterFirstChunk(backend))
    assert backend.cached_prompt_tokens == PREFILL_BATCH
    (g,), = backend.sample([spec])
    assert g.prompt_tokens_evaluated == n - PREFILL_BATCH
    # A cancel inside the first chunk keeps nothing, and the context stays sound.
    backend._forget_prompt()
    with pytest.raises(Cancelled):
        backend.prefill(spec, cancel=CountingToken(after=2))
    assert backend.cached_prompt_tokens == 0
    (again,), = backend.sample([spec])
    assert again.prompt_tokens_evaluated == n and again.text == g.text
