"""The llama.cpp backend on the real embedded 0.5B model."""

from __future__ import annotations

import pytest

from cascode.engine.backends.llama_cpp import LlamaCppBackend
from cascode.engine.cancel import CancelToken
from cascode.engine.errors import BackendError, Cancelled, ModelError
from cascode.engine.extract import assert_lines, pooled_suite
from cascode.engine.prompts import solution_spec, solution_text, unit_test_spec, unit_test_text
from cascode.engine.types import Task

pytestmark = pytest.mark.slow

TASK = Task(
    prompt='def add(a: int, b: int) -> int:\n    """Return the sum of a and b."""\n',
    entry_point="add",
)


def test_greedy_is_reproducible_and_stops_at_the_functions_end(qwen05b):
    spec = solution_spec(TASK, 1, sampled=False)
    first = qwen05b.sample([spec])[0][0]
    second = qwen05b.sample([spec])[0][0]
    assert first.text == second.text
    code = solution_text(TASK, first.text)
    compile(code, "<solution>", "exec")
    assert "```" not in first.text  # cut at the closing fence, nothing after it
    assert first.finish_reason == "stop"
    ns: dict = {}
    exec(code, ns)  # a trivial function: the 0.5B gets it right
    assert ns["add"](2, 3) == 5


def test_batched_sampling_gives_k_distinct_samples_sharing_one_prompt(qwen05b):
    k = 3
    sols, tests = qwen05b.sample(
        [
            solution_spec(TASK, k, sampled=True, seed=7),
            unit_test_spec(TASK, k, 2, sampled=True, seed=7),
        ]
    )
    assert len(sols) == k and len(tests) == k
    assert len({g.text for g in sols + tests}) >= k + 1  # sampled, not copies
    for g in sols + tests:
        assert g.generated_tokens == len(g.token_ends) or g.finish_reason == "stop"
        assert g.prompt_tokens > 20 and g.decode_seconds > 0
    # Each test is cut after its 2nd assert line: at most 2 asserts each.
    texts = [unit_test_text(TASK, g.text) for g in tests]
    assert all(len(assert_lines(t, 10)) <= 2 for t in texts)
    assert pooled_suite(texts, "add", 2), "the tests hold valid assert lines"
    # The prompt is evaluated once per distinct prompt and shared: the
    # sequences of one prompt split its evaluation time evenly.
    assert len({g.prompt_seconds for g in sols}) == 1


def test_same_seed_same_samples(qwen05b):
    spec = solution_spec(TASK, 2, sampled=True, seed=11)
    a = [g.text for g in qwen05b.sample([spec])[0]]
    b = [g.text for g in qwen05b.sample([spec])[0]]
    assert a == b


class CountingToken(CancelToken):
    """Cancels itself after `after` checks and counts the checks made."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after
        self.checks = 0

    @property
    def cancelled(self) -> bool:
        self.checks += 1
        if self.checks > self.after:
            self.cancel("test")
        return super().cancelled


def test_cancellation_stops_within_one_decode_step(qwen05b, monkeypatch):
    from cascode.engine.backends import llama_cpp as module

    # Long enough to need many steps: a sampled batch of 3 solutions. The token is
    # cancelled at the 6th check the backend makes between steps (the abort
    # callback inside a prompt chunk only reads it).
    token, checks = CancelToken(), []
    real_check = module._check

    def counting(cancel):  # type: ignore[no-untyped-def]
        checks.append(1)
        if len(checks) > 5:
            token.cancel("test")
        real_check(cancel)

    monkeypatch.setattr(module, "_check", counting)
    with pytest.raises(Cancelled):
        qwen05b.sample([solution_spec(TASK, 3, sampled=True, seed=3)], cancel=token)
    # Checked once per prompt and once per decode step: it raised at the first
    # check after it was set, i.e. no decode step ran after the cancellation.
    assert len(checks) == 6
    # The backend serves the next request normally.
    assert qwen05b.sample([solution_spec(TASK, 1, sampled=False)])[0][0].text


def test_too_many_sequences_is_a_clear_error(qwen05b):
    with pytest.raises(BackendError, match="n_seq_max"):
        qwen05b.sample([solution_spec(TASK, 10, sampled=True)])


def test_a_file_that_is_not_a_model_is_a_model_error(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 1000)
    with pytest.raises(ModelError, match="could not load"):
        LlamaCppBackend(bad)
