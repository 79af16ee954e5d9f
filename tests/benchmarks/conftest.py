"""Fixtures for the calibration tests: a synthetic family served by a scripted backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from cascode.benchmarks.synthetic import ScriptedBackend

# (solution skill, test skill, seconds per token) per member, cheapest first
SKILLS = {"small": (0.45, 0.75, 0.005), "medium": (0.6, 0.8, 0.012), "large": (0.8, 0.9, 0.04)}


def family_plan(names: list[str], tiers: str = "") -> str:
    """A plan file for the synthetic members (remote-style: no model file to hash)."""
    family = "\n".join(f"  - {{name: {n}, backend: openai, model: synthetic-{n}, "
                       "options: {base_url: 'http://127.0.0.1:9/v1'}}" for n in names)
    tiers = tiers or f"  only:\n    theta: 0.5\n    stages: {{{names[0]}: {{k: 1, l: 2}}}}\n"
    return f"family:\n{family}\ntiers:\n{tiers}"


class Factory:
    """Creates scripted backends and remembers them (to count calls)."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.backends: list[ScriptedBackend] = []
        self.fail_after = fail_after

    def __call__(self, member):
        skill, test_skill, spt = SKILLS[member.name]
        backend = ScriptedBackend(member.name, skill, test_skill, spt)
        if self.fail_after is not None:
            backend = _Killing(backend, self.fail_after)
        self.backends.append(backend)
        return backend

    @property
    def calls(self) -> int:
        return sum(b.calls for b in self.backends)


class _Killing:
    """Stands for a run killed after `after` problems (raises KeyboardInterrupt)."""

    def __init__(self, inner: ScriptedBackend, after: int) -> None:
        self.inner, self.after, self.calls, self.name = inner, after, 0, inner.name

    def sample(self, specs, *, cancel=None):
        if self.calls >= self.after:
            raise KeyboardInterrupt
        self.calls += 1
        return self.inner.sample(specs, cancel=cancel)

    def close(self) -> None:
        pass


@pytest.fixture
def plan_file(tmp_path: Path) -> Path:
    path = tmp_path / "family.yaml"
    path.write_text(family_plan(["small", "large"]))
    return path
