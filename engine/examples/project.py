"""Example lines from a project's test files: the asserts of one test file that
call the function (`test_file_examples`), and every test file of a project found,
read and cached per file version (`ProjectExamples`, `find_project_root`).

Test files are only read, never imported or run.
"""

from __future__ import annotations

import ast
import logging
import os
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..context.source import SourceError, read_module
from ..extract import is_valid_assert
from ..types import Example
from .names import BUILTINS, Bindings, dedup, free_names

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------
# One test file


@dataclass(frozen=True)
class _Scope:
    stored: frozenset[str]
    imports: dict[str, ast.Import | ast.ImportFrom]
    star_imports: tuple[ast.ImportFrom, ...]


@dataclass(frozen=True)
class _Assert:
    text: str  # as written
    source: str  # one statement that parses on its own
    names: frozenset[str]  # free names
    scopes: tuple[_Scope, ...]  # innermost first, the module last


class _TestFile:
    """A test file read once: every `assert` with its free names and enclosing scopes."""

    def __init__(self, text: str, path_parts: tuple[str, ...] = ()) -> None:
        tree = ast.parse(text)
        self.path_parts = path_parts  # the test file's path (relative imports), without .py
        self.asserts: list[_Assert] = []
        self._walk(tree.body, (_scope(tree.body),), text)

    def _walk(self, body: Sequence[ast.stmt], scopes: tuple[_Scope, ...], text: str) -> None:
        for stmt in body:
            if isinstance(stmt, ast.Assert):
                self._add(stmt, scopes, text)
            elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
                args = {a.arg for a in ast.walk(stmt.args) if isinstance(a, ast.arg)}
                self._walk(stmt.body, (_scope(stmt.body, args), *scopes), text)
            elif isinstance(stmt, ast.ClassDef):
                self._walk(stmt.body, (_scope(stmt.body), *scopes), text)
            else:
                for name in ("body", "orelse", "finalbody"):
                    self._walk(getattr(stmt, name, ()), scopes, text)
                for handler in getattr(stmt, "handlers", ()):
                    self._walk(handler.body, scopes, text)
                for case in getattr(stmt, "cases", ()):
                    self._walk(case.body, scopes, text)

    def _add(self, stmt: ast.Assert, scopes: tuple[_Scope, ...], text: str) -> None:
        written = ast.get_source_segment(text, stmt) or ast.unparse(stmt)
        try:
            ast.parse(written)
            source = written
        except (SyntaxError, ValueError):
            source = ast.unparse(stmt)
        self.asserts.append(_Assert(written, source, frozenset(free_names(stmt)), scopes))

    def examples(
        self,
        path_label: str,
        entry_point: str,
        context_names: frozenset[str] | None = None,
        source_file: str | None = None,
    ) -> tuple[Example, ...]:
        """The asserts of the test files that call `entry_point` (a function's name, or a
        method's `Class.method`) and run in the sandbox after the file context."""
        context = context_names or frozenset()
        # A method's subject is `Class.method` (`extract.assert_subject`): its lines call
        # the class, which the file context defines as it defines a function.
        called = entry_point.split(".")[0]
        out = []
        for a in self.asserts:
            if called not in a.names or not is_valid_assert(a.source, entry_point):
                continue
            carried: list[str] = []
            if all(self._resolve(name, a.scopes, called, context, source_file, carried)
                   for name in sorted(a.names)):
                setup = "".join(line + "\n" for line in dict.fromkeys(carried))
                out.append(Example(setup + a.source + "\n", a.text, path_label))
        return dedup(out)

    def _resolve(
        self,
        name: str,
        scopes: tuple[_Scope, ...],
        entry_point: str,
        context: frozenset[str],
        source_file: str | None,
        carried: list[str],
    ) -> bool:
        """Whether `name` resolves in the sandbox; the import it needs goes to `carried`."""
        for scope in scopes:
            if name in scope.stored:
                return False  # a local variable, parameter, fixture or the file's own definition
            node = scope.imports.get(name)
            if node is None:
                continue
            if name == entry_point:
                # The function under test is the solution; its import is not carried.
                return not _is_stdlib(node) and self._imports_source(node, source_file)
            if _is_stdlib(node):
                carried.append(_import_line(node, name))
                return True
            return name in context  # a project name: only the file context provides it
        if name == entry_point:
            stars = [n for s in scopes for n in s.star_imports if not _is_stdlib(n)]
            return any(self._imports_source(n, source_file) for n in stars)
        return name in context or name in BUILTINS

    def _imports_source(self, node: ast.Import | ast.ImportFrom, source_file: str | None) -> bool:
        """Whether `node` imports from the module being completed (or a package above it,
        which may re-export it). Unknown source file: assumed."""
        if source_file is None:
            return True
        if not isinstance(node, ast.ImportFrom):
            return False
        parts = tuple(node.module.split(".")) if node.module else ()
        if node.level:
            base = self.path_parts[:-1]
            base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
            parts = base + parts
        if not parts:
            return False
        path = Path(source_file)
        module = path.with_suffix("").parts
        if module and module[-1] == "__init__":
            module = module[:-1]
        packages = module[:-1]
        return module[-len(parts):] == parts or any(
            packages[: k][-len(parts):] == parts for k in range(len(packages), 0, -1)
        )


def _scope(body: Sequence[ast.stmt], args: Iterable[str] = ()) -> _Scope:
    collector = Bindings()
    for stmt in body:
        collector.visit(stmt)
    return _Scope(frozenset(collector.stored | set(args)), dict(collector.imports),
                  tuple(collector.star_imports))


def _is_stdlib(node: ast.Import | ast.ImportFrom) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level == 0 and (node.module or "").split(".")[0] in sys.stdlib_module_names
    return all(a.name.split(".")[0] in sys.stdlib_module_names for a in node.names)


def _import_line(node: ast.Import | ast.ImportFrom, name: str) -> str:
    """The import statement reduced to the alias that binds `name`."""
    for alias in node.names:
        bound = alias.asname or (alias.name if isinstance(node, ast.ImportFrom)
                                 else alias.name.split(".")[0])
        if bound == name:
            if isinstance(node, ast.ImportFrom):
                return ast.unparse(ast.ImportFrom(node.module, [alias], node.level))
            return ast.unparse(ast.Import([alias]))
    return ast.unparse(node)


def test_file_examples(
    path_label: str,
    text: str,
    entry_point: str,
    context_names: frozenset[str] | None = None,
    source_file: str | None = None,
) -> tuple[Example, ...]:
    """The asserts of one test file that call `entry_point` and resolve in the sandbox.

    A name resolves through a standard-library import of the test file (carried
    as a setup line), the file context's names (`context_names`) or the
    builtins; never through a local variable, parameter or fixture of the test,
    or a definition of the test file. The import of the function under test is
    not carried (the solution defines it); with `source_file` (the completed
    file, relative to the same root as `path_label`), an assert is kept only if
    the test imports the function from that module or a package above it.
    A file that does not parse gives ()."""
    try:
        parsed = _TestFile(text, Path(path_label).with_suffix("").parts)
    except (SyntaxError, ValueError, RecursionError):
        return ()
    return parsed.examples(path_label, entry_point, context_names, source_file)


test_file_examples.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


# ---------------------------------------------------------------------------
# A project's test files

_PROJECT_MARKERS = ("pyproject.toml", "setup.cfg", "setup.py", ".git")
_SKIP_DIRS = frozenset({".venv", "venv", "node_modules", "__pycache__", "site-packages",
                        "build", "dist"})
_TEST_DIRS = frozenset({"tests", "test"})


def find_project_root(path: str | os.PathLike[str]) -> Path | None:
    """The nearest folder at or above `path` holding pyproject.toml, setup.cfg, setup.py
    or .git; None if there is none."""
    here = Path(path).resolve()
    for folder in (here, *here.parents) if here.is_dir() else here.parents:
        if any((folder / marker).exists() for marker in _PROJECT_MARKERS):
            return folder
    return None


def is_test_file(relative: Path) -> bool:
    """pytest's layout: test_*.py, *_test.py, or any .py file under a tests/ or test/ folder."""
    name = relative.name
    if not name.endswith(".py"):
        return False
    return (name.startswith("test_") or name.endswith("_test.py")
            or any(part in _TEST_DIRS for part in relative.parts[:-1]))


@dataclass
class _Cached:
    key: tuple[object, ...]
    parsed: _TestFile | None


class ProjectExamples:
    """The example lines of a project's test files, bounded and cached.

    Test files are only read, never imported or run. The listing of test files
    is cached until `invalidate` or `refresh`; each file is parsed once per
    (mtime, size) on disk, or per version of an editor buffer that overrides it
    (`set_buffer`). A file over `max_bytes` or with a syntax error is skipped
    with one log line per version. Thread-safe: the buffer calls take a short
    lock, so an event loop can call them while `examples` reads on another thread.
    """

    def __init__(
        self,
        roots: Iterable[str | os.PathLike[str]],
        *,
        max_files: int = 200,
        max_bytes: int = 1_000_000,
        max_entries: int = 20_000,
    ) -> None:
        self.roots = [Path(r).resolve() for r in roots]
        self.max_files = max_files
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._lock = threading.Lock()  # buffers, stale marks
        self._scan_lock = threading.Lock()  # listing and parsed files
        self._buffers: dict[Path, tuple[str, object]] = {}
        self._stale: set[Path] = set()  # files to look at again
        self._relist = False  # the listing must be walked again
        self._listing: list[tuple[Path, Path]] | None = None  # (root, relative path)
        self._parsed: dict[Path, _Cached] = {}

    # -- what the editor says --------------------------------------------------

    def set_buffer(self, path: str | os.PathLike[str], text: str, version: object) -> bool:
        """Use `text` (an unsaved editor buffer) instead of the file on disk.
        Returns False, and keeps nothing, when `path` is no test file of a root."""
        p = Path(path).resolve()
        if self._root_of(p) is None:
            return False
        with self._lock:
            self._buffers[p] = (text, version)
        return True

    def drop_buffer(self, path: str | os.PathLike[str]) -> None:
        """The buffer was closed: the file on disk counts again."""
        p = Path(path).resolve()
        with self._lock:
            self._buffers.pop(p, None)

    def invalidate(self, path: str | os.PathLike[str] | None = None) -> None:
        """A file was saved, created or deleted (None: anything may have changed)."""
        with self._lock:
            if path is None:
                self._relist = True
            else:
                self._stale.add(Path(path).resolve())

    def refresh(self) -> None:
        """Forget the listing and every parsed file."""
        self.invalidate(None)

    def is_test_file(self, path: str | os.PathLike[str]) -> bool:
        return self._root_of(Path(path).resolve()) is not None

    def _root_of(self, p: Path) -> Path | None:
        best = None
        for root in self.roots:
            if p.is_relative_to(root) and is_test_file(p.relative_to(root)):
                if best is None or len(root.parts) > len(best.parts):
                    best = root
        return best

    # -- the examples ------------------------------------------------------------

    def examples(
        self,
        entry_point: str,
        context_names: frozenset[str] | None = None,
        source_file: str | os.PathLike[str] | None = None,
    ) -> tuple[Example, ...]:
        """Every test file's examples for `entry_point`, in the order of their relative
        paths, deduplicated by source. With `source_file` (the file being completed),
        only the root holding it is read, and only asserts that import the function
        from that module (or a package above it) are kept."""
        src = Path(source_file).resolve() if source_file is not None else None
        with self._scan_lock:
            with self._lock:
                buffers = dict(self._buffers)
                stale, self._stale = self._stale, set()
                relist, self._relist = self._relist, False
            self._forget(stale, relist)
            files = self._files(buffers)
            roots = [r for r in self.roots if src is not None and src.is_relative_to(r)]
            if roots:
                deepest = max(roots, key=lambda r: len(r.parts))
                files = [(r, rel) for r, rel in files if r == deepest]
            out: list[Example] = []
            for root, rel in files:
                parsed = self._parse(root / rel, rel, buffers.get(root / rel))
                if parsed is None:
                    continue
                module = (src.relative_to(root).as_posix()
                          if src is not None and src.is_relative_to(root) else None)
                out.extend(parsed.examples(rel.as_posix(), entry_point, context_names, module))
            return dedup(out)

    def _forget(self, stale: set[Path], relist: bool) -> None:
        if relist:
            self._listing = None
            self._parsed.clear()
            return
        for p in stale:
            self._parsed.pop(p, None)
            root = self._root_of(p)
            if self._listing is not None and root is not None:
                listed = (root, p.relative_to(root)) in self._listing
                if listed != p.is_file():
                    self._listing = None  # a test file was created or deleted

    def _files(self, buffers: dict[Path, tuple[str, object]]) -> list[tuple[Path, Path]]:
        if self._listing is None:
            self._listing = self._walk()
        files = set(self._listing)
        for p in buffers:  # an unsaved new test file counts too
            root = self._root_of(p)
            if root is not None:
                files.add((root, p.relative_to(root)))
        return sorted(files, key=lambda f: (str(f[0]), f[1].as_posix()))

    def _walk(self) -> list[tuple[Path, Path]]:
        found: list[tuple[Path, Path]] = []
        entries = 0
        for root in self.roots:
            pending = [root]
            while pending:
                folder = pending.pop()
                try:
                    with os.scandir(folder) as it:
                        children = sorted(it, key=lambda e: e.name)
                except OSError:
                    continue
                subfolders = []
                for entry in children:
                    entries += 1
                    if entries > self.max_entries or len(found) >= self.max_files:
                        log.info("test files: stopped after %d entries and %d test files "
                                 "(cascode.testScanFiles)", entries - 1, len(found))
                        return found
                    if entry.name.startswith(".") or entry.name in _SKIP_DIRS:
                        continue
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            subfolders.append(Path(entry.path))
                        elif entry.is_file():
                            rel = Path(entry.path).relative_to(root)
                            if is_test_file(rel):
                                found.append((root, rel))
                    except OSError:
                        continue
                pending.extend(reversed(subfolders))
        return found

    def _parse(self, path: Path, rel: Path, buffer: tuple[str, object] | None) -> _TestFile | None:
        if buffer is not None:
            text: str | None = buffer[0]
            key: tuple[object, ...] = ("buffer", buffer[1])
        else:
            try:
                st = path.stat()
            except OSError:
                self._parsed.pop(path, None)
                return None
            key, text = ("disk", st.st_mtime_ns, st.st_size), None
        cached = self._parsed.get(path)
        if cached is not None and cached.key == key:
            return cached.parsed
        parsed = self._read(path, rel, text)
        self._parsed[path] = _Cached(key, parsed)
        return parsed

    def _read(self, path: Path, rel: Path, text: str | None) -> _TestFile | None:
        try:
            size = len(text.encode("utf-8", "replace")) if text is not None else path.stat().st_size
        except OSError:
            return None
        if size > self.max_bytes:
            log.info("test file %s skipped: %d bytes, over %d", rel.as_posix(), size,
                     self.max_bytes)
            return None
        if text is None:
            try:
                text = read_module(path)
            except SourceError as e:
                log.info("test file %s skipped: %s", rel.as_posix(), e.reason)
                return None
        try:
            return _TestFile(text, rel.with_suffix("").parts)
        except (SyntaxError, ValueError, RecursionError) as e:
            line = getattr(e, "lineno", None)
            log.warning("test file %s skipped: does not parse%s", rel.as_posix(),
                        f" (line {line})" if line else "")
            return None
