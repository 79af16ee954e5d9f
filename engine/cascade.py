"""The cascade: run the tier's members cheapest first until one accepts (docs/method.md 2)."""

from __future__ import annotations

import ast
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache

from . import cancel as cancel_mod
from .errors import SandboxUnavailable
from .examples import task_examples
from .extract import assert_subject, pooled_suite
from .methods import run_candidates
from .plans import Plan, StagePlan
from .prompts import PROMPT_TEMPLATE_VERSION, solution_text, stage_specs, unit_test_text
from .scoring import decide_stage, pool_key, pool_replaces, skips_stage
from .static_check import check_candidate
from .types import (
    Backend,
    CancelTokenLike,
    Escalating,
    Event,
    Example,
    Executing,
    Finished,
    Generation,
    Result,
    SampleSpec,
    Sandbox,
    StageStarted,
    StageTrace,
    Task,
)

log = logging.getLogger(__name__)

EventSink = Callable[[Event], None]


class Cascade:
    """Runs a plan's tiers over a family of backends and a sandbox.

    `backends` maps a member name to its backend, or is a callable that returns
    it (so a family can load models lazily). `sandbox` may be None: answers are
    then unverified (the first member's first solution, labelled so).
    """

    def __init__(
        self,
        plan: Plan,
        backends: Callable[[str], Backend] | Mapping[str, Backend],
        sandbox: Sandbox | None,
        *,
        template: int | None = None,
    ) -> None:
        """`template`: the prompt template sent (engine/prompts.py); by default the one
        the plan was calibrated with, whose figures it promises."""
        self.plan = plan
        self._backend = backends.__getitem__ if isinstance(backends, Mapping) else backends
        self.sandbox = sandbox
        if template is None:
            template = plan.template or PROMPT_TEMPLATE_VERSION
        self.template = template

    def _stages(self, task: Task, tier: str | None
                ) -> tuple[Task, tuple[Example, ...], list[StagePlan]]:
        """The task as its prompts carry it, its examples, and the stages that run."""
        tier_plan = self.plan.tier(tier)
        examples = task_examples(task, use=tier_plan.tier.examples)
        active = tier_plan.stages
        if task.context_budget is not None:
            # One prompt context for every member, counted with the first one's tokenizer.
            from .context.budget import token_counter, with_prompt_context

            task = with_prompt_context(
                task, token_counter(self._backend(active[0].member.name)))
        running = [s for s in active if not skips_stage(s.k, s.last, len(examples))]
        return task, examples, running

    def warm_specs(self, task: Task, tier: str | None = None, *, seed: int = 0
                   ) -> list[tuple[str, SampleSpec]]:
        """What to evaluate ahead of a request for `task` (docs/method.md 6, "warm while
        the user types"): for each member of the stages that would run, in their order,
        the first prompt its first stage sends, built as `run` builds it."""
        task, _examples, running = self._stages(task, tier)
        out: dict[str, SampleSpec] = {}
        for stage in running:
            if stage.member.name not in out:
                out[stage.member.name] = stage_specs(task, stage.k, stage.l, seed=seed,
                                                     template=self.template)[0]
        return list(out.items())

    def run(
        self,
        task: Task,
        tier: str | None = None,
        *,
        cancel: CancelTokenLike | None = None,
        on_event: EventSink | None = None,
        seed: int = 0,
    ) -> Result:
        tier_plan = self.plan.tier(tier)
        emit = on_event or (lambda _e: None)
        stages: list[StageTrace] = []
        task, examples, running = self._stages(task, tier)
        # The pool (docs/method.md 7.5): the stage whose candidate answers so far, and its key.
        answer, answer_key = -1, -1
        for pos, stage in enumerate(running):
            cancel_mod.check(cancel)  # type: ignore[arg-type]
            emit(StageStarted(stage.member.name, stage.k, stage.l, pos, len(running)))
            trace = run_stage(
                self._backend(stage.member.name),
                self.sandbox,
                task,
                stage,
                cancel=cancel,
                on_event=emit,
                seed=seed,
                examples=examples,
                template=self.template,
            )
            stages.append(trace)
            if not trace.verified:
                # No execution possible: the first member's best, unverified (with no
                # verdicts, its first statically sound solution, else its first).
                emit(Finished(trace.member, trace.seconds))
                return Result(
                    trace.solutions[trace.best],
                    trace.member,
                    tier_plan.name,
                    tuple(stages),
                    verified=False,
                    note=_unavailable_note(task),
                    examples=examples,
                    answer_stage=len(stages) - 1,
                )
            key = pool_key(trace.examples_passed, trace.meets_threshold, trace.best_sound)
            if pool_replaces(key, answer_key):
                answer, answer_key = len(stages) - 1, key
            if trace.accepted:
                break
            emit(Escalating(trace.member, running[pos + 1].member.name, trace.best_score,
                            trace.threshold))
        # Without examples the pool's key is whether the best is sound and met its rule:
        # the last stage run answers (section 2), unless its best fails a static check
        # and an earlier one's does not (docs/method.md 8.2).
        chosen = stages[answer]
        verified, note = _verdict(chosen, examples)
        emit(Finished(chosen.member, sum(s.seconds for s in stages)))
        return Result(
            chosen.solutions[chosen.best], chosen.member, tier_plan.name, tuple(stages),
            verified, note, examples=examples, answer_stage=answer,
        )


def _verdict(trace: StageTrace, examples: Sequence[Example]) -> tuple[bool, str]:
    """Whether the answering candidate is verified, and why not when it is not."""
    if not trace.best_sound:
        # docs/method.md 8.2: whatever its tests say, it cannot be right.
        return False, f"{trace.member}'s answer {trace.findings[trace.best][0].message}"
    if examples:
        if trace.meets_threshold:
            return True, ""
        n = len(examples)
        failed = n - trace.examples_passed
        if failed:
            return False, f"{trace.member}'s answer failed {failed} of {n} example line(s)"
        return False, (
            f"passed all {n} example line(s), but {trace.member}'s generated tests scored "
            f"{trace.best_score} below its threshold {trace.threshold:g}"
            if trace.n_tests else
            f"passed all {n} example line(s), but {trace.member} wrote no valid test line"
        )
    # The exact rule of the engine's scoring (no float comparison); the last member's
    # best must also have passed a test: theta = 0 proves nothing.
    verified = trace.n_tests > 0 and trace.meets_threshold and (
        not trace.last or trace.best_score > 0)
    return verified, "" if verified else "no examples, and " + _unverified_note(trace)


def _unverified_note(trace: StageTrace) -> str:
    if not trace.last:
        # The pool kept it: every later member's best failed a static check.
        why = (f"{trace.member} wrote no valid test line" if trace.n_tests == 0 else
               f"{trace.member} scored {trace.best_score} below its threshold "
               f"{trace.threshold:g}")
        return f"{why}; the later members' answers failed static checks"
    if trace.k == 0:
        return f"{trace.member} answered greedily without tests (last member)"
    if trace.n_tests == 0:
        return f"{trace.member} wrote no valid test line (last member, accepted untested)"
    return (
        f"{trace.member} scored {trace.best_score} below its threshold "
        f"{trace.threshold:g} (last member, accepted regardless)"
    )


def run_stage(
    backend: Backend,
    sandbox: Sandbox | None,
    task: Task,
    stage: StagePlan,
    *,
    cancel: CancelTokenLike | None = None,
    on_event: EventSink | None = None,
    seed: int = 0,
    examples: Sequence[Example] = (),
    template: int = PROMPT_TEMPLATE_VERSION,
) -> StageTrace:
    """One member's stage: generate, extract, execute (E and T in one sandbox call),
    rank, decide (docs/method.md 2 and 7.2-7.3)."""
    specs = stage_specs(task, stage.k, stage.l, seed=seed, template=template)
    generations = backend.sample(specs, cancel=cancel)
    solutions = [solution_text(task, g.text) for g in generations[0]]
    # docs/method.md 8.2: what makes a candidate wrong whatever its tests say.
    findings = tuple(check_candidate(task, s) for s in solutions)
    tests = [unit_test_text(task, g.text) for g in generations[1]] if len(generations) > 1 else []
    suite = pooled_suite(tests, assert_subject(task), stage.l) if stage.k > 0 else []
    all_gens = [g for group in generations for g in group]
    lines = [e.source for e in examples] + suite
    n_e = len(examples)

    passed: Sequence[Sequence[bool]] = []
    sandbox_seconds = 0.0
    verified = True
    if lines:
        cancel_mod.check(cancel)  # type: ignore[arg-type]
        if on_event:
            on_event(Executing(stage.member.name, len(solutions), len(lines)))
        if sandbox is None or context_error(task.context):
            verified = False  # nothing can run: the answer is not tested
        else:
            try:
                matrix = run_candidates(sandbox, task, solutions, lines)
            except SandboxUnavailable as e:
                log.warning("sandbox unavailable: %s", e)
                verified = False
            else:
                passed = matrix.passed()
                sandbox_seconds = matrix.seconds
                verified = not matrix.unverified
    on_examples = [row[:n_e] for row in passed] if verified and passed else []
    on_suite = [row[n_e:] for row in passed] if verified and suite and passed else []
    decision = decide_stage(on_suite, len(solutions), max(stage.k, 1), stage.theta, stage.last,
                            examples=on_examples, n_examples=n_e if on_examples else 0,
                            generated=stage.k > 0, static_ok=[not f for f in findings])
    return StageTrace(
        member=stage.member.name,
        k=stage.k,
        l=stage.l,
        solutions=tuple(solutions),
        tests=tuple(tests),
        suite=tuple(suite),
        pass_matrix=tuple(tuple(row) for row in on_suite),
        scores=tuple(decision.scores),
        best=decision.best,
        best_score=decision.best_score,
        threshold=decision.threshold,
        theta=float(stage.theta),
        accepted=decision.accepted,
        last=stage.last,
        prompt_tokens=sum(g.prompt_tokens for g in all_gens),
        generated_tokens=sum(g.generated_tokens for g in all_gens),
        prompt_seconds=sum(g.prompt_seconds for g in all_gens),
        decode_seconds=sum(g.decode_seconds for g in all_gens),
        sandbox_seconds=sandbox_seconds,
        verified=verified or not lines,
        meets_threshold=decision.meets_threshold,
        prompt_tokens_evaluated=_evaluated(all_gens),
        example_matrix=tuple(tuple(row) for row in on_examples),
        n_examples=n_e,
        findings=findings,
    )


def _evaluated(gens: Sequence[Generation]) -> int | None:
    known = [g.prompt_tokens_evaluated for g in gens if g.prompt_tokens_evaluated is not None]
    return sum(known) if known else None


def _unavailable_note(task: Task) -> str:
    why = context_error(task.context)
    if why:
        return (f"execution unavailable: the file around the function does not compile on "
                f"this Python ({why}); the answer was not tested")
    return "execution unavailable: the answer was not tested"


@lru_cache(maxsize=64)
def context_error(context: str) -> str | None:
    """Why the file context cannot run on this interpreter (the sandbox's): it does not
    compile (newer syntax, a statement out of place). Then no line can pass for any
    candidate, so nothing is executed and the answer is not tested, rather than every
    candidate failing every example. None when it compiles (so does the context as the
    sandbox runs it, `executable_context`)."""
    try:
        compile(context, "<file>", "exec", dont_inherit=True)
    except SyntaxError as e:
        lines = context.splitlines()
        line = (e.text or (lines[e.lineno - 1] if e.lineno and e.lineno <= len(lines)
                           else "")).strip()
        return (f"{sys.version_info.major}.{sys.version_info.minor}: {e.msg}"
                + (f": `{line}`" if line else ""))
    except ValueError as e:  # a null byte
        return str(e)
    return None


@lru_cache(maxsize=64)
def executable_context(context: str) -> str:
    """The file context as the sandbox runs it: each top-level statement on its own.

    What a file does when it is imported is the file's, not a candidate's: an import of
    the project's own modules or of a package this machine lacks, a settings file it
    reads, a call of its `main()`, an `argparse` exit, a decorator naming what such an
    import would have bound. One statement that raises must not fail every assert of
    every solution, so each top-level statement that may raise is guarded (`Exception`
    and `SystemExit`; never the sandbox's own timeout): one that raises leaves its names
    unbound, and the rest of the file runs. A file of statements that cannot raise
    (literals bound to names, plain functions) runs as written. The prompt keeps the
    file as written. A `from __future__` import stays as it is: it must be the module's
    first statement (guarded, it would be a SyntaxError that fails every line; `from
    __future__ import annotations` is common in real files).
    """
    if not context.strip():
        return context
    try:
        tree = ast.parse(context)
    except SyntaxError:
        return context
    if not any(_guarded(n) for n in tree.body):
        return context
    caught = ast.Tuple([ast.Name("Exception", ast.Load()), ast.Name("SystemExit", ast.Load())],
                       ast.Load())
    body: list[ast.stmt] = []
    for node in tree.body:
        if _guarded(node):
            body.append(ast.Try([node], [ast.ExceptHandler(caught, None, [ast.Pass()])],
                                [], []))
        else:
            body.append(node)
    tree.body = body
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


def _guarded(node: ast.stmt) -> bool:
    """A statement that `executable_context` guards: every one that may raise, but a
    `from __future__` import."""
    if isinstance(node, ast.ImportFrom) and node.module == "__future__":
        return False
    if isinstance(node, ast.Pass) or (isinstance(node, ast.Expr)
                                      and isinstance(node.value, ast.Constant)):
        return False  # the module's docstring
    if isinstance(node, ast.Assign):  # NAME = a literal
        return not (all(isinstance(t, ast.Name) for t in node.targets)
                    and _literal(node.value))
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):  # runs nothing but defaults
        a = node.args
        return bool(node.decorator_list or node.returns
                    or any(x.annotation for x in (*a.posonlyargs, *a.args, *a.kwonlyargs,
                                                  *filter(None, (a.vararg, a.kwarg))))
                    or not all(_literal(d) for d in (*a.defaults,
                                                     *filter(None, a.kw_defaults))))
    return True


def _literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True
