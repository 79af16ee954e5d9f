"""The function to complete at a position in a Python file, and its file context.

Used by `cascode complete FILE:LINE` and by the language server. The file is
usually being edited, so it often does not parse: every function here works
from a line scanner (strings, brackets, comments and continuations tracked;
blocks found by indentation, as Python's tokenizer does) and uses `ast` only on
small pieces (a docstring, a stub body, a context chunk). The scanner gives the
same spans as `ast` on files that parse (tested on the standard library), so an
answer does not change when one keystroke breaks the parse elsewhere.

Lines and the cursor are 0-based. Lines end at `\\n`, `\\r\\n` or `\\r` (the
Language Server Protocol's rule). `character` is only compared with the
indentation of the cursor's line, so UTF-16 and code-point counts agree.

What `context` holds (it goes into the prompt and is executed in the sandbox
before every solution, so it is made of chunks that parse on their own):

- the module's imports (also those below the function; relative imports are
  left out: executed in the sandbox they would fail every test, unless
  `package.package_task` carries the modules they name), and the top-level
  definitions above it: functions, classes, assignments (constants, type
  aliases, loggers), and `try`/`if` blocks made only of imports and
  assignments (`try: import x` / `except ImportError: x = None`). Expression
  statements, loops, `if __name__ == "__main__"` blocks and chunks that do not
  parse are left out;
- for a method or a nested function, the enclosing top-level class or
  function with the function itself removed (an emptied block gets `pass`), so
  the model sees the attributes and sibling methods it may use, and a test can
  call a method as `name(Class(...), ...)`. A nested function's closure
  variables cannot be provided: its tests may fail and the cascade escalates.

What the file defines below the function (`context_after`, the same kinds of chunks)
is never prompted; the sandbox runs it after each candidate, as the module has run it
when anything calls the function.

The modules, each using only those listed before it:

- `scanner`: logical lines and their blocks (`Source`), tolerant of broken code;
- `file_context`: the context chunks of a function's file;
- `function`: `function_at`, `last_function` and the `FunctionContext` they build;
- `body`: putting a solution back (`insert_body`, and `body_edit`, the final edit);
- `rest`: the rest of a half-written function (`continues_at`, `continuation_edit`);
- `source`: a Python file read from disk as Python reads a module (`read_module`);
- `package`: the modules of the file's own project that it imports, for the sandbox
  (`package_task`).
"""

from __future__ import annotations

from .body import body_edit, insert_body
from .function import FunctionContext, function_at, last_function
from .rest import continuation_edit, continues_at

__all__ = [
    "FunctionContext",
    "body_edit",
    "continuation_edit",
    "continues_at",
    "function_at",
    "insert_body",
    "last_function",
]
