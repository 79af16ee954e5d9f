"""The real-code data set: functions of real, permissively licensed projects, each a file
as its user has it when asking for a completion (`benchmarks/data/realcode/README.md`).

A problem becomes the editor's request (`engine.context.request`): the function at the
cursor, the task with the file around it fitted to the context budget, and an answer
placed where the editor places it; the hidden tests then run after the completed file.

    python -m cascode.benchmarks.realcode check [--project P] [--id ID]
    python -m cascode.benchmarks.realcode stats

`check` proves every problem: the real body, placed as an answer would be, passes the
hidden tests and its examples, the completed file uses nothing it never defines, and
every wrong body fails the hidden tests. `stats` counts problems by project,
kind, split and examples.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cascode.engine.context.request import Request, request_at, request_task
from cascode.engine.errors import DatasetError
from cascode.engine.examples import task_examples
from cascode.engine.types import Verdict

from .datasets import Dataset, Problem

log = logging.getLogger(__name__)

DATA = Path(__file__).parent / "data" / "realcode"
KINDS = ("stub", "partial", "method", "context")
SPLITS = ("calibration", "validation", "test")
_PROJECT_FIELDS = ("name", "version", "license", "url", "split")
_FIELDS = ("id", "project", "path", "function", "kind", "source", "cursor", "body", "wrong",
           "hidden")


@dataclass(frozen=True)
class Project:
    name: str
    version: str
    license: str
    url: str
    split: str


@dataclass(frozen=True)
class Wrong:
    body: str
    why: str


@dataclass(frozen=True)
class Record:
    """One problem as stored: the file, the cursor, the real and the wrong bodies."""

    id: str
    project: Project
    path: str  # the module's path in the project's distribution
    function: str  # qualified name: `Class.method` or `function`
    kind: str
    source: str
    cursor: tuple[int, int]
    body: str  # the real code that follows the cursor, indented as in the file
    wrong: tuple[Wrong, ...]
    hidden: str
    request: Request

    def solution(self, body: str) -> str:
        """A whole function at column 0, as the cascade answers: what is written of the
        function (its prompt) followed by `body` (indented as in the file)."""
        indent = self.request.fc.indent
        lines = body.splitlines(keepends=True)
        dedented = [x[len(indent):] if x.startswith(indent) else x.lstrip(" \t")
                    for x in lines]
        return self.request.fc.prompt + "".join(dedented)


def load_projects(root: Path = DATA) -> dict[str, Project]:
    path = root / "projects.json"
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: cannot read: {e}") from None
    projects = {}
    for i, item in enumerate(items):
        missing = [f for f in _PROJECT_FIELDS if not isinstance(item.get(f), str)]
        if missing:
            raise DatasetError(f"{path}: project {i}: missing or non-string {missing[0]!r}")
        if item["split"] not in SPLITS:
            raise DatasetError(f"{path}: project {item['name']}: split must be one of "
                               f"{', '.join(SPLITS)}")
        projects[item["name"]] = Project(*(item[f] for f in _PROJECT_FIELDS))
    return projects


def read_records(root: Path = DATA, strict: bool = False) -> list[Record]:
    """Every readable problem of `root/*.jsonl`, in file order. A problem that cannot be
    read (a missing field, a cursor outside the file, a source that does not parse, no
    function to complete at the cursor) is skipped with a warning naming its id, or is a
    DatasetError with `strict`."""
    projects = load_projects(root)
    records: list[Record] = []
    skipped = 0
    for path in sorted(root.glob("*.jsonl")):
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                raw = json.loads(line)
                if not isinstance(raw, dict):
                    raise DatasetError(f"{where}: expected a JSON object")
                records.append(_record(where, raw, projects))
            except json.JSONDecodeError as e:
                raise DatasetError(f"{where}: not valid JSON: {e.msg}") from None
            except DatasetError as e:
                if strict:
                    raise
                skipped += 1
                log.warning("skipped: %s", e)
    seen: set[str] = set()
    for r in records:
        if r.id in seen:
            raise DatasetError(f"{root}: duplicate id {r.id!r}")
        seen.add(r.id)
    if skipped:
        log.warning("%s: skipped %d problems (--strict refuses the data set instead)", root,
                    skipped)
    return records


def _record(where: str, raw: dict[str, Any], projects: dict[str, Project]) -> Record:
    rid = raw.get("id", "(no id)")
    where = f"{where} ({rid})"
    for f in _FIELDS:
        if f not in raw:
            raise DatasetError(f"{where}: missing field {f!r}")
    for f in ("id", "project", "path", "function", "kind", "source", "body", "hidden"):
        if not isinstance(raw[f], str) or not raw[f].strip():
            raise DatasetError(f"{where}: field {f!r} must be a non-empty string")
    if raw["project"] not in projects:
        raise DatasetError(f"{where}: project {raw['project']!r} is not in projects.json")
    if raw["kind"] not in KINDS:
        raise DatasetError(f"{where}: kind must be one of {', '.join(KINDS)}")
    cursor = raw["cursor"]
    if (not isinstance(cursor, list) or len(cursor) != 2
            or not all(isinstance(c, int) for c in cursor)):
        raise DatasetError(f"{where}: cursor must be [line, column]")
    source: str = raw["source"]
    lines = source.splitlines()
    line, col = cursor
    if not (0 <= line < len(lines) + 1 and 0 <= col <= len(lines[line] if line < len(lines)
                                                              else "")):
        raise DatasetError(f"{where}: cursor {cursor} is outside the file "
                           f"({len(lines)} lines)")
    try:
        compile(source, where, "exec", dont_inherit=True)
    except SyntaxError as e:
        raise DatasetError(f"{where}: source does not parse: line {e.lineno}: {e.msg}") from None
    try:
        compile(raw["hidden"], where, "exec", dont_inherit=True)
    except SyntaxError as e:
        raise DatasetError(f"{where}: hidden does not parse: line {e.lineno}: {e.msg}") from None
    wrong = raw["wrong"]
    if (not isinstance(wrong, list) or not all(
            isinstance(w, dict) and isinstance(w.get("body"), str) and isinstance(w.get("why"), str)
            for w in wrong)):
        raise DatasetError(f"{where}: wrong must be a list of {{\"body\", \"why\"}} objects")
    request = request_at(source, (line, col))
    if request is None:
        raise DatasetError(f"{where}: no function to complete at the cursor {cursor}")
    name = raw["function"].rsplit(".", 1)[-1]
    if request.fc.name != name:
        raise DatasetError(f"{where}: the cursor is in {request.fc.name}, not {name}")
    if request.rest != (raw["kind"] == "partial"):
        raise DatasetError(
            f"{where}: kind {raw['kind']} but the editor sees "
            f"{'the rest of a written function' if request.rest else 'a stub'} at the cursor")
    record = Record(raw["id"], projects[raw["project"]], raw["path"], raw["function"],
                    raw["kind"], source, (line, col), raw["body"],
                    tuple(Wrong(w["body"], w["why"]) for w in wrong), raw["hidden"], request)
    for what, body in [("body", record.body), *(("a wrong body", w.body) for w in record.wrong)]:
        try:
            compile(record.solution(body), where, "exec", dont_inherit=True)
        except SyntaxError as e:
            raise DatasetError(f"{where}: {what} does not make a function that parses: "
                               f"line {e.lineno}: {e.msg}") from None
    return record


def to_problem(record: Record, context_tokens: int = 1024) -> Problem:
    """The record as the editor asks it: the task the server would build."""
    task = request_task(record.request, context_tokens=context_tokens)
    task = _replace_id(task, f"realcode/{record.id}")
    labels = (("kind", record.kind), ("project", record.project.name),
              ("split", record.project.split),
              ("examples", "yes" if task_examples(task) else "no"))
    return Problem(task, record.hidden, record.request, labels)


def _replace_id(task: Any, task_id: str) -> Any:
    import dataclasses

    return dataclasses.replace(task, task_id=task_id)


def load_realcode(split: str | None = None, *, strict: bool = False, root: Path = DATA,
                  context_tokens: int = 1024) -> Dataset:
    """The real-code problems (of one split, or all), as Problems the editor would ask."""
    if split is not None and split not in SPLITS:
        raise DatasetError(f"realcode: no split {split!r} (use {', '.join(SPLITS)})")
    records = [r for r in read_records(root, strict)
               if split is None or r.project.split == split]
    if not records:
        raise DatasetError(f"{root}: no problems" + (f" in split {split}" if split else ""))
    name = "realcode" if split is None else f"realcode-{split}"
    problems = tuple(to_problem(r, context_tokens) for r in records)
    return Dataset(name, problems, str(root))


# ---------------------------------------------------------------------------
# The check: every real body passes, every wrong body fails


@dataclass(frozen=True)
class Failure:
    id: str
    what: str


# Run in a fresh interpreter (`python -I`) on the completed file: every attribute a method
# reads through its first argument exists, once the file has run, on its class (bases
# outside the file included) or on a subclass of it in the file, or is set somewhere in
# the file (an attribute store; an identifier in a string: setattr, __slots__, namedtuple
# fields). A name only declared in the class body (an annotation, under TYPE_CHECKING) is
# left to subclasses when the file has none. Enums and classes with __getattr__ or
# __getattribute__ are not judged. Then every doctest of the file runs as doctest runs
# it (ELLIPSIS, NORMALIZE_WHITESPACE, IGNORE_EXCEPTION_DETAIL): a function cut short, or
# a class without the __repr__ or __eq__ its doctests show, fails. An example that
# fails on a name the file leaves out (NameError, ImportError) decides nothing, nor do
# the later examples of its docstring, which depend on it; one that expects the NameError
# it gets passes, as doctest says.
_FILE_PROBE = r"""
import ast, doctest, enum, json, sys, types
source = sys.stdin.read()
tree = ast.parse(source)
module = sys.modules["__realcode__"] = types.ModuleType("__realcode__")
space = module.__dict__
exec(compile(source, "<file>", "exec"), space)
known = {n.attr for n in ast.walk(tree)
         if isinstance(n, ast.Attribute) and not isinstance(n.ctx, ast.Load)}
known |= {n.value for n in ast.walk(tree)
          if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.isidentifier()}
found = set()
for c in tree.body:
    cls = space.get(c.name) if isinstance(c, ast.ClassDef) else None
    if not isinstance(cls, type) or issubclass(cls, enum.Enum) or any(
            k is not object and ("__getattr__" in vars(k) or "__getattribute__" in vars(k))
            for k in cls.__mro__):
        continue
    family, todo = [], [cls]  # the class and its subclasses (a base made for them)
    while todo:
        family.append(todo.pop())
        todo.extend(family[-1].__subclasses__())
    # Declared in the class body only (a bare annotation, under `if TYPE_CHECKING:`):
    # left to subclasses, which the file must then define when it has them.
    declared, body = set(), list(c.body)
    while body:
        s = body.pop()
        if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            declared.add(s.name)
        elif isinstance(s, (ast.Assign, ast.AnnAssign)):
            declared |= {t.id for t in (s.targets if isinstance(s, ast.Assign) else [s.target])
                         if isinstance(t, ast.Name)}
        else:
            body.extend(x for x in ast.iter_child_nodes(s) if isinstance(x, ast.stmt))
    for f in c.body:
        if (not isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) or not f.args.args
                or any(isinstance(d, ast.Name) and d.id == "staticmethod"
                       for d in f.decorator_list)):
            continue
        me = f.args.args[0].arg
        for n in ast.walk(f):
            if (isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Load)
                    and isinstance(n.value, ast.Name) and n.value.id == me):
                name = n.attr
                if name.startswith("__") and not name.endswith("__"):
                    name = "_" + c.name.lstrip("_") + name
                if (not any(hasattr(k, name) for k in family) and not {n.attr, name} & known
                        and not (name in declared and len(family) == 1)):
                    found.add(f"{c.name}.{f.name} reads {me}.{n.attr}, which {c.name} "
                              "never sets or defines")


TRIMMED = ("NameError:", "ImportError:", "ModuleNotFoundError:")
tainted = set()  # docstrings whose examples used a name trimmed away: the rest depend on it


def trimmed(got):
    lines = got.strip().splitlines()
    return bool(lines) and lines[-1].startswith(TRIMMED)


class Runner(doctest.DocTestRunner):
    def report_failure(self, out, test, example, got):
        if test.name in tainted or trimmed(got):
            tainted.add(test.name)
            return
        found.add(f"{test.name.split('.', 1)[1]}'s doctest {example.source.strip()!r} gives "
                  f"{got.strip()[-80:]!r}, not {example.want.strip()[:80]!r}")

    def report_unexpected_exception(self, out, test, example, exc_info):
        if issubclass(exc_info[0], (NameError, ImportError)):
            tainted.add(test.name)
        elif test.name not in tainted:
            found.add(f"{test.name.split('.', 1)[1]}'s doctest {example.source.strip()!r} "
                      f"raises {exc_info[1]!r:.80}")


runner = Runner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
                | doctest.IGNORE_EXCEPTION_DETAIL)
for test in doctest.DocTestFinder(exclude_empty=True).find(module, "__realcode__",
                                                           globs=dict(space)):
    runner.run(test, out=lambda _: None)
print(json.dumps(sorted(found)))
"""


def file_findings(record: Record) -> list[str]:
    """What the completed file (the real body placed) uses but never defines: names
    pyflakes finds bound nowhere, attributes its methods read that their class never
    has, and doctests of its functions that fail with what the file does define. A real
    user's file has none of these; a trimmed one that has them fails answers that use
    what the real module has (SortedList's `self[i]` needs `_pos`)."""
    import subprocess

    from pyflakes import checker as pyflakes  # type: ignore[import-untyped]
    from pyflakes import messages as flakes

    from cascode.engine.context.request import completed_source

    source = completed_source(record.request, record.solution(record.body)) or record.source
    tree = ast.parse(source)
    found = [f"line {m.lineno}: {m.message % m.message_args}"
             for m in pyflakes.Checker(tree, filename=record.id).messages
             if isinstance(m, flakes.UndefinedName)]
    probe = subprocess.run([sys.executable, "-I", "-c", _FILE_PROBE], input=source,
                           capture_output=True, text=True, timeout=60)
    if probe.returncode:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        return [*found, f"it does not run: {last}"]
    return [*found, *json.loads(probe.stdout)]


def check(records: Sequence[Record], sandbox: Any) -> list[Failure]:
    """Every real body, placed as an answer, passes its hidden tests, and its examples
    as the cascade runs them (a file trimmed too far, or an example the sandbox cannot
    run, would fail every answer); the completed file uses nothing it never defines
    (`file_findings`: a file trimmed too far fails right answers that use what the
    real module has); every wrong body (at least two a problem) fails the hidden
    tests."""
    from cascode.engine.methods import run_candidates

    failures: list[Failure] = []
    for r in records:
        problem = to_problem(r)
        failures.extend(Failure(r.id, f"the completed file is not whole: {what}")
                        for what in file_findings(r))
        if len(r.wrong) < 2:
            failures.append(Failure(r.id, f"{len(r.wrong)} wrong bodies (at least 2)"))
        verdict = sandbox.run_program(problem.program(r.solution(r.body)))
        if verdict != Verdict.PASSED:
            failures.append(Failure(r.id, f"the real body does not pass: {verdict.name}"))
        examples = task_examples(problem.task)
        if examples:
            matrix = run_candidates(sandbox, problem.task, [r.solution(r.body)],
                                    [e.source for e in examples])
            failures.extend(Failure(r.id, f"the real body fails its example {e.text!r}: "
                                          f"{v.name}")
                            for e, v in zip(examples, matrix.verdicts[0], strict=True)
                            if v != Verdict.PASSED)
        for w in r.wrong:
            if sandbox.run_program(problem.program(r.solution(w.body))) == Verdict.PASSED:
                failures.append(Failure(r.id, f"a wrong body passes ({w.why})"))
    return failures


def stats(records: Sequence[Record]) -> dict[str, Any]:
    problems = [to_problem(r) for r in records]
    by: dict[str, Counter[str]] = {k: Counter() for k in ("project", "kind", "split",
                                                          "examples")}
    for p in problems:
        for k in by:
            by[k][p.label(k)] += 1
    return {"problems": len(problems), **{k: dict(sorted(v.items())) for k, v in by.items()}}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cascode.benchmarks.realcode",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("command", choices=("check", "stats"))
    parser.add_argument("--project", help="only this project's problems")
    parser.add_argument("--id", help="only this problem")
    parser.add_argument("--root", type=Path, default=DATA, help="the data set's folder")
    parser.add_argument("--strict", action="store_true",
                        help="a problem that cannot be read is an error, not skipped")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        records = read_records(args.root, args.strict)
    except DatasetError as e:
        print(f"realcode: {e}", file=sys.stderr)
        return 2
    records = [r for r in records
               if (args.project is None or r.project.name == args.project)
               and (args.id is None or r.id == args.id)]
    if args.command == "stats":
        print(json.dumps(stats(records), indent=2))
        return 0
    from cascode.engine.sandbox import create_sandbox

    with create_sandbox() as sandbox:
        failures = check(records, sandbox)
    for f in failures:
        print(f"FAIL {f.id}: {f.what}")
    print(f"{len(records)} problems, {sum(1 + len(r.wrong) for r in records)} bodies, "
          f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
