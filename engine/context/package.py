"""A file's own package in the sandbox (`package_task`).

A module of a package imports its siblings: `from .validation import is_snake_case`,
`from mypkg.util import slug`. The file context leaves relative imports out, and the
sandbox cannot read the project, so without this every candidate that calls such a
helper fails every example with a NameError, a right one as surely as a wrong one.

`package_task` gives the sandbox what the file imports from its own project: the
modules its relative imports name, and those of its own top-level package (or, for a
file outside any package, the modules beside it) that it imports by name, with the
modules those import in turn, read from disk and carried as source. The context then
starts (after its `__future__` imports) by installing an import hook that serves them
(never the file system) and setting `__package__` to the file's package; the file's
relative imports follow the context's leading imports. A carried module that cannot
run in the sandbox fails as an ImportError; a package's `__init__` that cannot run
leaves its submodules importable. The prompt shows the file's relative imports among
its other imports (the model then knows which of the project's names it has at hand),
never the hook.

Bounded: at most MAX_MODULES modules and MAX_BYTES of source; a module past the
bounds, or one that does not parse, is left out, and importing it fails as before.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import logging
from collections.abc import Iterable
from pathlib import Path

from ..types import Task
from .file_context import _CONTEXT_LEAVES
from .scanner import Source, statements, unix_lines
from .source import SourceError, read_module

log = logging.getLogger(__name__)

MAX_MODULES = 64
MAX_BYTES = 512 * 1024

# Installed first in the sandbox: serves the carried modules by name, runs a package's
# __init__ where it can. One function, deleted once it has run.
_HOOK = '''def __cascode_package(modules, package):
    import importlib.abc
    import importlib.util
    import sys

    class CarriedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path=None, target=None):
            if name not in modules:
                return None
            return importlib.util.spec_from_loader(name, self, is_package=modules[name][0])

        def create_module(self, spec):
            return None

        def exec_module(self, module):
            is_package, source, filename = modules[module.__name__]
            module.__file__ = filename
            code = compile(source, filename, "exec", dont_inherit=True)
            if not is_package:
                try:
                    exec(code, module.__dict__)
                except Exception as e:  # it reads a file or a variable the sandbox lacks
                    raise ImportError(f"{module.__name__}: {e!r}") from e
                return
            try:
                exec(code, module.__dict__)
            except Exception:
                pass  # its submodules stay importable

    sys.meta_path.insert(0, CarriedModules())
    return package


__package__ = __cascode_package(%s, %r)
del __cascode_package
'''

def _read(path: Path) -> str | None:
    try:
        return read_module(path)
    except SourceError as e:
        log.info("project module not carried: %s", e)
        return None


def package_task(task: Task, path: Path, source: str) -> Task:
    """`task`, whose sandbox context carries the modules of its own project that the
    file at `path` (its text: `source`, an editor's buffer) imports; `task` itself when
    it imports none, or none can be read."""
    try:
        return _package_task(task, path, source)
    except Exception:  # noqa: BLE001 - the request goes on with the file context alone
        log.exception("carrying the package of %s", path)
        return task


def _package_task(task: Task, path: Path, source: str) -> Task:
    path = Path(path).resolve()
    if path.suffix != ".py":
        return task
    root, module = _locate(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    chunks, trees = _own_imports(source)
    if not trees:
        return task
    top = module.split(".")[0] if package else ""
    carried: dict[str, tuple[bool, str, str]] = {}
    size = 0
    queue = [name for tree in trees for name in _imported(_imports(tree), package, top, root)]
    seen: set[str] = set()
    while queue:
        name = queue.pop(0)
        if name in seen:
            continue
        seen.add(name)
        queue.extend(_parents(name))  # importing a submodule imports its packages first
        found = _module_file(root, name)
        if found is None:
            if name in _parents_of(seen) and root.joinpath(*name.split(".")).is_dir():
                carried[name] = (True, "", str(root.joinpath(*name.split("."))))
            continue
        file, is_package = found
        try:
            st = file.stat()
        except OSError:
            continue
        if len(carried) >= MAX_MODULES or size + st.st_size > MAX_BYTES:
            log.info("%s: %s left out of the sandbox (over the bounds)", path, name)
            continue
        read_module = _module_as_of(str(file), st.st_mtime_ns, st.st_size)
        if read_module is None:
            continue
        text, imports = read_module
        carried[name] = (is_package, text, str(file))
        size += len(text)
        own_package = name if is_package else name.rpartition(".")[0]
        queue.extend(_imported(imports, own_package, top, root))
    if not carried:
        return task
    context = _with_hook(task.context, _HOOK % (_literal(carried), package), chunks)
    if context is None:
        return task
    # The prompt shows the file's plain relative imports among its imports (never the
    # hook): the model then knows which of the project's names the file has at hand.
    plain = [c for c in chunks if _plain_import(c)]
    budget, shown = task.context_budget, task.prompt_context
    if budget is not None:
        lines = "".join(c if c.endswith("\n") else c + "\n" for c in plain)
        first = budget.shared[0] if budget.shared else ""
        enclosing = budget.enclosing
        if first.startswith(("import ", "from ")):
            shared = (first + lines, *budget.shared[1:])
        elif lines:
            shared = (lines, *budget.shared)
            enclosing = None if enclosing is None else enclosing + 1
        else:
            shared = budget.shared
        budget = dataclasses.replace(budget, shared=shared, enclosing=enclosing)
    elif shown is None:
        shown = _with_hook(task.context, "", plain) or task.context
    return dataclasses.replace(task, context=context, prompt_context=shown,
                               context_budget=budget)


def _plain_import(chunk: str) -> bool:
    try:
        body = ast.parse(chunk).body
    except (SyntaxError, ValueError):
        return False
    return len(body) == 1 and isinstance(body[0], ast.ImportFrom)


def _with_hook(context: str, hook: str, chunks: list[str]) -> str | None:
    """The context with the hook after its `from __future__` imports (which must come
    first) and the file's relative import chunks after its leading imports, where the
    names they use are bound and before the definitions that may use theirs. A chunk
    that is not a plain import (`if TYPE_CHECKING: from .m import T`) is guarded: what it
    raises leaves its names unbound, as a plain import's ImportError does. None when
    the context does not parse."""
    try:
        body = ast.parse(context).body if context.strip() else []
    except (SyntaxError, ValueError):
        return None
    lines = context.splitlines(keepends=True)
    future = 0  # lines of the leading __future__ imports
    imports = 0  # lines of the leading imports
    for stmt in body:
        end = stmt.end_lineno or stmt.lineno
        if isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__":
            future = imports = end
        elif _only_imports(stmt):
            imports = end
        else:
            break
    placed = []
    for chunk in chunks:
        chunk = chunk if chunk.endswith("\n") else chunk + "\n"
        if not _plain_import(chunk):
            chunk = "try:\n" + "".join(f"    {line}" if line.strip() else line
                                      for line in chunk.splitlines(keepends=True))
            chunk += "except Exception:\n    pass\n"
        placed.append(chunk)
    return ("".join(lines[:future]) + hook + "".join(lines[future:imports]) + "".join(placed)
            + "".join(lines[imports:]))


def _only_imports(node: ast.AST) -> bool:
    """`node` (a statement, or a chunk's module) holds imports and nothing but imports,
    assignments and the blocks around them (`try: import x` / `except ImportError: ...`)."""
    nodes = [n for n in ast.walk(node) if isinstance(n, ast.stmt)]
    return any(isinstance(n, ast.Import | ast.ImportFrom) for n in nodes) and all(
        isinstance(n, (*_CONTEXT_LEAVES, ast.Try, ast.If)) for n in nodes)


# What a module imports: ("from", level, module, names) or ("import", 0, name, ()).
ImportSpec = tuple[str, int, "str | None", tuple[str, ...]]


def _imports(tree: ast.AST) -> tuple[ImportSpec, ...]:
    out: list[ImportSpec] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            out.append(("from", node.level, node.module, tuple(a.name for a in node.names)))
        elif isinstance(node, ast.Import):
            out.extend(("import", 0, a.name, ()) for a in node.names)
    return tuple(out)


def _module(text: str | None) -> tuple[str, tuple[ImportSpec, ...]] | None:
    if text is None:
        return None
    try:
        return text, _imports(ast.parse(text))
    except (SyntaxError, ValueError, RecursionError):
        return None  # being edited: left out


@functools.lru_cache(maxsize=256)
def _module_as_of(file: str, mtime_ns: int, size: int) -> tuple[str, tuple[ImportSpec, ...]] | None:
    """A module's text and what it imports, read once while it is unchanged on disk (a
    request comes with every pause in typing)."""
    return _module(_read(Path(file)))


def _locate(path: Path) -> tuple[Path, str]:
    """The folder imports start from, and the file's dotted module name in it."""
    folder = path.parent
    if not (folder / "__init__.py").is_file():
        return folder, path.stem
    parts = [] if path.name == "__init__.py" else [path.stem]
    while (folder / "__init__.py").is_file() and folder.parent != folder:
        parts.insert(0, folder.name)
        folder = folder.parent
    return folder, ".".join(parts)


def _module_file(root: Path, name: str) -> tuple[Path, bool] | None:
    base = root.joinpath(*name.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py", True
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py"), False
    return None


def _parents_of(names: Iterable[str]) -> set[str]:
    return {parent for name in names for parent in _parents(name)}


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _own_imports(source: str) -> tuple[list[str], list[ast.Module]]:
    """The file's top-level import chunks that parse: the relative ones' text (the
    context leaves them out), and the trees of every one."""
    src = Source(source)
    chunks: list[str] = []
    trees: list[ast.Module] = []
    for _i, start, end in statements(src, None):
        code = src.text(start, end)
        try:
            tree = ast.parse(code)
        except (SyntaxError, ValueError):
            continue
        if not _only_imports(tree):
            continue
        trees.append(tree)
        if any(isinstance(n, ast.ImportFrom) and n.level > 0 for n in ast.walk(tree)):
            chunks.append(unix_lines(code))
    return chunks, trees


def _imported(imports: Iterable[ImportSpec], package: str, top: str,
              root: Path) -> Iterable[str]:
    """The modules of the project among `imports`: relative ones resolved against
    `package`, absolute ones under `top` (or, outside a package, beside the file)."""
    for kind, level, module, names in imports:
        if kind == "import":
            if module and _ours(module, top, root):
                yield module
            continue
        if level > 0:
            parts = package.split(".") if package else []
            if level - 1 >= len(parts):
                continue  # beyond the top-level package: an ImportError in Python too
            base = ".".join(parts[: len(parts) - (level - 1)])
            target = f"{base}.{module}" if module else base
        elif module and _ours(module, top, root):
            target = module
        else:
            continue
        yield target
        for name in names:  # `from . import sub`: a submodule, if there is one
            if name != "*":
                yield f"{target}.{name}"


def _ours(name: str, top: str, root: Path) -> bool:
    first = name.split(".")[0]
    if top:
        return first == top
    return _module_file(root, first) is not None


def _literal(carried: dict[str, tuple[bool, str, str]]) -> str:
    items = ",\n    ".join(f"{name!r}: ({is_package!r}, {text!r}, {file!r})"
                           for name, (is_package, text, file) in carried.items())
    return "{\n    " + items + ",\n}"
