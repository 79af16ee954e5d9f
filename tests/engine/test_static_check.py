"""cascode.engine.static_check on real-looking files: each check finds what cannot run and
stays silent on what can, and no real body of the real-code data set gets a finding."""

from __future__ import annotations

import dataclasses
import textwrap
import time

import pytest

from cascode.engine.context import function_at
from cascode.engine.static_check import Finding, check_candidate
from cascode.engine.types import Task

STORE = '''\
"""A small key-value store with expiry."""
import time
from dataclasses import dataclass, field

try:
    import ujson as json
except ImportError:
    import json

DEFAULT_TTL = 60.0


def _now() -> float:
    return time.monotonic()


def _expired(stamp: float, ttl: float, now: float | None = None) -> bool:
    return (now if now is not None else _now()) - stamp > ttl


def _encode(value, *, indent=None, **options):
    return json.dumps(value, indent=indent, **options)


def _pairs(*items):
    return list(items)


class Base:
    def __init__(self, name: str) -> None:
        self.name = name
        self._hits = 0


class Store(Base):
    """Values with a time to live."""

    max_size = 1000

    def __init__(self, name: str, ttl: float = DEFAULT_TTL) -> None:
        super().__init__(name)
        self.ttl = ttl
        self._data: dict[str, tuple[float, object]] = {}
        setattr(self, "mode", "rw")

    @property
    def size(self) -> int:
        return len(self._data)

    def put(self, key: str, value: object) -> None:
        self._data[key] = (_now(), value)

    def _evict(self, key: str) -> None:
        del self._data[key]

    @classmethod
    def from_pairs(cls, name, pairs):
        store = cls(name)
        for k, v in pairs:
            store.put(k, v)
        return store

    @staticmethod
    def normalize(key: str) -> str:
        return key.strip().lower()

    def get(self, key: str, default: object = None) -> object:
        """The value of `key`, or `default` when it is missing or expired."""

    def dump(self) -> str:
        return _encode(dict(self._data))


@dataclass
class Entry:
    key: str
    stamp: float = 0.0
    tags: list = field(default_factory=list)

    def age(self, now: float) -> float:
        """Seconds since the entry was stamped."""


def _later_helper(entry):
    return entry.key
'''


def _fc(source: str, name: str):  # type: ignore[no-untyped-def]
    line = next(i for i, t in enumerate(source.splitlines()) if f"def {name}(" in t)
    indent = len(source.splitlines()[line]) - len(source.splitlines()[line].lstrip())
    fc = function_at(source, line + 1, indent + 4)
    assert fc is not None and fc.name == name
    return fc


def check(source: str, name: str, body: str) -> tuple[Finding, ...]:
    """The findings of `body` written as the function `name` of `source`, as the cascode
    would read a candidate: the function's prompt followed by the generated body."""
    fc = _fc(source, name)
    code = fc.prompt + textwrap.indent(textwrap.dedent(body), "    ")
    return check_candidate(fc.task(), code)


def messages(findings: tuple[Finding, ...]) -> list[str]:
    return [f"{f.kind}: {f.message}" for f in findings]


# ---------------------------------------------------------------------------
# The task knows the class of a method and what lies below it


def test_a_method_task_names_its_class_and_the_file_below_it() -> None:
    task = _fc(STORE, "get").task()
    assert task.owner == "Store"
    assert "class Entry" in task.file_around and "def _later_helper" in task.file_around
    assert "class Store" not in task.file_around and "def get(" not in task.file_around
    assert _fc(STORE, "_expired").task().owner == ""


# ---------------------------------------------------------------------------
# Attributes


def test_attributes_set_in_init_a_base_a_property_a_class_attribute_are_not_flagged() -> None:
    body = '''\
        if len(self._data) >= self.max_size or self.size == 0:
            return default
        self._hits += 1
        stamp, value = self._data.get(key, (0.0, default))
        print(self.name, self.mode)
        if _expired(stamp, self.ttl):
            self._evict(key)
            return default
        return value
    '''
    assert check(STORE, "get", body) == ()


def test_dataclass_fields_are_not_flagged_and_a_missing_one_is() -> None:
    assert check(STORE, "age", "return now - self.stamp if self.tags else 0.0\n") == ()
    found = check(STORE, "age", "return now - self.created\n")
    assert messages(found) == ["unset-attribute: reads self.created, which Entry never sets"]
    assert found[0].line == 3  # the candidate's own line (def, docstring, then this)


def test_an_attribute_set_nowhere_is_flagged_naming_attribute_and_class() -> None:
    body = '''\
        if key in self.cache:
            return self.cache[key]
        return self._data.get(key, default)
    '''
    assert messages(check(STORE, "get", body)) == [
        "unset-attribute: reads self.cache, which Store never sets"]


def test_a_method_the_class_never_defines_is_flagged_as_called() -> None:
    found = check(STORE, "get", "self.refresh(key)\nreturn self._data[key][1]\n")
    assert messages(found) == [
        "unset-attribute: calls self.refresh(), which Store never defines"]


def test_a_classmethod_reads_cls_attributes() -> None:
    source = STORE.replace("    def get(self, key", "    @classmethod\n    def empty(cls, key")
    assert check(source, "empty", "return cls(key, cls.max_size)\n") == ()
    assert messages(check(source, "empty", "return cls.registry[key]\n")) == [
        "unset-attribute: reads cls.registry, which Store never defines"]


def test_what_the_candidate_sets_itself_or_guards_counts_as_set() -> None:
    body = '''\
        self._seen = getattr(self, "_seen", set())
        self._seen.add(key)
        if hasattr(self, "_cache") and key in self._cache:
            return self._cache[key]
        try:
            return self._fallback[key]
        except AttributeError:
            return default
    '''
    assert check(STORE, "get", body) == ()


LRU = '''\
from collections import OrderedDict
from collections.abc import MutableMapping


class LRU(OrderedDict):
    def touch(self, key):
        """Move key to the end."""


class Table(MutableMapping):
    def __init__(self):
        self._rows = {}

    def first(self):
        """The first row."""


class Lazy:
    def __init__(self, **options):
        for k, v in options.items():
            setattr(self, k, v)

    def value(self):
        """The computed value."""


class Proxy:
    def __init__(self, target):
        self._target = target

    def __getattr__(self, name):
        return getattr(self._target, name)

    def call(self):
        """Call the target."""


class Shape:
    def describe(self):
        """A sentence about the shape."""

    def area(self):
        return 0


class Square(Shape):
    sides = 4

    def __init__(self, side):
        self.side = side

    def area(self):
        return self.side ** 2


class Plugin:
    def run(self):
        raise NotImplementedError

    def describe_plugin(self):
        """What the plugin does."""
'''


@pytest.mark.parametrize(("name", "body"), [
    ("touch", "self.move_to_end(key)\nreturn len(self) > self.maxsize\n"),  # a base from elsewhere
    ("first", "return self.rows_cache[0]\n"),  # an abstract base from elsewhere
    ("value", "return self.computed\n"),  # setattr with computed names
    ("call", "return self.method()\n"),  # __getattr__
    ("describe", "return f'{self.sides} sides, area {self.area()}'\n"),  # a subclass below
    ("describe_plugin", "return self.summary\n"),  # a stub method: made for subclasses
])
def test_the_attribute_check_gives_up_when_the_class_may_get_anything(name: str,
                                                                      body: str) -> None:
    assert check(LRU, name, body) == ()


# ---------------------------------------------------------------------------
# Names


def test_names_of_the_file_its_imports_try_imports_builtins_and_below_are_not_flagged() -> None:
    body = '''\
        now = time.monotonic()
        text = json.dumps({"k": key, "ttl": DEFAULT_TTL, "at": now})
        entries = [Entry(k) for k in sorted(self._data) if isinstance(k, str)]
        names = {_later_helper(e) for e in entries}
        return text if names else default
    '''
    assert check(STORE, "get", body) == ()


def test_a_helper_that_does_not_exist_is_flagged() -> None:
    found = check(STORE, "get", "return parse_datetime(self._data[key][0])\n")
    assert messages(found) == [
        "undefined-name: uses parse_datetime, defined nowhere in the file, its imports or "
        "the builtins"]


def test_a_keyword_argument_of_another_function_used_as_a_name_is_flagged() -> None:
    found = check(STORE, "dump", "return _encode(self._data, indent=indent)\n")
    assert messages(found) == [
        "undefined-name: uses indent, defined nowhere in the file, its imports or the builtins"]


def test_a_class_attribute_read_as_a_bare_name_is_flagged_with_the_way_to_reach_it() -> None:
    found = check(STORE, "get", "return default if len(self._data) > max_size else key\n")
    assert messages(found) == [
        "undefined-name: uses max_size, an attribute of Store that a method reaches only as "
        "self.max_size or Store.max_size"]


def test_a_star_import_makes_names_undecidable() -> None:
    source = "from os.path import *\n\n\ndef under(root, name):\n    \"\"\"Path.\"\"\"\n"
    assert check(source, "under", "return join(root, nonexistent(name))\n") == ()


def test_a_closure_variable_is_defined_and_a_missing_one_is_not() -> None:
    source = '''\
def scale_all(xs, factor):
    offset = 1

    def scale(x):
        """Scale one."""

    return [scale(x) for x in xs]
'''
    assert check(source, "scale", "return x * factor + offset\n") == ()
    assert [f.kind for f in check(source, "scale", "return x * scale_factor\n")] == [
        "undefined-name"]


def test_only_the_candidates_lines_are_judged() -> None:
    # The user's partial body calls a name defined nowhere; the candidate only goes on.
    source = '''\
def total(items):
    """Sum of the prices."""
    rows = normalize_rows(items)
    '''
    fc = function_at(source, 3, 4)
    assert fc is not None and not fc.is_stub
    code = fc.prompt + "    return sum(r.price for r in rows)\n"
    assert check_candidate(fc.task(), code) == ()
    assert [f.kind for f in check_candidate(fc.task(), code.replace("sum(", "summ("))] == [
        "undefined-name"]


def test_annotations_are_not_judged() -> None:
    body = "result: Optional[Expiry] = self._data.get(key)\nreturn result or default\n"
    assert check(STORE, "get", body) == ()


# ---------------------------------------------------------------------------
# Calls


@pytest.mark.parametrize(("body", "message"), [
    ("return _expired(self._data[key][0])\n",
     "calls _expired() without ttl, which _expired(stamp, ttl, now=...) requires"),
    ("return _expired(1.0, self.ttl, _now(), True)\n",
     "calls _expired() with 4 arguments; _expired(stamp, ttl, now=...) takes 2 to 3"),
    ("return _expired(1.0, self.ttl, when=_now())\n",
     "calls _expired() with keyword when; _expired(stamp, ttl, now=...) has no parameter when"),
    ("return _expired(1.0, self.ttl, stamp=2.0)\n",
     "calls _expired() with stamp both by position and by keyword"),
    ("return _encode(self._data, 2)\n",
     "calls _encode() with 2 arguments; _encode(value, *, indent=..., **options) takes 1"),
    ("self.put(key)\n",
     "calls self.put() without value, which Store.put(self, key, value) requires"),
    ("self.put(key, default, 60)\n",
     "calls self.put() with 3 arguments; Store.put(self, key, value) takes 2 besides self"),
    ("return self.normalize(key, True)\n",
     "calls self.normalize() with 2 arguments; Store.normalize(key) takes 1"),
    ("return Store(key, 1.0, 10)\n",
     "calls Store() with 3 arguments; Store.__init__(self, name, ttl=...) takes 1 to 2 "
     "besides self"),
    ("return self.get(key, default, 1)\n",  # the candidate's own signature
     "calls self.get() with 3 arguments; Store.get(self, key, default=...) takes 1 to 2 "
     "besides self"),
])
def test_a_call_its_signature_cannot_take_is_flagged(body: str, message: str) -> None:
    assert messages(check(STORE, "get", body)) == [f"bad-call: {message}"]


def test_calls_the_signatures_can_take_are_not_flagged() -> None:
    body = '''\
        pair = (1.0, self.ttl)
        _expired(*pair)
        _expired(now=None, ttl=self.ttl, stamp=1.0)
        _encode(self._data, indent=2, sort_keys=True)
        _pairs(key, default, self.ttl)
        kwargs = {"ttl": 1.0}
        Store(key, **kwargs)
        Base(key)
        self._evict(key=key)
        self.from_pairs(key, [])
        Store.from_pairs(key, [(key, default)])
        self.normalize(key)
        return Entry(key, 1.0, [])
    '''
    assert check(STORE, "get", body) == ()


def test_decorated_functions_and_shadowed_names_are_not_judged() -> None:
    source = '''\
import functools


@functools.lru_cache(maxsize=None)
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def helper(a):
    return a


def run(n):
    """Run."""
'''
    body = '''\
        fib(n, 1)
        helper = lambda a, b: a + b
        return helper(n, n)
    '''
    assert check(source, "run", body) == ()


# ---------------------------------------------------------------------------
# Syntax


def test_a_candidate_that_does_not_parse_is_a_syntax_finding() -> None:
    found = check(STORE, "get", "return (self._data.get(key, default)\n")
    assert [f.kind for f in found] == ["syntax"]
    assert found[0].message.startswith("does not parse: line ")


def test_a_candidate_that_writes_nothing_is_empty_and_nothing_else() -> None:
    """The model closed its answer at once (a quarter of the 1.5B's answers to half-written
    bodies of the real-code set): the editor would insert nothing. What the user wrote is
    not judged: only `empty` is found, even where the user's lines do not parse."""
    fc = _fc(STORE, "get")
    assert [f.kind for f in check_candidate(fc.task(), fc.prompt)] == ["empty"]
    assert [f.kind for f in check_candidate(fc.task(), fc.prompt + "\n  \n")] == ["empty"]
    written = fc.prompt + "    return nowhere_defined(\n"
    task = dataclasses.replace(fc.task(), prompt=written)
    assert [(f.kind, f.message) for f in check_candidate(task, written)] == [
        ("empty", "adds nothing to what you wrote")]
    assert check_candidate(fc.task(), fc.prompt + "    return None\n") == ()


def test_a_humaneval_task_without_file_context() -> None:
    prompt = 'from typing import List\n\n\ndef top(xs: List[int], k: int) -> List[int]:\n' \
             '    """The k largest."""\n'
    task = Task(prompt, "top")
    assert check_candidate(task, prompt + "    return sorted(xs)[-k:]\n") == ()
    assert [f.kind for f in check_candidate(task, prompt + "    return heapq.nlargest(k, xs)\n")
            ] == ["undefined-name"]


# ---------------------------------------------------------------------------
# Real code


def test_no_real_body_of_the_real_code_data_set_gets_a_finding() -> None:
    from cascode.benchmarks.realcode import read_records, to_problem

    records = read_records()
    assert len(records) > 100
    flagged = []
    caught = wrong = 0
    start = time.perf_counter()
    for r in records:
        task = to_problem(r).task
        findings = check_candidate(task, r.solution(r.body))
        if findings:
            flagged.append((r.id, messages(findings)))
        for w in r.wrong:
            wrong += 1
            caught += bool(check_candidate(task, r.solution(w.body)))
    assert flagged == []
    # Informational: the wrong bodies are mostly wrong in behaviour, which no static check
    # can see; those that read a name defined nowhere are caught.
    assert 1 <= caught < wrong
    print(f"{len(records)} real bodies clean; {caught} of {wrong} wrong bodies caught; "
          f"{time.perf_counter() - start:.1f} s")


# ---------------------------------------------------------------------------
# In the cascade, with the real 0.5B

REAL_PLAN = """\
family:
  - {name: qwen-0.5b, backend: llama_cpp, model: embedded:qwen2.5-coder-0.5b-instruct-q4_k_m}
tiers:
  one:
    theta: 0.0
    stages: {qwen-0.5b: {k: 3, l: 2}}
"""
PLANTED = "    if self._cache_hits is None:\n        return default\n"
# On this file the 0.5B's own candidates are rarely sound (it calls `normalize` bare, or
# closes its answer at once): the last one is made sound so that one exists.
SOUND = ("    item = self._data.get(key)\n    if item is None or _expired(item[0], self.ttl):\n"
         "        return default\n    return item[1]\n")


@pytest.mark.slow
def test_a_candidate_with_a_bad_name_ranks_last_on_the_real_05b(qwen05b) -> None:
    """The real 0.5B writes three candidates for Store.get and their tests; the first is
    given a read of an attribute Store never sets (what the models do on real code), the
    last a sound body. The planted one ranks below every sound one whatever the model's
    tests say, and the answer is a sound candidate."""
    from cascode.engine.cascade import Cascade
    from cascode.engine.extract import CodeStop
    from cascode.engine.plans import parse_plan
    from cascode.engine.sandbox import create_sandbox
    from cascode.engine.types import Generation

    from ..conftest import need_sandbox

    class Planting:
        name = "qwen-0.5b"

        def render(self, spec):  # type: ignore[no-untyped-def]
            return qwen05b.render(spec)

        def tokenize(self, text: str) -> list[int]:
            return qwen05b.tokenize(text)

        def sample(self, specs, cancel=None):  # type: ignore[no-untyped-def]
            groups = qwen05b.sample(specs, cancel=cancel)
            out = []
            for spec, group in zip(specs, groups, strict=True):
                if isinstance(spec.stop, CodeStop):
                    first: Generation = group[0]
                    last: Generation = group[-1]
                    group = [dataclasses.replace(first, text=PLANTED + first.text),
                             *group[1:-1], dataclasses.replace(last, text=SOUND)]
                out.append(group)
            return out

        def close(self) -> None:
            pass

    task = _fc(STORE, "get").task()
    plan = parse_plan(REAL_PLAN, "real.yaml")
    with create_sandbox() as sandbox:
        need_sandbox(sandbox)
        result = Cascade(plan, {"qwen-0.5b": Planting()}, sandbox).run(task, "one")  # type: ignore[dict-item]
    (stage,) = result.stages
    assert len(stage.solutions) == 3 and PLANTED in stage.solutions[0]
    assert any(f.kind == "unset-attribute" and "_cache_hits" in f.message
               for f in stage.findings[0]), stage.findings[0]
    sound = [i for i, f in enumerate(stage.findings) if not f]
    assert 2 in sound, stage.findings
    print("findings:", stage.findings, "best:", stage.best)
    assert stage.best in sound and stage.best != 0
    assert check_candidate(task, result.code) == ()
