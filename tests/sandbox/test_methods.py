"""A method's candidates run put back in their class (`methods.executable_solution`), on
the real worker: the class of the file context is built by the tests, private names are
mangled, `super()` finds the class, and the descriptor decorators the prompt leaves out
(`@property`, `@x.setter`, `@classmethod`, `@functools.cached_property`) apply again."""

from __future__ import annotations

import dataclasses

from cascode.engine.context import function_at
from cascode.engine.extract import assert_subject, is_valid_assert
from cascode.engine.methods import executable_solution, task_context
from cascode.engine.sandbox.process import ProcessSandbox
from cascode.engine.types import Task, Verdict

P, F = Verdict.PASSED, Verdict.FAILED

SOURCE = '''\
from __future__ import annotations

import functools
from typing import Iterable


class Named:
    def __init__(self, name: str) -> None:
        self.name = name


class Inventory(Named):
    """Counts of items by name."""

    LIMIT = 100

    def __init__(self, name: str, items: Iterable[str] = ()) -> None:
        super().__init__(name)
        self.__counts: dict[str, int] = {}
        for item in items:
            self.__counts[item] = self.__counts.get(item, 0) + 1

    @property
    def size(self) -> int:
        return sum(self.__counts.values())

    @size.setter
    def size(self, n: int) -> None:
        """Keep only the first n kinds of item, oldest first."""
        kept = list(self.__counts)[:n]
        self.__counts = {k: self.__counts[k] for k in kept}

    @classmethod
    def of(cls, *items: str) -> Inventory:
        """An inventory named "stock" holding `items`."""
        return cls("stock", items)

    @functools.cached_property
    def names(self) -> list[str]:
        return sorted(self.__counts)

    def add(self, item: str, n: int = 1) -> int:
        """Add n of item; the new count. Raises ValueError past LIMIT items."""
        if self.size + n > self.LIMIT:
            raise ValueError(item)
        self.__counts[item] = self.__counts.get(item, 0) + n
        return self.__counts[item]

    def __add__(self, other: Inventory) -> Inventory:
        return Inventory(self.name, [*self.__items(), *other.__items()])

    __radd__ = __add__

    def __items(self) -> list[str]:
        return [k for k, n in self.__counts.items() for _ in range(n)]

    def _get_limit(self) -> int:
        return self.LIMIT

    limit = property(_get_limit)

    class Entry:
        def label(self) -> str:
            """The entry's label."""
            return "entry"
'''


def task_of(header: str, source: str = SOURCE) -> Task:
    line = next(i for i, text in enumerate(source.splitlines()) if text.strip() == header)
    fc = function_at(source, line)
    assert fc is not None
    return fc.task()


def run(sandbox: ProcessSandbox, task: Task, candidates: list[str],
        lines: list[str], *, checks: tuple[str, ...] = ()) -> list[list[Verdict]]:
    # Lines as a generated test or an example would hold them (an example's setup first),
    # then `checks` of how the candidate sits in its class.
    for line in lines:
        assert is_valid_assert(line.splitlines()[-1], assert_subject(task)), line
    return run_in(sandbox, task, candidates, [*lines, *checks])


def run_in(sandbox: ProcessSandbox, task: Task, candidates: list[str],
           lines: list[str]) -> list[list[Verdict]]:
    """The verdicts of each candidate, put back in its class, on any `lines`."""
    m = sandbox.run_matrix([executable_solution(task, c) for c in candidates], lines,
                           context=task_context(task))
    return [list(row) for row in m.verdicts]


INIT_RIGHT = '''\
def __init__(self, name: str, items: Iterable[str] = ()) -> None:
    super().__init__(name)
    self.__counts: dict[str, int] = {}
    for item in items:
        self.__counts[item] = self.__counts.get(item, 0) + 1
'''
# Forgets the base class: `name` is never set.
INIT_WRONG = '''\
def __init__(self, name: str, items: Iterable[str] = ()) -> None:
    self.__counts = {i: 1 for i in items}
'''


def test_init_builds_the_class_with_super_and_private_names(sandbox: ProcessSandbox) -> None:
    task = task_of("def __init__(self, name: str, items: Iterable[str] = ()) -> None:")
    assert (task.method_of, task.descriptors, assert_subject(task)) == (
        "Inventory", "", "Inventory.__init__")
    lines = ["assert Inventory('a', ['x', 'x', 'y']).size == 3",
             "assert Inventory('shop').name == 'shop'",
             "assert Inventory('a', ['b', 'a', 'b']).names == ['a', 'b']",
             "assert isinstance(Inventory('a'), Named)"]
    assert run(sandbox, task, [INIT_RIGHT, INIT_WRONG], lines) == [
        [P, P, P, P], [F, F, P, P]]  # the wrong one counts each item once and has no name


def test_setter_classmethod_and_plain_method(sandbox: ProcessSandbox) -> None:
    # The context's class lacks the method the task is for; every other one is there.
    assert "self.__counts = {k: self.__counts[k]" not in task_of(
        "def size(self, n: int) -> None:").context
    setter = task_of("def size(self, n: int) -> None:")
    assert setter.descriptors == "@size.setter\n"
    keep = ("def size(self, n: int) -> None:\n"
            "    kept = [k for k in self._Inventory__counts][:n]\n"
            "    self._Inventory__counts = {k: self._Inventory__counts[k] for k in kept}\n")
    lines = ["s = Inventory('a', ['x', 'y', 'z'])\ns.size = 2\nassert Inventory('b').size == 0"
             " and s.size == 2"]
    assert run(sandbox, setter, [keep, "def size(self, n: int) -> None:\n    pass\n"],
               lines) == [[P], [F]]

    of = task_of("def of(cls, *items: str) -> Inventory:")
    assert of.descriptors == "@classmethod\n" and assert_subject(of) == "Inventory.of"
    right = 'def of(cls, *items: str) -> Inventory:\n    return cls("stock", items)\n'
    assert run(sandbox, of, [right], ["assert Inventory.of('a', 'a').size == 2",
                                      "assert Inventory.of().name == 'stock'"]) == [[P, P]]

    add = task_of("def add(self, item: str, n: int = 1) -> int:")
    right = ("def add(self, item: str, n: int = 1) -> int:\n"
             "    if self.size + n > self.LIMIT:\n"
             "        raise ValueError(item)\n"
             "    self.__counts[item] = self.__counts.get(item, 0) + n\n"
             "    return self.__counts[item]\n")
    lines = ["assert Inventory('a', ['x']).add('x', 2) == 3",
             "s = Inventory('a')\nassert s.add('y', 100) == 100\n"
             "try:\n    s.add('y')\nexcept ValueError:\n    pass\nelse:\n"
             "    raise AssertionError('no ValueError')"]
    wrong = right.replace("self.size + n > self.LIMIT", "False")
    assert run(sandbox, add, [right, wrong], lines[:1]) == [[P], [P]]
    assert run_in(sandbox, add, [right, wrong], lines[1:]) == [[P], [F]]


def test_what_the_class_body_binds_to_the_method_is_the_candidate(
        sandbox: ProcessSandbox) -> None:
    # The context's class reads the method it lacks (`__radd__ = __add__`, a property
    # of `_get_limit`, a private `__items`): a stand-in holds its place until the
    # candidate is put back.
    add = task_of("def __add__(self, other: Inventory) -> Inventory:")
    assert "__radd__ = __add__" in add.context and "def __add__" not in add.context
    right = ("def __add__(self, other: Inventory) -> Inventory:\n"
             "    return Inventory(self.name, [*self.__items(), *other.__items()])\n")
    wrong = "def __add__(self, other: Inventory) -> Inventory:\n    return self\n"
    lines = ["assert (Inventory('a', ['x']) + Inventory('b', ['x'])).size == 2"]
    checks = ("assert Inventory.__radd__ is Inventory.__add__",
              "assert '__add__' not in globals()")
    assert run(sandbox, add, [right, wrong], lines, checks=checks) == [[P, P, P], [F, P, P]]

    limit = task_of("def _get_limit(self) -> int:")
    lines = ["assert Inventory('a').limit == 100"]
    assert run(sandbox, limit, ["def _get_limit(self) -> int:\n    return self.LIMIT\n",
                                "def _get_limit(self) -> int:\n    return 0\n"],
               [f"{lines[0]} and Inventory('a')._get_limit() == 100"]) == [[P], [F]]

    items = task_of("def __items(self) -> list[str]:")
    code = ("def __items(self) -> list[str]:\n"
            "    return [k for k, n in self.__counts.items() for _ in range(n)]\n")
    assert run_in(sandbox, items, [code], [
        "assert (Inventory('a', ['x']) + Inventory('b', ['y'])).size == 2"]) == [[P]]


def test_nested_class_and_the_names_around_it(sandbox: ProcessSandbox) -> None:
    task = task_of("def label(self) -> str:")
    assert task.method_of == "Inventory.Entry" and task.owner == "Inventory.Entry"
    code = 'def label(self) -> str:\n    return "entry"\n'
    # The graft binds no name of its own: a global `Entry` of the file stays itself.
    context = task_context(task) + "\nEntry = 'a global of the file'\n"
    m = sandbox.run_matrix([executable_solution(task, code)],
                           ["assert Inventory.Entry().label() == 'entry'",
                            "assert Entry == 'a global of the file'",
                            "assert Inventory.__name__ == 'Inventory'",
                            "assert 'label' not in globals()"],
                           context=context)
    assert m.verdicts == ((P, P, P, P),)


def test_without_its_class_a_candidate_runs_as_written(sandbox: ProcessSandbox) -> None:
    task = dataclasses.replace(task_of("def add(self, item: str, n: int = 1) -> int:"),
                               context="")
    code = "def add(self, item: str, n: int = 1) -> int:\n    return n\n"
    m = sandbox.run_matrix([executable_solution(task, code), executable_solution(
        task, "def add(self, item:\n")], ["assert add(None, 'x', 3) == 3"])
    assert m.verdicts == ((P,), (F,))


def test_functions_run_unchanged() -> None:
    task = Task("def f(x):\n", entry_point="f", context="class A:\n    pass\n")
    code = "def f(x):\n    return x\n"
    assert executable_solution(task, code) is code


def test_helpers_and_imports_go_where_the_editor_puts_them(sandbox: ProcessSandbox) -> None:
    # The editor nests a candidate's helpers and imports at the start of the method's
    # body (context.body.insert_body): a helper is a local function, not a method.
    source = ("class Store:\n"
              "    def clean(self, s: str) -> str:\n"
              '        """s without punctuation, lowercased."""\n')
    task = task_of("def clean(self, s: str) -> str:", source)
    local = ("import string\n\n"
             "def clean(self, s: str) -> str:\n    return _strip(s).lower()\n\n\n"
             "def _strip(s):\n    return ''.join(c for c in s if c not in string.punctuation)\n")
    as_method = ("def clean(self, s: str) -> str:\n    return self._strip(s).lower()\n\n\n"
                 "def _strip(self, s):\n    return s.replace('!', '')\n")
    restated = ("def clean(self, s: str) -> str:\n    return s.lower().strip('!')\n\n\n"
                "def clean(self, s: str) -> str:\n    return s\n")
    line = "assert Store().clean('Hi!') == 'hi'"
    assert run_in(sandbox, task, [local, as_method, restated], [line]) == [[P], [F], [P]]


def test_a_method_named_like_a_builtin_leaves_the_builtin_to_the_file(
        sandbox: ProcessSandbox) -> None:
    source = ("import dataclasses\n\n\n"
              "@dataclasses.dataclass\n"
              "class Tags:\n"
              "    seen: set = dataclasses.field(default_factory=set)\n\n"
              "    def names(self) -> list[str]:\n"
              "        return sorted(self.seen)\n\n"
              "    def set(self, name: str) -> None:\n"
              '        """Mark name as seen."""\n')
    task = task_of("def set(self, name: str) -> None:", source)
    code = "def set(self, name: str) -> None:\n    self.seen.add(name)\n"
    lines = ["t = Tags()\nt.set('b')\nt.set('a')\nassert t.names() == ['a', 'b']"]
    assert run_in(sandbox, task, [code], lines) == [[P]]


def test_checks_made_when_the_class_was_made_see_the_method(sandbox: ProcessSandbox) -> None:
    # An abstract method of a base, a dataclass's __post_init__, a getter whose setter
    # the file defines, and hooks Python makes class methods of.
    source = '''\
import abc
import dataclasses


class Shape(abc.ABC):
    @abc.abstractmethod
    def area(self) -> float: ...


class Rect(Shape):
    def __init__(self, w: float, h: float) -> None:
        self.w, self.h = w, h

    def area(self) -> float:
        """Width times height."""


@dataclasses.dataclass
class Span:
    start: int
    end: int = 0

    def __post_init__(self) -> None:
        """An end before the start is the start."""


class Temp:
    def __init__(self) -> None:
        self._c = 0.0

    @property
    def celsius(self) -> float:
        """Degrees Celsius."""

    @celsius.setter
    def celsius(self, value: float) -> None:
        self._c = value


class Box:
    def __class_getitem__(cls, item):
        """Box[int] names the type of what it holds."""
'''
    area = task_of("def area(self) -> float:", source)
    assert run_in(sandbox, area, ["def area(self) -> float:\n    return self.w * self.h\n"],
                  ["assert Rect(2, 3).area() == 6"]) == [[P]]
    post = task_of("def __post_init__(self) -> None:", source)
    assert run_in(sandbox, post, ["def __post_init__(self) -> None:\n"
                                  "    self.end = max(self.end, self.start)\n"],
                  ["assert Span(3).end == 3 and Span(1, 5).end == 5"]) == [[P]]
    getter = task_of("def celsius(self) -> float:", source)
    assert getter.descriptors == "@property\n"
    assert run_in(sandbox, getter, ["def celsius(self) -> float:\n    return self._c\n"],
                  ["t = Temp()\nt.celsius = 21.5\nassert t.celsius == 21.5"]) == [[P]]
    hook = task_of("def __class_getitem__(cls, item):", source)
    assert run_in(sandbox, hook, ["def __class_getitem__(cls, item):\n"
                                  "    return f'{cls.__name__}[{item.__name__}]'\n"],
                  ["assert Box[int] == 'Box[int]'"]) == [[P]]


def test_any_model_output_runs_as_written_rather_than_raise() -> None:
    task = task_of("def add(self, item: str, n: int = 1) -> int:")
    deep = "def add(self, item: str, n: int = 1) -> int:\n    return " + "+".join(
        ["1"] * 5000) + "\n"
    for code in (deep, "def add(self, item:\n", "", "\x00", "def other(self):\n    pass\n"):
        assert executable_solution(task, code) == code
