"""The sampling loop of a backend that answers from a script instead of a model.

The synthetic family and the replay of cached generations (benchmarks/), the
server benchmark's constant backend and the tests' fakes differ only in what a
sequence says. `ScriptedBackend` runs them as a real backend runs a batch: every
spec's n sequences in order, the cancel token checked before each sequence, the
spec's stop rule applied, and the tokens counted with where each ends
(`Generation.token_ends`). A subclass supplies `pick(spec, i)`, the i-th
sequence of `spec` before its stop rule, either as text (cut, then counted
here: `chars_per_token` characters a token, `seconds_per_token` each) or as a
generation measured elsewhere (cut here, its counts kept up to the cut).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ..types import CancelTokenLike, Generation, SampleSpec
from .chat import apply_stop, stop_at


class ScriptedBackend:
    """A backend (`engine.types.Backend`) whose sequences come from `pick`."""

    name: str
    calls: int = 0  # `sample` calls
    sequences: int = 0  # sequences generated
    chars_per_token: int = 4
    # The decode time reported per generated token; a prompt token costs a tenth of it.
    seconds_per_token: float = 0.0

    def pick(self, spec: SampleSpec, i: int) -> str | Generation:
        """The i-th sequence of `spec`, before the spec's stop rule."""
        raise NotImplementedError

    def sample(
        self, specs: Sequence[SampleSpec], *, cancel: CancelTokenLike | None = None
    ) -> list[list[Generation]]:
        self.begin(specs)
        out = []
        for spec in specs:
            group = []
            for i in range(spec.n):
                if cancel is not None:
                    cancel.raise_if_cancelled()
                picked = self.pick(spec, i)
                if isinstance(picked, Generation):
                    group.append(cut_generation(spec, picked))
                else:
                    group.append(self.decode(spec, apply_stop(spec, picked)[0], cancel))
                self.sequences += 1
            out.append(group)
        return out

    def begin(self, specs: Sequence[SampleSpec]) -> None:
        """Called once per `sample`, before any sequence: counts the call."""
        self.calls += 1

    def decode(self, spec: SampleSpec, text: str, cancel: CancelTokenLike | None) -> Generation:
        """The generation of `text` (already cut by the stop rule), counted at this
        backend's pace. The prompt's evaluation is shared by the spec's n sequences."""
        ends = token_ends(text, self.chars_per_token)
        prompt_tokens = prompt_chars(spec) // self.chars_per_token
        return Generation(
            text, prompt_tokens, len(ends),
            prompt_tokens * self.seconds_per_token / 10 / spec.n,
            len(ends) * self.seconds_per_token, ends,
        )

    def close(self) -> None:
        pass


def token_ends(text: str, chars_per_token: int) -> tuple[int, ...]:
    """Where each token of `text` ends when a token is `chars_per_token` characters
    (the last one may be shorter)."""
    return tuple(min(len(text), j)
                 for j in range(chars_per_token, len(text) + chars_per_token, chars_per_token))


def prompt_chars(spec: SampleSpec) -> int:
    """The request's text: the messages (chat), or the prefix alone (plain completion)."""
    return sum(len(m.content) for m in spec.messages) if spec.messages else len(spec.prefix)


def cut_generation(spec: SampleSpec, g: Generation) -> Generation:
    """A measured generation as it would have ended under `spec`'s stop rule: the
    tokens up to the cut, and the decode time in proportion."""
    end = stop_at(spec.prefix, spec.stop, g.text)
    if end is None or end >= len(g.text):
        return g
    text = g.text[:end]
    tokens = g.tokens_up_to(end) if text else 0
    share = tokens / g.generated_tokens if g.generated_tokens else 0.0
    return dataclasses.replace(
        g,
        text=text,
        generated_tokens=tokens,
        decode_seconds=g.decode_seconds * share,
        token_ends=tuple(min(e, end) for e in g.token_ends[:tokens]),
    )
