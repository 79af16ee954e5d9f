"""Member prices (docs/method.md 3): seconds per generated token when decoding b
sequences in one batch, seconds per prompt token, and the papers' dollar price
per token.

`cascode calibrate --measure` measures them on an otherwise idle machine and
stores them in `DIR/prices.json`, keyed by member and model fingerprint. When no
measurement exists, the rates recorded in the sampling cache stand in (its
batch is 2 + 2N sequences, so they are not prices at batch 2k); the report
says which were used.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cascode.engine.hardware import hardware
from cascode.engine.prompts import (
    MAX_ASSERTS,
    PROMPT_TEMPLATE_VERSION,
    solution_spec,
    unit_test_spec,
)
from cascode.engine.types import Backend, SampleSpec, Task

from .sampling import Samples

BATCHES = (1, 2, 6, 10, 20)  # k = 0 decodes one sequence; k > 0 decodes 2k


@dataclasses.dataclass(frozen=True)
class MemberPrice:
    prompt_seconds_per_token: float
    decode: dict[int, float]  # batch size -> seconds per generated token
    price_per_hour: float
    source: str  # "measured <date> on <hardware>" or "sampling cache"
    price_per_mtok: float | None = None  # a hosted endpoint's price, when the plan gives one

    def decode_seconds_per_token(self, batch: int) -> float:
        """The rate at `batch`, linear between measured batch sizes."""
        sizes = sorted(self.decode)
        if batch <= sizes[0]:
            return self.decode[sizes[0]]
        for lo, hi in zip(sizes, sizes[1:], strict=False):
            if batch <= hi:
                w = (batch - lo) / (hi - lo)
                return self.decode[lo] * (1 - w) + self.decode[hi] * w
        return self.decode[sizes[-1]]

    @property
    def dollars_per_token(self) -> float:
        """The papers' token price: seconds per token at the largest batch x $/hour,
        or the member's own price per million tokens when the plan sets one."""
        if self.price_per_mtok is not None:
            return self.price_per_mtok / 1e6
        return self.decode[max(self.decode)] * self.price_per_hour / 3600.0


def price_from_cache(samples: Sequence[Samples], price_per_hour: float) -> MemberPrice:
    """Rates from the sampling cache's own timings (a stand-in for measured prices)."""
    prompt_s = prompt_t = decode_s = decode_t = 0.0
    for s in samples:
        # Two distinct prompts per batch (the sampled items share the greedy ones'),
        # counted as evaluated where the cache recorded it (a shared opening once).
        prompt_t += s.greedy_solution.prompt_tokens_charged + s.test_prompt_tokens
        for group in ((s.greedy_solution,), (s.greedy_test,), s.solutions, s.tests):
            prompt_s += sum(g.prompt_seconds for g in group)
            decode_s += sum(g.decode_seconds for g in group)
            decode_t += sum(g.generated_tokens for g in group)
    return MemberPrice(
        prompt_s / max(prompt_t, 1.0),
        {1: decode_s / max(decode_t, 1.0)},
        price_per_hour,
        "sampling cache (not measured on an idle machine)",
    )


def load_prices(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    return dict(json.loads(path.read_text(encoding="utf-8")))


def stored_price(
    path: Path, member: str, fingerprint: str, price_per_hour: float
) -> MemberPrice | None:
    entry = load_prices(path).get(member)
    if not entry or entry.get("model") != fingerprint:
        return None
    return MemberPrice(
        float(entry["prompt_seconds_per_token"]),
        {int(b): float(v) for b, v in entry["decode_seconds_per_token"].items()},
        price_per_hour,
        f"measured {entry.get('date', '?')} on {entry.get('hardware', '?')}",
    )


def _measure_specs(task: Task, batch: int, max_tokens: int,
                   template: int = PROMPT_TEMPLATE_VERSION) -> list[SampleSpec]:
    if batch == 1:
        specs = [solution_spec(task, 1, sampled=False, template=template)]
    else:
        k = batch // 2
        specs = [
            solution_spec(task, k, sampled=k > 1, template=template),
            unit_test_spec(task, k, MAX_ASSERTS, sampled=k > 1, template=template),
        ]
    return [dataclasses.replace(s, max_tokens=min(s.max_tokens, max_tokens)) for s in specs]


def measure_member(
    backend: Backend, tasks: Sequence[Task], *, max_tokens: int = 96,
    batches: Sequence[int] = BATCHES, template: int = PROMPT_TEMPLATE_VERSION,
) -> dict[str, Any]:
    """Decode and prompt rates of one backend over a few tasks (one warm-up call first).
    The prompt rate is per token evaluated: a prefix the backend already holds (the
    shared code of a stage's two prompts, a warm repeat) costs nothing."""
    backend.sample(_measure_specs(tasks[0], 1, 8, template))
    decode: dict[str, float] = {}
    prompt_s = prompt_t = 0.0
    for batch in batches:
        seconds = tokens = 0.0
        for task in tasks:
            groups = backend.sample(_measure_specs(task, batch, max_tokens, template))
            for group in groups:
                seconds += sum(g.decode_seconds for g in group)
                tokens += sum(g.generated_tokens for g in group)
                prompt_s += sum(g.prompt_seconds for g in group)
                prompt_t += group[0].prompt_tokens_charged
        decode[str(batch)] = seconds / max(tokens, 1.0)
    return {
        "prompt_seconds_per_token": prompt_s / max(prompt_t, 1.0),
        "decode_seconds_per_token": decode,
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "hardware": hardware(),
    }


def save_price(path: Path, member: str, fingerprint: str, entry: dict[str, Any]) -> None:
    prices = load_prices(path)
    prices[member] = {"model": fingerprint, **entry}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(prices, indent=2, sort_keys=True) + "\n", encoding="utf-8")
