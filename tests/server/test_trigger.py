"""The automatic-trigger rules and the debounce, as plain functions (server/trigger.py)."""

from __future__ import annotations

import pytest

from cascode.engine.context.request import lines_of, request_at
from cascode.server.trigger import Debounce, decline, declined, same_code

STUB = '''def add(a, b):
    """Return the sum of a and b."""
{body}
'''


def _why(body: str, at: tuple[int, int], **kw) -> str | None:  # type: ignore[no-untyped-def]
    source = STUB.format(body=body)
    request = request_at(source, at)
    assert request is not None, "a function to complete is there"
    options = {"automatic": True, "manual": False, "answered": ()} | kw
    return decline(lines_of(source), at, request.fc, rest=request.rest, **options)


@pytest.mark.parametrize(("body", "at", "why"), [
    ("    ", (2, 4), None),  # the body's line of a stub
    ("    ", (1, 36), None),  # the end of the docstring line
    ("    ", (0, 14), None),  # the end of the def line
    ("    ", (0, 5), "in the middle of a word"),
    ("    ", (1, 10), "in the middle of a word"),
    ("    ", (0, 7), "code right of the cursor"),
    ("    ", (1, 33), "inside a string"),  # before the docstring's closing quotes
    ("    x = 1  # note", (2, 17), "inside a comment"),
    ('    s = "abc', (2, 12), "inside a string"),
    ("    x = f(a", (2, 11), None),  # an open bracket is fine
])
def test_automatic_requests(body, at, why):
    assert _why(body, at) == why


def test_closers_right_of_the_cursor_are_fine():
    source = "def add(a, b):\n    ...\n"
    lines = lines_of(source)
    request = request_at(source, (0, 12))
    assert request is not None
    assert declined(lines, (0, 12), request.fc) is None  # `):` is typed in pairs
    assert declined(lines, (0, 13), request.fc) is None
    assert declined(lines, (0, 10), request.fc) == "code right of the cursor"  # ` b):`


def test_an_open_docstring_declines_an_automatic_request():
    source = 'def add(a, b):\n    """Return the sum of a and b.\n'
    request = request_at(source, (1, 33))
    assert request is not None
    assert declined(lines_of(source), (1, 33), request.fc) == "the docstring is still open"


def test_explicit_requests_are_never_declined():
    assert _why("    ", (0, 5), automatic=False) is None
    assert _why("    ", (2, 4), automatic=False, manual=True) is None


def test_manual_mode_declines_every_automatic_request():
    assert _why("    ", (2, 4), manual=True).startswith("manual mode")


def test_the_rest_of_an_answer_already_given_is_declined():
    body = "    return a + b"
    source = STUB.format(body=body)
    request = request_at(source, (2, 16))
    assert request is not None and request.rest
    answered = [same_code(request.fc.prompt)]
    assert _why(body, (2, 16), answered=answered) == "the function is an answer already given"
    assert _why(body, (2, 16)) is None  # not answered before: its rest may be asked for
    # Whitespace differences do not matter: the same code.
    assert same_code("def f():\n\n    return 1   \n") == same_code("def f():\n    return 1\n")


def test_debounce_adapts_to_the_typing_speed():
    d = Debounce()
    base = 150
    # The first request after a pause waits half the base.
    assert d.delay("a", base, now=0.0) == pytest.approx(0.075)
    # Typing every 100 ms: the moving average moves towards 0.1 s, times the factor.
    delays = [d.delay("a", base, now=0.1 * i) for i in range(1, 30)]
    assert delays[-1] == pytest.approx(Debounce.FACTOR * 0.1, rel=0.02)
    assert all(base / 2000 <= x <= 4 * base / 1000 for x in delays)
    # Slow typing (every 0.9 s): capped at four times the base.
    slow = Debounce()
    for i in range(10):
        last = slow.delay("a", base, now=0.9 * i)
    assert last == pytest.approx(4 * base / 1000)
    # A pause of more than a second: half the base again.
    assert d.delay("a", base, now=100.0) == pytest.approx(0.075)


def test_debounce_is_per_document_and_can_be_turned_off():
    d = Debounce()
    d.delay("a", 150, now=0.0)
    d.delay("a", 150, now=0.05)
    assert d.delay("b", 150, now=0.06) == pytest.approx(0.075)  # b's first request
    assert d.delay("a", 0, now=0.07) == 0.0
    d.forget("a")
    assert d.delay("a", 150, now=0.08) == pytest.approx(0.075)
