"""The real-code data set (benchmarks/data/realcode): what it holds, the check that every
real body passes and every wrong body fails (in the real sandbox), and bad records."""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from pathlib import Path

import pytest

from cascode.benchmarks import realcode
from cascode.benchmarks.datasets import load_dataset
from cascode.engine.errors import DatasetError
from cascode.engine.sandbox import create_sandbox

from ..conftest import need


@pytest.fixture(scope="module")
def records() -> list[realcode.Record]:
    return realcode.read_records(strict=True)


def test_the_data_set_holds_what_it_promises(records):
    projects = realcode.load_projects()
    assert len(records) >= 150
    assert len({r.project.name for r in records}) >= 12
    kinds = Counter(r.kind for r in records)
    assert all(kinds[k] >= 25 for k in realcode.KINDS), kinds
    # Every project has a version, a licence and a split; every problem a path.
    assert all(p.version and p.license and p.split in realcode.SPLITS
               for p in projects.values())
    assert all(r.path.endswith(".py") and r.id.startswith(r.project.name + "/")
               for r in records)
    # The split is by project: the test split is code from projects the plan never saw.
    splits = Counter(r.project.split for r in records)
    assert all(splits[s] >= 30 for s in realcode.SPLITS), splits


def test_the_check_passes_every_real_body_and_fails_every_wrong_one(records):
    with create_sandbox() as sandbox:
        need(sandbox.available, f"no isolation layer works here: {sandbox.reason}")
        failures = realcode.check(records, sandbox)
    assert failures == []


def test_a_problem_is_the_editors_request(records):
    dataset = load_dataset("realcode:test")
    assert dataset.name == "realcode-test"
    assert {p.label("split") for p in dataset.problems} == {"test"}
    by_id = {f"realcode/{r.id}": r for r in records}
    for problem in dataset.problems[:20]:
        record = by_id[problem.task_id]
        # The prompt is the function as written up to the cursor; the file around it is
        # budgeted for the prompt, and the answer is judged in the completed file.
        assert record.request.fc.prompt == problem.task.prompt
        assert problem.task.context_budget is not None
        assert problem.request is not None and problem.request.source == record.source
        program = problem.program(record.solution(record.body))
        assert program.startswith(record.source.splitlines()[0])
        assert record.hidden.strip() in program


def _write(root: Path, records: list[dict]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "projects.json").write_text(json.dumps([{
        "name": "demo", "version": "1.0", "license": "MIT", "url": "https://example.org",
        "split": "test"}]))
    (root / "demo.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


GOOD = {
    "id": "demo/m.double", "project": "demo", "path": "demo/m.py", "function": "double",
    "kind": "stub", "source": 'def double(x):\n    """Twice x."""\n', "cursor": [0, 14],
    "body": "    return 2 * x\n",
    "wrong": [{"body": "    pass\n", "why": "pass"}, {"body": "    return x\n", "why": "once"}],
    "hidden": "assert double(2) == 4\nassert double(-1) == -2\n",
}


@pytest.mark.parametrize(("change", "message"), [
    ({"hidden": None}, "missing field 'hidden'"),
    ({"cursor": [9, 0]}, "cursor [9, 0] is outside the file"),
    ({"source": "def double(x):\n    y = (\n"}, "source does not parse"),
    ({"kind": "partial"}, "kind partial but the editor sees a stub"),
    ({"project": "other"}, "project 'other' is not in projects.json"),
])
def test_a_bad_record_is_named_and_skipped_or_refused(tmp_path, caplog, change, message):
    bad = {**GOOD, "id": "demo/m.bad", **change}
    if change.get("hidden", "") is None:
        del bad["hidden"]
    _write(tmp_path, [GOOD, bad])
    with caplog.at_level(logging.WARNING):
        kept = realcode.read_records(tmp_path)
    assert [r.id for r in kept] == ["demo/m.double"]
    assert any("demo/m.bad" in r.message and message in r.message for r in caplog.records)
    with pytest.raises(DatasetError, match=re.escape(message)):
        realcode.read_records(tmp_path, strict=True)


def test_the_check_names_a_wrong_body_that_passes(tmp_path):
    weak = {**GOOD, "hidden": "assert double(0) == 0\n"}  # `return x` passes it too
    _write(tmp_path, [weak])
    with create_sandbox() as sandbox:
        need(sandbox.available, f"no isolation layer works here: {sandbox.reason}")
        failures = realcode.check(realcode.read_records(tmp_path, strict=True), sandbox)
    assert [(f.id, f.what) for f in failures] == [
        ("demo/m.double", "a wrong body passes (once)")]


def test_the_check_names_an_example_the_real_body_fails(tmp_path):
    # A file trimmed too far: the doctest builds a class whose abstract method is gone.
    source = ("from abc import ABC, abstractmethod\n\n\nclass Base(ABC):\n"
              "    @abstractmethod\n    def size(self):\n        pass\n\n\n"
              "class Box(Base):\n    def double(self, x):\n"
              '        """Twice x.\n\n        >>> Box().double(2)\n        4\n        """\n')
    trimmed = {**GOOD, "id": "demo/m.Box.double", "function": "Box.double", "kind": "method",
               "source": source, "cursor": [15, 11], "body": "        return 2 * x\n",
               "wrong": [{"body": "        pass\n", "why": "pass"},
                         {"body": "        return x\n", "why": "once"}],
               "hidden": "Box.__abstractmethods__ = frozenset()\n"
                         "assert Box().double(2) == 4\nassert Box().double(-1) == -2\n"}
    _write(tmp_path, [GOOD, trimmed])
    with create_sandbox() as sandbox:
        need(sandbox.available, f"no isolation layer works here: {sandbox.reason}")
        failures = realcode.check(realcode.read_records(tmp_path, strict=True), sandbox)
    # The file's own doctest run says so too (file_findings), and so does the example.
    assert [(f.id, f.what) for f in failures] == [
        ("demo/m.Box.double", "the completed file is not whole: Box.double's "
                              "doctest 'Box().double(2)' raises TypeError(\"Can't instantiate "
                              "abstract class Box with abstract method size\")"),
        ("demo/m.Box.double", "the real body fails its example 'assert Box().double(2) == 4': "
                              "FAILED")]


SHELF = '''from collections.abc import Sequence


class Shelf(Sequence):
    def __init__(self, items):
        self._items = list(items)
        self.__size = len(self._items)

    def __len__(self):
        return self.__size

    def __getitem__(self, i):
        return self._items[self._pos(i)]

    def last(self):
        return pick(self._items, self.index(self._items[-1]))

    def first(self):
        """The first item."""
'''


def _shelf(tmp_path: Path, source: str = SHELF) -> realcode.Record:
    lines = source.splitlines()
    shelf = {**GOOD, "id": "demo/m.Shelf.first", "function": "Shelf.first", "kind": "method",
             "source": source, "cursor": [len(lines) - 1, len(lines[-1])],
             "body": "        return self._items[0]\n",
             "wrong": [{"body": "        pass\n", "why": "pass"},
                       {"body": "        return self._items[-1]\n", "why": "last"}],
             "hidden": "assert Shelf([3, 1]).first() == 3\n"}
    _write(tmp_path, [shelf])
    return realcode.read_records(tmp_path, strict=True)[0]


def test_the_check_names_what_a_trimmed_file_uses_but_never_defines(tmp_path):
    # The real body passes, yet the file is trimmed too far: __getitem__ calls a method
    # the file dropped, so an answer that indexes the shelf (`self[0]`) would fail. The
    # mixin's index (a base outside the file) and a private name (mangled) are there.
    record = _shelf(tmp_path)
    assert realcode.file_findings(record) == [
        "line 16: undefined name 'pick'",
        "Shelf.__getitem__ reads self._pos, which Shelf never sets or defines"]
    with create_sandbox() as sandbox:
        need(sandbox.available, f"no isolation layer works here: {sandbox.reason}")
        failures = realcode.check([record], sandbox)
    assert [f.what for f in failures] == [
        "the completed file is not whole: line 16: undefined name 'pick'",
        "the completed file is not whole: Shelf.__getitem__ reads self._pos, "
        "which Shelf never sets or defines"]
    # Defined, set through setattr, or left to subclasses: nothing is missing.
    whole = SHELF.replace("def last(self):\n        return pick(",
                          "def _pos(self, i):\n        return i\n\n"
                          "    def last(self):\n        return max(")
    assert realcode.file_findings(_shelf(tmp_path, whole)) == []
    assert realcode.file_findings(_shelf(tmp_path, whole.replace(
        "        self._items = list(items)", '        setattr(self, "_items", list(items))'))) == []


@pytest.mark.parametrize(("subclass", "found"), [
    ("", []),  # a base made for subclasses elsewhere
    ("class Version(Key):\n    @property\n    def _key(self):\n        return 1\n", []),
    ("class Version(Key):\n    pass\n",
     ["Key.__lt__ reads self._key, which Key never sets or defines"]),
])
def test_an_attribute_declared_for_subclasses_is_checked_on_those_in_the_file(
        tmp_path, subclass, found):
    source = ("from typing import TYPE_CHECKING\n\n\nclass Key:\n    if TYPE_CHECKING:\n"
              "        _key: int\n\n    def __lt__(self, other):\n"
              "        return self._key < other._key\n\n\n" + subclass
              + "\n\ndef double(x):\n    \"\"\"Twice x.\"\"\"\n")
    lines = source.splitlines()
    _write(tmp_path, [{**GOOD, "source": source,
                       "cursor": [len(lines) - 1, len(lines[-1])]}])
    record = realcode.read_records(tmp_path, strict=True)[0]
    assert realcode.file_findings(record) == found


@pytest.mark.parametrize(("helper", "found"), [
    # A kept function cut short: its own doctest says so.
    ("def halve(x):\n    \"\"\"\n    >>> halve(4)\n    2\n    \"\"\"\n    y = x // 2\n",
     ["halve's doctest 'halve(4)' gives '', not '2'"]),
    ("def halve(x):\n    \"\"\"\n    >>> halve(4)\n    2\n    \"\"\"\n    return x // 2\n", []),
    # A doctest using a name the trimmed file leaves out, and what depends on it: no finding.
    ("def halve(x):\n    \"\"\"\n    >>> log = []\n    >>> f = compose(log.append, halve)\n"
     "    >>> f(4)\n    >>> log\n    [2]\n    \"\"\"\n    return x // 2\n", []),
    # An example that expects the NameError it gets leaves the next ones in force.
    ("def halve(x):\n    \"\"\"\n    >>> undefined_name\n    Traceback (most recent call last):\n"
     "    NameError: name 'undefined_name' is not defined\n    >>> halve(4)\n    2\n"
     "    \"\"\"\n    y = x // 2\n",
     ["halve's doctest 'halve(4)' gives '', not '2'"]),
])
def test_the_check_runs_the_doctests_of_the_whole_file(tmp_path, helper, found):
    source = helper + "\n\ndef double(x):\n    \"\"\"Twice x.\"\"\"\n"
    lines = source.splitlines()
    _write(tmp_path, [{**GOOD, "source": source, "cursor": [len(lines) - 1, len(lines[-1])]}])
    assert realcode.file_findings(realcode.read_records(tmp_path, strict=True)[0]) == found


def test_the_real_code_test_split_replays_through_the_live_cascade():
    """The shipped plan's tiers on the real-code test split, from the committed caches:
    the live cascade takes the simulator's decisions (answering stage, solution, label)
    on every problem, including where candidates fail the static checks (which they do
    here, unlike on HumanEval) and so rank last and never verify."""
    from cascode.benchmarks import calibrate as cal
    from cascode.benchmarks.replay import CachedBackend, CachedSandbox, replay
    from cascode.engine.cascade import Cascade
    from cascode.engine.plans import load_plan

    root = Path(__file__).resolve().parents[2]
    plan = load_plan(root / "plans" / "default.yaml")
    out = root / "benchmarks" / "results" / "realcode"
    settings = cal.Settings(out=out, samples=3, progress=False, template=plan.template)
    family = cal.load_family_data(plan, load_dataset("realcode:test"), settings,
                                  generate=False)
    sim = family.simulator(3, repeat_last=True)
    assert sim.n_problems == 47
    # The tiers the 3 cached samples cover (the accurate tier samples k = 5).
    assert replay(plan, sim, tiers=["fastest", "fast", "balanced"]) == []
    backends = {name: CachedBackend(name, sim.data[m], plan.template)
                for m, name in enumerate(sim.members)}
    cascade = Cascade(plan, backends, CachedSandbox(sim.data), template=plan.template)
    results = [cascade.run(d.problem.task, "balanced") for d in sim.data[0]]
    unsound_seen = [r for r in results if any(f for s in r.stages for f in s.findings)]
    assert len(unsound_seen) >= 5, "the static checks found nothing on real code"
    for r in results:
        stage = r.accepted_stage
        if not stage.best_sound:
            assert not r.verified
            assert all(f for s in r.stages for f in s.findings), r.note


def test_the_real_code_report_is_reproduced_from_the_committed_caches(monkeypatch, capsys,
                                                                      tmp_path):
    """The README's real-code figures: the default plan on the real-code test split,
    from the committed caches alone, gives the committed report (outside 5 points of
    the HumanEval promise: exit 3)."""
    from cascode import cli

    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)
    # The accurate tier samples k = 5; the real-code caches hold 3 samples.
    args = ["evaluate", "plans/default.yaml", "--dataset", "realcode:test", "--samples", "3",
            "--tiers", "fastest,fast,balanced",
            "--cache", "benchmarks/results/realcode", "--offline", "--no-progress",
            "--out", str(tmp_path)]
    assert cli.main(args) == 3
    assert "0 member-problems generated" in capsys.readouterr().err
    name = "default-realcode-test-test.md"
    shipped = root / "benchmarks" / "results" / "realcode" / "evaluations" / name
    assert (tmp_path / name).read_text() == shipped.read_text()
