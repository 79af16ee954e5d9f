"""A scripted backend: answers read from a JSON script, one "decode step" at a time.

The script says, per member and per function name, which solution bodies and
which test continuations to return (cycled over the n sequences of a spec),
how long each decode step takes and how many steps a sequence has, and how
long loading the member takes (or that it fails). The cancel token is checked
between steps, as a real backend does.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

from cascode.engine.errors import ModelError
from cascode.engine.plans import Member
from cascode.engine.types import CancelTokenLike, Generation, SampleSpec

_TEST_PREFIX = re.compile(r"assert (\w+)\($")
_DEF = re.compile(r"^\s*(?:async\s+)?def\s+(\w+)", re.MULTILINE)


class ScriptedBackend:
    def __init__(self, name: str, script: dict[str, Any]) -> None:
        self.name = name
        self.script = script
        self.calls = 0

    def _entry(self, function: str) -> dict[str, Any]:
        member = self.script.get("members", {}).get(self.name, {})
        return member.get(function) or member.get("*") or {}

    def sample(
        self, specs: Sequence[SampleSpec], *, cancel: CancelTokenLike | None = None
    ) -> list[list[Generation]]:
        self.calls += 1
        out = []
        for spec in specs:
            test = _TEST_PREFIX.search(spec.prefix)
            name = test.group(1) if test else (_DEF.search(spec.prefix) or [None, "?"])[1]
            entry = self._entry(name)
            steps = int(entry.get("steps", self.script.get("steps", 4)))
            step_s = float(entry.get("step_seconds", self.script.get("step_seconds", 0.0)))
            texts = entry.get("tests" if test else "solutions") or ["```"]
            gens = []
            for i in range(spec.n):
                for _ in range(steps):
                    if cancel is not None:
                        cancel.raise_if_cancelled()
                    if step_s:
                        time.sleep(step_s)
                text = texts[i % len(texts)]
                gens.append(Generation(text, 40, steps, 0.0, steps * step_s))
            out.append(gens)
        return out

    def close(self) -> None:
        pass


def scripted_factory(script: dict[str, Any]):
    def factory(member: Member) -> ScriptedBackend:
        load = script.get("load", {}).get(member.name, {})
        if load.get("fail"):
            raise ModelError(load["fail"])
        if load.get("seconds"):
            time.sleep(float(load["seconds"]))
        return ScriptedBackend(member.name, script)

    return factory
