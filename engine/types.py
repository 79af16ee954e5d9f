"""Types shared by the engine, the server and the benchmarks: one module, no logic.

Everything here is a frozen value. Field names are the vocabulary of docs/method.md:
a stage of member i has k solutions, k tests cut at l asserts, a suite T of N_t
valid assert lines and a pass matrix P[s][t].
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

# ---------------------------------------------------------------------------
# What is asked


@dataclass(frozen=True)
class Task:
    """One function to complete.

    `prompt` is the code the model continues: the function's signature and
    docstring (HumanEval's `prompt`), possibly with a partial body. `context` is
    the rest of the file that the answer may use (imports, earlier top-level
    definitions); it goes into the prompt and is executed before every solution
    in the sandbox.
    """

    prompt: str
    entry_point: str
    context: str = ""
    task_id: str = ""
    # What the prompt shows of the file instead of `context` (None: `context`).
    # The sandbox executes `context` whatever the prompt shows.
    prompt_context: str | None = None
    # The file's pieces for the prompt, fitted to a token budget by the cascade
    # with its first member's tokenizer (engine/context/budget.py).
    context_budget: ContextBudget | None = None
    # Example lines from the project's test files (docs/method.md 7.1); the docstring's
    # own examples are extracted from `prompt` (engine/examples/ `task_examples`).
    test_examples: tuple[Example, ...] = ()
    # The definitions around the function, outermost first, as dotted names: "Store"
    # for a method of Store, "Store.add" for a function nested in it, "" at top level.
    # Read by the static checks (engine/static_check.py); no cache key holds it.
    owner: str = ""
    # The file without the top-level statement that holds the function: never prompted,
    # never executed; the static checks read it beside `context`, so that what the file
    # defines below the function, or in blocks the context leaves out, counts as
    # defined. No cache key holds it.
    file_around: str = ""
    # The file's definitions below the top-level statement that holds the function
    # (functions, classes, assignments: the context's kinds). Never prompted; the
    # sandbox runs them after each candidate (engine/methods.py `executable_solution`),
    # as the module has run them when a doctest or a test calls the function.
    context_after: str = ""
    # A method: its class, dotted ("Store", "Outer.Inner"; "" for a function, also one
    # nested in a method), and the descriptor decorators its prompt leaves out
    # ("@property\n"). Its tests build the class, and the sandbox runs each candidate
    # put back in its class (engine/methods.py `executable_solution`).
    method_of: str = ""
    descriptors: str = ""


@dataclass(frozen=True)
class Example:
    """One line of E (docs/method.md 7.1): an assert the user wrote, as the sandbox runs it.

    `source` is what the sandbox executes after the context and the solution:
    setup lines (a doctest's `>>> x = ...`, a test file's imports) and then one
    assert (an expected exception: a check that the call raises it). `text` is
    the assert as the user sees it; `origin` is "docstring" or the test file's
    path relative to the project root.
    """

    source: str
    text: str
    origin: str = "docstring"


@dataclass(frozen=True)
class ContextBudget:
    """A file's pieces for the prompt and the budget they are fitted to."""

    shared: tuple[str, ...]  # imports, then outlines of the top-level definitions
    helpers: tuple[str, ...]  # full text of the helpers the function names
    tokens: int
    # The index in `shared` of the outline of the definition that holds the function (a
    # method's class), kept however the rest is cut; None at top level.
    enclosing: int | None = None


# ---------------------------------------------------------------------------
# Generation


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str


class StopRule(Protocol):
    """Decides where a sequence ends, from the text so far.

    `cut(text)` receives the assistant prefix plus everything generated so far
    and returns the index at which the text ends (generation stops and the text
    is cut there), or None to go on. Backends only need to call it when the new
    piece contains a newline or a backtick: both rules decide at line ends.
    `stop_strings` are plain stop sequences for backends that take them
    (remote endpoints); the rule is applied to their output afterwards.
    """

    @property
    def stop_strings(self) -> tuple[str, ...]: ...

    def cut(self, text: str) -> int | None: ...


@dataclass(frozen=True)
class SampleSpec:
    """n sequences that share one prompt (evaluated once, copied to the others).

    `messages` are chat messages; the backend renders them with the model's own
    chat template and appends `prefix` as the start of the assistant's turn.
    Without messages the spec is a plain completion: the prompt is `prefix`
    alone, with no chat template around it. Greedy decoding when
    `temperature == 0`; otherwise temperature and top-p sampling seeded with
    `seed + i` for the i-th sequence.
    """

    messages: tuple[Message, ...]
    prefix: str
    n: int
    max_tokens: int
    stop: StopRule
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass(frozen=True)
class Generation:
    """One generated sequence, as the backend reports it.

    `text` excludes the prefix. `token_ends[i]` is len(text) after the (i+1)-th
    generated token was appended (capped at len(text) after a cut), so the
    tokens spent up to any character of `text` can be counted afterwards (the
    calibration takes l < 4 asserts of a cached test this way).
    `prompt_seconds` and `decode_seconds` are this sequence's shares of the
    batch's wall time: the prompt's evaluation split among the sequences that
    share it, and the decode time in proportion to generated tokens.
    """

    text: str
    prompt_tokens: int
    generated_tokens: int
    prompt_seconds: float
    decode_seconds: float
    token_ends: tuple[int, ...] = ()
    finish_reason: Literal["stop", "length", "cancelled"] = "stop"
    # Prompt tokens actually evaluated for this sequence's prompt (the rest came
    # from a cached prefix), counted on the first sequence of each distinct prompt;
    # None where the backend cannot tell.
    prompt_tokens_evaluated: int | None = None

    @property
    def prompt_tokens_charged(self) -> int:
        """The prompt tokens this sequence costs: those evaluated, or the whole prompt
        where the backend could not tell."""
        if self.prompt_tokens_evaluated is None:
            return self.prompt_tokens
        return self.prompt_tokens_evaluated

    def tokens_up_to(self, char_index: int) -> int:
        """Generated tokens needed to produce text[:char_index]."""
        if not self.token_ends:
            if not self.text:
                return 0
            return round(self.generated_tokens * min(char_index, len(self.text)) / len(self.text))
        import bisect

        return min(bisect.bisect_left(self.token_ends, char_index) + 1, self.generated_tokens)


class Backend(Protocol):
    """A family member: anything that can sample text.

    `sample` runs every spec as one batch where the backend can (the llama.cpp
    backend decodes all sequences of all specs together) and returns, for each
    spec, its n generations in order. It checks `cancel` between decode steps
    and raises `Cancelled` when it is set.
    """

    name: str

    def sample(
        self, specs: Sequence[SampleSpec], *, cancel: CancelTokenLike | None = None
    ) -> list[list[Generation]]: ...

    def close(self) -> None: ...


@runtime_checkable
class Prefills(Protocol):
    """A backend that can evaluate a prompt ahead of its request (docs/method.md 6,
    "warm while the user types"): `prefill` puts the spec's prompt in the backend's
    prompt cache without generating, so that a later `sample` of a prompt that opens
    alike evaluates only the rest. Returns the prompt tokens it evaluated; raises
    `Cancelled` when `cancel` is set, keeping what it evaluated before."""

    def prefill(self, spec: SampleSpec, *, cancel: CancelTokenLike | None = None) -> int: ...


class CancelTokenLike(Protocol):
    @property
    def cancelled(self) -> bool: ...

    def raise_if_cancelled(self) -> None: ...


# ---------------------------------------------------------------------------
# Execution


class Verdict(enum.IntEnum):
    """The outcome of one assert line for one solution. Only PASSED passes."""

    PASSED = 0
    FAILED = 1  # assertion failed or an exception was raised
    TIMEOUT = 2  # per-assert timer or the solution's deadline
    CRASHED = 3  # the child died (signal, os._exit, memory), or no result came back


@dataclass(frozen=True)
class PassMatrix:
    """verdicts[s][t] for solution s and assert line t, plus the wall time spent."""

    verdicts: tuple[tuple[Verdict, ...], ...]
    seconds: float = 0.0
    unverified: bool = False  # True when the sandbox refused to execute anything

    def passed(self) -> list[list[bool]]:
        return [[v == Verdict.PASSED for v in row] for row in self.verdicts]


@dataclass(frozen=True)
class ExecutionLimits:
    """Per-request limits for the sandbox; None fields take the sandbox's defaults."""

    assert_timeout_s: float | None = None  # per assert line
    solution_cpu_s: float | None = None  # CPU budget of one solution's child
    solution_wall_s: float | None = None  # wall deadline of one solution's child
    memory_mb: int | None = None  # address-space headroom per child
    max_consecutive_timeouts: int | None = None  # stop a solution after this many


class Sandbox(Protocol):
    """Runs untrusted code; never in the caller's process.

    `available` is False (with a `reason`) when no isolation layer works here;
    `run_matrix` then raises SandboxUnavailable or answers an unverified matrix.
    `close` stops its worker; a closed sandbox is not used again.
    """

    @property
    def available(self) -> bool: ...

    @property
    def reason(self) -> str: ...

    def close(self) -> None: ...

    def run_matrix(
        self,
        solutions: Sequence[str],
        tests: Sequence[str],
        *,
        context: str = "",
        limits: ExecutionLimits | None = None,
    ) -> PassMatrix: ...


# ---------------------------------------------------------------------------
# What the cascade answers


FindingKind = Literal["syntax", "empty", "undefined-name", "unset-attribute", "bad-call"]


@dataclass(frozen=True)
class Finding:
    """Why a candidate cannot be right (engine/static_check.py): its `kind` and a one-line
    `message` for the answer's provenance ("reads self.cache, which Store never sets").
    `line` is the 1-based line of the candidate's code it is about."""

    kind: FindingKind
    message: str
    line: int = 0


@dataclass(frozen=True)
class StageTrace:
    """What one member did for one request."""

    member: str
    k: int
    l: int
    solutions: tuple[str, ...]
    tests: tuple[str, ...]  # the raw generated tests (text after cutting)
    suite: tuple[str, ...]  # T: the pooled valid assert lines, as generated
    pass_matrix: tuple[tuple[bool, ...], ...]
    scores: tuple[int, ...]
    best: int  # index of the best solution
    best_score: int
    threshold: float  # theta * k * N_t
    theta: float
    accepted: bool
    last: bool  # the last active member: accepted without a threshold check
    prompt_tokens: int
    generated_tokens: int
    prompt_seconds: float
    decode_seconds: float
    sandbox_seconds: float
    verified: bool = True  # False when the sandbox refused to execute
    # The exact acceptance rule (integer arithmetic, docs/method.md 2.5), before the
    # last member's "accepted regardless"; `threshold` is only for display.
    meets_threshold: bool = False
    # Prompt tokens the backend evaluated (the rest came from its prefix cache);
    # None where the backend cannot tell.
    prompt_tokens_evaluated: int | None = None
    # Each solution's verdicts on the example lines E (docs/method.md 7.2); empty rows
    # when E is empty.
    example_matrix: tuple[tuple[bool, ...], ...] = ()
    n_examples: int = 0
    # Each solution's static findings (engine/static_check.py, docs/method.md 8.2): why
    # it cannot be right whatever its tests say; () for a sound one. Empty: none checked.
    findings: tuple[tuple[Finding, ...], ...] = ()

    @property
    def best_sound(self) -> bool:
        """The best solution passes the static checks."""
        return not (self.findings and self.findings[self.best])

    @property
    def examples_passed(self) -> int:
        """Example lines the best solution passed."""
        if not self.example_matrix:
            return 0
        return sum(self.example_matrix[self.best])

    @property
    def n_tests(self) -> int:
        return len(self.suite)

    @property
    def seconds(self) -> float:
        """The stage's time cost: prompt processing + decoding + sandbox."""
        return self.prompt_seconds + self.decode_seconds + self.sandbox_seconds

    @property
    def passed_tests(self) -> tuple[str, ...]:
        """The suite's lines that the best solution passed."""
        if not self.pass_matrix:
            return ()
        row = self.pass_matrix[self.best]
        return tuple(t for t, ok in zip(self.suite, row, strict=True) if ok)


@dataclass(frozen=True)
class Result:
    """The cascade's answer: the accepted function and how it was reached."""

    code: str  # the whole accepted function (prompt + body)
    member: str
    tier: str
    stages: tuple[StageTrace, ...]
    verified: bool  # met its stage's rule: every example line, and generated tests where run
    note: str = ""  # why an answer is unverified, when it is
    # The example lines E the answer was checked against (docs/method.md 7.1).
    examples: tuple[Example, ...] = ()
    # Index into `stages` of the stage whose candidate answered (the pool may pick
    # an earlier stage's candidate, docs/method.md 7.5); -1: the last stage.
    answer_stage: int = -1
    # Why another tier than the one asked for ran (the servers' load, engine/load.py).
    load: str = ""

    @property
    def accepted_stage(self) -> StageTrace:
        """The stage whose best solution is the answer."""
        return self.stages[self.answer_stage]

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.stages)

    @property
    def generated_tokens(self) -> int:
        return sum(s.generated_tokens for s in self.stages)

    @property
    def prompt_tokens(self) -> int:
        return sum(s.prompt_tokens for s in self.stages)


# ---------------------------------------------------------------------------
# Progress events, for the server's work-done progress and the CLI


@dataclass(frozen=True)
class StageStarted:
    member: str
    k: int
    l: int
    index: int  # position among active members, from 0
    total: int  # number of active members


@dataclass(frozen=True)
class Executing:
    member: str
    n_solutions: int
    n_tests: int


@dataclass(frozen=True)
class Escalating:
    from_member: str
    to_member: str
    best_score: int
    threshold: float


@dataclass(frozen=True)
class Finished:
    member: str
    seconds: float


Event = StageStarted | Executing | Escalating | Finished


@dataclass(frozen=True)
class ModelInfo:
    """Where a member's model file is and whether it is verified (for `cascode models`)."""

    name: str
    path: str | None
    verified: bool
    detail: str = ""
    install_hint: str = ""
    extra: dict[str, str] = field(default_factory=dict)
