"""The sampling cache (docs/method.md 4.2): once per member and problem, the greedy
solution, the greedy test, N sampled solutions and N sampled tests, generated
in one batched call, with the tokens and seconds of every item.

Records are keyed by the member's model fingerprint (the model file's sha256),
the four sampling specs (prompt messages, prefix, n, token limits, temperature,
top-p, seed, stop rule) and the prompt-template version: anything that changes
the generations changes the key; the package version does not.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cascode.engine.backends import in_model_server
from cascode.engine.backends.chat import shared_prefix
from cascode.engine.hardware import hardware
from cascode.engine.plans import Member
from cascode.engine.prompts import (
    MAX_ASSERTS,
    PROMPT_TEMPLATE_VERSION,
    solution_spec,
    unit_test_spec,
)
from cascode.engine.types import Backend, Generation, SampleSpec, Task

from .datasets import Dataset, Problem
from .store import RecordStore, digest


def sampling_specs(task: Task, n: int, seed: int = 0,
                   template: int = PROMPT_TEMPLATE_VERSION) -> list[SampleSpec]:
    """The one batched call per problem: greedy solution, greedy test (up to
    MAX_ASSERTS asserts), n sampled solutions, n sampled tests."""
    return [
        solution_spec(task, 1, sampled=False, template=template),
        unit_test_spec(task, 1, MAX_ASSERTS, sampled=False, template=template),
        solution_spec(task, n, sampled=True, seed=seed, template=template),
        unit_test_spec(task, n, MAX_ASSERTS, sampled=True, seed=seed, template=template),
    ]


def spec_fingerprint(spec: SampleSpec) -> dict[str, Any]:
    stop = spec.stop
    return {
        "messages": [[m.role, m.content] for m in spec.messages],
        "prefix": spec.prefix,
        "n": spec.n,
        "max_tokens": spec.max_tokens,
        "temperature": spec.temperature,
        "top_p": spec.top_p,
        "seed": spec.seed,
        "stop": [type(stop).__name__, repr(stop)],
    }


def sample_key(model_fingerprint: str, task: Task, n: int, seed: int = 0,
               template: int = PROMPT_TEMPLATE_VERSION) -> str:
    return digest(
        {
            "model": model_fingerprint,
            "template": template,
            "specs": [spec_fingerprint(s) for s in sampling_specs(task, n, seed, template)],
        }
    )


def member_fingerprint(member: Member) -> str:
    """What identifies a member's outputs: its model file's sha256 when it has a
    file, otherwise its backend, model name and options (remote endpoints)."""
    if member.backend in ("llama_cpp", "transformers"):
        from cascode.engine.models import file_sha256, resolve_model_file

        is_file = member.model.startswith("embedded:") or Path(member.model).expanduser().is_file()
        if is_file:
            return "sha256:" + file_sha256(resolve_model_file(member.model))
    return "spec:" + digest(
        {"backend": member.backend, "model": member.model, "options": dict(member.options)}
    )


def resolve_fingerprint(member: Member, out_dir: Path, recorded: dict[str, str]) -> str:
    """The member's fingerprint; when its model file is not here (regenerating
    from committed caches), the one a plan recorded, or the only one cached."""
    from cascode.engine.errors import ModelError

    try:
        return member_fingerprint(member)
    except ModelError as e:
        if member.name in recorded:
            return recorded[member.name]
        store = RecordStore(out_dir / "samples" / member.name)
        models = {str(r.get("model")) for r in store.records.values()}
        if len(models) == 1:
            return models.pop()
        raise ModelError(f"{member.name}: {e}; its caches in {out_dir} cannot stand in") from None


def generation_to_dict(g: Generation) -> dict[str, Any]:
    d = dataclasses.asdict(g)
    d["token_ends"] = list(g.token_ends)
    return d


def generation_from_dict(d: dict[str, Any]) -> Generation:
    return Generation(
        text=d["text"],
        prompt_tokens=int(d["prompt_tokens"]),
        generated_tokens=int(d["generated_tokens"]),
        prompt_seconds=float(d["prompt_seconds"]),
        decode_seconds=float(d["decode_seconds"]),
        token_ends=tuple(d.get("token_ends") or ()),
        finish_reason=d.get("finish_reason", "stop"),
        prompt_tokens_evaluated=d.get("prompt_tokens_evaluated"),
    )


@dataclasses.dataclass(frozen=True)
class Samples:
    """The cached generations of one member for one problem."""

    greedy_solution: Generation
    greedy_test: Generation
    solutions: tuple[Generation, ...]
    tests: tuple[Generation, ...]
    created: str
    hardware: str

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> Samples:
        return cls(
            generation_from_dict(r["greedy_solution"]),
            generation_from_dict(r["greedy_test"]),
            tuple(generation_from_dict(g) for g in r["solutions"]),
            tuple(generation_from_dict(g) for g in r["tests"]),
            r.get("created", ""),
            r.get("hardware", ""),
        )

    @property
    def all_solutions(self) -> tuple[Generation, ...]:
        """Index 0 is the greedy solution, 1..N the sampled ones."""
        return (self.greedy_solution, *self.solutions)

    @property
    def all_tests(self) -> tuple[Generation, ...]:
        return (self.greedy_test, *self.tests)

    @property
    def test_prompt_tokens(self) -> int:
        """Prompt tokens a stage's test prompt adds to its solution prompt: the tokens
        the backend evaluated for it after the solution prompt (the two share their
        opening), or its whole length in caches sampled before that was recorded."""
        return self.greedy_test.prompt_tokens_charged


class PromptCounts:
    """For records sampled before the backend recorded the prompt tokens it evaluated:
    how many of a stage's test prompt tokens it evaluates after the solution prompt,
    counted with the member's tokenizer (`DIR/prompts/<member>`, keyed by the sample
    key). The simulator charges a stage's prompts by the tokens evaluated."""

    def __init__(self, out_dir: Path, member_name: str) -> None:
        self.store = RecordStore(out_dir / "prompts" / member_name)

    def get(self, key: str) -> int | None:
        record = self.store.get(key)
        return None if record is None else int(record["test_prompt_tokens_evaluated"])

    def put(self, key: str, task_id: str, evaluated: int) -> None:
        self.store.append({"key": key, "task_id": task_id,
                           "test_prompt_tokens_evaluated": evaluated})


class SampleCache:
    """One member's sampling cache in `DIR/samples/<member>`, for one prompt template
    (records of other templates stay in the files, under other keys)."""

    def __init__(self, out_dir: Path, member: Member, fingerprint: str, n: int, seed: int = 0,
                 template: int = PROMPT_TEMPLATE_VERSION):
        self.store = RecordStore(out_dir / "samples" / member.name)
        self.counts = PromptCounts(out_dir, member.name)
        self.member = member
        self.fingerprint = fingerprint
        self.n = n
        self.seed = seed
        self.template = template

    def key(self, problem: Problem) -> str:
        return sample_key(self.fingerprint, problem.task, self.n, self.seed, self.template)

    def get(self, problem: Problem) -> Samples | None:
        key = self.key(problem)
        record = self.store.get(key)
        if not record:
            return None
        samples = Samples.from_record(record)
        if samples.greedy_test.prompt_tokens_evaluated is None:
            counted = self.counts.get(key)
            if counted is not None:
                test = dataclasses.replace(samples.greedy_test,
                                           prompt_tokens_evaluated=counted)
                samples = dataclasses.replace(samples, greedy_test=test)
        return samples

    def uncounted(self, problems: Sequence[Problem]) -> list[Problem]:
        """Problems whose cached record does not say how many of its test prompt's tokens
        a stage evaluates (sampled before the backend recorded it), nor the counts store."""
        return [p for p in problems
                if (s := self.get(p)) is not None and s.greedy_test.prompt_tokens_evaluated is None]

    def count_prompts(self, backend: Any, problems: Sequence[Problem]) -> int:
        """Count, with the member's own tokenizer, the test prompt tokens a stage
        evaluates after its solution prompt (the backend copies the prefix the two
        share), for `problems`; returns how many were counted."""
        for p in problems:
            solution, test, *_ = sampling_specs(p.task, self.n, self.seed, self.template)
            a = backend.tokenize(backend.render(solution))
            b = backend.tokenize(backend.render(test))
            # The backend evaluates at least one token of a prompt (its logits).
            shared = min(shared_prefix(a, b), len(b) - 1)
            self.counts.put(self.key(p), p.task_id, len(b) - shared)
        return len(problems)

    def missing(self, problems: Sequence[Problem]) -> list[Problem]:
        return [p for p in problems if self.key(p) not in self.store]

    def put(self, problem: Problem, groups: list[list[Generation]], seconds: float) -> None:
        if [len(g) for g in groups] != [1, 1, self.n, self.n]:
            raise ValueError(f"backend returned {[len(g) for g in groups]} generations")
        self.store.append(
            {
                "key": self.key(problem),
                "task_id": problem.task_id,
                "member": self.member.name,
                "model": self.fingerprint,
                "template": self.template,
                "samples": self.n,
                "seed": self.seed,
                "greedy_solution": generation_to_dict(groups[0][0]),
                "greedy_test": generation_to_dict(groups[1][0]),
                "solutions": [generation_to_dict(g) for g in groups[2]],
                "tests": [generation_to_dict(g) for g in groups[3]],
                "wall_seconds": round(seconds, 3),
                "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "hardware": hardware(),
                "runs_in": runs_in(self.member),
            }
        )


def runs_in(member: Member) -> str:
    """Where the member's model ran, as a sample record says (not part of its key: the
    same model file gives the same answers up to near-ties, docs/backends.md)."""
    if member.backend == "llama_cpp":
        return "model server" if in_model_server(member) else "in process"
    return "in process" if member.backend == "transformers" else "remote server"


def sample_member(
    cache: SampleCache,
    backend: Backend,
    dataset: Dataset,
    *,
    concurrency: int = 1,
    progress: bool = True,
    on_sampled: Callable[[Problem], None] | None = None,
) -> int:
    """Generate every missing record of one member; returns how many were generated.

    Each record is written before the next problem starts, so a killed run
    loses at most the problems in flight. `concurrency` > 1 keeps several
    problems in flight (for remote endpoints).
    """
    todo = cache.missing(dataset.problems)
    if not todo:
        return 0
    from tqdm import tqdm

    bar = tqdm(
        total=len(dataset.problems),
        initial=len(dataset.problems) - len(todo),
        desc=f"sampling {cache.member.name}",
        unit="problem",
        disable=not progress,
        dynamic_ncols=True,
    )
    lock = threading.Lock()

    def one(problem: Problem) -> None:
        start = time.perf_counter()
        groups = backend.sample(sampling_specs(problem.task, cache.n, cache.seed, cache.template))
        with lock:
            cache.put(problem, groups, time.perf_counter() - start)
            bar.update(1)
        if on_sampled:
            on_sampled(problem)

    try:
        if concurrency <= 1:
            for problem in todo:
                one(problem)
        else:
            with ThreadPoolExecutor(concurrency) as pool:
                for future in [pool.submit(one, p) for p in todo]:
                    future.result()
    finally:
        bar.close()
    return len(todo)
