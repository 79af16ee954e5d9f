"""The engine as a long-lived service: plan, family, sandbox, cascade, answer cache.

What a front end (the language server, a benchmark) holds to answer requests
over time. It knows no protocol. `answer(task, tier, ...)` is the one call that
answers a task: from the answer cache, or by running the cascade and caching
the result. Every method that blocks (model loading, generation, sandbox
start-up) is meant to run off the caller's event loop: `run_blocking` puts it
on the one engine thread, so that generation runs one request at a time (the
models are CPU-bound) and model loading queues ahead of the first request.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .backends import in_model_server
from .cascade import Cascade
from .errors import CascodeError, SandboxUnavailable
from .family import BackendFactory, Family
from .load import ReportsLoad, ServerLoad, TierChoice, choose_tier, default_budget
from .plans import Member, Plan, load_plan, plan_to_dict
from .types import (
    CancelTokenLike,
    Event,
    ExecutionLimits,
    PassMatrix,
    Prefills,
    Result,
    Sandbox,
    Task,
)

log = logging.getLogger(__name__)

# (layers, allow_unsafe) -> a Sandbox; the real one is `sandbox.create_sandbox`.
SandboxFactory = Callable[[str, bool], Sandbox]


def default_sandbox_factory(layers: str, allow_unsafe: bool) -> Sandbox:
    from .sandbox import create_sandbox

    return create_sandbox(layers, allow_unsafe=allow_unsafe)


class LazySandbox:
    """A sandbox started at its first use, for a caller that answers once (the CLI).

    An answer that runs nothing (a greedy stage without examples) never starts one,
    and saves the worker's start and self-check (about 0.4 s on 2 cores). Started in
    parallel with generation instead, the start only takes cores from the model.
    A start that leaves no isolation makes `run_matrix` raise SandboxUnavailable,
    which the cascade treats as a sandbox it does not have: the answer is unverified.
    """

    def __init__(self, start: Callable[[], Sandbox]) -> None:
        self._start = start
        self._sandbox: Sandbox | None = None
        self._unavailable = ""
        self._lock = threading.Lock()
        self._started = False
        self._closed = False

    @property
    def started(self) -> bool:
        return self._started

    def get(self) -> Sandbox | None:
        """The sandbox, started now if it was not (None when the start raised
        SandboxUnavailable); any other error of the start is raised."""
        with self._lock:
            if self._closed:
                raise SandboxUnavailable("the sandbox is closed")
            if not self._started:
                try:
                    self._sandbox = self._start()
                except SandboxUnavailable as e:
                    self._unavailable = str(e)
                self._started = True
            return self._sandbox

    @property
    def available(self) -> bool:
        try:
            sandbox = self.get()
        except SandboxUnavailable:  # closed
            return False
        return sandbox is not None and sandbox.available

    @property
    def reason(self) -> str:
        if self._closed:
            return "the sandbox is closed"
        sandbox = self.get()
        return sandbox.reason if sandbox is not None else self._unavailable

    def run_matrix(self, solutions: Sequence[str], tests: Sequence[str], *,
                   context: str = "", limits: ExecutionLimits | None = None) -> PassMatrix:
        sandbox = self.get()
        if sandbox is None or not sandbox.available:
            raise SandboxUnavailable(self.reason or "no isolation layer works here")
        return sandbox.run_matrix(solutions, tests, context=context, limits=limits)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sandbox, self._sandbox = self._sandbox, None
        if sandbox is not None:
            sandbox.close()


@dataclass(frozen=True)
class Answered:
    """An answer and whether it came from the answer cache."""

    result: Result
    cached: bool
    # The load-following decision (engine/load.py), when one was made.
    choice: TierChoice | None = None


def serves_remotely(member: Member) -> bool:
    """Whether the member's model runs in a server (whose backend loads nothing here)."""
    if member.backend in ("llama_server", "openai"):
        return True
    return in_model_server(member)


def load_plan_file(path: str) -> Plan:
    """The plan for the `planFile` setting ("" is the packaged plan); PlanError if bad."""
    return load_plan(path or None)


def plan_key(plan: Plan) -> str:
    """Identifies a plan's content, so that a reloaded, edited plan misses the cache."""
    return hashlib.sha256(repr(plan_to_dict(plan)).encode()).hexdigest()[:16]


class AnswerCache:
    """Least-recently-used answers, keyed by (function text, file context, plan, tier).

    Read from the server's event loop and written from the engine thread: every
    method holds the cache's lock.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, Result] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Result | None:
        with self._lock:
            result = self._items.get(key)
            if result is not None:
                self._items.move_to_end(key)
            return result

    def put(self, key: Hashable, result: Result) -> None:
        with self._lock:
            if self.size <= 0:
                return
            self._items[key] = result
            self._items.move_to_end(key)
            self._trim()

    def resize(self, size: int) -> None:
        with self._lock:
            self.size = size
            self._trim()

    def _trim(self) -> None:
        while len(self._items) > max(self.size, 0):
            self._items.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


@dataclass(frozen=True)
class _Current:
    """The plan in force and its family, swapped as one value by `set_plan`."""

    plan: Plan
    key: str
    family: Family


class EngineHost:
    """Holds what the cascade needs and runs blocking work on one engine thread."""

    def __init__(
        self,
        backend_factory: BackendFactory | None = None,
        sandbox_factory: SandboxFactory | None = None,
    ) -> None:
        self._backend_factory = backend_factory
        self._sandbox_factory = sandbox_factory or default_sandbox_factory
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cascode-engine")
        self._current: _Current | None = None
        self.sandbox: Sandbox | None = None
        self.sandbox_note = ""
        self.cache = AnswerCache(128)
        self._loading: Future[None] | None = None
        self._lock = threading.Lock()

    # -- the engine thread ---------------------------------------------------

    def run_blocking(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        return self._executor.submit(fn, *args, **kwargs)

    # -- plan and family -----------------------------------------------------

    @property
    def plan(self) -> Plan | None:
        current = self._current
        return current.plan if current is not None else None

    @property
    def plan_key(self) -> str:
        current = self._current
        return current.key if current is not None else ""

    @property
    def family(self) -> Family | None:
        current = self._current
        return current.family if current is not None else None

    def set_plan(self, plan: Plan) -> None:
        """Use `plan` from now on; its models load lazily or through `preload`. A request
        that already runs keeps the plan and family it started with."""
        new = _Current(plan, plan_key(plan), Family(plan.family, self._backend_factory))
        with self._lock:
            old, self._current = self._current, new
        if old is not None:
            # Closed on the engine thread, after whatever request still uses it.
            self._executor.submit(old.family.close)

    def plan_tier(self, tier: str | None) -> str:
        """The name of `tier` (None or "": the plan's default); PlanError if unknown."""
        assert self.plan is not None
        return self.plan.tier(tier or None).name

    def members_of(self, tier: str) -> list[str]:
        assert self.plan is not None
        # A member may run two stages (greedy, then sampling): named once.
        return list(dict.fromkeys(s.member.name for s in self.plan.tier(tier or None).stages))

    def preload(
        self, names: list[str], on_progress: Callable[[str, int, int], None]
    ) -> Future[None]:
        """Load `names` on the engine thread; requests submitted later wait behind it."""
        family = self.family
        assert family is not None

        def load() -> None:
            for i, name in enumerate(names):
                if not family.is_loaded(name):
                    on_progress(name, i, len(names))
                    family.get(name)

        with self._lock:
            self._loading = self._executor.submit(load)
            return self._loading

    @property
    def loading(self) -> bool:
        return self._loading is not None and not self._loading.done()

    def waiting_for(self, tier: str) -> str | None:
        """The member of `tier` that a request would wait for while models load, if any."""
        return self.pending_member(tier) if self.loading else None

    def pending_member(self, tier: str) -> str | None:
        """The first member of `tier` whose model is not loaded yet, if any."""
        if self.family is None or self.plan is None:
            return None
        for name in self.members_of(tier):
            if not self.family.is_loaded(name):
                return name
        return None

    # -- sandbox -------------------------------------------------------------

    def make_sandbox(self, layers: str, allow_unsafe: bool) -> str:
        """Start a sandbox with these settings (blocking); returns a note when unavailable.

        Raises CascodeError when the settings themselves are refused (e.g. an
        unknown layer), so the caller can keep the previous settings.
        """
        try:
            sandbox: Sandbox | None = self._sandbox_factory(layers, allow_unsafe)
        except SandboxUnavailable as e:
            sandbox, note = None, str(e)
        else:
            assert sandbox is not None
            note = "" if sandbox.available else (
                sandbox.reason or "no isolation layer works here")
        old, self.sandbox, self.sandbox_note = self.sandbox, sandbox, note
        if old is not None:
            self._executor.submit(old.close)
        return note

    def lazy_sandbox(self, layers: str, allow_unsafe: bool) -> None:
        """Use a sandbox with these settings that starts at its first use (`LazySandbox`):
        for a caller that answers once (the CLI)."""
        old, self.sandbox, self.sandbox_note = (
            self.sandbox, LazySandbox(lambda: self._sandbox_factory(layers, allow_unsafe)), "")
        if old is not None:
            self._executor.submit(old.close)

    def _usable_sandbox(self) -> Sandbox | None:
        sandbox = self.sandbox
        if isinstance(sandbox, LazySandbox) and not sandbox.started:
            return sandbox  # unavailable once started, its first use is unverified
        return sandbox if sandbox is not None and sandbox.available else None

    # -- requests ------------------------------------------------------------

    def cache_key(self, task: Task, tier: str, seed: int = 0,
                  plan_key: str | None = None) -> Hashable:
        return (task.prompt, task.context, task.prompt_context, task.context_budget,
                task.test_examples, self.plan_key if plan_key is None else plan_key, tier,
                seed)

    def cached(self, task: Task, tier: str) -> Result | None:
        """The cached answer for `task` on `tier`, if any (does not block)."""
        return self.cache.get(self.cache_key(task, tier))

    def answer(
        self,
        task: Task,
        tier: str,
        *,
        cancel: CancelTokenLike,
        on_event: Callable[[Event], None] | None = None,
        seed: int = 0,
        max_seconds: float | None = 0,
    ) -> Answered:
        """Answer `task` on `tier`: from the cache, or by running the cascade (blocking:
        call through `run_blocking`); a fresh answer is cached. The plan and family are
        those in force when it starts, whatever `set_plan` does meanwhile.

        `max_seconds`: the latency budget for tiers that follow the load (engine/load.py):
        0 runs `tier` as asked; None takes twice the tier's measured seconds; a cheaper
        tier that fits the servers' load may run instead, and the result says why."""
        current = self._current
        if current is None:
            raise CascodeError("no plan is loaded")
        key = self.cache_key(task, tier, seed, current.key)
        hit = self.cache.get(key)
        if hit is not None:
            return Answered(hit, True)
        cancel.raise_if_cancelled()
        choice = self.follow_load(tier, max_seconds, current)
        run_tier = choice.tier if choice is not None and choice.stepped_down else tier
        if run_tier != tier:
            key = self.cache_key(task, run_tier, seed, current.key)
            hit = self.cache.get(key)
            if hit is not None:
                return Answered(dataclasses.replace(hit, load=choice.reason if choice else ""),
                                True, choice)
        cascade = Cascade(current.plan, current.family.get, self._usable_sandbox())
        result = cascade.run(task, run_tier or None, cancel=cancel, on_event=on_event,
                             seed=seed)
        self.cache.put(key, result)
        if choice is not None and choice.reason:
            result = dataclasses.replace(result, load=choice.reason)
        return Answered(result, False, choice)

    def server_loads(self, current: _Current | None = None) -> dict[str, ServerLoad | None]:
        """Each member's server load now; None for a member that runs in this process (its
        requests run one at a time here) or whose server does not run or answer."""
        current = current or self._current
        out: dict[str, ServerLoad | None] = {}
        if current is None:
            return out
        for member in current.plan.family:
            load = None
            # A server's backend is made without loading anything: read it either way.
            if current.family.is_loaded(member.name) or serves_remotely(member):
                try:
                    backend = current.family.get(member.name)
                    if isinstance(backend, ReportsLoad):
                        load = backend.server_load()
                except Exception:  # noqa: BLE001 - a load unread is a load unknown; a member
                    # that cannot be made fails where a request uses it, with its message
                    log.debug("reading %s's load", member.name, exc_info=True)
            out[member.name] = load
        return out

    def follow_load(self, tier: str, max_seconds: float | None,
                    current: _Current | None = None) -> TierChoice | None:
        """The tier to run for a request on `tier` within `max_seconds` (see `answer`);
        None when load-following is off or no member reports a load."""
        current = current or self._current
        if current is None or max_seconds == 0:
            return None
        plan = current.plan
        name = plan.tier(tier or None).name
        budget = max_seconds if max_seconds is not None else default_budget(plan, name)
        loads = self.server_loads(current)
        if budget is None or not any(v is not None for v in loads.values()):
            return None
        concurrency = {m.name: int(getattr(current.family.get(m.name), "concurrency", 1))
                       for m in plan.family if loads.get(m.name) is not None}
        return choose_tier(plan, name, budget, loads, concurrency)

    def prefill(self, task: Task, tier: str, *, cancel: CancelTokenLike,
                members: int = 2) -> dict[str, int]:
        """Evaluate ahead of a request the prompts its cascade would send first (blocking:
        call through `run_blocking`): the first stage's member, then the next ones up
        to `members` in all, each only when its model is loaded and its backend can
        prefill. {member: prompt tokens evaluated}. Raises Cancelled when `cancel` is
        set (a request is waiting for the engine thread); nothing when the answer is
        cached already."""
        current = self._current
        done: dict[str, int] = {}
        if current is None or members <= 0:
            return done
        if self.cache.get(self.cache_key(task, tier, 0, current.key)) is not None:
            return done
        family = current.family
        if not family.is_loaded(current.plan.tier(tier or None).stages[0].member.name):
            return done  # its tokenizer counts the prompt's context: no loading for this
        cascade = Cascade(current.plan, family.get, None)
        for name, spec in cascade.warm_specs(task, tier or None)[:members]:
            cancel.raise_if_cancelled()
            if not family.is_loaded(name):
                break
            backend = family.get(name)
            if not isinstance(backend, Prefills):
                break
            done[name] = backend.prefill(spec, cancel=cancel)
        return done

    def close(self) -> None:
        with self._lock:
            current, self._current = self._current, None
        family = current.family if current is not None else None
        sandbox, self.sandbox = self.sandbox, None

        def close_all() -> None:
            if family is not None:
                family.close()
            if sandbox is not None:
                sandbox.close()

        try:
            self._executor.submit(close_all).result(timeout=10)
        except Exception:  # noqa: BLE001 - closing on the way out must not raise
            log.exception("closing the engine")
        self._executor.shutdown(wait=False, cancel_futures=True)
