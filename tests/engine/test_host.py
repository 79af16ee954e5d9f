"""The engine host under concurrent use: the answer cache read from one thread (the
server's event loop) while another writes it (the engine thread), and a plan swapped
while requests run."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
from engine_fakes import InProcessSandbox, ScriptedBackend

from cascode.engine.cancel import CancelToken
from cascode.engine.errors import Cancelled
from cascode.engine.host import AnswerCache, EngineHost
from cascode.engine.plans import Member, Plan, parse_plan
from cascode.engine.types import CancelTokenLike, Result, SampleSpec, Task

TASK = Task('def add(a, b):\n    """Return a + b."""\n', "add")


def _plan(member: str) -> Plan:
    return parse_plan(json.dumps({
        "family": [{"name": member, "backend": "llama_cpp", "model": f"/models/{member}.gguf"}],
        "default_tier": "only",
        "tiers": {"only": {"theta": 0.0, "stages": {member: {"k": 0}}}},
    }), source=f"<{member}>")


def _factory(member: Member) -> ScriptedBackend:
    # Each member answers with its own name, so an answer tells which plan made it.
    return ScriptedBackend(member.name, [f"    return '{member.name}'\n```"],
                           on_sample=lambda: time.sleep(0.002))


def test_the_answer_cache_keeps_its_order_under_concurrent_use():
    cache = AnswerCache(8)
    results = [Result.__new__(Result) for _ in range(64)]
    errors: list[BaseException] = []

    def hammer(offset: int) -> None:
        try:
            for i in range(4000):
                key = (offset + i) % 64
                if i % 3:
                    cache.put(key, results[key])
                else:
                    got = cache.get(key)
                    assert got is None or got is results[key]
                if i % 500 == 0:
                    cache.resize(8 + i % 3)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=hammer, args=(k * 7,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(cache) <= 10


def test_a_plan_swapped_while_requests_run_answers_each_from_one_plan():
    host = EngineHost(backend_factory=_factory)
    host.set_plan(_plan("alpha"))
    stop = threading.Event()
    swaps = 0

    def swap() -> None:
        nonlocal swaps
        while not stop.is_set():
            host.set_plan(_plan("beta" if swaps % 2 else "alpha"))
            swaps += 1
            time.sleep(0.001)

    swapper = threading.Thread(target=swap)
    swapper.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(
                lambda i: host.answer(TASK, "only", cancel=CancelToken(), seed=i).result,
                range(200)))
    finally:
        stop.set()
        swapper.join()
        host.close()
    assert swaps > 10
    assert {r.member for r in answers} == {"alpha", "beta"}
    for result in answers:
        # The member that answered is the one whose code it is: never a mix of two plans.
        assert result.member in ("alpha", "beta")
        assert result.code.rstrip().endswith(f"return '{result.member}'")


def test_the_cache_key_names_the_plan_a_request_started_with():
    host = EngineHost(backend_factory=_factory)
    host.set_plan(_plan("alpha"))
    try:
        first = host.answer(TASK, "only", cancel=CancelToken())
        assert not first.cached and first.result.member == "alpha"
        assert host.answer(TASK, "only", cancel=CancelToken()).cached
        host.set_plan(_plan("beta"))
        assert host.cached(TASK, "only") is None  # a new plan misses the cache
        assert host.answer(TASK, "only", cancel=CancelToken()).result.member == "beta"
        # Another seed is another answer.
        assert not host.answer(TASK, "only", cancel=CancelToken(), seed=1).cached
    finally:
        host.close()


@dataclass
class _Warming(ScriptedBackend):
    """A scripted member that records what it is asked to evaluate ahead."""

    warmed: list[SampleSpec] = field(default_factory=list)

    def prefill(self, spec: SampleSpec, *, cancel: CancelTokenLike | None = None) -> int:
        if cancel is not None:
            cancel.raise_if_cancelled()
        self.warmed.append(spec)
        return 100


class _Sandbox(InProcessSandbox):
    available = True
    reason = ""

    def close(self) -> None:
        pass


def _two_members() -> Plan:
    return parse_plan(json.dumps({
        "family": [{"name": m, "backend": "llama_cpp", "model": f"/models/{m}.gguf"}
                   for m in ("small", "big")],
        "default_tier": "cheap",
        "tiers": {"cheap": {"theta": 1.0, "stages": {"small": {"k": 3, "l": 2},
                                                     "big": {"k": 0}}}},
    }), source="<two>")


def _warming_host() -> tuple[EngineHost, dict[str, _Warming]]:
    made: dict[str, _Warming] = {}

    def factory(member: Member) -> _Warming:
        made[member.name] = _Warming(member.name, ["    return a + b\n```"],
                                     ["1, 2) == 3\nassert add(0, 0) == 0\n```"])
        return made[member.name]

    host = EngineHost(backend_factory=factory, sandbox_factory=lambda *_: _Sandbox())
    host.set_plan(_two_members())
    host.make_sandbox("auto", False)
    return host, made


def test_prefill_evaluates_the_prompts_the_cascade_then_sends_first_per_member():
    host, made = _warming_host()
    try:
        task = dataclasses.replace(TASK, context="import math\n")
        # No model loaded: nothing is loaded for a warm-up.
        assert host.prefill(task, "cheap", cancel=CancelToken()) == {}
        assert made == {}
        host.family.load_all()  # type: ignore[union-attr]
        assert host.prefill(task, "cheap", cancel=CancelToken()) == {"small": 100, "big": 100}
        assert host.prefill(task, "cheap", cancel=CancelToken(), members=1) == {"small": 100}
        # The warmed prompts are the first ones each member is then sent.
        small_sent = host.answer(task, "cheap", cancel=CancelToken()).result
        assert made["small"].warmed[0] == made["small"].calls[0][0]
        assert made["small"].warmed[0].n == 3 and not made["small"].warmed[0].greedy
        # The answer is cached: nothing more to warm for it.
        before = len(made["small"].warmed)
        assert host.prefill(task, "cheap", cancel=CancelToken()) == {}
        assert len(made["small"].warmed) == before and small_sent.member == "small"
        # The big member's warmed prompt is the one its stage sends.
        big_task = dataclasses.replace(task, prompt=task.prompt.replace("add", "plus"),
                                       entry_point="plus")
        host.prefill(big_task, "cheap", cancel=CancelToken())
        made["small"].solutions = ["    return None\n```"]  # fails its tests: escalates
        assert host.answer(big_task, "cheap", cancel=CancelToken()).result.member == "big"
        assert made["big"].warmed[-1] == made["big"].calls[-1][0]
        # A request waiting for the engine thread cancels the warm-up.
        token = CancelToken()
        token.cancel("a request")
        with pytest.raises(Cancelled):
            host.prefill(dataclasses.replace(task, context="import os\n"), "cheap",
                         cancel=token)
    finally:
        host.close()


def test_a_lazy_sandbox_starts_only_for_an_answer_that_runs_code():
    started: list[_Sandbox] = []

    def start(*_: object) -> _Sandbox:
        started.append(_Sandbox())
        return started[-1]

    host = EngineHost(backend_factory=_factory, sandbox_factory=start)
    host.set_plan(_plan("alpha"))
    host.lazy_sandbox("auto", False)
    try:
        # A greedy stage without examples runs nothing: no sandbox is started.
        answered = host.answer(TASK, "only", cancel=CancelToken()).result
        assert answered.member == "alpha" and started == []
        # With an example line, the first run starts it, once, and runs the line in it.
        with_example = dataclasses.replace(
            TASK, prompt=TASK.prompt.replace('."""', '.\n\n    >>> add(1, 2)\n    3\n    """'))
        first = host.answer(with_example, "only", cancel=CancelToken()).result
        again = host.answer(dataclasses.replace(with_example, context="import os\n"), "only",
                            cancel=CancelToken()).result
        assert len(started) == 1 and len(started[0].calls) == 2
        # The member answers 'alpha', which the example refutes: it was run.
        assert first.stages[0].example_matrix == ((False,),) and first.stages[0].verified
        assert again.stages[0].example_matrix == ((False,),)
    finally:
        host.close()


def test_a_lazy_sandbox_that_cannot_start_leaves_the_answer_unverified():
    from cascode.engine.errors import SandboxUnavailable

    def refuse(*_: object) -> _Sandbox:
        raise SandboxUnavailable("no isolation layer works here (test)")

    host = EngineHost(backend_factory=_factory, sandbox_factory=refuse)
    host.set_plan(_plan("alpha"))
    host.lazy_sandbox("auto", False)
    try:
        task = dataclasses.replace(
            TASK, prompt=TASK.prompt.replace('."""', '.\n\n    >>> add(1, 2)\n    3\n    """'))
        result = host.answer(task, "only", cancel=CancelToken()).result
        assert result.member == "alpha" and not result.verified
        assert not result.stages[0].verified
        assert host.sandbox is not None and "test" in host.sandbox.reason
    finally:
        host.close()
