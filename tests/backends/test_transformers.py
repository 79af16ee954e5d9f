"""The transformers backend on a tiny config-built Qwen2 checkpoint (random weights)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from cascode.engine.cancel import CancelToken
from cascode.engine.errors import Cancelled, ModelError
from cascode.engine.extract import AssertStop, CodeStop
from cascode.engine.plans import Member
from cascode.engine.types import Message, SampleSpec

pytest.importorskip("transformers")


@dataclass(frozen=True)
class NeverStop:
    stop_strings: tuple[str, ...] = ()

    def cut(self, text: str) -> int | None:
        return None


def spec(prefix: str, n: int, stop, *, max_tokens: int = 12, temperature: float = 0.8,
         seed: int = 0) -> SampleSpec:
    return SampleSpec(
        messages=(Message("user", "write tests for f"),),
        prefix=prefix,
        n=n,
        max_tokens=max_tokens,
        stop=stop,
        temperature=temperature,
        top_p=0.95 if temperature else 1.0,
        seed=seed,
    )


@pytest.fixture(scope="module")
def backend(tiny_qwen2: Path):
    from cascode.engine.backends import create_backend

    b = create_backend(Member("tiny", "transformers", str(tiny_qwen2), options={"threads": 2}))
    yield b
    b.close()


def test_a_stage_is_one_batch_of_k_rows_per_spec(backend) -> None:
    calls = []
    generate = backend.model.generate

    def counting_generate(**kwargs):
        calls.append((tuple(kwargs["input_ids"].shape), kwargs["num_return_sequences"]))
        return generate(**kwargs)

    backend.model.generate = counting_generate
    try:
        prefix = "```python\ndef f(x):\n"
        solutions = spec(prefix, 3, CodeStop(body_start=len(prefix)), max_tokens=16)
        tests = spec("```python\nassert f(", 3, AssertStop(2), max_tokens=10)
        out = backend.sample([solutions, tests])
    finally:
        del backend.model.generate
    assert len(calls) == 1 and calls[0][0][0] == 2 and calls[0][1] == 3
    assert [len(group) for group in out] == [3, 3]
    for s, group in zip((solutions, tests), out, strict=True):
        prompt_tokens = len(backend.tokenizer(backend.render(s), add_special_tokens=False)
                            ["input_ids"])
        for g in group:
            assert 1 <= g.generated_tokens <= s.max_tokens
            assert g.prompt_tokens == prompt_tokens
            assert len(g.token_ends) == g.generated_tokens
            assert list(g.token_ends) == sorted(g.token_ends)
            assert g.token_ends[-1] == len(g.text)
            assert g.prompt_seconds > 0 and g.decode_seconds >= 0
            # The rule has been applied: the text ends where the rule cuts, or
            # the rule has nothing to cut yet.
            assert s.stop.cut(s.prefix + g.text) in (None, len(s.prefix + g.text))
            if g.finish_reason == "length":
                assert g.generated_tokens == s.max_tokens
    for g in out[1]:
        assert (tests.prefix + g.text).count("\nassert") <= 2
        assert "```" not in g.text


def test_stop_rule_cuts_each_row_at_its_own_line(backend) -> None:
    # Every newline piece triggers the rule; it cuts after the first complete line.
    @dataclass(frozen=True)
    class FirstLine:
        stop_strings: tuple[str, ...] = ()

        def cut(self, text: str) -> int | None:
            nl = text.find("\n", len("P:"))
            return nl + 1 if nl != -1 else None

    out = backend.sample([spec("P:", 4, FirstLine(), max_tokens=40)])[0]
    for g in out:
        if g.finish_reason == "stop" and "\n" in g.text:
            assert g.text.endswith("\n") and g.text.count("\n") == 1
        assert g.token_ends[-1] <= len(g.text)


def test_rows_keep_their_own_max_tokens_and_n(backend) -> None:
    short = spec("a", 2, NeverStop(), max_tokens=3, seed=5)
    long = spec("b", 1, NeverStop(), max_tokens=9, seed=5)
    out = backend.sample([short, long])
    assert [len(g) for g in out] == [2, 1]
    assert all(g.generated_tokens <= 3 for g in out[0])
    assert out[1][0].generated_tokens <= 9
    total_decode = sum(g.decode_seconds for group in out for g in group)
    assert total_decode >= 0


def test_greedy_is_deterministic_and_rows_agree(backend) -> None:
    greedy = spec("```python\nassert f(", 2, NeverStop(), max_tokens=8, temperature=0.0)
    first = backend.sample([greedy])[0]
    again = backend.sample([greedy])[0]
    assert first[0].text == first[1].text == again[0].text
    assert first[0].generated_tokens == again[0].generated_tokens


def test_the_prompt_is_the_chat_template_then_the_prefix(backend) -> None:
    text = backend.render(spec("```python\nassert f(", 1, NeverStop()))
    assert text == (
        "<|im_start|>user\nwrite tests for f<|im_end|>\n<|im_start|>assistant\n"
        "```python\nassert f("
    )


class FlipsAfter:
    """A cancel token that becomes set after `n` reads (mid-generation)."""

    def __init__(self, n: int) -> None:
        self.reads = 0
        self.n = n

    @property
    def cancelled(self) -> bool:
        self.reads += 1
        return self.reads > self.n

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise Cancelled("cancelled")


def test_cancel_stops_between_decode_steps(backend) -> None:
    token = FlipsAfter(3)
    with pytest.raises(Cancelled):
        backend.sample([spec("a", 2, NeverStop(), max_tokens=200)], cancel=token)
    assert token.reads == 4  # one check before generate, then one per step
    set_token = CancelToken()
    set_token.cancel()
    with pytest.raises(Cancelled):
        backend.sample([spec("a", 1, NeverStop())], cancel=set_token)


def test_bad_members_are_clear_errors(tiny_qwen2: Path, tmp_path: Path) -> None:
    from cascode.engine.backends.transformers import TransformersBackend

    with pytest.raises(ModelError, match="unknown transformers option"):
        TransformersBackend.from_member(
            Member("m", "transformers", str(tiny_qwen2), options={"device": "cpu"})
        )
    with pytest.raises(ModelError, match="member m: cannot load"):
        TransformersBackend.from_member(Member("m", "transformers", str(tmp_path)))
    with pytest.raises(ModelError, match="not-a-model"):
        TransformersBackend.from_member(Member("m", "transformers", "no-such-org/not-a-model"))
