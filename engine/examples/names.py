"""The names a piece of Python source binds and reads, shared by the docstring and
test-file readers: an example is kept only when every free name in it resolves."""

from __future__ import annotations

import ast
import builtins
from collections.abc import Iterable, Iterator, Sequence

from ..types import Example

BUILTINS = frozenset(dir(builtins))


def top_level_names(source: str) -> frozenset[str]:
    """Names a module's top level binds (definitions, imports, assignments). A source
    that does not parse is read chunk by chunk (top-level statements), skipping bad ones."""
    try:
        return frozenset(bound_names(ast.parse(source).body))
    except (SyntaxError, ValueError):
        pass
    names: set[str] = set()
    for chunk in _top_level_chunks(source):
        try:
            names |= bound_names(ast.parse(chunk).body)
        except (SyntaxError, ValueError):
            continue
    return frozenset(names)


def _top_level_chunks(source: str) -> Iterator[str]:
    chunk: list[str] = []
    for line in source.splitlines(keepends=True):
        starts = bool(line.strip()) and not line[0].isspace() and line[0] not in ")]}#"
        if starts and chunk and not chunk[-1].startswith("@"):
            yield "".join(chunk)
            chunk = []
        chunk.append(line)
    if chunk:
        yield "".join(chunk)


def bound_names(body: Sequence[ast.stmt]) -> set[str]:
    """Names bound by statements at one scope (not inside nested functions or classes)."""
    collector = Bindings()
    for stmt in body:
        collector.visit(stmt)
    return collector.stored | set(collector.imports)


class Bindings(ast.NodeVisitor):
    """Names one scope binds: `imports` (name -> the import statement) and `stored`
    (everything else: assignments, loop targets, definitions, parameters, `except ... as`)."""

    def __init__(self) -> None:
        self.stored: set[str] = set()
        self.imports: dict[str, ast.Import | ast.ImportFrom] = {}
        self.star_imports: list[ast.ImportFrom] = []

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Store | ast.Del):
            self.stored.add(node.id)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._definition(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._definition(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._definition(node)

    def _definition(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.stored.add(node.name)
        for deco in node.decorator_list:
            self.visit(deco)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        pass

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.imports.setdefault(alias.asname or alias.name.split(".")[0], node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name == "*":
                self.star_imports.append(node)
            else:
                self.imports.setdefault(alias.asname or alias.name, node)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self.stored.add(node.name)
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        self.stored.update(node.names)

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        self.stored.update(node.names)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.name:
            self.stored.add(node.name)
        self.generic_visit(node)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self.stored.add(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        if node.rest:
            self.stored.add(node.rest)
        self.generic_visit(node)


def free_names(node: ast.AST) -> set[str]:
    """Names `node` reads that it does not bind itself (comprehension and lambda
    variables, `:=` targets are bound inside)."""
    loaded: set[str] = set()
    bound: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            (loaded if isinstance(sub.ctx, ast.Load) else bound).add(sub.id)
        elif isinstance(sub, ast.arg):
            bound.add(sub.arg)
    return loaded - bound


def dedup(examples: Iterable[Example]) -> tuple[Example, ...]:
    """`examples` without repeats of a `source`, the first one kept."""
    seen: set[str] = set()
    out = []
    for ex in examples:
        if ex.source not in seen:
            seen.add(ex.source)
            out.append(ex)
    return tuple(out)
