"""A function's file context: the chunks of its file that go before every solution.

The context goes into the prompt and is executed in the sandbox before every
solution, so it is made of chunks that parse on their own (the package's
docstring says which).
"""

from __future__ import annotations

import ast
import textwrap

from .scanner import Source, chunk, ensure_newline, statements

_CONTEXT_LEAVES = (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign, ast.Pass)


def file_context(src: Source, target: int) -> str:
    """The context of the function at logical line `target`."""
    outer = src.top_level(target)
    outer_start = src.lls[src.first_decorator(outer)].start
    pieces: list[tuple[str, str]] = []
    for i, start, end in statements(src, None):
        if i == outer:
            if outer != target:
                enclosing = _without(src, outer, target)
                if enclosing is not None:
                    pieces.append(("definition", enclosing))
            continue
        code = src.text(start, end)
        tree = _parses(code)
        kind = _context_kind(tree) if tree is not None else None
        if kind == "import" or (kind == "definition" and end <= outer_start):
            pieces.append((kind, code))
    out = ""
    previous = ""
    for kind, code in pieces:
        code = chunk(code)
        if out:
            out += "" if kind == previous == "import" else "\n\n"
        out += code
        previous = kind
    return out


def file_context_after(src: Source, target: int) -> str:
    """The definitions of the file below the top-level statement that holds the
    function at logical line `target` (functions, classes, assignments, blocks of
    imports and assignments: the context's kinds), joined as the context joins them.
    Never prompted: the sandbox runs them after each candidate, since by the time a
    doctest or a test calls the function, the whole module has run, and an answer may
    call a helper the file defines below it."""
    outer = src.top_level(target)
    out: list[str] = []
    below = False
    for i, start, end in statements(src, None):
        if not below:
            below = i == outer
            continue
        code = src.text(start, end)
        tree = _parses(code)
        if tree is not None and _context_kind(tree) == "definition":
            out.append(chunk(code))
    return "\n\n".join(out)


def _parses(code: str) -> ast.Module | None:
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError):
        return None


def _context_kind(tree: ast.Module) -> str | None:
    """'import', 'definition' or None (left out) for a top-level chunk."""
    if len(tree.body) != 1:
        return None
    stmt = tree.body[0]
    if any(isinstance(n, ast.ImportFrom) and n.level > 0 for n in ast.walk(stmt)):
        return None  # a relative import cannot run in the sandbox: it would fail every test
    if isinstance(stmt, ast.Import | ast.ImportFrom):
        return "import"
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Assign
                  | ast.AnnAssign):
        return "definition"
    if isinstance(stmt, ast.Try | ast.If):
        if isinstance(stmt, ast.If) and "__name__" in ast.dump(stmt.test):
            return None
        leaves = [
            node for node in ast.walk(stmt)
            if isinstance(node, ast.stmt) and node is not stmt
            and not isinstance(node, ast.Try | ast.If)
        ]
        if leaves and all(isinstance(n, _CONTEXT_LEAVES) for n in leaves):
            return "definition"
    if isinstance(stmt, ast.TypeAlias if hasattr(ast, "TypeAlias") else ()):
        return "definition"
    return None


def _without(src: Source, node: int, target: int) -> str | None:
    """The block of `node` with the function `target` (nested in it) removed.

    First the plain cut (blank lines and comments kept); when the block does not
    parse that way, it is rebuilt from its statements that parse on their own.
    """
    t = src.lls[target]
    start = src.lls[src.first_decorator(node)].start
    cut_from = src.lls[src.first_decorator(target)].start
    cut_to = t.block_end
    while cut_to < src.lls[node].block_end and not src.lines[cut_to].strip():
        cut_to += 1
    text = src.text(start, cut_from) + src.text(cut_to, src.lls[node].block_end)
    if _parses(text) is None:
        text = ensure_newline(text) + t.indent + "pass\n"
        if _parses(text) is None:
            text = _render_without(src, node, target)
    return text if _parses(text) is not None else None


def _render_without(src: Source, node: int, target: int) -> str:
    """The header of `node`, then its statements that parse on their own, the one
    holding `target` rendered the same way (recursively) and `target` left out."""
    ll = src.lls[node]
    out = src.text(src.lls[src.first_decorator(node)].start, ll.end)
    t = src.lls[target]
    parts: list[str] = []
    for head, start, end in statements(src, node):
        if head == target:
            continue
        if start <= t.start < end:
            holder = next(j for j in src.children(node)
                          if src.lls[j].start <= t.start < src.lls[j].block_end)
            if holder != target:
                parts.append(_render_without(src, holder, target))
            continue
        code = src.text(start, end)
        if _parses(textwrap.dedent(code)) is not None or _parses("if 1:\n" + code) is not None:
            parts.append(code)
    if not parts:
        parts.append(t.indent + "pass\n")
    return ensure_newline(out) + "".join(ensure_newline(p) for p in parts)
