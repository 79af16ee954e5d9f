"""A scripted backend: answers read from a JSON script, one "decode step" at a time.

The script says, per member and per function name, which solution bodies and
which test continuations to return (cycled over the n sequences of a spec),
how long each decode step takes and how many steps a sequence has, and how
long loading the member takes (or that it fails). The cancel token is checked
between steps, as a real backend does; the spec's stop rule cuts each text
(`engine.backends.scripted`, the loop every scripted backend shares).
"""

from __future__ import annotations

import re
import time
from typing import Any

from cascode.engine.backends import scripted
from cascode.engine.errors import ModelError
from cascode.engine.plans import Member
from cascode.engine.types import CancelTokenLike, Generation, SampleSpec

_TEST_PREFIX = re.compile(r"assert (\w+)\($")
_DEF = re.compile(r"^\s*(?:async\s+)?def\s+(\w+)", re.MULTILINE)


class ScriptedBackend(scripted.ScriptedBackend):
    def __init__(self, name: str, script: dict[str, Any]) -> None:
        self.name = name
        self.script = script

    def _entry(self, spec: SampleSpec) -> tuple[dict[str, Any], bool]:
        """The script's entry for the spec's function, and whether the spec asks for a test."""
        test = _TEST_PREFIX.search(spec.prefix)
        name = test.group(1) if test else (_DEF.search(spec.prefix) or [None, "?"])[1]
        member = self.script.get("members", {}).get(self.name, {})
        return member.get(name) or member.get("*") or {}, test is not None

    def pick(self, spec: SampleSpec, i: int) -> str:
        entry, test = self._entry(spec)
        texts = entry.get("tests" if test else "solutions") or ["```"]
        return texts[i % len(texts)]

    def decode(self, spec: SampleSpec, text: str, cancel: CancelTokenLike | None) -> Generation:
        """The script's `steps` decode steps of `step_seconds` each, the cancel token
        checked before each step."""
        entry, _ = self._entry(spec)
        steps = int(entry.get("steps", self.script.get("steps", 4)))
        step_s = float(entry.get("step_seconds", self.script.get("step_seconds", 0.0)))
        for _ in range(steps):
            if cancel is not None:
                cancel.raise_if_cancelled()
            if step_s:
                time.sleep(step_s)
        return Generation(text, 40, steps, 0.0, steps * step_s)


def scripted_factory(script: dict[str, Any]):
    def factory(member: Member) -> ScriptedBackend:
        load = script.get("load", {}).get(member.name, {})
        if load.get("fail"):
            raise ModelError(load["fail"])
        if load.get("seconds"):
            time.sleep(float(load["seconds"]))
        return ScriptedBackend(member.name, script)

    return factory
