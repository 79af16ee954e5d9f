"""A method's candidates run in their class (docs/method.md 2.3).

The file context holds the method's class without the method, and a candidate is the
method as a function at column 0. `executable_solution` gives the program the sandbox
runs after the context: the candidate compiled as the body of a class of the same name
whose namespace starts as the real class's (private names are mangled as in the file, a
setter's `@x.setter` finds `x`), with the descriptor decorators the prompt leaves out
applied again and the candidate's helpers and imports nested at the start of its body
(where the editor puts them, `context.body.insert_body`); what that body binds is set on
the real class. `task_context` is the context for a method: where the class body itself
reads the method (`__radd__ = __add__`), a stand-in is bound to its name first, and the
candidate, put back, replaces it wherever the class holds it.

Both never raise: a candidate or context they cannot read runs as written.
"""

from __future__ import annotations

import ast
import builtins
import logging
from collections.abc import Sequence
from functools import lru_cache
from typing import Protocol

from .extract import parse_generated
from .static_check import owner_chain
from .types import PassMatrix, Task

log = logging.getLogger(__name__)

# Keys the calibration's execution records of methods (benchmarks/execution.py): add one
# whenever what runs for a method changes.
GRAFT_VERSION = 2
# How the file below the function runs after a candidate (`executable_solution`): 2, the
# candidate's own helpers shadow the file's of the same name; 3, not after a candidate
# that does not parse. A cache key holds it.
AFTER_VERSION = 3

_STAND_IN = "_cascode_method_stand_in"

_GRAFT = """
def _cascode_graft_target():
    obj = globals().get({root!r})
    for name in {rest!r}:
        obj = getattr(obj, name, None)
    return obj if isinstance(obj, type) else None


_cascode_class = _cascode_graft_target()


class _cascode_graft_meta(type):
    @classmethod
    def __prepare__(mcs, name, bases, **kwargs):
        return dict(vars(_cascode_class))

    def __new__(mcs, name, bases, namespace, **kwargs):
        cell = namespace.pop("__classcell__", None)
        if cell is not None:
            cell.cell_contents = _cascode_class
        # What type.__new__ would have made of them.
        for key, kind in (("__init_subclass__", classmethod),
                          ("__class_getitem__", classmethod), ("__new__", staticmethod)):
            if type(namespace.get(key)).__name__ == "function":
                namespace[key] = kind(namespace[key])
        return namespace


def _cascode_put_back(cls, namespace, method, names):
    import abc
    import dataclasses

    own = dict(vars(cls))
    stand_in = globals().get({stand_in!r})
    parts = ("fget", "fset", "fdel")
    for key, value in namespace.items():
        if key in ("__module__", "__qualname__") or (key in own and own[key] is value):
            continue
        old = own.get(key)
        if (stand_in is not None and isinstance(old, property) and isinstance(value, property)
                and stand_in in [getattr(old, p) for p in parts]):
            # A getter put back into the property its setter built on the stand-in.
            value = property(*[getattr(value, p) if getattr(old, p) is stand_in
                               else getattr(old, p) for p in parts], old.__doc__)
        setattr(cls, key, value)
        if hasattr(type(value), "__set_name__"):
            value.__set_name__(cls, key)
    if stand_in is not None and method in namespace:
        new = namespace[method]
        function = getattr(new, "__func__", getattr(new, "fget", None) or new)
        for key, value in list(vars(cls).items()):
            if value is stand_in:
                setattr(cls, key, new)
            elif isinstance(value, property) and stand_in in [getattr(value, p) for p in parts]:
                setattr(cls, key, property(*[function if getattr(value, p) is stand_in
                                             else getattr(value, p) for p in parts]))
    for key in names:
        value = globals().get(key)
        if stand_in is not None and (value is stand_in or (
                isinstance(value, property) and value.fget is stand_in)):
            del globals()[key]
    # Checks that ran when the class was made without the method.
    if hasattr(abc, "update_abstractmethods"):
        todo = [cls]
        while todo:
            c = todo.pop()
            abc.update_abstractmethods(c)
            todo.extend(c.__subclasses__())
    if (method == "__post_init__" and dataclasses.is_dataclass(cls)
            and "__init__" in vars(cls)
            and not any("__post_init__" in vars(b) for b in cls.__mro__[1:])
            and not any(str(getattr(f, "_field_type", "")) == "_FIELD_INITVAR"
                        for f in dataclasses.fields(cls))):
        made = cls.__init__

        def __init__(self, *args, **kwargs):
            made(self, *args, **kwargs)
            self.__post_init__()

        cls.__init__ = __init__


if _cascode_class is not None:
    _cascode_kept = globals().get({name!r}, _cascode_graft_meta)
{classdef}
    _cascode_namespace = {name}
    if _cascode_kept is _cascode_graft_meta:
        del {name}
    else:
        {name} = _cascode_kept
    _cascode_put_back(_cascode_class, _cascode_namespace, {method!r}, {names!r})
else:
{plain}
"""


def executable_solution(task: Task, solution: str) -> str:
    """A candidate as the sandbox runs it after `task_context(task)`.

    A function runs as written. A method runs put back in its class, so that the
    user's examples and the generated asserts can build the class and call it; where
    the file context has no such class, or the candidate does not parse, it runs as
    written. Then the file's definitions below the function (`Task.context_after`)
    run, as the module has run them by the time anything calls the function: an
    answer may call a helper defined further down the file.
    """
    code = solution
    if task.method_of:
        code = _method_graft(task.method_of, task.descriptors, task.entry_point,
                             solution) or solution
    if not task.context_after.strip():
        return code
    helpers = _helper_names(solution, task.entry_point)
    if helpers is None:
        return code  # it fails as written; the file's quotes must not close its strings
    return code.rstrip("\n") + "\n\n\n" + _context_after(task.context_after, helpers)


@lru_cache(maxsize=256)
def _helper_names(solution: str, entry_point: str) -> frozenset[str] | None:
    """The functions and classes a candidate defines beside the function itself; None
    when it does not parse."""
    try:
        tree = parse_generated(solution)
    except (SyntaxError, ValueError):
        return None
    return frozenset(n.name for n in tree.body
                     if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                     and n.name != entry_point)


@lru_cache(maxsize=64)
def _context_after(context_after: str, helpers: frozenset[str]) -> str:
    """The file's definitions below the function, as the sandbox runs them after a
    candidate: guarded as the file context is (a statement that raises leaves its names
    unbound, never failing the candidate), without those the candidate defines itself.
    Its helpers are nested in the function's body when the answer is placed (body.py
    `insert_body`), where they shadow the file's, so they win here too."""
    from .cascade import executable_context

    if helpers:
        try:
            tree = ast.parse(context_after)
        except (SyntaxError, ValueError):
            return executable_context(context_after)
        kept = [n for n in tree.body
                if not (isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                        and n.name in helpers)]
        if len(kept) < len(tree.body):
            tree.body = kept
            context_after = ast.unparse(tree) + "\n" if kept else ""
    return executable_context(context_after)


class MatrixRunner(Protocol):
    def run_matrix(self, solutions: Sequence[str], tests: Sequence[str], *,
                   context: str = "") -> PassMatrix: ...


def run_candidates(sandbox: MatrixRunner, task: Task, solutions: Sequence[str],
                   lines: Sequence[str], *, context: str | None = None) -> PassMatrix:
    """The candidates against `lines` as a stage runs them: each as `executable_solution`
    makes it, after the task's file context (`task_context`, or `context`). The live
    stage and every benchmark that executes candidates call this one function."""
    return sandbox.run_matrix([executable_solution(task, s) for s in solutions], list(lines),
                              context=task_context(task) if context is None else context)


def task_context(task: Task) -> str:
    """The file context as the sandbox runs it for `task` (`executable_context`), with,
    for a method whose class body reads the method, a stand-in bound to its name."""
    from .cascade import executable_context

    context = executable_context(task.context)
    if not task.method_of or not context.strip():
        return context
    return _with_stand_in(context, task.entry_point, task.method_of, task.descriptors)


@lru_cache(maxsize=256)
def _method_graft(method_of: str, descriptors: str, entry_point: str, solution: str) -> str:
    try:
        return _graft(method_of, descriptors, entry_point, solution)
    except Exception:  # noqa: BLE001 - any model output: it runs as written, and fails there
        log.debug("putting %s back in %s", entry_point, method_of, exc_info=True)
        return ""


def _graft(method_of: str, descriptors: str, entry_point: str, solution: str) -> str:
    try:
        module = parse_generated(solution)
        decorated = ast.parse(descriptors + "def _():\n    pass\n").body[0]
    except (SyntaxError, ValueError):
        return ""
    defs = (ast.FunctionDef, ast.AsyncFunctionDef)
    target = next((n for n in module.body if isinstance(n, defs) and n.name == entry_point),
                  None)
    if target is None or not isinstance(decorated, ast.FunctionDef):
        return ""
    plain = _indented(ast.unparse(module))
    # The editor's placement: helpers and imports first in the body, restated copies of
    # the method dropped (context.body.insert_body).
    helpers = [n for n in module.body
               if n is not target and not (isinstance(n, defs) and n.name == entry_point)]
    body = list(target.body)
    doc = body[:1] if body and _is_docstring(body[0]) else []
    target.body = doc + helpers + body[len(doc):] or [ast.Pass()]
    target.decorator_list[:0] = decorated.decorator_list
    *outer, name = method_of.split(".")
    cls = ast.parse(f"class {name}(metaclass=_cascode_graft_meta):\n    pass\n").body[0]
    assert isinstance(cls, ast.ClassDef)
    cls.body = [target]
    classdef = _indented(ast.unparse(ast.fix_missing_locations(cls)))
    root, rest = (outer[0], (*outer[1:], name)) if outer else (name, ())
    return _GRAFT.format(root=root, rest=rest, name=name, classdef=classdef, plain=plain,
                         method=_mangled(entry_point, name), stand_in=_STAND_IN,
                         names=(entry_point, _mangled(entry_point, name)))


def _is_docstring(node: ast.stmt) -> bool:
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str))


def _mangled(attr: str, cls: str) -> str:
    """`attr` as a class body named `cls` stores and reads it."""
    if attr.startswith("__") and not attr.endswith("__") and cls.strip("_"):
        return f"_{cls.lstrip('_')}{attr}"
    return attr


def _indented(code: str) -> str:
    # Only docstrings come out of ast.unparse on several lines: indenting is safe.
    return "".join("    " + line for line in code.splitlines(keepends=True)).rstrip()


@lru_cache(maxsize=64)
def _with_stand_in(context: str, name: str, method_of: str, descriptors: str) -> str:
    try:
        return _stand_in(context, name, method_of, descriptors)
    except Exception:  # noqa: BLE001 - a context we cannot read runs as it is
        log.debug("a stand-in for %s.%s", method_of, name, exc_info=True)
        return context


def _stand_in(context: str, name: str, method_of: str, descriptors: str) -> str:
    tree = ast.parse(context)
    chain = owner_chain(tree, method_of)
    cls = chain[-1] if chain and isinstance(chain[-1], ast.ClassDef) else None
    read = _mangled(name, method_of.split(".")[-1])
    # Only a name the class body reads outside its functions, and never a builtin's:
    # a global stand-in would hide it from the rest of the file.
    if cls is None or hasattr(builtins, read) or read not in _class_level_reads(cls):
        return context
    at = 0  # after the module's docstring and `from __future__` imports, which come first
    for i, node in enumerate(tree.body):
        future = isinstance(node, ast.ImportFrom) and node.module == "__future__"
        if not (future or (i == 0 and _is_docstring(node))):
            break
        at = node.end_lineno or 0
    value = f"property({_STAND_IN})" if "property" in descriptors else _STAND_IN
    stand_in = (f"def {_STAND_IN}(*args, **kwargs):\n"
                "    raise NotImplementedError('the method being written')\n\n\n"
                f"{read} = {value}\n")
    lines = context.split("\n")  # the parser's lines: `splitlines` also splits at \f
    head, tail = "\n".join(lines[:at]), "\n".join(lines[at:])
    return (head + "\n\n" if at else "") + stand_in + "\n\n" + tail


def _class_level_reads(cls: ast.ClassDef) -> set[str]:
    """Names the class body reads as it runs: outside function bodies (their decorators,
    defaults and annotations included) and nested classes."""
    names: set[str] = set()
    todo: list[ast.AST] = list(cls.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            todo.extend(node.decorator_list)
            todo.extend(d for d in (*node.args.defaults, *node.args.kw_defaults) if d)
            continue
        if isinstance(node, (ast.ClassDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            names.add(node.id)
        todo.extend(ast.iter_child_nodes(node))
    return names
