"""What proved an answer, in words: the label the CLI, the server and both editors show.

"passed your 3 examples", "passed 2 examples from tests/test_dates.py",
"passed your 3 examples and 7 of 8 generated asserts", "7 of 8 generated asserts",
or "unverified: ..." with the cascade's note.
"""

from __future__ import annotations

from collections import Counter

from .types import Result


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def examples_phrase(result: Result) -> str:
    """ "your 3 examples and 2 from tests/test_x.py" (empty without examples)."""
    by_origin = Counter(e.origin for e in result.examples)
    parts = []
    if by_origin.get("docstring"):
        parts.append("your " + _plural(by_origin.pop("docstring"), "example"))
    for origin, n in sorted(by_origin.items()):
        parts.append(f"{n} from {origin}" if parts else
                     f"{_plural(n, 'example')} from {origin}")
    return " and ".join(parts)


def proof(result: Result) -> str:
    """One line: what the answer rests on."""
    if not result.verified:
        return f"unverified: {result.note or 'the answer was not tested'}"
    stage = result.accepted_stage
    tests = ""
    if stage.n_tests:
        tests = f"{len(stage.passed_tests)} of {stage.n_tests} generated asserts"
    if result.examples:
        head = "passed " + examples_phrase(result)
        return f"{head} and {tests}" if tests else head
    return tests or "verified"
