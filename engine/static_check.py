"""Static checks of a candidate before the sandbox (docs/method.md 8.2): pure, no model,
milliseconds.

`check_candidate(task, code)` reads a candidate (the whole function, as `solution_text`
gives it) against its file and answers what makes it wrong whatever its tests say:

- `syntax`: the candidate does not parse;
- `empty`: it adds nothing to what the user wrote (the model closed its answer at once,
  most often on a half-written body): not an answer, whatever it passes;
- `undefined-name`: it reads a name bound nowhere: not in the function, the file (the
  task's `context`, and `file_around`: what the file defines below the function or in
  blocks the context leaves out) or the builtins. pyflakes decides, on the file with the
  candidate put back where it belongs (a method into its class, a nested function into
  its function), so scopes, `global`, `try`/`except ImportError` and `from x import *`
  (then nothing is decidable) follow pyflakes' own rules;
- `unset-attribute`: a method reads `self.x` (or `cls.x`) that neither its class, its
  bases and subclasses in the file, nor the candidate itself ever set or define;
- `bad-call`: it calls a function of the file, a method of its class through
  `self`/`cls`, or a class of the file with arguments their signature cannot take.

A finding claims that the candidate is wrong, so each check gives up when in doubt: a
base class, metaclass or class decorator from elsewhere, `__getattr__`, a `setattr` or
`__dict__` with a computed name, a class with abstract or stub methods, a decorated
function, `*args`/`**kwargs` at the call, a name bound more than once, a file that does
not parse around the function. Only the candidate's own lines are judged (those after
the task's prompt): what the user wrote is not the candidate's fault.

The file's part (parsed, with the facts the checks need) is cached per task, so the
candidates of one stage parse only themselves.
"""

from __future__ import annotations

import ast
import builtins
import copy
import functools
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from pyflakes import checker as pyflakes  # type: ignore[import-untyped]
from pyflakes import messages as flakes

from .extract import parse_generated
from .types import Finding, Task

Scope = ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef

__all__ = ["Finding", "check_candidate"]


def check_candidate(task: Task, code: str) -> tuple[Finding, ...]:
    """What makes `code` (the whole candidate function) wrong in `task`'s file; () when
    nothing can be claimed."""
    own_from = _own_first_line(task.prompt, code)
    if own_from is None:
        # The model ended its answer at once: the editor would insert nothing.
        return (Finding("empty", "adds nothing to what you wrote", 0),)
    try:
        candidate = parse_generated(code)
    except (SyntaxError, ValueError) as e:
        line = getattr(e, "lineno", None) or 0
        msg = getattr(e, "msg", None) or str(e)
        return (Finding("syntax", f"does not parse: line {line}: {msg}", line),)
    file = _read_file(task.context, task.file_around, task.owner)
    if file is None:
        return ()
    ast.increment_lineno(candidate, file.shift)
    own_from += file.shift
    func = next((s for s in candidate.body if isinstance(s, FunctionNode)
                 and s.name == task.entry_point), None)
    facts = _Facts(file, candidate, func)
    findings = _undefined_names(file, candidate, func, own_from)
    if func is not None and file.in_classes:
        nodes = list(ast.walk(func))
        me = _self_name(func, nodes) if file.klass is not None else None
        if me is not None and file.klass is not None:
            findings += _unset_attributes(nodes, me, file.klass, facts, own_from)
        findings += _bad_calls(func, nodes, me, file.klass, facts, own_from)
    return tuple(Finding(f.kind, f.message, f.line - file.shift) for f in findings)


def _own_first_line(prompt: str, code: str) -> int | None:
    """The first line of `code` the candidate wrote (1-based), None when it wrote none."""
    if code.startswith(prompt):
        if not code[len(prompt):].strip():
            return None
        return prompt.count("\n") + 1
    return 1  # a restated function: all of it is the candidate's


# ---------------------------------------------------------------------------
# The file, read once per task


@dataclass
class _File:
    """The task's file as the checks need it (cached: never changed after it is built,
    except `slot`, under `lock`, while pyflakes runs)."""

    chain: list[Scope] | None  # the definitions around the function; None: not found
    # The names the file binds at its top level (pyflakes' module scope, and names that
    # a function declares `global`); None after a `from x import *`: they cannot be known.
    module_names: frozenset[str] | None
    around: list[ast.stmt]  # the outermost definition around the candidate, for pyflakes
    slot: list[ast.stmt] | None  # where the candidate goes in `around` (None: top level)
    shift: int  # the candidate's lines are numbered after the file's
    scan: _Scan  # attributes set, strings, computed writes, classes of the file
    top: dict[str, list[ast.AST]]  # the top-level bindings of each name
    lock: threading.Lock
    class_names: dict[int, set[str]] = field(default_factory=dict)

    def names_of(self, c: ast.ClassDef) -> set[str]:
        """The names class `c` binds in its body (attributes, methods), cached."""
        names = self.class_names.get(id(c))
        if names is None:
            names = self.class_names[id(c)] = _bound_names(c.body)
        return names

    @property
    def klass(self) -> ast.ClassDef | None:
        """The class of a method."""
        if self.chain and isinstance(self.chain[-1], ast.ClassDef):
            return self.chain[-1]
        return None

    @property
    def in_classes(self) -> bool:
        """A top-level function or a method: a plain name it calls is a module's name."""
        return self.chain is not None and all(isinstance(n, ast.ClassDef) for n in self.chain)


@functools.lru_cache(maxsize=16)
def _read_file(context: str, file_around: str, owner: str) -> _File | None:
    """The file: the context, then the statements of the file around the function that
    the context does not hold. None when either does not parse (a file being edited
    elsewhere): what it defines is unknown, so nothing but syntax can be claimed."""
    try:
        ctx = parse_generated(context)
        rest = parse_generated(file_around)
    except (SyntaxError, ValueError):
        return None
    held = Counter(_statement_texts(ctx, context))
    kept = []
    for stmt, text in zip(rest.body, _statement_texts(rest, file_around), strict=True):
        if held[text] > 0:
            held[text] -= 1  # the context holds it
        else:
            kept.append(stmt)
    rest.body = kept
    chain = owner_chain(ctx, owner)
    scan = _Scan(ctx, rest)
    top: dict[str, list[ast.AST]] = {}
    for stmt in _block_statements([*ctx.body, *rest.body]):
        for name in _direct_bindings(stmt):
            top.setdefault(name, []).append(stmt)
    for g in scan.declared:
        for name in g.names:  # bound from inside a function: not one binding
            top.setdefault(name, []).append(g)
    module_names = _module_names([_emptied(s, {}, {}) for s in (*ctx.body, *rest.body)])
    if module_names is not None:  # a function's `global` binds too
        module_names |= {name for g in scan.declared for name in g.names}
    around: list[ast.stmt] = []
    slot = None
    if chain:
        copies: dict[int, ast.stmt] = {}
        nxt: dict[int, ast.stmt | None] = {id(n): m for n, m in zip(chain, [*chain[1:], None],
                                                                      strict=True)}
        around = [_emptied(chain[0], nxt, copies)]
        slot = getattr(copies[id(chain[-1])], "body", None)
    shift = max(len(context.splitlines()), len(file_around.splitlines())) + 1
    return _File(chain, module_names, around, slot, shift, scan, top, threading.Lock())


def _statement_texts(tree: ast.Module, source: str) -> list[str]:
    """The text of each top-level statement (decorators included), to match the
    context's statements with the file's."""
    lines = source.splitlines()
    out = []
    for stmt in tree.body:
        first = min([stmt.lineno, *(d.lineno for d in getattr(stmt, "decorator_list", ()))])
        out.append("\n".join(x.rstrip() for x in lines[first - 1:stmt.end_lineno]))
    return out


def _module_names(body: list[ast.stmt]) -> frozenset[str] | None:
    """The names pyflakes finds bound at the top level of the file; None after a
    `from x import *`."""
    w = pyflakes.Checker(ast.Module(body=body, type_ignores=[]), withDoctest=False)
    module = next(s for s in w.deadScopes if isinstance(s, pyflakes.ModuleScope))
    return None if module.importStarred else frozenset(module)


def owner_chain(context: ast.Module, owner: str) -> list[Scope] | None:
    """The definitions named by `owner` ("Store", "Store.add"), outermost first, as the
    context holds them; [] at top level, None when the context lacks one of them."""
    chain: list[Scope] = []
    body: list[ast.stmt] = context.body
    for name in owner.split(".") if owner else []:
        found = [n for n in _block_statements(body) if isinstance(n, Scope) and n.name == name]
        if not found:
            return None
        chain.append(found[-1])
        body = found[-1].body
    return chain


def _emptied(stmt: ast.stmt, around: dict[int, ast.stmt | None],
             copies: dict[int, ast.stmt]) -> ast.stmt:
    """A shallow copy of `stmt` for pyflakes, in which functions have empty bodies (what
    they bind at the top level, `global` names, is added apart). The definitions in
    `around` (around the candidate, each mapped to the next one inward) are kept: a
    function with its statements (closures), a class with only the next definition (its
    own names are not a method's); `copies` maps each to its copy."""
    inner = around.get(id(stmt), stmt)
    if isinstance(stmt, FunctionNode) and inner is stmt:
        emptied = copy.copy(stmt)
        emptied.body = [ast.Pass()]
        return emptied
    if isinstance(stmt, ast.ClassDef) and inner is not stmt:
        skeleton = copy.copy(stmt)
        skeleton.bases, skeleton.keywords, skeleton.decorator_list = [], [], []
        skeleton.body = [] if inner is None else [_emptied(inner, around, copies)]
        copies[id(stmt)] = skeleton
        return skeleton
    if isinstance(stmt, ast.Match) or not hasattr(stmt, "body"):
        return stmt
    c = copy.copy(stmt)
    for f in ("body", "orelse", "finalbody"):
        if hasattr(stmt, f):
            setattr(c, f, [_emptied(s, around, copies) for s in getattr(stmt, f)])
    if isinstance(stmt, ast.Try | ast.TryStar) and isinstance(c, ast.Try | ast.TryStar):
        handlers: list[ast.ExceptHandler] = []
        for h in stmt.handlers:
            hc = copy.copy(h)
            hc.body = [_emptied(s, around, copies) for s in h.body]
            handlers.append(hc)
        c.handlers = handlers
    copies[id(stmt)] = c
    return c


def _block_statements(body: Sequence[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements of a block, also inside its if/try/with/for/while, not inside its
    nested definitions."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, Scope):
            continue
        for f in ("body", "orelse", "finalbody", "handlers", "cases"):
            for child in getattr(stmt, f, ()):
                if isinstance(child, ast.ExceptHandler | ast.match_case):
                    yield from _block_statements(child.body)
                elif isinstance(child, ast.stmt):
                    yield from _block_statements([child])


def _bound_names(body: Sequence[ast.stmt]) -> set[str]:
    """The names a block binds at its own level (class attributes, methods, imports)."""
    names: set[str] = set()
    for stmt in _block_statements(body):
        names.update(_direct_bindings(stmt))
    return names


def _direct_bindings(stmt: ast.stmt) -> list[str]:
    """The names one statement binds itself (not the statements nested in it)."""
    if isinstance(stmt, Scope):
        return [stmt.name]
    if isinstance(stmt, ast.Import | ast.ImportFrom):
        return [(a.asname or a.name).split(".")[0] for a in stmt.names]
    targets: list[ast.expr] = []
    if isinstance(stmt, ast.Assign):
        targets = list(stmt.targets)
    elif isinstance(stmt, ast.AnnAssign | ast.AugAssign | ast.For | ast.AsyncFor):
        targets = [stmt.target]
    elif isinstance(stmt, ast.With | ast.AsyncWith):
        targets = [i.optional_vars for i in stmt.items if i.optional_vars is not None]
    names = [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    if isinstance(stmt, ast.Try | ast.TryStar):
        names += [h.name for h in stmt.handlers if h.name]
    value = getattr(stmt, "value", None)
    if isinstance(value, ast.expr):  # a walrus binds where it stands
        names += [n.target.id for n in ast.walk(value) if isinstance(n, ast.NamedExpr)]
    return names


class _Scan:
    """What one walk over trees finds: attributes set on any object (`x.attr = ...`,
    `del x.attr`), identifier-like strings (setattr, hasattr, `__slots__`), writes of
    attributes whose names are computed (`setattr(o, k, v)`, `o.__dict__.update(...)`),
    each with the classes it stands in, `global` statements and classes."""

    def __init__(self, *trees: ast.AST) -> None:
        self.stored: set[str] = set()
        self.strings: set[str] = set()
        self.computed: list[tuple[ast.ClassDef, ...]] = []
        self.declared: list[ast.Global] = []
        self.classes: list[ast.ClassDef] = []
        todo: list[tuple[ast.AST, tuple[ast.ClassDef, ...]]] = [(t, ()) for t in trees]
        while todo:
            n, within = todo.pop()
            if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store | ast.Del):
                self.stored.add(n.attr)
            elif isinstance(n, ast.Constant) and isinstance(n.value, str):
                if n.value.isidentifier():
                    self.strings.add(n.value)
            elif isinstance(n, ast.Global):
                self.declared.append(n)
            elif isinstance(n, ast.ClassDef):
                self.classes.append(n)
                within = (*within, n)
            if _computed_write(n):
                self.computed.append(within)
            todo.extend((c, within) for c in ast.iter_child_nodes(n))

    def opaque(self, family: Sequence[ast.ClassDef]) -> bool:
        """Whether a computed write may set attributes on the family's instances: one
        outside every class (a helper may be handed any object) or in the family."""
        return any(not within or any(c in family for c in within) for within in self.computed)


def _computed_write(n: ast.AST) -> bool:
    """setattr(o, k, v) or o.__setattr__(k, v) with a name that is not a literal, or a
    write into `o.__dict__` or `vars(o)` (assigned, updated, or indexed by a name that
    is not a literal)."""
    if isinstance(n, ast.Call):
        f = n.func
        if isinstance(f, ast.Name) and f.id == "setattr":
            return not (len(n.args) > 1 and isinstance(n.args[1], ast.Constant))
        if isinstance(f, ast.Attribute) and f.attr == "__setattr__":
            i = 1 if isinstance(f.value, ast.Name) and f.value.id == "object" else 0
            return not (len(n.args) > i and isinstance(n.args[i], ast.Constant))
        return (isinstance(f, ast.Attribute) and f.attr in ("update", "setdefault", "__setitem__")
                and _namespace(f.value))
    if isinstance(n, ast.Subscript) and isinstance(n.ctx, ast.Store):
        return _namespace(n.value) and not isinstance(n.slice, ast.Constant)
    if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store):
        return n.attr == "__dict__"
    return False


def _namespace(e: ast.expr) -> bool:
    """`o.__dict__` or `vars(o)`: an object's attributes as a dict."""
    if isinstance(e, ast.Attribute):
        return e.attr == "__dict__"
    return isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and e.func.id == "vars"


# ---------------------------------------------------------------------------
# Names defined nowhere (pyflakes)


def _undefined_names(file: _File, candidate: ast.Module, func: FunctionNode | None,
                     own_from: int) -> list[Finding]:
    if file.chain is None or file.module_names is None:
        return []  # the definitions around it, or the file's names, are unknown
    reads = _name_reads(candidate, own_from)
    if not reads:
        return []
    placed = file.slot is not None and func is not None
    body = [*file.around, *(s for s in candidate.body if s is not func)] if placed \
        else candidate.body
    with file.lock:  # the candidate goes into the cached definition around it
        if placed:
            file.slot.append(func)  # type: ignore[union-attr, arg-type]
        try:
            tree = ast.Module(body=body, type_ignores=[])
            messages = pyflakes.Checker(tree, filename="<candidate>", withDoctest=False,
                                        builtins=file.module_names).messages
        finally:
            if placed:
                file.slot.pop()  # type: ignore[union-attr]
    klass = file.klass
    class_names = file.names_of(klass) if klass is not None else set()
    out: list[Finding] = []
    seen: set[str] = set()
    for m in messages:
        if not isinstance(m, flakes.UndefinedName):
            continue
        name = m.message_args[0]
        if reads.get((m.lineno, m.col)) != name or name in seen:
            continue
        seen.add(name)
        if klass is not None and name in class_names:
            msg = (f"uses {name}, an attribute of {klass.name} that a method reaches only "
                   f"as self.{name} or {klass.name}.{name}")
        else:
            msg = f"uses {name}, defined nowhere in the file, its imports or the builtins"
        out.append(Finding("undefined-name", msg, m.lineno))
    return out


def _name_reads(candidate: ast.Module, own_from: int) -> dict[tuple[int, int], str]:
    """The names the candidate's own lines read, by position; names inside annotations
    are left out (a local annotation is never evaluated, a signature's is the user's)."""
    skip: set[int] = set()
    for node in ast.walk(candidate):
        annotation = None
        if isinstance(node, FunctionNode):
            annotation = node.returns
        elif isinstance(node, ast.arg | ast.AnnAssign):
            annotation = node.annotation
        if annotation is not None:
            skip.update(id(n) for n in ast.walk(annotation))
    return {(n.lineno, n.col_offset): n.id for n in ast.walk(candidate)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
            and n.lineno >= own_from and id(n) not in skip}


# ---------------------------------------------------------------------------
# Classes of the file


_CLASS_DECORATORS = {"dataclass", "total_ordering", "final", "runtime_checkable",
                     "s", "attrs", "define", "frozen", "mutable"}


class _Facts:
    """The file's facts with the candidate's own added (what it sets, its helpers)."""

    def __init__(self, file: _File, candidate: ast.Module, func: FunctionNode | None) -> None:
        scan = _Scan(candidate)
        self.file = file
        self.own = func  # the method under completion is missing from its class
        self.stored = file.scan.stored | scan.stored
        self.strings = file.scan.strings | scan.strings
        self.computed = bool(scan.computed)  # the candidate's own computed writes
        self.candidate_top = _bound_names(candidate.body)  # its own helpers shadow the file's

    def top_class(self, name: str) -> ast.ClassDef | None:
        """The class `name` is bound to at the top of the file, if that is its only
        binding."""
        bound = self.file.top.get(name, [])
        if len(bound) == 1 and isinstance(bound[0], ast.ClassDef):
            return bound[0]
        return None

    def top_function(self, name: str) -> FunctionNode | None:
        bound = self.file.top.get(name, [])
        if len(bound) == 1 and isinstance(bound[0], FunctionNode):
            return bound[0]
        return None

    def builtin_class(self, base: ast.expr) -> type | None:
        """The builtin class a base names (`object`, `Exception`), unless the file rebinds
        the name."""
        if isinstance(base, ast.Name) and base.id not in self.file.top:
            t = getattr(builtins, base.id, None)
            if isinstance(t, type):
                return t
        return None

    def lineage(self, klass: ast.ClassDef) -> list[ast.ClassDef] | None:
        """`klass` and its bases in the file, when they are all known (no base, metaclass
        or class decorator from elsewhere, no `__getattr__`); else None. Builtin bases
        (`Exception`, `dict`) are known: `builtin_bases` gives them."""
        out: list[ast.ClassDef] = []
        todo = [klass]
        while todo:
            c = todo.pop()
            if c in out:
                continue
            if c.keywords or c.name.endswith("Mixin"):
                return None  # a metaclass may add anything; a mixin reads its host's
            if any(_decorator_name(d) not in _CLASS_DECORATORS for d in c.decorator_list):
                return None
            if self.file.names_of(c) & {"__getattr__", "__getattribute__"}:
                return None
            out.append(c)
            for base in c.bases:
                in_file = self.top_class(base.id) if isinstance(base, ast.Name) else None
                if in_file is not None:
                    todo.append(in_file)
                elif self.builtin_class(base) is None:
                    return None
        return out

    def builtin_bases(self, lineage: list[ast.ClassDef]) -> set[type]:
        found = (self.builtin_class(b) for c in lineage for b in c.bases)
        return {t for t in found if t is not None}

    def subclasses(self, klass: ast.ClassDef) -> list[ast.ClassDef]:
        """The file's classes that derive from `klass` by name, at any depth."""
        names = {klass.name}
        out: list[ast.ClassDef] = []
        grew = True
        while grew:
            grew = False
            for c in self.file.scan.classes:
                if c is not klass and c not in out and any(
                        isinstance(b, ast.Name) and b.id in names for b in c.bases):
                    out.append(c)
                    names.add(c.name)
                    grew = True
        return out


def _decorator_name(d: ast.expr) -> str:
    if isinstance(d, ast.Call):
        d = d.func
    if isinstance(d, ast.Attribute):
        return d.attr
    return d.id if isinstance(d, ast.Name) else ""


def _is_stub(f: FunctionNode) -> bool:
    """A body that only says "a subclass does this": pass, ..., raise NotImplementedError,
    or an abstract method."""
    if any(_decorator_name(d) in ("abstractmethod", "abstractproperty") for d in f.decorator_list):
        return True
    body = [s for s in f.body
            if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    if not body:
        return True
    s = body[0]
    if len(body) == 1 and isinstance(s, ast.Pass):
        return True
    if len(body) == 1 and isinstance(s, ast.Raise) and s.exc is not None:
        exc = s.exc.func if isinstance(s.exc, ast.Call) else s.exc
        return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"
    return False


# ---------------------------------------------------------------------------
# Attributes of self / cls that nothing sets


def _self_name(func: FunctionNode, nodes: list[ast.AST]) -> str | None:
    """`self` or `cls` when the candidate's first parameter is that and nothing in it
    (`nodes`: all of its nodes) rebinds the name."""
    params = [*func.args.posonlyargs, *func.args.args]
    if not params or params[0].arg not in ("self", "cls"):
        return None
    if any(_decorator_name(d) == "staticmethod" for d in func.decorator_list):
        return None
    name = params[0].arg
    for n in nodes:
        if isinstance(n, ast.Name) and n.id == name and not isinstance(n.ctx, ast.Load):
            return None
        if isinstance(n, ast.arg) and n.arg == name and n is not params[0]:
            return None
        if isinstance(n, ast.Global | ast.Nonlocal) and name in n.names:
            return None
    return name


def _unset_attributes(nodes: list[ast.AST], me: str, klass: ast.ClassDef, facts: _Facts,
                      own_from: int) -> list[Finding]:
    lineage = facts.lineage(klass)
    if lineage is None:
        return []
    family = [*lineage, *facts.subclasses(klass)]
    if facts.computed or facts.file.scan.opaque(family):
        return []
    if any(facts.file.names_of(c) & {"__getattr__", "__getattribute__"} for c in family):
        return []
    if any(isinstance(s, FunctionNode) and _is_stub(s) for c in lineage for s in c.body):
        return []  # made for subclasses, which may live elsewhere and set anything
    known = set(facts.stored | facts.strings)
    for t in facts.builtin_bases(lineage):
        known |= set(dir(t))
    for c in family:
        known |= facts.file.names_of(c) | _slots(c)
    if facts.own is not None:
        known.add(facts.own.name)
    guarded = _guarded_nodes(nodes)
    called = {id(n.func) for n in nodes if isinstance(n, ast.Call)}
    out: list[Finding] = []
    seen: set[str] = set()
    for n in nodes:
        if not (isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Load)
                and isinstance(n.value, ast.Name) and n.value.id == me):
            continue
        attr = n.attr
        if (n.lineno < own_from or attr in known or attr in seen or id(n) in guarded
                or (attr.startswith("__") and attr.endswith("__"))):
            continue
        seen.add(attr)
        if id(n) in called:
            message = f"calls {me}.{attr}(), which {klass.name} never defines"
        else:
            verb = "sets" if me == "self" else "defines"
            message = f"reads {me}.{attr}, which {klass.name} never {verb}"
        out.append(Finding("unset-attribute", message, n.lineno))
    return out


def _slots(c: ast.ClassDef) -> set[str]:
    names: set[str] = set()
    for stmt in c.body:
        if isinstance(stmt, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__slots__" for t in stmt.targets):
            names.update(n.value for n in ast.walk(stmt.value)
                         if isinstance(n, ast.Constant) and isinstance(n.value, str))
    return names


def _guarded_nodes(nodes: list[ast.AST]) -> set[int]:
    """Nodes inside a `try` that catches AttributeError (or anything wider): reading a
    missing attribute there is a way of asking whether it is set."""
    wide = {"AttributeError", "Exception", "BaseException"}
    out: set[int] = set()
    for n in nodes:
        if not isinstance(n, ast.Try | ast.TryStar):
            continue
        caught: set[str] = set()
        for h in n.handlers:
            if h.type is None:
                caught.add("BaseException")
            else:
                caught.update(x.attr if isinstance(x, ast.Attribute) else x.id
                              for x in ast.walk(h.type) if isinstance(x, ast.Name | ast.Attribute))
        if caught & wide:
            for stmt in n.body:
                out.update(id(x) for x in ast.walk(stmt))
    return out


# ---------------------------------------------------------------------------
# Calls with arguments the signature cannot take


@dataclass(frozen=True)
class _Callee:
    shown: str  # how the candidate calls it: "helper", "self.add", "Store"
    owner: str  # "Store." for a method or a constructor, "" for a function
    func: FunctionNode | None  # None: a class without __init__ (object's: no arguments)
    implicit: int  # leading parameters the call does not pass (self, cls)


def _bad_calls(func: FunctionNode, nodes: list[ast.AST], me: str | None,
               klass: ast.ClassDef | None, facts: _Facts, own_from: int) -> list[Finding]:
    local = _local_names(func, nodes) | facts.candidate_top
    lineage = facts.lineage(klass) if klass is not None else None
    out: list[Finding] = []
    for n in nodes:
        if not isinstance(n, ast.Call) or n.lineno < own_from:
            continue
        if any(isinstance(a, ast.Starred) for a in n.args) or any(
                k.arg is None for k in n.keywords):
            continue  # *x / **y at the call: the count is not known
        callee = None
        f = n.func
        if isinstance(f, ast.Name) and f.id not in local:
            callee = _function_callee(f.id, facts)
        elif (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and me is not None
              and f.value.id == me and lineage is not None and klass is not None):
            callee = _method_callee(me, f.attr, klass, facts)
        if callee is None:
            continue
        problem = _bind(callee, len(n.args), [k.arg for k in n.keywords if k.arg is not None])
        if problem:
            out.append(Finding("bad-call", problem, n.lineno))
    return out


def _local_names(func: FunctionNode, nodes: list[ast.AST]) -> set[str]:
    """Every name the candidate binds anywhere in itself (parameters, assignments,
    imports, nested definitions, comprehension targets, global declarations)."""
    names: set[str] = set()
    for n in nodes:
        if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load):
            names.add(n.id)
        elif isinstance(n, ast.arg):
            names.add(n.arg)
        elif isinstance(n, Scope) and n is not func:
            names.add(n.name)
        elif isinstance(n, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in n.names)
        elif isinstance(n, ast.Global | ast.Nonlocal):
            names.update(n.names)
        elif isinstance(n, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and n.name:
            names.add(n.name)
    return names


def _function_callee(name: str, facts: _Facts) -> _Callee | None:
    f = facts.top_function(name)
    if f is not None:
        return None if f.decorator_list else _Callee(name, "", f, 0)
    c = facts.top_class(name)
    lineage = facts.lineage(c) if c is not None else None
    if c is None or lineage is None:
        return None
    if any(x.decorator_list or "__new__" in facts.file.names_of(x) for x in lineage):
        return None  # a generated or custom construction
    if facts.builtin_bases(lineage) - {object}:
        return None  # a builtin base other than object takes its own arguments
    decided, init, where = _find_method(c, "__init__", facts)
    if not decided or (init is not None and init.decorator_list):
        return None
    if init is None:
        return _Callee(name, "", None, 0)
    return _Callee(name, f"{where}.", init, 1)


def _method_callee(me: str, name: str, klass: ast.ClassDef, facts: _Facts) -> _Callee | None:
    if name in facts.stored or (name.startswith("__") and name.endswith("__")):
        return None  # an instance attribute may shadow it; dunders are not ours to judge
    _, m, where = _find_method(klass, name, facts)
    if m is None or _is_stub(m):
        return None  # a stub is a place for subclasses, whose signature may differ
    if any(name in facts.file.names_of(c) for c in facts.subclasses(klass)):
        return None  # overridden below: self may be a subclass
    kinds = {_decorator_name(d) for d in m.decorator_list}
    if not kinds and me == "self":
        implicit = 1
    elif kinds == {"staticmethod"}:
        implicit = 0
    elif kinds == {"classmethod"}:
        implicit = 1
    else:
        return None  # a property, a wrapper, a plain function through cls: not ours
    return _Callee(f"{me}.{name}", f"{where}.", m, implicit)


def _find_method(klass: ast.ClassDef, name: str,
                 facts: _Facts) -> tuple[bool, FunctionNode | None, str]:
    """(True, the one definition of method `name` along a single chain of in-file
    classes and the class that holds it), (True, None, "") when every class of the
    chain is known and none defines it, (False, None, "") when it cannot be told (bound
    otherwise, several bases, a base from elsewhere). The candidate is its class's
    method `name`."""
    c: ast.ClassDef | None = klass
    while c is not None:
        if c is facts.file.klass and facts.own is not None and name == facts.own.name:
            return True, facts.own, c.name
        bound = [s for s in _block_statements(c.body) if name in _direct_bindings(s)]
        if bound:
            if len(bound) == 1 and isinstance(bound[0], FunctionNode):
                return True, bound[0], c.name
            return False, None, ""
        bases = [b for b in c.bases if not (isinstance(b, ast.Name) and b.id == "object")]
        if not bases:
            return True, None, ""
        if len(bases) > 1 or not isinstance(bases[0], ast.Name):
            return False, None, ""
        c = facts.top_class(bases[0].id)
    return False, None, ""


def _bind(callee: _Callee, n_positional: int, keywords: list[str]) -> str:
    """Why a call with `n_positional` arguments and `keywords` cannot bind to the callee's
    signature (Python's own rules), or "" when it can."""
    call = f"calls {callee.shown}()"
    if callee.func is None:
        if n_positional or keywords:
            return f"{call} with arguments; {callee.shown}() takes none"
        return ""
    a = callee.func.args
    positional = [p.arg for p in (*a.posonlyargs, *a.args)]
    if len(positional) < callee.implicit:
        return ""  # self comes through *args: not ours to count
    required = set(positional[:len(positional) - len(a.defaults)])
    required |= {p.arg for p, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d is None}
    implicit = positional[:callee.implicit]
    positional = positional[callee.implicit:]
    n_posonly = max(len(a.posonlyargs) - callee.implicit, 0)
    required -= set(implicit)
    sig = f"{callee.owner}{callee.func.name}({_render(a)})"
    if n_positional > len(positional) and a.vararg is None:
        least = len([p for p in positional if p in required])
        most = len(positional)
        takes = f"{most}" if least == most else f"{least} to {most}"
        by_position = " by position" if keywords else ""
        besides = f" besides {implicit[0]}" if implicit else ""
        return f"{call} with {_count(n_positional)}{by_position}; {sig} takes {takes}{besides}"
    filled = set(positional[:n_positional])
    named = set(positional[n_posonly:]) | {p.arg for p in a.kwonlyargs}
    for k in keywords:
        if k in positional[:n_posonly] and a.kwarg is None:
            return f"{call} with keyword {k}; {sig} takes it only by position"
        if k in filled and k in named:
            return f"{call} with {k} both by position and by keyword"
        if k not in named and a.kwarg is None:
            return f"{call} with keyword {k}; {sig} has no parameter {k}"
        if k in named:
            filled.add(k)
    missing = [p for p in [*positional, *(x.arg for x in a.kwonlyargs)]
               if p in required and p not in filled]
    if missing:
        return f"{call} without {missing[0]}, which {sig} requires"
    return ""


def _count(n: int) -> str:
    return f"{n} argument" + ("" if n == 1 else "s")


def _render(a: ast.arguments) -> str:
    """A signature's parameters without annotations, defaults shown as `=...`."""
    positional = [*a.posonlyargs, *a.args]
    first_default = len(positional) - len(a.defaults)
    parts = [p.arg + ("=..." if i >= first_default else "") for i, p in enumerate(positional)]
    if a.posonlyargs:
        parts.insert(len(a.posonlyargs), "/")
    if a.vararg is not None:
        parts.append("*" + a.vararg.arg)
    elif a.kwonlyargs:
        parts.append("*")
    parts += [p.arg + ("" if d is None else "=...") for p, d in
              zip(a.kwonlyargs, a.kw_defaults, strict=True)]
    if a.kwarg is not None:
        parts.append("**" + a.kwarg.arg)
    return ", ".join(parts)
