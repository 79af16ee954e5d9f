"""benchmarks/synthetic.py's claim, checked: on the synthetic problems, solutions and
tests, `ArithmeticSandbox` gives the real sandbox's verdicts. The calibration,
evaluation, replay, price and simulator tests stand on it (they execute nothing).

Every call that a calibration makes (each unique solution against its member's
unique assert lines, and each solution's hidden-test program) goes to both
sandboxes, and their verdicts must be equal, call by call.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from cascode.benchmarks import calibrate as cal
from cascode.benchmarks.synthetic import ArithmeticSandbox, synthetic_dataset
from cascode.engine.plans import parse_plan
from cascode.engine.types import PassMatrix, Verdict

from ..conftest import need_sandbox
from .conftest import Factory, family_plan

P, F = Verdict.PASSED, Verdict.FAILED


class Both:
    """Runs every request on the real sandbox and on the arithmetic one; answers
    with the real verdicts and records both."""

    def __init__(self, real) -> None:  # type: ignore[no-untyped-def]
        self.real = real
        self.arithmetic = ArithmeticSandbox()
        self.matrices: list[tuple[str, tuple, tuple]] = []
        self.programs: list[tuple[str, Verdict, Verdict]] = []

    def run_matrix(self, solutions: Sequence[str], tests: Sequence[str], *,
                   context: str = "") -> PassMatrix:
        real = self.real.run_matrix(solutions, tests, context=context)
        arithmetic = self.arithmetic.run_matrix(solutions, tests, context=context)
        self.matrices.append((f"{solutions!r} x {tests!r}", real.verdicts, arithmetic.verdicts))
        return real

    def run_program(self, program: str) -> Verdict:
        real = self.real.run_program(program)
        self.programs.append((program, real, self.arithmetic.run_program(program)))
        return real

    def close(self) -> None:
        pass  # the fixture closes the real sandbox, after every member has used it


@pytest.fixture(scope="module")
def both() -> Iterator[Both]:
    from cascode.engine.sandbox import create_sandbox

    real = create_sandbox()
    need_sandbox(real)
    yield Both(real)
    real.close()


def test_the_arithmetic_sandbox_gives_the_real_sandboxs_verdicts(both: Both, tmp_path) -> None:
    plan = parse_plan(family_plan(["small", "medium", "large"]))
    # 21 problems: every offset (0..6) three times; 4 samples per member and problem.
    family = cal.load_family_data(plan, synthetic_dataset(21),
                                  cal.Settings(out=tmp_path, samples=4, progress=False),
                                  backend_factory=Factory(), sandbox_factory=lambda: both)
    assert [len(d) for d in family.data] == [21, 21, 21]
    assert len(both.matrices) > 100 and len(both.programs) > 100
    wrong = [(what, real, arith) for what, real, arith in both.matrices if real != arith]
    assert wrong == [], f"{len(wrong)} of {len(both.matrices)} matrices differ, first: {wrong[0]}"
    wrong_programs = [(prog, real, arith) for prog, real, arith in both.programs if real != arith]
    assert wrong_programs == [], (
        f"{len(wrong_programs)} of {len(both.programs)} programs differ, first: "
        f"{wrong_programs[0]}")
    # Not vacuous: both verdicts occur, on assert lines and on hidden tests.
    cells = {v for _, real, _ in both.matrices for row in real for v in row}
    assert cells == {P, F}
    assert {real for _, real, _ in both.programs} == {P, F}

