"""The engine side of the server: plan, family, sandbox, cascade and answer cache.

Nothing here knows LSP. Every method that blocks (model loading, generation,
sandbox start-up) is meant to run off the event loop: `run_blocking` puts it on
the one engine thread, so that generation runs one request at a time (the
models are CPU-bound) and model loading queues ahead of the first request.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from cascode.engine.cascade import Cascade
from cascode.engine.errors import CascodeError, SandboxUnavailable
from cascode.engine.family import BackendFactory, Family
from cascode.engine.plans import Plan, load_plan, plan_to_dict
from cascode.engine.types import CancelTokenLike, Event, Result, Sandbox, Task

log = logging.getLogger(__name__)

# (layers, allow_unsafe) -> a sandbox object (run_matrix, .available, .reason, .close())
SandboxFactory = Callable[[str, bool], Any]


def default_sandbox_factory(layers: str, allow_unsafe: bool) -> Any:
    try:
        from cascode.engine.sandbox import create_sandbox
    except ImportError as e:
        raise SandboxUnavailable(f"the sandbox is not installed ({e})") from None
    return create_sandbox(layers=None if layers == "auto" else layers, allow_unsafe=allow_unsafe)


def load_plan_file(path: str) -> Plan:
    """The plan for the `planFile` setting ("" is the packaged plan); PlanError if bad."""
    return load_plan(path or None)


def plan_key(plan: Plan) -> str:
    """Identifies a plan's content, so that a reloaded, edited plan misses the cache."""
    return hashlib.sha256(repr(plan_to_dict(plan)).encode()).hexdigest()[:16]


class AnswerCache:
    """Least-recently-used answers, keyed by (function text, file context, plan, tier)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, Result] = OrderedDict()

    def get(self, key: Hashable) -> Result | None:
        result = self._items.get(key)
        if result is not None:
            self._items.move_to_end(key)
        return result

    def put(self, key: Hashable, result: Result) -> None:
        if self.size <= 0:
            return
        self._items[key] = result
        self._items.move_to_end(key)
        self.resize(self.size)

    def resize(self, size: int) -> None:
        self.size = size
        while len(self._items) > max(size, 0):
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


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
        self.plan: Plan | None = None
        self.plan_key = ""
        self.family: Family | None = None
        self.sandbox: Any | None = None
        self.sandbox_note = ""
        self.cache = AnswerCache(128)
        self._loading: Future[None] | None = None
        self._lock = threading.Lock()

    # -- the engine thread ---------------------------------------------------

    def run_blocking(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        return self._executor.submit(fn, *args, **kwargs)

    # -- plan and family -----------------------------------------------------

    def set_plan(self, plan: Plan) -> None:
        """Use `plan` from now on; its models load lazily or through `preload`."""
        old = self.family
        self.plan = plan
        self.plan_key = plan_key(plan)
        self.family = Family(plan.family, self._backend_factory)
        if old is not None:
            # Closed on the engine thread, after whatever request still uses it.
            self._executor.submit(old.close)

    def members_of(self, tier: str) -> list[str]:
        assert self.plan is not None
        return [s.member.name for s in self.plan.tier(tier or None).stages]

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
            sandbox = self._sandbox_factory(layers, allow_unsafe)
        except SandboxUnavailable as e:
            sandbox, note = None, str(e)
        else:
            note = "" if getattr(sandbox, "available", True) else str(
                getattr(sandbox, "reason", "") or "no isolation layer works here"
            )
        old, self.sandbox, self.sandbox_note = self.sandbox, sandbox, note
        if old is not None and hasattr(old, "close"):
            self._executor.submit(old.close)
        return note

    def _usable_sandbox(self) -> Sandbox | None:
        sandbox = self.sandbox
        if sandbox is None or not getattr(sandbox, "available", True):
            return None
        return sandbox

    # -- requests ------------------------------------------------------------

    def cache_key(self, task: Task, tier: str) -> Hashable:
        return (task.prompt, task.context, self.plan_key, tier)

    def complete(
        self,
        task: Task,
        tier: str,
        *,
        cancel: CancelTokenLike,
        on_event: Callable[[Event], None],
    ) -> Result:
        """Run the cascade for `task` (blocking: call through `run_blocking`)."""
        if self.plan is None or self.family is None:
            raise CascodeError("no plan is loaded")
        cancel.raise_if_cancelled()
        cascade = Cascade(self.plan, self.family.get, self._usable_sandbox())
        return cascade.run(task, tier or None, cancel=cancel, on_event=on_event)

    def close(self) -> None:
        family, sandbox = self.family, self.sandbox
        self.family = None
        self.sandbox = None

        def close_all() -> None:
            if family is not None:
                family.close()
            if sandbox is not None and hasattr(sandbox, "close"):
                sandbox.close()

        try:
            self._executor.submit(close_all).result(timeout=10)
        except Exception:  # noqa: BLE001 - closing on the way out must not raise
            log.exception("closing the engine")
        self._executor.shutdown(wait=False, cancel_futures=True)
