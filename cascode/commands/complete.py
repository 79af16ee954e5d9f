"""`cascode complete FILE[:LINE]`: run the cascade on one function, print the answer.

The completed function goes to stdout, at its indentation in the file (a method as it
stands in its class), or the whole trace with --json; a one-line summary goes to
stderr, with progress lines when stderr is a terminal.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from cascode.engine.context import FunctionContext
    from cascode.engine.types import Task


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target",
        nargs="?",
        default="-",
        help="FILE or FILE:LINE (1-based; default: the last function of the file); "
        "'-' or nothing: a prompt (signature and docstring) on stdin",
    )
    parser.add_argument("--plan-file", help="plan file (default: the packaged default plan)")
    parser.add_argument("--tier", help="tier of the plan (default: the plan's default_tier)")
    parser.add_argument("--json", action="store_true", help="print the full trace as JSON")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=-1,
        help="latency budget for tiers that follow the model servers' load: a cheaper tier "
        "runs when the servers' queue would take the tier past it; -1: twice the tier's "
        "measured seconds (default); 0: always the tier asked for",
    )
    parser.add_argument(
        "--context-tokens",
        type=int,
        default=1024,
        help="prompt tokens for the file around the function (imports, an outline of its "
        "definitions, the helpers it names); 0: none; -1: the whole file context "
        "(default 1024; the sandbox always runs the whole file context)",
    )
    parser.add_argument(
        "--sandbox-layers",
        default=None,
        help="force a sandbox path: auto, bwrap, unshare, landlock, rlimits "
        "(default: $CASCODE_SANDBOX_LAYERS or auto)",
    )
    parser.add_argument(
        "--allow-unsafe",
        action="store_true",
        help="execute generated code even when only rlimits isolate it",
    )


def run(args: argparse.Namespace) -> int:
    from cascode.engine.cancel import CancelToken
    from cascode.engine.host import EngineHost, load_plan_file
    from cascode.engine.sandbox.paths import requested_layers

    task, where, indent = _read_task(args.target, args.context_tokens)
    # The engine as the language server holds it: one host, its plan, family and sandbox.
    host = EngineHost()
    try:
        plan = load_plan_file(args.plan_file or "")
        host.set_plan(plan)
        tier = host.plan_tier(args.tier)  # checks the tier name before anything loads
        # A bad layers value fails here, but the sandbox starts where the answer first
        # runs code: an answer with nothing to run (a greedy stage without examples)
        # does without. A missing model fails here, in one line, before any generation.
        host.lazy_sandbox(requested_layers(args.sandbox_layers), args.allow_unsafe)
        host.preload(host.members_of(tier), lambda *_: None).result()
        result = host.answer(task, tier, cancel=CancelToken(),
                             on_event=_progress if sys.stderr.isatty() else None,
                             seed=args.seed,
                             max_seconds=None if args.max_seconds < 0 else args.max_seconds
                             ).result
    finally:
        host.close()
    from cascode.engine.evidence import label

    stated = label(result, plan.evidence)
    if args.json:
        print(json.dumps({**_trace(result, where), "label": stated.to_json()}, indent=2))
    else:
        sys.stdout.write(_indented(result.code, indent))
    print(_summary(result), file=sys.stderr)
    if result.load:
        print(f"cascode: {result.load}", file=sys.stderr)
    if result.verified:
        print(f"cascode: {stated.text}", file=sys.stderr)
    return 0


def _indented(code: str, indent: str) -> str:
    """`code` (a function at column 0, as the cascade returns it) at `indent`, every line
    that is not blank moved, as the editor's edit moves it (`context.body.insert_body`)."""
    import textwrap

    return textwrap.indent(code, indent) if indent else code


def _read_task(target: str, context_tokens: int = -1):  # type: ignore[no-untyped-def]
    """The task at `target`, where it is (for the trace), and the indentation of its
    function in the file ("" for a prompt on stdin, used as given)."""
    from pathlib import Path

    from cascode.engine.context import last_function
    from cascode.engine.context.request import request_at, request_task
    from cascode.engine.errors import ContextError

    if target == "-":
        source = sys.stdin.read()
        fc = last_function(source)
        if fc is None:
            raise ContextError("stdin: no function definition in the prompt")
        return fc.task(), "<stdin>", ""
    path, line = target, None
    head, sep, tail = target.rpartition(":")
    if sep and tail.isdigit():
        path, line = head, int(tail)
    source = _read_source(path)
    if line is None:
        fc = last_function(source)
        if fc is None:
            raise ContextError(f"{path}: no function to complete")
        task = fc.task(context_tokens if context_tokens >= 0 else None)
        indent = fc.indent
    else:
        n_lines = source.count("\n") + 1
        if line < 1 or line > n_lines:
            raise ContextError(f"{path}:{line}: no such line (the file has {n_lines})")
        # Lines as the scanner counts them (read_text made "\r\n" and "\r" into "\n").
        lines = source.split("\n")
        # The cursor at the end of the line, where an editor's user would ask.
        cursor = (line - 1, len(lines[line - 1]) if line - 1 < len(lines) else 0)
        request = request_at(source, cursor)
        if request is None:
            fc = _function_at(source, line - 1)
            if fc is None:
                raise ContextError(f"{path}:{line}: no function at this line"
                                   + _below_function(source, lines, line))
            raise ContextError(
                f"{path}:{line}: {fc.name} has written lines below this line; give the line "
                f"of its last written line ({fc.end_line}) to complete the rest of it")
        task = request_task(request, context_tokens=context_tokens)
        indent = request.fc.indent
    # A prompt on stdin is used as given; a file's context is budgeted, the sandbox gets
    # the modules of its own project that it imports, and its test files give examples.
    from cascode.engine.context.package import package_task

    task = package_task(task, Path(path), source)
    return _with_test_examples(task, Path(path)), target, indent


def _read_source(path: str) -> str:
    """The file's text, decoded as Python decodes a module: UTF-8, or the encoding its
    coding line (PEP 263) or byte-order mark names."""
    from cascode.engine.context.source import read_module

    return read_module(path)


def _function_at(source: str, row: int) -> FunctionContext | None:
    """The function at 0-based `row` (column 0), for an error's wording; None also where
    the scanner chokes on the file (request_at gave None for it as well)."""
    from cascode.engine.context import function_at

    try:
        return function_at(source, row, 0)
    except Exception:  # noqa: BLE001 - the error being raised names no function then
        return None


def _below_function(source: str, lines: list[str], line: int) -> str:
    """For a blank line right below a function (where an editor's cursor would stand
    indented, to go on writing it): how to ask for the rest of that function."""
    if line <= len(lines) and lines[line - 1].strip():
        return ""
    above = line - 1  # the last line of code above it, 1-based
    while above > 0 and lines[above - 1].strip()[:1] in ("", "#"):
        above -= 1
    if above == 0:
        return ""
    fc = _function_at(source, above - 1)
    if fc is None or fc.end_line < above or fc.end_line > line - 1:
        return ""
    return (f" (a blank line below {fc.name}: give the line of its last written line "
            f"({fc.end_line}) to complete the rest of it)")


def _with_test_examples(task: Task, path: Path) -> Task:
    """`task` with the asserts of the project's test files that call the function."""
    from cascode.engine.examples import ProjectExamples, find_project_root, top_level_names
    from cascode.engine.extract import assert_subject

    root = find_project_root(path)
    if root is None:
        return task
    examples = ProjectExamples([root]).examples(
        assert_subject(task), top_level_names(task.context), path)
    return dataclasses.replace(task, test_examples=examples)


def _progress(event) -> None:  # type: ignore[no-untyped-def]
    from cascode.engine.types import Escalating, Executing, StageStarted

    if isinstance(event, StageStarted):
        what = "1 greedy solution" if event.k == 0 else f"{event.k} solutions, {event.k} tests"
        print(f"  {event.member}: {what}", file=sys.stderr)
    elif isinstance(event, Executing):
        print(f"  running {event.n_solutions} x {event.n_tests} asserts", file=sys.stderr)
    elif isinstance(event, Escalating):
        print(
            f"  score {event.best_score} < {event.threshold:g}: escalating to {event.to_member}",
            file=sys.stderr,
        )


def _summary(result) -> str:  # type: ignore[no-untyped-def]
    from cascode.engine.proof import proof

    final = result.accepted_stage
    shown = proof(result)
    if result.verified and final.n_tests:
        shown += f", score {final.best_score} >= {final.threshold:g}"
    return (
        f"cascode: {result.member} answered (tier {result.tier}; {shown}) in "
        f"{result.seconds:.1f} s, {result.generated_tokens} tokens generated over "
        f"{len(result.stages)} stage(s)"
    )


def _trace(result, where: str) -> dict:  # type: ignore[no-untyped-def, type-arg]
    from cascode.engine.proof import proof
    from cascode.server.provenance import examples

    stages = []
    for s in result.stages:
        d = dataclasses.asdict(s)
        d["n_tests"] = s.n_tests
        d["seconds"] = s.seconds
        d["passed_tests"] = list(s.passed_tests)
        stages.append(d)
    return {
        "target": where,
        "code": result.code,
        "member": result.member,
        "tier": result.tier,
        "load": result.load or None,
        "verified": result.verified,
        "note": result.note,
        "proof": proof(result),
        "examples": examples(result),
        "seconds": result.seconds,
        "generated_tokens": result.generated_tokens,
        "prompt_tokens": result.prompt_tokens,
        "stages": stages,
    }
