"""How an answer was reached, as plain data (the `cascode.lastAnswer` shape) and Markdown.

Pure functions over the engine's `Result`; the shape is documented in
docs/protocol.md.
"""

from __future__ import annotations

from typing import Any

from cascode.engine.types import Escalating, Event, Executing, Finished, Result, StageStarted


def provenance(
    result: Result, *, answer_id: str, uri: str, function: str, cached: bool = False
) -> dict[str, Any]:
    stage = result.accepted_stage
    return {
        "id": answer_id,
        "uri": uri,
        "function": function,
        "member": result.member,
        "tier": result.tier,
        "score": stage.best_score,
        "threshold": round(stage.threshold, 3),
        "verified": result.verified,
        "note": result.note,
        "asserts": list(stage.passed_tests),
        "tokens": result.generated_tokens,
        "promptTokens": result.prompt_tokens,
        "seconds": round(result.seconds, 3),
        "cached": cached,
        "accepted": False,
        "code": result.code,
        "stages": [
            {
                "member": s.member,
                "k": s.k,
                "l": s.l,
                "tests": s.n_tests,
                "score": s.best_score,
                "threshold": round(s.threshold, 3),
                "accepted": s.accepted,
                "verified": s.verified,
                "tokens": s.generated_tokens,
                "seconds": round(s.seconds, 3),
            }
            for s in result.stages
        ],
    }


def markdown(prov: dict[str, Any]) -> str:
    """The completion item's documentation."""
    lines = [f"**cascode** · tier `{prov['tier']}` · answered by `{prov['member']}`"]
    if prov["verified"]:
        lines.append(
            f"\nScore {prov['score']} against threshold {prov['threshold']:g}: "
            f"passed {len(prov['asserts'])} generated assert(s)."
        )
    else:
        lines.append(f"\n**Unverified**: {prov['note'] or 'the answer was not tested'}.")
    if prov["asserts"]:
        lines.append("\n```python\n" + "\n".join(prov["asserts"]) + "\n```")
    cost = f"{prov['tokens']} tokens, {prov['seconds']:.2f} s"
    if len(prov["stages"]) > 1:
        path = " → ".join(s["member"] for s in prov["stages"])
        cost += f" ({path})"
    if prov.get("cached"):
        cost += ", from cache"
    lines.append(f"\n{cost}")
    return "\n".join(lines)


def event_message(event: Event) -> str | None:
    """The work-done progress message for a cascade event (None for the end)."""
    if isinstance(event, StageStarted):
        if event.k == 0:
            return f"{event.member}: 1 solution, no tests"
        plural = "" if event.k == 1 else "s"
        return f"{event.member}: {event.k} solution{plural}, {event.k} test{plural}"
    if isinstance(event, Executing):
        n = event.n_solutions * event.n_tests
        return f"running {n} assert{'' if n == 1 else 's'}"
    if isinstance(event, Escalating):
        return f"escalating to {event.to_member}"
    if isinstance(event, Finished):
        return None
    return None


def finished_message(result: Result, cached: bool) -> str:
    if cached:
        return f"{result.member} answered (from cache)"
    return f"{result.member} answered in {result.seconds:.2f} s"
