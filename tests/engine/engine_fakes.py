"""A scripted backend and an in-process sandbox for unit tests of the cascade's logic.

The backend answers from a script instead of a model, but otherwise behaves
like a real one (`engine.backends.scripted`, the loop every scripted backend
shares): it continues each spec's prefix, applies the spec's stop rule to the
text (so the cut happens where a model's generation would stop), counts tokens
(four characters each) and checks the cancel token. The sandbox executes the
trusted snippets of these tests in-process with `exec` (the real sandbox
never runs code in the caller's process).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cascode.engine.backends import scripted
from cascode.engine.errors import SandboxUnavailable
from cascode.engine.extract import CodeStop
from cascode.engine.types import (
    ExecutionLimits,
    PassMatrix,
    SampleSpec,
    Verdict,
)


@dataclass
class ScriptedBackend(scripted.ScriptedBackend):
    """Answers solution specs from `solutions` and test specs from `tests`, in order.

    Each entry is the text generated after the spec's prefix (for a solution,
    the body after the prompt; for a test, the rest of the first
    `assert entry(` line and what follows). Entries are reused cyclically when
    a spec asks for more sequences than the script has. `calls` holds each
    `sample` call's specs.
    """

    name: str
    solutions: Sequence[str]
    tests: Sequence[str] = ()
    on_sample: Callable[[], None] | None = None  # called before sampling (e.g. to cancel)
    calls: list[list[SampleSpec]] = field(default_factory=list)
    closed: bool = False
    seconds_per_token: float = 0.001

    def begin(self, specs: Sequence[SampleSpec]) -> None:
        self.calls.append(list(specs))
        if self.on_sample is not None:
            self.on_sample()

    def pick(self, spec: SampleSpec, i: int) -> str:
        script = self.solutions if isinstance(spec.stop, CodeStop) else self.tests
        assert script, f"{self.name}: nothing scripted for {spec.stop!r}"
        return script[i % len(script)]

    def close(self) -> None:
        self.closed = True


@dataclass
class InProcessSandbox:
    """Runs context + solution, then each assert line, with `exec` (trusted test code)."""

    unavailable: bool = False  # raise SandboxUnavailable
    refuses: bool = False  # answer a matrix marked unverified (nothing was executed)
    calls: list[tuple[list[str], list[str], str]] = field(default_factory=list)

    def run_matrix(
        self,
        solutions: Sequence[str],
        tests: Sequence[str],
        *,
        context: str = "",
        limits: ExecutionLimits | None = None,
    ) -> PassMatrix:
        self.calls.append((list(solutions), list(tests), context))
        if self.unavailable:
            raise SandboxUnavailable("no isolation layer available (test)")
        if self.refuses:
            rows = tuple(tuple(Verdict.CRASHED for _ in tests) for _ in solutions)
            return PassMatrix(rows, unverified=True)
        rows = []
        for solution in solutions:
            ns: dict[str, object] = {}
            try:
                exec(context + "\n" + solution, ns)
            except Exception:
                rows.append(tuple(Verdict.FAILED for _ in tests))
                continue
            row = []
            for test in tests:
                try:
                    exec(test, dict(ns))
                    row.append(Verdict.PASSED)
                except Exception:
                    row.append(Verdict.FAILED)
            rows.append(tuple(row))
        return PassMatrix(tuple(rows), seconds=0.05)
