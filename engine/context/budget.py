"""The file context that goes into the prompt, within a token budget.

The sandbox executes the whole usable file context (`file_context`: the imports
and the definitions above the function); the prompt gets a budgeted, stable
view of that same context, so that real modules do not cost thousands of prompt
tokens, the model is shown nothing the sandbox cannot run, and the functions of
a file share the first part of their prompts (the backend's prefix cache then
evaluates it once; a later function's shared part extends an earlier one's):

1. shared, in file order: the imports, then each top-level definition as an
   outline (a function's decorators, signature and the first line of its
   docstring; a class's line, docstring line, short attributes and method
   signatures; a short assignment as written), cut at a share of the budget.
   The outline of the definition that holds the function (a method's class) is
   kept however the rest is cut: after the pieces that fit, on at least half of
   that share (cut between its members when it is longer than the share), so a
   method in a long module still sees its class's constructor, attributes and
   methods. Where nothing is cut, it stands where it was, last;
2. specific to this function: the full text of the top-level helpers its
   signature, docstring and written lines name (one level deep, in the order
   they are first named), while they fit in the rest of the budget.

Tokens are counted by the caller's counter (the family's first member's
tokenizer in the cascade), once per piece. Deterministic: the same file and
budget give the same text.
"""

from __future__ import annotations

import ast
import copy
import re
from collections.abc import Callable, Sequence

from ..types import Backend, ContextBudget, Task
from .scanner import Source, chunk, statements

# Prompt tokens for the file context by default (the server's `contextTokens`,
# the CLI's --context-tokens).
DEFAULT_CONTEXT_TOKENS = 1024
# The shared outline may take this share of the budget; the function's helpers
# get what is left (and whatever the outline did not use).
SHARED_SHARE = 0.6
MAX_ASSIGN_CHARS = 120  # a longer module-level assignment is outlined as `NAME = ...`
_NAME = re.compile(r"[A-Za-z_]\w*")


def context_pieces(source: str, function: str, function_text: str
                   ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(shared pieces, helper pieces) of `source` (a function's file context) for the
    function named `function` whose own text (signature, docstring, written lines)
    is `function_text`."""
    budget = context_budget(source, function, function_text, 0)
    return budget.shared, budget.helpers


def context_budget(source: str, function: str, function_text: str, tokens: int,
                   owner: str = "") -> ContextBudget:
    """The pieces of `source` for the prompt of `function` within `tokens`; `owner`
    (dotted, "" at top level) names the definitions around it, and the outline of the
    outermost one, which holds the function, is kept however the rest is cut."""
    src = Source(source)
    imports: list[str] = []
    outlines: list[str] = []
    full: dict[str, str] = {}
    holder = owner.split(".")[0]
    enclosing = None
    for _, start, end in statements(src, None):
        code = chunk(src.text(start, end))
        try:
            tree = ast.parse(code)
        except (SyntaxError, ValueError):
            continue  # a chunk being edited: left out of the prompt
        if len(tree.body) != 1:
            continue
        stmt = tree.body[0]
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            imports.append(code)
            continue
        outline = _outline(stmt, code)
        if outline:
            outlines.append(outline)
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            full.setdefault(stmt.name, code)
            if holder and stmt.name == holder and outline:
                enclosing = len(outlines) - 1
    shared = (("".join(imports),) if imports else ()) + tuple(outlines)
    named: list[str] = []
    for m in _NAME.finditer(function_text):
        name = m.group()
        if name in full and name != function and name not in named:
            named.append(name)
    if enclosing is not None:
        enclosing += bool(imports)
    return ContextBudget(shared, tuple(full[n] for n in named), tokens, enclosing)


def fit_context(budget: ContextBudget, count: Callable[[str], int]) -> str:
    """The prompt's file context: shared pieces up to their share, then helpers. The
    outline of the definition that holds the function (`budget.enclosing`) is kept,
    right after the shared pieces that fit, on up to the whole share (its members cut
    where it is longer), and at least half of it reserved however long the others."""
    if budget.tokens <= 0:
        return ""
    shared_cap = int(budget.tokens * SHARED_SHARE)
    holder = None if budget.enclosing is None else budget.shared[budget.enclosing]
    holder_tokens = count(holder) if holder else 0
    room = shared_cap - min(holder_tokens, shared_cap // 2)
    used = 0
    kept: list[str] = []
    dropped = 0
    others = [p for i, p in enumerate(budget.shared) if i != budget.enclosing]
    for i, piece in enumerate(others):
        n = count(piece)
        if used + n > room:
            dropped = len(others) - i
            break
        kept.append(piece)
        used += n
    if dropped and holder:
        while kept and used + count(_not_shown(dropped)) > room:  # room for the line too
            used -= count(kept.pop())
            dropped += 1
    if dropped:
        kept.append(_not_shown(dropped))
        used += count(kept[-1])
    if holder:
        if used + holder_tokens > shared_cap:
            holder = _cut_outline(holder, shared_cap - used, count)
            holder_tokens = count(holder)
        kept.append(holder)
        used += holder_tokens
    helpers: list[str] = []
    for piece in budget.helpers:
        n = count(piece)
        if used + n <= budget.tokens:
            helpers.append(piece)
            used += n
    return _join(kept) + ("\n" + _join(helpers) if helpers and kept else _join(helpers))


def _not_shown(dropped: int) -> str:
    return f"# ... {dropped} more definition{'s' if dropped > 1 else ''} not shown\n"


def _cut_outline(outline: str, tokens: int, count: Callable[[str], int]) -> str:
    """A class outline within `tokens`: its line and docstring line, then its members
    (a member: a line indented once, with the lines under it) while they fit."""
    lines = outline.rstrip("\n").split("\n")
    members: list[list[str]] = [[]]
    for line in lines:
        top = line.startswith("    ") and not line.startswith("     ")
        if top and not line.startswith('    """') and not (
                members[-1] and members[-1][-1].startswith("    @")):
            members.append([])
        members[-1].append(line)
    head, rest = members[0], members[1:]
    shown = list(head)
    for i, member in enumerate(rest):
        more = f"    # ... {len(rest) - i} more member{'s' if len(rest) - i > 1 else ''} not shown"
        if count("\n".join(shown + member + [more]) + "\n") > tokens:
            return "\n".join(shown + [more]) + "\n"
        shown += member
    return "\n".join(shown) + "\n"


def _join(pieces: Sequence[str]) -> str:
    """Pieces one blank line apart; consecutive one-line pieces (assignments) together."""
    out = ""
    previous_short = False
    for piece in pieces:
        piece = piece.rstrip("\n") + "\n"
        short = piece.count("\n") == 1
        if out:
            out += "" if short and previous_short else "\n"
        out += piece
        previous_short = short
    return out


def _outline(stmt: ast.stmt, code: str) -> str:
    """A top-level statement as the outline shows it ('' to leave it out)."""
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
        return _signature(stmt, "") + "\n"
    if isinstance(stmt, ast.ClassDef):
        head = ast.unparse(_bare_class(stmt)).splitlines()[0]
        decorators = "".join(f"@{ast.unparse(d)}\n" for d in stmt.decorator_list)
        lines = [decorators + head]
        doc = _first_doc_line(stmt)
        if doc:
            lines.append(f'    """{doc}"""')
        for item in stmt.body:
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                lines.append(_signature(item, "    "))
            elif isinstance(item, ast.Assign | ast.AnnAssign):
                text = ast.unparse(item)
                if len(text) <= MAX_ASSIGN_CHARS and "\n" not in text:
                    lines.append("    " + text)
        if len(lines) == 1 + bool(doc):
            lines.append("    ...")
        return "\n".join(lines) + "\n"
    if isinstance(stmt, ast.Assign | ast.AnnAssign):
        text = code.rstrip("\n")
        if len(text) <= MAX_ASSIGN_CHARS and "\n" not in text:
            return text + "\n"
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        names = ", ".join(ast.unparse(t) for t in targets)
        return f"{names} = ...\n"
    return ""


def _signature(fn: ast.FunctionDef | ast.AsyncFunctionDef, indent: str) -> str:
    stub = copy.copy(fn)  # shallow: the same arguments, decorators and annotations
    stub.body = [ast.Expr(ast.Constant(...))]
    head = ast.unparse(stub).rsplit("\n", 1)[0]  # without the `...` body line
    doc = _first_doc_line(fn)
    body = f'"""{doc}"""' if doc else "..."
    return "\n".join(indent + line for line in head.splitlines()) + f"\n{indent}    {body}"


def _bare_class(cls: ast.ClassDef) -> ast.ClassDef:
    bare = copy.copy(cls)
    bare.body = [ast.Pass()]
    bare.decorator_list = []
    return bare


def _first_doc_line(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> str:
    doc = ast.get_docstring(node)
    if not doc:
        return ""
    line = doc.strip().splitlines()[0].strip()
    return line.replace('"""', "'''").replace("\\", "\\\\")


def token_counter(backend: Backend) -> Callable[[str], int]:
    """Counts tokens with the backend's tokenizer; 4 characters a token without one."""
    tokenize = getattr(backend, "tokenize", None)
    if callable(tokenize):
        return lambda text: len(tokenize(text))
    return lambda text: max(1, len(text) // 4)


def with_prompt_context(task: Task, count: Callable[[str], int]) -> Task:
    """`task` with its prompt context fitted to its budget (unchanged without one)."""
    if task.context_budget is None or task.prompt_context is not None:
        return task
    import dataclasses

    return dataclasses.replace(task, prompt_context=fit_context(task.context_budget, count))
