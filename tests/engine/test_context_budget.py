"""The prompt's view of a file: a budget, a shared part, the helpers a function names."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest

from cascode.engine import prompts
from cascode.engine.context import function_at
from cascode.engine.context.budget import context_pieces, fit_context, with_prompt_context
from cascode.engine.prompts import solution_spec
from cascode.engine.types import SampleSpec, Task

MODULE = '''"""Inventory helpers."""

import json
from dataclasses import dataclass
from pathlib import Path

LIMIT = 10
NAMES = ["a", "b"]
BIG_TABLE = {''' + ", ".join(f"'k{i}': {i}" for i in range(60)) + '''}


@dataclass
class Item:
    """One stock item."""

    name: str
    count: int = 0

    def total(self, price: float) -> float:
        """The item's value at `price`."""
        return self.count * price

    def restock(self, n: int) -> None:
        self.count += n


def parse_line(line: str) -> Item:
    """An Item from 'name,count'."""
    name, count = line.split(",")
    return Item(name.strip(), int(count))


def unrelated_helper(x):
    """Something else entirely."""
    total = 0
    for i in range(x):
        total += i * i
    return total


def load_items(path: Path) -> list[Item]:
    """Every Item of a file, one per line, through parse_line."""


def dump_items(items: list[Item]) -> str:
    """The items as JSON."""
'''


def _chars(text: str) -> int:
    return max(1, len(text) // 4)


def _fc(source: str, name: str):  # type: ignore[no-untyped-def]
    line = next(i for i, t in enumerate(source.splitlines()) if t.startswith(f"def {name}("))
    fc = function_at(source, line + 1, 4)
    assert fc is not None and fc.name == name
    return fc


def test_the_shared_part_is_imports_then_outlines_in_file_order() -> None:
    fc = _fc(MODULE, "load_items")
    shared, helpers = context_pieces(fc.context, "load_items", fc.prompt)
    assert shared[0] == "import json\nfrom dataclasses import dataclass\nfrom pathlib import Path\n"
    text = "".join(shared)
    assert text.index("LIMIT = 10") < text.index("class Item") < text.index("def parse_line")
    assert "BIG_TABLE = ...\n" in shared  # a long assignment is outlined
    assert '    def total(self, price: float) -> float:\n        """The item\'s value' in text
    assert "return self.count * price" not in text  # no bodies in the outline
    assert 'def unrelated_helper(x):\n    """Something else entirely."""' in text
    # The function names parse_line (docstring) and Item, Path (signature): the
    # helpers are the file's own definitions it names, in the order first named.
    assert [h.split("\n")[0 if not h.startswith("@") else 1] for h in helpers] == [
        "class Item:", "def parse_line(line: str) -> Item:"]
    assert "return Item(name.strip(), int(count))" in helpers[1]


def test_two_functions_of_a_file_share_the_same_first_part() -> None:
    a = _fc(MODULE, "load_items").task(400)
    b = _fc(MODULE, "dump_items").task(400)  # below load_items: its context extends a's
    pa, pb = fit_context(a.context_budget, _chars), fit_context(b.context_budget, _chars)
    shared_a = fit_context(dataclasses.replace(a.context_budget, helpers=()), _chars)
    assert len(shared_a) > 300
    assert pa.startswith(shared_a) and pb.startswith(shared_a)
    # Nothing below a function is shown to it: the sandbox could not run it.
    assert "def dump_items" not in pa and "def load_items" in pb
    # And so do their whole prompts, up to the function-specific part.
    for template in prompts.TEMPLATES:
        sa = solution_spec(dataclasses.replace(a, prompt_context=pa), 1, sampled=False,
                           template=template)
        sb = solution_spec(dataclasses.replace(b, prompt_context=pb), 1, sampled=False,
                           template=template)
        assert _sent(sa).startswith(shared_a) and _sent(sb).startswith(shared_a)


def _sent(spec: SampleSpec) -> str:
    """The code a spec sends first: its user message's code block, or where the
    message holds no code, its prefix (without its opening fence)."""
    fence = "```python\n"
    if spec.messages and spec.messages[0].content.startswith(fence):
        return spec.messages[0].content.removeprefix(fence)
    return spec.prefix.removeprefix(fence)


def test_the_budget_is_kept_and_named_helpers_go_before_unrelated_ones() -> None:
    fc = _fc(MODULE, "load_items")
    task = fc.task(60)
    out = fit_context(task.context_budget, _chars)
    assert _chars(out) <= 60 + 12  # the "not shown" line is the only overshoot
    assert "more definitions not shown" in out
    roomy = fit_context(fc.task(2000).context_budget, _chars)
    assert "not shown" not in roomy and "def parse_line(line: str) -> Item:\n" in roomy
    # At a middling budget the named helper's body is in, the unrelated body is not.
    mid = fit_context(fc.task(260).context_budget, _chars)
    assert "return Item(name.strip(), int(count))" in mid
    assert "total += i * i" not in mid
    assert fit_context(fc.task(0).context_budget, _chars) == ""


def test_the_same_file_gives_the_same_prompt() -> None:
    runs = {fit_context(_fc(MODULE, "load_items").task(300).context_budget, _chars)
            for _ in range(3)}
    assert len(runs) == 1


def test_what_is_cut_from_the_prompt_still_runs_in_the_sandbox() -> None:
    fc = _fc(MODULE, "load_items")
    task = with_prompt_context(fc.task(40), _chars)
    assert task.prompt_context is not None and "def parse_line" not in task.prompt_context
    assert "def parse_line" in task.context  # executed before every solution


def test_a_task_without_a_budget_keeps_the_old_prompt() -> None:
    task = Task('def f(x):\n    """Return x."""\n', "f", context="import os\n")
    assert with_prompt_context(task, _chars) is task
    for template in prompts.TEMPLATES:
        spec = solution_spec(task, 1, sampled=False, template=template)
        assert _sent(spec).startswith("import os\n\n\ndef f(x):")


@pytest.mark.parametrize("kind", ["huge", "one-line", "broken", "binary"])
def test_bad_files_give_a_bounded_prompt_quickly(kind: str) -> None:
    stub = 'def target(x):\n    """Return x doubled."""\n'
    if kind == "huge":
        source = "".join(f"def f{i}(a):\n    return a + {i}\n\n\n" for i in range(12500)) + stub
    elif kind == "one-line":
        source = "X = [" + "1, " * 200_000 + "]\n\n\n" + stub
    elif kind == "broken":
        source = "def broken(:\n    pass\n\nclass (x\n\n" + stub
    else:
        source = "DATA = b'\\x00\\xff'\n\x00\x01garbage\x7f\n\n" + stub
    fc = function_at(source, source.count("\n") - 1, 4)
    assert fc is not None and fc.name == "target"
    out = fit_context(fc.task(1024).context_budget, _chars)
    assert _chars(out) <= 1024 + 12


def test_a_real_module_of_this_project_fits(tmp_path: Path) -> None:
    source = (Path(__file__).resolve().parents[2] / "engine" / "cascade.py").read_text()
    fc = _fc(source, "run_stage")
    out = fit_context(fc.task(1024).context_budget, _chars)
    assert _chars(out) <= 1024
    assert out.startswith("from __future__ import annotations\nimport ast\n")
    # The module's other functions are outlined: a signature, then `...`.
    outlined = re.findall(r"^def (\w+)\(.*:\n    \.\.\.\n", out, flags=re.M)
    assert outlined, out
    assert all(re.search(rf"^def {name}\(", source, flags=re.M) for name in outlined)
    assert _chars(fc.context) > _chars(out)  # its body is in the sandbox's context only
    # A function low in a long module: its whole context is far bigger than the view.
    big = (Path(__file__).resolve().parents[2] / "engine" / "backends" / "openai.py").read_text()
    last = _fc(big, "gguf_chat_template")
    view = fit_context(last.task(1024).context_budget, _chars)
    assert _chars(view) <= 1024 + 12 < _chars(last.context)


STORE = '''"""A store."""

import json

LIMIT = 3


class Store:
    """Items by name, read from a JSON file."""

    kind = "store"

    def __init__(self, path):
        self._path = path
        self._items = {}

    def load(self):
        """Read the items from the file."""
        with open(self._path) as f:
            self._items = json.load(f)

    def names(self):
        """The names, sorted."""
        return sorted(self._items)

    def add(self, name, count):
        """Add `count` of `name`."""
'''


def _method(source: str, name: str):  # type: ignore[no-untyped-def]
    line = next(i for i, t in enumerate(source.splitlines()) if t.startswith(f"    def {name}("))
    fc = function_at(source, line + 1, 8)
    assert fc is not None and fc.name == name and fc.method_of
    return fc


def test_a_method_keeps_its_class_when_the_rest_of_the_file_is_cut() -> None:
    before = "".join(f'def f{i}(a, b, c):\n    """Helper number {i}."""\n    return a\n\n\n'
                     for i in range(200))
    fc = _method(STORE.replace("class Store:", before + "class Store:"), "add")
    budget = fc.task(300).context_budget
    assert budget is not None and budget.enclosing is not None
    assert budget.shared[budget.enclosing].startswith("class Store:")
    out = fit_context(budget, _chars)
    assert _chars(out) <= 300 + 12
    assert out.startswith("import json\n")
    # The file's outline is cut in file order; the class holding the method stays, last.
    assert out.index("more definitions not shown") < out.index("class Store:")
    assert out.rstrip().endswith('def names(self):\n        """The names, sorted."""')
    assert "def f0(a, b, c)" in out and "def f199(" not in out
    # Without the class kept (as a top-level function's prompt is cut), it is lost.
    plain = fit_context(dataclasses.replace(budget, enclosing=None), _chars)
    assert "class Store" not in plain


def test_where_nothing_is_cut_the_class_stays_where_it_was() -> None:
    budget = _method(STORE, "add").task(1024).context_budget
    assert budget is not None and budget.enclosing is not None
    kept = fit_context(budget, _chars)
    assert kept == fit_context(dataclasses.replace(budget, enclosing=None), _chars)
    assert kept.startswith("import json\n") and "class Store:" in kept


def test_a_class_outline_longer_than_the_share_is_cut_between_members() -> None:
    methods = "".join(f"    @property\n    def m{i}(self):\n        \"\"\"Item {i}.\"\"\"\n"
                      f"        return {i}\n\n" for i in range(2000))
    source = ("import os\n\n\nclass Big:\n    \"\"\"Many members.\"\"\"\n\n" + methods
              + "    def target(self):\n        \"\"\"Return 1.\"\"\"\n")
    fc = _method(source, "target")
    out = fit_context(fc.task(1024).context_budget, _chars)
    assert _chars(out) <= 1024
    assert out.startswith("import os\n\nclass Big:\n    \"\"\"Many members.\"\"\"\n    @property\n")
    assert re.search(r"    # \.\.\. \d+ more members not shown\n$", out)
    ast.parse(out)  # whole members only: the outline still parses


def test_a_top_level_function_has_no_holder() -> None:
    budget = _fc(MODULE, "load_items").task(1024).context_budget
    assert budget is not None and budget.enclosing is None
