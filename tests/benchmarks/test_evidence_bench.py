"""The evidence benchmark's behavioural agreement: candidates that return the same
values on the probes agree, whatever their code; one that differs on one probe does
not (a real sandbox runs them)."""

from __future__ import annotations

import pytest

from cascode.benchmarks.evidence_bench import BITS, PROBE_HELPER, probe_lines
from cascode.engine.sandbox import create_sandbox
from cascode.engine.types import Verdict

from ..conftest import need_sandbox

LOOPED = '''def chunks(items, n):
    out = []
    for i in range(0, len(items), n):
        out.append(items[i:i + n])
    return iter(out)
'''
GENERATED = '''def chunks(items, n):
    return (items[i:i + n] for i in range(0, len(items), n))
'''
OFF_BY_ONE = '''def chunks(items, n):
    return (items[i:i + n] for i in range(0, len(items) - 1, n))
'''
RAISES = '''def chunks(items, n):
    if n < 1:
        raise ValueError(n)
    return (items[i:i + n] for i in range(0, len(items), n))
'''
SET_OF = '''def tags(words):
    return {w.lower() for w in words}
'''
SET_SORTED_FIRST = '''def tags(words):
    return set(sorted(w.lower() for w in words))
'''


def _signatures(solutions: list[str], calls: list[str]) -> list[tuple[int, ...]]:
    with create_sandbox() as box:
        need_sandbox(box)
        out = []
        for s in solutions:
            row = box.run_matrix([s], probe_lines(calls), context=PROBE_HELPER).verdicts[0]
            out.append(tuple(
                sum((v == Verdict.PASSED) << b for b, v in enumerate(row[p * BITS:(p + 1) * BITS]))
                for p in range(len(calls))))
        return out


@pytest.mark.parametrize("calls", [["chunks([1, 2, 3, 4, 5], 2)", "chunks([], 3)",
                                    "chunks('abcdefg', 3)"]])
def test_equal_outputs_agree_and_a_difference_on_one_probe_does_not(calls):
    looped, generated, off, raises = _signatures([LOOPED, GENERATED, OFF_BY_ONE, RAISES], calls)
    assert looped == generated  # an iterator's items are compared, not its address
    # The last short chunk is lost on two probes; the empty input agrees.
    assert off[1] == looped[1] and off[0] != looped[0] and off[2] != looped[2]
    assert raises == looped  # no probe reaches the raise


def test_an_exception_is_an_output_and_sets_compare_by_their_items():
    calls = ["chunks([1, 2], -1)", "chunks([1, 2], 1)"]
    looped, raises = _signatures([GENERATED, RAISES], calls)
    assert looped[1] == raises[1] and looped[0] != raises[0]
    words = ["Beta", "alpha", "Gamma", "delta", "ALPHA"]
    a, b = _signatures([SET_OF, SET_SORTED_FIRST], [f"tags({words!r})"])
    assert a == b
