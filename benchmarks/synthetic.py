"""A synthetic family for tests and benchmarks: a scripted backend whose answers
are right with a set probability, deterministic per task and seed.

Every problem asks for `f_<i>(x)` returning `x + <offset>`; a solution returns
`x + c` and a test asserts `f_<i>(a) == a + c'`. A solution passes a line iff
c == c', and the hidden test iff c is the problem's offset, so any sandbox
(the real one, or `ArithmeticSandbox` without executing anything) gives the
same verdicts. Sampled items use the seed `spec.seed + i`, as real backends
do, so a stage of k asks for exactly the first k cached items.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from cascode.engine.backends import scripted
from cascode.engine.extract import AssertStop
from cascode.engine.types import PassMatrix, SampleSpec, Task, Verdict

from .datasets import Dataset, from_humaneval_records


def synthetic_records(n: int, name: str = "synthetic", start: int = 0,
                      examples: bool = False) -> list[dict[str, str]]:
    """n problems in HumanEval's format (functions f_<start> to f_<start + n - 1>).
    With `examples`, two problems in three carry a doctest example in their
    docstring (docs/method.md 7.1)."""
    records = []
    for i in range(start, start + n):
        offset = i % 7
        doc = f"Return x plus {offset}."
        if examples and i % 3 != 2:
            doc += f"\n\n    >>> f_{i}(1)\n    {1 + offset}\n    "
        records.append({
            "task_id": f"{name}/{i}",
            "prompt": f'def f_{i}(x):\n    """{doc}"""\n',
            "test": f"def check(candidate):\n    assert candidate(10) == {10 + offset}\n"
                    f"    assert candidate(-3) == {offset - 3}\n",
            "entry_point": f"f_{i}",
        })
    return records


def synthetic_dataset(n: int, name: str = "synthetic", examples: bool = False) -> Dataset:
    return from_humaneval_records(name, synthetic_records(n, name, examples=examples))


def _offset(task: Task) -> int:
    m = re.search(r"plus (-?\d+)", task.prompt)
    return int(m.group(1)) if m else 0


class ScriptedBackend(scripted.ScriptedBackend):
    """A member whose solutions are right with probability `skill` and whose
    assert lines are right with probability `test_skill` (greedy items use the
    draw of seed -1). Counts its calls and the sequences it generated; a token
    is 4 characters."""

    def __init__(self, name: str, skill: float, test_skill: float,
                 seconds_per_token: float = 0.01) -> None:
        self.name = name
        self.skill = skill
        self.test_skill = test_skill
        self.seconds_per_token = seconds_per_token

    def _rng(self, task: Task, kind: str, seed: int) -> np.random.Generator:
        h = hashlib.sha256(f"{self.name}|{task.entry_point}|{kind}|{seed}".encode()).digest()
        return np.random.default_rng(int.from_bytes(h[:8], "little"))

    def _value(self, rng: np.random.Generator, skill: float, offset: int) -> int:
        return offset if rng.random() < skill else offset + int(rng.integers(1, 3))

    def pick(self, spec: SampleSpec, i: int) -> str:
        task = _task_of(spec)
        seed = -1 if spec.greedy else spec.seed + i
        offset = _offset(task)
        if isinstance(spec.stop, AssertStop):
            rng = self._rng(task, "test", seed)
            lines = []
            for j in range(6):
                a = j + 1
                c = self._value(rng, self.test_skill, offset)
                lines.append(f"{a}) == {a + c}" if j == 0 else f"assert {task.entry_point}({a}) "
                             f"== {a + c}")
            return "\n".join(lines) + "\n```\n"
        rng = self._rng(task, "solution", seed)
        c = self._value(rng, self.skill, offset)
        return f"    return x + {c}\n```\n"


def _task_of(spec: SampleSpec) -> Task:
    """Recover the task from the prompt (the scripted backend sees only specs)."""
    content = spec.messages[0].content if spec.messages else spec.prefix
    m = re.search(r'def (f_\d+)\(x\):\n    """(Return x plus -?\d+\..*?)"""', content, re.DOTALL)
    if not m:
        raise ValueError("not a synthetic prompt")
    return Task(f'def {m.group(1)}(x):\n    """{m.group(2)}"""\n', m.group(1))


class ArithmeticSandbox:
    """Verdicts of synthetic solutions and lines without executing anything."""

    available = True
    reason = ""

    def close(self) -> None:
        pass

    def run_matrix(self, solutions: Sequence[str], tests: Sequence[str], *, context: str = "",
                   limits: object = None) -> PassMatrix:
        rows = []
        for s in solutions:
            c = _solution_constant(s)
            rows.append(tuple(Verdict.PASSED if _line_constant(t) == c else Verdict.FAILED
                              for t in tests))
        return PassMatrix(tuple(rows), seconds=0.001 * len(solutions) * max(len(tests), 1))

    def run_program(self, program: str) -> Verdict:
        m = re.search(r"return x \+ (-?\d+)", program)
        h = re.search(r"assert candidate\(10\) == (-?\d+)", program)
        if m and h and int(m.group(1)) == int(h.group(1)) - 10:
            return Verdict.PASSED
        return Verdict.FAILED


def _solution_constant(solution: str) -> int | None:
    m = re.search(r"return x \+ (-?\d+)", solution)
    return int(m.group(1)) if m else None


def _line_constant(line: str) -> int | None:
    m = re.fullmatch(r"assert f_\d+\((-?\d+)\) == (-?\d+)", line.strip())
    return int(m.group(2)) - int(m.group(1)) if m else None
