"""Example lines E (docs/method.md 7.1): asserts made from what the user already wrote.

Two sources, in this order: the function's docstring (`docstring.py`,
`docstring_examples`) and the `assert` statements of the project's test files
that call the function (`project.py`: `test_file_examples`, collected and cached
per project by `ProjectExamples`). `task_examples` joins them for one request;
the live cascade and the calibration both call it. `names.py` holds what both
readers share: the names a piece of source binds and reads.

An example is kept only if its assert parses as one `assert` statement that
calls the function under test by name, and every other free name in it
resolves: in the file context (its top-level names, and the prompt's), the
builtins, or the setup lines carried with it (a doctest's earlier `>>> x = ...`
lines, a test file's standard-library imports). Expected values are never
evaluated here: `ast.literal_eval` only checks that a doctest's output is a
literal the sandbox can compare with `==`; the sandbox runs everything.
"""

from __future__ import annotations

from ..extract import assert_subject
from ..types import Example, Task
from .docstring import DocstringSpan, docstring_examples, docstring_span
from .names import dedup, top_level_names
from .project import ProjectExamples, find_project_root, is_test_file, test_file_examples

__all__ = [
    "DocstringSpan",
    "ProjectExamples",
    "docstring_examples",
    "docstring_span",
    "find_project_root",
    "is_test_file",
    "task_examples",
    "test_file_examples",
    "top_level_names",
]


def task_examples(task: Task, *, use: bool = True) -> tuple[Example, ...]:
    """E for `task`: its docstring's examples, then `task.test_examples`, deduplicated
    by `source` in that order; () when the tier does not use examples."""
    if not use:
        return ()
    subject = assert_subject(task)
    # The file's names below the function resolve too: the sandbox runs them after it.
    context = task.context if not task.context_after else (
        task.context + "\n\n" + task.context_after)
    return dedup([*docstring_examples(task.prompt, task.entry_point, context, subject),
                  *task.test_examples])
