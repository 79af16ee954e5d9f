"""The evidence benchmark's behavioural agreement: candidates that return the same
values on the probes agree, whatever their code; one that differs on one probe does
not (a real sandbox runs them). Its rule asserts: generated once per member and model,
and judging an answer by whose rules it passes. The committed everyday figures reproduce."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from cascode.benchmarks.evidence_bench import (
    BITS,
    PROBE_HELPER,
    RULE_KINDS,
    Family,
    RuleCache,
    add_rules,
    all_rules,
    other_rules,
    own_rules,
    probe_lines,
    rules_codet,
)
from cascode.benchmarks.store import RecordStore
from cascode.engine.backends.scripted import ScriptedBackend
from cascode.engine.sandbox import create_sandbox
from cascode.engine.types import Task, Verdict

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


# -- rule asserts ------------------------------------------------------------------------

PERCENT = '''def percent(part, whole):
    """The share of `whole` that `part` is, in percent, rounded to one decimal.

    Raise ValueError when `whole` is 0 or negative.
    """
'''
RIGHT = PERCENT + "    if whole <= 0:\n        raise ValueError(whole)\n" \
                  "    return round(100 * part / whole, 1)\n"
NO_CHECK = PERCENT + "    return round(100 * part / whole, 1)\n"
TRUNCATES = PERCENT + "    if whole <= 0:\n        raise ValueError(whole)\n" \
                      "    return int(1000 * part / whole) / 10\n"


class _Rules(ScriptedBackend):
    """Writes one reply per request: the rules of `percent` as a member reads them."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.name = "scripted"

    def pick(self, spec, i):  # type: ignore[no-untyped-def]
        return self.reply


def _problem() -> SimpleNamespace:
    task = Task(task_id="p/percent", prompt=PERCENT, entry_point="percent")
    return SimpleNamespace(task=task, task_id=task.task_id)


def test_rule_asserts_are_generated_once_per_member_and_model(tmp_path):
    problem = _problem()
    cache = RuleCache(tmp_path, "small", "sha256:aa")
    backend = _Rules(" zero whole raises.\nassert raises(ValueError, percent, 1, 0)\n"
                     "# Rule 2: one decimal.\nassert percent(1, 3) == 33.3\n```\n")
    assert cache.missing([problem]) == [problem]
    assert cache.sample(backend, [problem], progress=False) == 1
    assert cache.sample(backend, [problem], progress=False) == 0 and backend.calls == 1
    again = RuleCache(tmp_path, "small", "sha256:aa")  # read back from the file
    assert again.lines(problem) == ["assert raises(ValueError, percent, 1, 0)",
                                    "assert percent(1, 3) == 33.3"]
    # Another model file is another key.
    assert RuleCache(tmp_path, "small", "sha256:bb").lines(problem) is None


def test_rule_kinds_judge_an_answer_by_whose_rules_it_passes(tmp_path):
    problem = _problem()
    data = [SimpleNamespace(problem=problem)] * 2
    fam = Family(owner=[0, 0, 1], solutions=[RIGHT, NO_CHECK, TRUNCATES], lines=[],
                 line_owner=[], passed=np.zeros((3, 0), dtype=bool), signature=[(), (), ()],
                 hidden=np.array([True, False, False]), n_probes=0)
    rules = [["assert raises(ValueError, percent, 1, 0)"],  # member 0 reads the raise
             ["assert percent(2, 3) == 66.7"]]  # member 1 reads the rounding
    boxes = []

    def sandbox():  # type: ignore[no-untyped-def]
        box = create_sandbox()
        need_sandbox(box)
        boxes.append(box)
        return box

    store = RecordStore(tmp_path / "rule-runs")
    try:
        fam = add_rules(fam, data, rules, store, sandbox)
    finally:
        for box in boxes:
            box.close()
    assert fam.rule_owner == [0, 1]
    assert fam.rule_passed.tolist() == [[True, True], [False, True], [True, False]]
    # The right answer holds every kind; the one without the check passes only the
    # other member's rule; the truncating one only its own member's.
    assert all(holds(fam, 0, 0) for holds in RULE_KINDS.values())
    assert (own_rules(fam, 1, 0), other_rules(fam, 1, 0), all_rules(fam, 1, 0)) == \
        (False, True, False)
    assert (own_rules(fam, 2, 1), other_rules(fam, 2, 1), all_rules(fam, 2, 1)) == \
        (False, True, False)
    assert not rules_codet(fam, 1, 0) and rules_codet(fam, 0, 0)
    # Executed once: a second call reads the store.
    assert add_rules(fam, data, rules, store, lambda: pytest.fail("ran again"))  \
        .rule_passed.tolist() == fam.rule_passed.tolist()


def test_the_everyday_evidence_figures_come_from_the_committed_caches(tmp_path, monkeypatch):
    """docs/method.md 8.1's everyday table: the committed samples, rule asserts and runs
    give `benchmarks/results/everyday/evidence.json` again, with no model and no new
    execution."""
    import json
    from pathlib import Path

    from cascode.benchmarks import evidence_bench

    root = Path(__file__).parents[2]
    monkeypatch.chdir(root)
    out = tmp_path / "evidence.json"
    assert evidence_bench.main([
        "plans/default.yaml", "--dataset", "everyday", "--cache", "benchmarks/results/humaneval",
        "--samples", "10", "--tiers", "fastest,fast,balanced,accurate", "--rules", "--offline",
        "--no-progress", "--out", str(out)]) == 0
    shipped = json.loads((root / "benchmarks/results/everyday/evidence.json").read_text())
    assert json.loads(out.read_text()) == shipped
    balanced = shipped["tiers"]["balanced"]
    assert balanced["rule met and family's CodeT choice"] == {"of": 21, "right": 19}
