"""The transformers backend on a tiny config-built Qwen2 checkpoint (random weights)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from cascode.engine.cancel import CancelToken
from cascode.engine.errors import Cancelled, ModelError, PlanError
from cascode.engine.extract import AssertStop, CodeStop
from cascode.engine.plans import Member
from cascode.engine.types import Message, SampleSpec


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


@contextmanager
def scripted(backend, rows: list[list[str]]) -> Iterator[list[dict]]:
    """Make the random-weight model emit a script: batch row r gets the token
    rows[r][step] at each decode step (its last token once the script runs out).

    The model still runs its forward passes and `generate` its loop; only the
    choice of each token is forced, through a logits processor, so that what the
    backend must make of known tokens (stop rules, lengths, texts) is exact.
    Yields the keyword arguments of each `generate` call.
    """
    import torch
    import transformers

    ids = [[backend.tokenizer.convert_tokens_to_ids(t) for t in row] for row in rows]
    unknown = {t for row, row_ids in zip(rows, ids, strict=True)
               for t, i in zip(row, row_ids, strict=True)
               if i in (None, backend.tokenizer.unk_token_id) or i in backend._eos_ids}
    assert not unknown, f"not ordinary tokens of the tiny vocabulary: {unknown}"

    class Force(transformers.LogitsProcessor):
        def __init__(self) -> None:
            self.start: int | None = None

        def __call__(self, input_ids, scores):
            assert input_ids.shape[0] == len(ids), "one script per batch row"
            if self.start is None:
                self.start = input_ids.shape[1]
            step = input_ids.shape[1] - self.start
            forced = torch.full_like(scores, float("-inf"))
            for r, row in enumerate(ids):
                forced[r, row[min(step, len(row) - 1)]] = 0.0
            return forced

    calls: list[dict] = []
    generate = backend.model.generate

    def forced_generate(**kwargs):
        calls.append(kwargs)
        return generate(**kwargs, logits_processor=transformers.LogitsProcessorList([Force()]))

    backend.model.generate = forced_generate
    try:
        yield calls
    finally:
        del backend.model.generate


def test_a_stage_is_one_batch_of_k_rows_per_spec(backend) -> None:
    prefix = "```python\ndef f(x):\n"
    solutions = spec(prefix, 3, CodeStop(body_start=len(prefix)), max_tokens=16)
    tests = spec("```python\nassert f(", 3, AssertStop(2), max_tokens=10)
    script = [
        # solutions: a body, then the closing fence; a body, then a top-level line
        # (cut before it, inside the step's piece); no line end in 16 tokens
        ["    return x * x\n", "```\n"],
        ["    return x * x\n", "x = f(1)\n"],
        [" ", "x"],
        # tests (one character a token, then whole lines): the second assert line ends
        # the test; the fence ends it early; no line end in 10 tokens
        [*"1) == 1\n", "assert f(2) == 4\n", "assert f(1) == 1\n"],
        [*"1)\n", "```\n"],
        ["1"],
    ]
    with scripted(backend, script) as calls:
        out = backend.sample([solutions, tests])
    (call,) = calls  # one generate call for both specs: 2 prompts, 3 sequences each
    assert call["input_ids"].shape[0] == 2 and call["num_return_sequences"] == 3
    assert call["max_new_tokens"] == 16
    got = [[(g.text, g.generated_tokens, g.finish_reason) for g in group] for group in out]
    assert got == [
        [("    return x * x\n", 2, "stop"), ("    return x * x\n", 2, "stop"),
         (" " + "x" * 15, 16, "length")],
        [("1) == 1\nassert f(2) == 4\n", 9, "stop"), ("1)\n", 4, "stop"),
         ("1" * 10, 10, "length")],
    ]
    # Each token's end in the text, clipped to the cut.
    assert [g.token_ends for g in out[0]] == [(17, 17), (17, 17), tuple(range(1, 17))]
    assert out[1][0].token_ends == (1, 2, 3, 4, 5, 6, 7, 8, 25)
    assert out[1][1].token_ends == (1, 2, 3, 3)
    for s, group in zip((solutions, tests), out, strict=True):
        prompt_tokens = len(backend.tokenizer(backend.render(s), add_special_tokens=False)
                            ["input_ids"])
        for g in group:
            assert g.prompt_tokens == prompt_tokens
            assert g.prompt_seconds > 0 and g.decode_seconds > 0
            # The stop rule has been applied: nothing past its cut is left.
            assert s.stop.cut(s.prefix + g.text) in (None, len(s.prefix + g.text))


def test_stop_rule_cuts_each_row_at_its_own_line(backend) -> None:
    # The rule cuts after the first complete line; each row reaches it at its own step.
    @dataclass(frozen=True)
    class FirstLine:
        stop_strings: tuple[str, ...] = ()

        def cut(self, text: str) -> int | None:
            nl = text.find("\n", len("P:"))
            return nl + 1 if nl != -1 else None

    script = [["x = f(1)\n", "# note\n"], ["a", "b", "\n", "c"], ["# note\n"],
              [*"abcde", "x = f(1)\n", "\n"]]
    with scripted(backend, script):
        out = backend.sample([spec("P:", 4, FirstLine(), max_tokens=40)])[0]
    assert [(g.text, g.generated_tokens, g.finish_reason) for g in out] == [
        ("x = f(1)\n", 1, "stop"), ("ab\n", 3, "stop"), ("# note\n", 1, "stop"),
        ("abcdex = f(1)\n", 6, "stop"),
    ]
    assert all(g.token_ends[-1] == len(g.text) for g in out)


def test_rows_keep_their_own_max_tokens_and_n(backend) -> None:
    short = spec("a", 2, NeverStop(), max_tokens=3, seed=5)
    long = spec("b", 1, NeverStop(), max_tokens=9, seed=5)
    with scripted(backend, [["x"], ["y"], ["z"]]) as calls:
        out = backend.sample([short, long])
    (call,) = calls  # different n: one prompt row per sequence, in one batch
    assert call["input_ids"].shape[0] == 3 and call["num_return_sequences"] == 1
    assert [[(g.text, g.generated_tokens, g.finish_reason) for g in group] for group in out] == [
        [("xxx", 3, "length"), ("yyy", 3, "length")], [("z" * 9, 9, "length")]]
    assert [g.token_ends for g in out[0]] == [(1, 2, 3), (1, 2, 3)]
    # The decode time is shared out by tokens: every row decoded, the longer one most.
    decode = [g.decode_seconds for group in out for g in group]
    assert all(d > 0 for d in decode) and decode[2] == pytest.approx(3 * decode[0])


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
    with scripted(backend, [["x"], ["y"]]), pytest.raises(Cancelled):  # never ends by itself
        backend.sample([spec("a", 2, NeverStop(), max_tokens=200)], cancel=token)
    assert token.reads == 4  # one check before generate, then one per step
    set_token = CancelToken()
    set_token.cancel()
    with pytest.raises(Cancelled):
        backend.sample([spec("a", 1, NeverStop())], cancel=set_token)


def test_bad_members_are_clear_errors(tiny_qwen2: Path, tmp_path: Path) -> None:
    from cascode.engine.backends.transformers import TransformersBackend

    with pytest.raises(PlanError, match="member m: options.device: unknown transformers option"):
        TransformersBackend.from_member(
            Member("m", "transformers", str(tiny_qwen2), options={"device": "cpu"})
        )
    with pytest.raises(ModelError, match="member m: cannot load"):
        TransformersBackend.from_member(Member("m", "transformers", str(tmp_path)))
    with pytest.raises(ModelError, match="not-a-model"):
        TransformersBackend.from_member(Member("m", "transformers", "no-such-org/not-a-model"))
