"""The execution cache (docs/method.md 4.2): every cached solution of a member against
every assert line its cached tests offer (first MAX_ASSERTS of each, valid ones),
and against the dataset's hidden tests.

Solutions and lines are deduplicated before they run (a plan's suite keeps its
duplicates: the simulator maps each occurrence back to its unique line). A
record is keyed by what decides its verdicts: the context, the solutions, the
lines and the hidden test.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cascode.engine.examples import task_examples
from cascode.engine.extract import assert_subject, assert_text_end, taken_lines
from cascode.engine.methods import (
    AFTER_VERSION,
    GRAFT_VERSION,
    MatrixRunner,
    run_candidates,
)
from cascode.engine.prompts import MAX_ASSERTS, solution_text, unit_test_text
from cascode.engine.static_check import check_candidate
from cascode.engine.types import Example, Task, Verdict

from .datasets import Dataset, Problem
from .sampling import SampleCache, Samples
from .store import RecordStore, digest

EXECUTION_FORMAT = 1


class CalibrationSandbox(MatrixRunner, Protocol):
    """What runs candidates (`run_candidates`) plus whole programs (the hidden tests)."""

    def close(self) -> None: ...

    def run_program(self, program: str) -> Verdict: ...


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Extracted:
    """What the engine's extraction makes of one member's cached generations."""

    solutions: tuple[str, ...]  # index 0 greedy, 1..N sampled
    tests: tuple[str, ...]  # index 0 greedy, 1..N sampled (full text, up to MAX_ASSERTS)
    unique_solutions: tuple[str, ...]
    solution_index: tuple[int, ...]  # solution -> unique solution
    unique_lines: tuple[str, ...]
    # test -> its first MAX_ASSERTS assert lines as unique-line indices (-1: invalid)
    test_lines: tuple[tuple[int, ...], ...]


def extract(problem: Problem, samples: Samples) -> Extracted:
    task = problem.task
    solutions = tuple(solution_text(task, g.text) for g in samples.all_solutions)
    tests = tuple(unit_test_text(task, g.text) for g in samples.all_tests)
    unique_solutions = tuple(dict.fromkeys(solutions))
    sol_pos = {s: i for i, s in enumerate(unique_solutions)}
    lines: dict[str, int] = {}
    test_lines = []
    for test in tests:
        ids = []
        for line in taken_lines(test, assert_subject(task), MAX_ASSERTS):
            ids.append(-1 if line is None else lines.setdefault(line, len(lines)))
        test_lines.append(tuple(ids))
    return Extracted(
        solutions,
        tests,
        unique_solutions,
        tuple(sol_pos[s] for s in solutions),
        tuple(lines),
        tuple(test_lines),
    )


def _context_key(task: Task) -> dict[str, Any]:
    """What keys a record's context: the context; for one with a `from __future__`
    import, that it now runs unguarded (before, `executable_context` guarded it, a
    SyntaxError that failed every line: those records are not reused); for a method,
    its class and descriptors (its candidates run put back in the class,
    `executable_solution`; before, they ran as plain functions); for one whose file
    defines more below the function, those definitions (run after each candidate;
    before, they were left out and an answer calling one failed)."""
    key: dict[str, Any] = {"context": task.context}
    if "from __future__" in task.context:
        key["future"] = "unguarded"
    if task.method_of:
        key["method_of"] = [task.method_of, task.descriptors, GRAFT_VERSION]
    if task.context_after:
        key["after"] = [_sha(task.context_after), AFTER_VERSION]
    return key


def execution_key(problem: Problem, ex: Extracted) -> str:
    key = {
        "format": EXECUTION_FORMAT,
        **_context_key(problem.task),
        "solutions": [_sha(s) for s in ex.unique_solutions],
        "lines": list(ex.unique_lines),
        "hidden": _sha(problem.hidden_test),
    }
    if problem.request is not None:  # judged in its file: the file decides the verdicts
        key["file"] = _sha(f"{problem.request.cursor}\0{problem.request.source}")
    return digest(key)


class ExecutionCache:
    def __init__(self, out_dir: Path, member_name: str) -> None:
        self.store = RecordStore(out_dir / "executions" / member_name)
        self.member_name = member_name

    def get(self, problem: Problem, ex: Extracted) -> dict[str, Any] | None:
        return self.store.get(execution_key(problem, ex))

    def run(self, sandbox: CalibrationSandbox, problem: Problem, ex: Extracted) -> dict[str, Any]:
        """Execute what is not cached yet and append it; returns the record."""
        key = execution_key(problem, ex)
        record = self.store.get(key)
        if record is not None:
            return record
        verdicts, row_seconds = [], []
        unverified = False
        for solution in ex.unique_solutions:
            if ex.unique_lines:
                matrix = run_candidates(sandbox, problem.task, [solution], ex.unique_lines)
                verdicts.append([int(v) for v in matrix.verdicts[0]])
                row_seconds.append(round(matrix.seconds, 4))
                unverified = unverified or matrix.unverified
            else:
                verdicts.append([])
                row_seconds.append(0.0)
        hidden, hidden_seconds = [], []
        for solution in ex.unique_solutions:
            start = time.perf_counter()
            hidden.append(int(sandbox.run_program(problem.program(solution))))
            hidden_seconds.append(round(time.perf_counter() - start, 4))
        record = {
            "key": key,
            "task_id": problem.task_id,
            "member": self.member_name,
            "verdicts": verdicts,
            "row_seconds": row_seconds,
            "hidden": hidden,
            "hidden_seconds": hidden_seconds,
            "unverified": unverified,
        }
        self.store.append(record)
        return record


def example_key(problem: Problem, ex: Extracted, examples: Sequence[Example]) -> str:
    return digest(
        {
            "format": EXECUTION_FORMAT,
            **_context_key(problem.task),
            "solutions": [_sha(s) for s in ex.unique_solutions],
            "examples": [e.source for e in examples],
        }
    )


class ExampleCache:
    """Every cached solution against the problem's example lines E (docs/method.md 7.7),
    executed once, as the live stage runs them (the guarded file context)."""

    def __init__(self, out_dir: Path, member_name: str) -> None:
        self.store = RecordStore(out_dir / "examples" / member_name)
        self.member_name = member_name

    def get(self, problem: Problem, ex: Extracted,
            examples: Sequence[Example]) -> dict[str, Any] | None:
        if not examples:
            return _no_examples(ex)
        return self.store.get(example_key(problem, ex, examples))

    def run(self, sandbox: CalibrationSandbox, problem: Problem, ex: Extracted,
            examples: Sequence[Example]) -> dict[str, Any]:
        record = self.get(problem, ex, examples)
        if record is not None:
            return record
        lines = [e.source for e in examples]
        verdicts, row_seconds = [], []
        for solution in ex.unique_solutions:
            matrix = run_candidates(sandbox, problem.task, [solution], lines)
            verdicts.append([int(v) for v in matrix.verdicts[0]])
            row_seconds.append(round(matrix.seconds, 4))
        record = {
            "key": example_key(problem, ex, examples),
            "task_id": problem.task_id,
            "member": self.member_name,
            "verdicts": verdicts,
            "row_seconds": row_seconds,
        }
        self.store.append(record)
        return record


def _no_examples(ex: Extracted) -> dict[str, Any]:
    n = len(ex.unique_solutions)
    return {"verdicts": [[] for _ in range(n)], "row_seconds": [0.0] * n}


@dataclasses.dataclass(frozen=True)
class ProblemData:
    """Everything the simulator needs about one member on one problem."""

    problem: Problem
    samples: Samples
    ex: Extracted
    passed: np.ndarray  # bool [unique solutions, unique lines]
    hidden: np.ndarray  # bool [unique solutions]
    row_seconds: np.ndarray  # float [unique solutions]: sandbox time over all lines
    examples: tuple[Example, ...] = ()  # E (engine.examples.task_examples)
    example_passed: np.ndarray | None = None  # bool [unique solutions, examples]
    example_seconds: np.ndarray | None = None  # float [unique solutions]: time over E
    # bool [unique solutions]: passes the engine's static checks (docs/method.md 8.2);
    # None: not checked (every solution counts as sound).
    static_ok: np.ndarray | None = None

    def test_tokens(self, t: int, ln: int) -> int:
        """Generated tokens of test t up to its l-th assert line (its cost at l)."""
        g = self.samples.all_tests[t]
        head = len(self.ex.tests[t]) - len(g.text)  # the prefilled `assert f(`
        end = assert_text_end(self.ex.tests[t], ln) - head
        return g.tokens_up_to(max(end, 0)) if end < len(g.text) else g.generated_tokens


def execute_member(
    dataset: Dataset,
    samples: SampleCache,
    executions: ExecutionCache,
    sandbox: CalibrationSandbox | None,
    *,
    progress: bool = True,
    example_cache: ExampleCache | None = None,
) -> list[ProblemData]:
    """ProblemData for every problem, executing what the caches lack (needs `sandbox`)."""
    from tqdm import tqdm

    out = []
    bar = tqdm(dataset.problems, desc=f"executing {samples.member.name}", unit="problem",
               disable=not progress, dynamic_ncols=True)
    for problem in bar:
        cached = samples.get(problem)
        if cached is None:
            raise LookupError(f"{samples.member.name}: {problem.task_id} is not sampled")
        ex = extract(problem, cached)
        record = executions.get(problem, ex)
        if record is None:
            if sandbox is None:
                raise LookupError(f"{samples.member.name}: {problem.task_id} is not executed")
            record = executions.run(sandbox, problem, ex)
        examples = task_examples(problem.task)
        on_examples = None
        if example_cache is not None:
            on_examples = example_cache.get(problem, ex, examples)
            if on_examples is None:
                if sandbox is None:
                    raise LookupError(f"{samples.member.name}: {problem.task_id}'s examples "
                                      "are not executed")
                on_examples = example_cache.run(sandbox, problem, ex, examples)
        out.append(problem_data(problem, cached, ex, record, examples, on_examples))
    bar.close()
    return out


def problem_data(
    problem: Problem, samples: Samples, ex: Extracted, record: dict[str, Any],
    examples: Sequence[Example] = (), on_examples: dict[str, Any] | None = None,
) -> ProblemData:
    n_lines = len(ex.unique_lines)
    passed = np.zeros((len(ex.unique_solutions), n_lines), dtype=bool)
    for i, row in enumerate(record["verdicts"]):
        if row:
            passed[i] = np.asarray(row) == int(Verdict.PASSED)
    example_passed = example_seconds = None
    if on_examples is not None:
        example_passed = np.zeros((len(ex.unique_solutions), len(examples)), dtype=bool)
        for i, row in enumerate(on_examples["verdicts"]):
            if row:
                example_passed[i] = np.asarray(row) == int(Verdict.PASSED)
        example_seconds = np.asarray(on_examples["row_seconds"], dtype=float)
    return ProblemData(
        problem,
        samples,
        ex,
        passed,
        np.asarray(record["hidden"]) == int(Verdict.PASSED),
        np.asarray(record["row_seconds"], dtype=float),
        tuple(examples) if on_examples is not None else (),
        example_passed,
        example_seconds,
        # The live cascade's check (engine/cascade.py run_stage) on the same task.
        np.array([not check_candidate(problem.task, s) for s in ex.unique_solutions],
                 dtype=bool),
    )
