"""The engine host under concurrent use: the answer cache read from one thread (the
server's event loop) while another writes it (the engine thread), and a plan swapped
while requests run."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from engine_fakes import ScriptedBackend

from cascode.engine.cancel import CancelToken
from cascode.engine.host import AnswerCache, EngineHost
from cascode.engine.plans import Member, Plan, parse_plan
from cascode.engine.types import Result, Task

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
