"""A module of a package runs with its package (engine/context/package.py), on the real
worker: its relative imports, the absolute imports of its own package and the modules
those import are carried as source, so that a candidate calling a sibling module's
helper passes the user's example, where without them it failed every one."""

from __future__ import annotations

from pathlib import Path

import pytest

from cascode.engine.context.package import MAX_BYTES, package_task
from cascode.engine.context.request import request_at, request_task
from cascode.engine.examples import task_examples
from cascode.engine.methods import executable_solution, task_context
from cascode.engine.sandbox.process import ProcessSandbox
from cascode.engine.static_check import check_candidate
from cascode.engine.types import Task, Verdict

P, F = Verdict.PASSED, Verdict.FAILED

TEXT = '''\
"""Text helpers."""
from __future__ import annotations

import re

from .util.strings import is_vowel
from mypkg import consts

WORD = re.compile(r"\\w+")


def count_vowels(text: str) -> int:
    """How many vowels the text holds, as consts.VOWELS names them.

    >>> count_vowels("Hello World")
    3
    """


def other() -> int:
    return 1
'''

RIGHT = "    return sum(1 for c in text if is_vowel(c))\n"
ALSO_RIGHT = "    return sum(1 for c in text.lower() if c in consts.VOWELS)\n"
WRONG = "    return len(WORD.findall(text))\n"


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write(tmp_path, {
        # An __init__ that cannot run in the sandbox: its submodules stay importable.
        "mypkg/__init__.py": "from .text import *\nimport a_package_nobody_installed\n",
        "mypkg/consts.py": "VOWELS = 'aeiouAEIOU'\n",
        "mypkg/util/__init__.py": "",
        "mypkg/util/strings.py": "from ..consts import VOWELS\n\n\n"
                                 "def is_vowel(c: str) -> bool:\n    return c in VOWELS\n",
        "mypkg/text.py": TEXT,
    })
    return tmp_path / "mypkg" / "text.py"


def task_at(path: Path, text: str, *, tokens: int = 1024) -> Task:
    lines = text.splitlines()
    row = next(i for i, line in enumerate(lines) if line.strip() == '"""' and i > 12)
    request = request_at(text, (row, len(lines[row])))
    assert request is not None
    return request_task(request, context_tokens=tokens)


def verdicts(sandbox: ProcessSandbox, task: Task, bodies: list[str]) -> list[list[Verdict]]:
    examples = task_examples(task)
    assert [e.text for e in examples] == ['assert count_vowels("Hello World") == 3']
    solutions = [executable_solution(task, task.prompt + body) for body in bodies]
    m = sandbox.run_matrix(solutions, [e.source for e in examples], context=task_context(task))
    return [list(row) for row in m.verdicts]


def asked(path: Path, row: int) -> Task:
    """The task an editor asks for at `row` (column 7) of the file at `path`, with the
    modules of its project carried."""
    text = path.read_text()
    request = request_at(text, (row, 7))
    assert request is not None
    return package_task(request_task(request), path, text)


def test_a_sibling_modules_helper_runs_as_in_the_project(sandbox, project):
    text = project.read_text()
    alone = task_at(project, text)
    carried = package_task(alone, project, text)
    # Without the package, the helper is a NameError: the right body fails like the wrong.
    assert verdicts(sandbox, alone, [RIGHT, ALSO_RIGHT]) == [[F], [F]]
    assert verdicts(sandbox, carried, [RIGHT, ALSO_RIGHT, WRONG]) == [[P], [P], [F]]
    # The prompt shows the relative import among the file's imports, never the hook.
    assert alone.context_budget is not None and carried.context_budget is not None
    imports = carried.context_budget.shared[0]
    assert imports == alone.context_budget.shared[0] + "from .util.strings import is_vowel\n"
    assert carried.context_budget.shared[1:] == alone.context_budget.shared[1:]
    assert "__cascode_package" not in "".join(carried.context_budget.shared)
    assert carried.context.startswith("from __future__ import annotations\n")
    # The static checks read the carried context too: the helper is defined.
    assert check_candidate(carried, carried.prompt + RIGHT) == ()


def test_with_the_whole_file_as_the_prompt_it_shows_the_relative_import_not_the_hook(project):
    text = project.read_text()
    alone = task_at(project, text, tokens=-1)
    carried = package_task(alone, project, text)
    assert alone.context_budget is None and carried.prompt_context is not None
    assert "__cascode_package" not in carried.prompt_context
    assert carried.prompt_context.replace("from .util.strings import is_vowel\n", "") \
        == alone.context
    assert carried.context != alone.context


def test_a_file_beside_its_helpers_outside_a_package(sandbox, tmp_path):
    write(tmp_path, {
        "helpers.py": "def twice(x):\n    return 2 * x\n",
        "script.py": "from helpers import twice\n\n\ndef quad(x):\n"
                     '    """Four times x.\n\n    >>> quad(2)\n    8\n    """\n',
    })
    task = asked(tmp_path / "script.py", 8)
    examples = task_examples(task)
    m = sandbox.run_matrix([task.prompt + "    return twice(twice(x))\n"],
                           [e.source for e in examples], context=task.context)
    assert [list(row) for row in m.verdicts] == [[P]]


def test_modules_in_another_encoding_or_with_a_byte_order_mark_are_carried(sandbox, tmp_path):
    # Read as Python reads them: a coding line (PEP 263) or a BOM; CRLF line ends.
    (tmp_path / "accents.py").write_bytes(
        "# -*- coding: latin-1 -*-\r\nMARK = 'é'\r\n".encode("latin-1"))
    (tmp_path / "joins.py").write_bytes(
        "\ufeffdef join(a, b):\n    return a + b\n".encode("utf-8"))
    (tmp_path / "broken.py").write_bytes(b"# -*- coding: utf-8 -*-\nX = '\xe9'\n")
    write(tmp_path, {
        "script.py": "from accents import MARK\nfrom joins import join\n"
                     "try:\n    from broken import X\nexcept ImportError:\n    X = None\n\n\n"
                     'def marked(s):\n    """s followed by MARK.\n\n'
                     "    >>> marked('caf')\n    'café'\n    \"\"\"\n",
    })
    task = asked(tmp_path / "script.py", 13)
    assert "'accents'" in task.context and "'joins'" in task.context
    assert "'broken'" not in task.context  # its bytes are not the UTF-8 it names: left out
    examples = task_examples(task)
    assert [e.text for e in examples] == ["assert marked('caf') == 'café'"]
    m = sandbox.run_matrix([task.prompt + "    return join(s, MARK)\n"],
                           [e.source for e in examples], context=task.context)
    assert [list(row) for row in m.verdicts] == [[P]]


def test_nothing_to_carry_leaves_the_task_as_it_was(tmp_path):
    write(tmp_path, {"m.py": "import json\n\n\ndef f(x):\n    \"\"\"Doc.\"\"\"\n"})
    path = tmp_path / "m.py"
    task = request_task(request_at(path.read_text(), (4, 14)))  # type: ignore[arg-type]
    assert package_task(task, path, path.read_text()) is task


def test_bounds_and_unreadable_modules_leave_out_what_they_must(project, tmp_path):
    text = project.read_text()
    alone = task_at(project, text)
    huge = "X = 1\n" + "# padding\n" * (MAX_BYTES // 10)
    (tmp_path / "mypkg" / "consts.py").write_text(huge + "VOWELS = 'aeiouAEIOU'\n")
    carried = package_task(alone, project, text)
    assert "mypkg.util.strings" in carried.context and "padding" not in carried.context
    # A module that does not parse (being edited) is left out, the rest carried.
    (tmp_path / "mypkg" / "util" / "strings.py").write_text("def is_vowel(c:\n")
    carried = package_task(alone, project, text)
    assert "'mypkg.util.strings'" not in carried.context
    assert "'mypkg.util'" in carried.context


def carried_task(root: Path, files: dict[str, str], name: str) -> tuple[Task, Path, str]:
    write(root, files)
    path = root / name
    text = path.read_text()
    lines = text.splitlines()
    row = max(i for i, line in enumerate(lines) if line.strip() == '"""')
    request = request_at(text, (row, len(lines[row])))
    assert request is not None
    return package_task(request_task(request), path, text), path, text


def passes(sandbox: ProcessSandbox, task: Task, body: str) -> list[Verdict]:
    examples = task_examples(task)
    assert examples, task.prompt
    m = sandbox.run_matrix([executable_solution(task, task.prompt + body)],
                           [e.source for e in examples], context=task_context(task))
    return list(m.verdicts[0])


USES_G = '''def f(x):
    """g of x.

    >>> f(2)
    4
    """
'''


def test_the_files_imports_keep_their_order_and_a_guarded_chunk_stays_guarded(sandbox, tmp_path):
    # `if TYPE_CHECKING:` needs the typing import above it; a multi-line __future__
    # import stays first; a carried module sees no __future__ flag of the file.
    task, _, _ = carried_task(tmp_path, {
        "p/__init__.py": "",
        "p/h.py": "def g(x: int) -> int:\n    return 2 * x\n",
        "p/models.py": "class User:\n    pass\n",
        "p/m.py": "from __future__ import (\n    annotations,\n)\n\n"
                  "from typing import TYPE_CHECKING\n\nfrom .h import g\n\n"
                  "if TYPE_CHECKING:\n    from .models import User\n\n\n" + USES_G,
    }, "p/m.py")
    assert passes(sandbox, task, "    return g(x)\n") == [P]
    assert passes(sandbox, task, "    assert g.__annotations__ == {'x': int, 'return': int}\n"
                                 "    return g(x)\n") == [P]


def test_a_module_that_cannot_import_here_fails_as_an_import_error(sandbox, tmp_path):
    # It reads a variable the sandbox's environment lacks: its import fails, guarded,
    # and what the file defines does not depend on it still runs.
    task, _, _ = carried_task(tmp_path, {
        "p/__init__.py": "",
        "p/conf.py": "import os\nKEY = os.environ['A_KEY_THE_SANDBOX_LACKS']\n",
        "p/h.py": "def g(x):\n    return 2 * x\n",
        "p/m.py": "from .conf import KEY\nfrom .h import g\n\n\n" + USES_G,
    }, "p/m.py")
    assert passes(sandbox, task, "    return g(x)\n") == [P]
    assert passes(sandbox, task, "    return KEY\n") == [F]


def test_a_relative_path_inside_a_package(sandbox, tmp_path, monkeypatch):
    write(tmp_path, {"p/__init__.py": "", "p/h.py": "def g(x):\n    return 2 * x\n",
                     "p/m.py": "from .h import g\n\n\n" + USES_G})
    monkeypatch.chdir(tmp_path / "p")
    text = Path("m.py").read_text()
    request = request_at(text, (8, 7))
    assert request is not None
    task = package_task(request_task(request), Path("m.py"), text)
    assert passes(sandbox, task, "    return g(x)\n") == [P]


def test_a_printed_doctest_output_is_checked_in_the_sandbox(sandbox, tmp_path):
    write(tmp_path, {
        "shell.py": "def quote(a):\n    return \"'\" + a + \"'\"\n",
        "cmd.py": "from shell import quote\n\n\ndef args2sh(args):\n"
                  '    """The arguments as one shell line.\n\n'
                  "    >>> print(args2sh(['a', 'b c']))\n    a 'b c'\n"
                  "    >>> print(args2sh(['x', 'y']).replace(' ', chr(10)))\n    x\n    y\n"
                  '    """\n',
    })
    task = asked(tmp_path / "cmd.py", 10)
    examples = task_examples(task)
    assert [e.text for e in examples] == [
        "print(args2sh(['a', 'b c'])) prints a 'b c'",
        "print(args2sh(['x', 'y']).replace(' ', chr(10))) prints 'x\\ny'"]
    right = "    return ' '.join(a if a.isalnum() else quote(a) for a in args)\n"
    loud = "    print(args)\n" + right
    m = sandbox.run_matrix([task.prompt + body for body in (right, loud, "    return args\n")],
                           [e.source for e in examples], context=task.context)
    assert [list(row) for row in m.verdicts] == [[P, P], [F, F], [F, F]]


BELOW = '''\
"""Inflections."""
import re


def parameterize(text, sep="-"):
    """A URL slug of text.

    >>> from inflections import parameterize
    >>> parameterize("Donald E. Knuth")
    'donald-e-knuth'
    >>> parameterize(underscore("AbcDef"), sep=SEP)
    'abc_def'
    """


def underscore(word):
    return re.sub(r"([a-z])([A-Z])", r"\\1_\\2", word).lower()


def _words(text):
    return re.findall(r"[a-z0-9_]+", text.lower())


SEP = "_"
SETTINGS = open("settings.json").read()
'''


def test_a_helper_defined_below_the_function_is_there_when_its_examples_run(sandbox, tmp_path):
    # As in the module: by the time its doctest runs, the whole file has run; the
    # doctest's import of the module's own names binds nothing new.
    (tmp_path / "inflections.py").write_text(BELOW)
    task = asked(tmp_path / "inflections.py", 11)
    examples = task_examples(task)
    assert [e.text for e in examples] == [
        "assert parameterize(\"Donald E. Knuth\") == 'donald-e-knuth'",
        "assert parameterize(underscore(\"AbcDef\"), sep=SEP) == 'abc_def'"]
    assert all("import" not in e.source for e in examples)
    right = "    return sep.join(_words(text))\n"
    wrong = "    return text.lower().replace(' ', sep)\n"
    # A candidate's own helper of a name the file defines below shadows the file's, as
    # it does once the answer is placed (helpers are nested in the body).
    own = right + "\n\ndef _words(text):\n    return text.split()\n"
    solutions = [executable_solution(task, task.prompt + body) for body in (right, wrong, own)]
    m = sandbox.run_matrix(solutions, [e.source for e in examples], context=task_context(task))
    assert [list(row) for row in m.verdicts] == [[P, P], [F, P], [F, P]]
    # A candidate that does not parse runs as written, nothing after it (quotes below
    # could close its unterminated string).
    broken = task.prompt + '    return """' + "\n"
    assert executable_solution(task, broken) == broken
    # Never prompted, and the statement that raises (no settings file) fails nothing.
    assert "_words" not in task.prompt and "_words" not in task.context
    assert check_candidate(task, task.prompt + right) == ()
