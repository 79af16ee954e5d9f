"""Prompt tokens a stage evaluates, for cache records sampled before the backend
recorded them: counted with the member's tokenizer, stored beside the caches, and
charged by the simulator instead of the whole test prompt."""

from __future__ import annotations

from pathlib import Path

import attrs

from cascode.benchmarks import calibrate as cal
from cascode.benchmarks.sampling import SampleCache, sampling_specs
from cascode.benchmarks.synthetic import synthetic_dataset
from cascode.engine.backends.chat import compile_template, render_prompt
from cascode.engine.plans import Member, parse_plan
from cascode.engine.types import Generation, SampleSpec

CHATML = compile_template(
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class CharTokenizer:
    """A backend's text side only: the chat template, one token per character."""

    closed = False

    def render(self, spec: SampleSpec) -> str:
        return render_prompt(CHATML, spec)

    def tokenize(self, text: str) -> list[int]:
        return [ord(c) for c in text]

    def close(self) -> None:
        self.closed = True


def _old_record(cache: SampleCache, problem) -> None:  # type: ignore[no-untyped-def]
    # As sampled before the backend recorded the tokens it evaluated.
    solution = Generation("    return x + 1\n", 300, 5, 0.3, 0.1)
    test = Generation("1) == 2\n", 320, 4, 0.3, 0.1)
    cache.put(problem, [[solution], [test], [solution], [test]], 1.0)


def test_an_old_record_is_counted_once_with_the_tokenizer(tmp_path: Path) -> None:
    member = Member("small", "llama_cpp", "/models/small.gguf")
    cache = SampleCache(tmp_path, member, "sha256:abc", 1)
    problem = synthetic_dataset(1).problems[0]
    _old_record(cache, problem)
    assert cache.uncounted([problem]) == [problem]
    assert cache.get(problem).test_prompt_tokens == 320  # the whole test prompt, until counted

    cache.count_prompts(CharTokenizer(), [problem])
    solution, test, *_ = sampling_specs(problem.task, 1)
    a, b = render_prompt(CHATML, solution), render_prompt(CHATML, test)
    shared = next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
    assert shared > len(problem.task.prompt)  # the user turn opens with the code
    assert cache.get(problem).test_prompt_tokens == len(b) - shared
    assert cache.uncounted([problem]) == []
    # Stored beside the caches: another process reads the count back.
    again = SampleCache(tmp_path, member, "sha256:abc", 1)
    assert again.get(problem).test_prompt_tokens == len(b) - shared
    assert again.get(problem).greedy_test.prompt_tokens == 320  # the record itself unchanged


def test_calibration_counts_what_it_can_and_offline_charges_the_whole_prompt(
        tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    plan = parse_plan(
        "family:\n  - {name: small, backend: llama_cpp, model: /models/small.gguf}\n"
        "tiers:\n  one: {theta: 0.5, stages: {small: {k: 1, l: 2}}}\n")
    dataset = synthetic_dataset(2)
    cache = SampleCache(tmp_path, plan.family[0], "sha256:abc", 1)
    for p in dataset.problems:
        _old_record(cache, p)
    tokenizer = CharTokenizer()
    cal._count_prompts(plan.family[0], cache, dataset, lambda m: tokenizer, generate=False)
    assert len(cache.uncounted(dataset.problems)) == 2 and "2 cached problems" in caplog.text
    cal._count_prompts(plan.family[0], cache, dataset, lambda m: tokenizer, generate=True)
    assert cache.uncounted(dataset.problems) == [] and tokenizer.closed
    # A remote member has no tokenizer here: left as it is.
    remote = attrs.evolve(plan.family[0], backend="openai")
    other = SampleCache(tmp_path / "remote", remote, "spec:x", 1)
    _old_record(other, dataset.problems[0])
    cal._count_prompts(remote, other, dataset, lambda m: tokenizer, generate=True)
    assert other.uncounted(dataset.problems) == [dataset.problems[0]]
