"""How an answer was reached, as plain data (the `cascode.lastAnswer` shape) and Markdown.

Pure functions over the engine's `Result`; the shape is documented in
docs/protocol.md.
"""

from __future__ import annotations

from typing import Any

from cascode.engine.evidence import Evidence, label
from cascode.engine.proof import proof
from cascode.engine.types import Escalating, Event, Executing, Finished, Result, StageStarted


def examples(result: Result) -> list[dict[str, Any]]:
    """The example lines the answer was checked against, each with the answer's verdict.

    `passed` is the answering stage's best solution's verdict on that line (False
    when the stage did not run the examples).
    """
    stage = result.accepted_stage
    row = stage.example_matrix[stage.best] if stage.example_matrix else ()
    return [
        {"text": e.text, "origin": e.origin, "passed": bool(row[i]) if i < len(row) else False}
        for i, e in enumerate(result.examples)
    ]


def provenance(
    result: Result, *, answer_id: str, uri: str, function: str, cached: bool = False,
    evidence: Evidence | None = None,
) -> dict[str, Any]:
    """`evidence`: the plan's measured rates, which decide the label's state."""
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
        "load": result.load or None,  # why another tier than the one chosen ran
        "proof": proof(result),
        "label": label(result, evidence).to_json(),
        "examples": examples(result),
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
                "promptTokens": s.prompt_tokens,
                # What the member evaluated: less when its prompt cache held the opening.
                "promptTokensEvaluated": s.prompt_tokens_evaluated,
                "seconds": round(s.seconds, 3),
            }
            for s in result.stages
        ],
    }


def markdown(prov: dict[str, Any]) -> str:
    """The completion item's documentation: what proved the answer first."""
    lines = [f"**{_proof_line(prov)}**"]
    stated = (prov.get("label") or {}).get("text")
    if stated and prov["verified"]:
        lines.append(f"\n{stated[0].upper() + stated[1:]}.")
    lines.append(f"\ncascode · tier `{prov['tier']}` · answered by `{prov['member']}`")
    if prov.get("load"):
        lines.append(f"\n_{prov['load'][0].upper() + prov['load'][1:]}._")
    if prov["verified"] and prov["asserts"]:
        lines.append(f"\nScore {prov['score']} against threshold {prov['threshold']:g}.")
    examples = prov.get("examples") or []
    if examples:
        lines.append(f"\nYour example{'' if len(examples) == 1 else 's'}:")
        # Which lines failed is told when some passed; when none did, the proof
        # line says why (failed them all, or never ran them).
        mark_failed = any(e["passed"] for e in examples)
        rows = []
        for e in examples:
            notes = [] if e["passed"] or not mark_failed else ["failed"]
            if e["origin"] != "docstring":
                notes.append(e["origin"])
            rows.append(e["text"] + (f"  # {'; '.join(notes)}" if notes else ""))
        lines.append("\n```python\n" + "\n".join(rows) + "\n```")
    if prov["asserts"]:
        n = len(prov["asserts"])
        lines.append(f"\nGenerated assert{'' if n == 1 else 's'} passed:")
        lines.append("\n```python\n" + "\n".join(prov["asserts"]) + "\n```")
    cost = f"{prov['tokens']} tokens, {prov['seconds']:.2f} s"
    if len(prov["stages"]) > 1:
        path = " → ".join(s["member"] for s in prov["stages"])
        cost += f" ({path})"
    if prov.get("cached"):
        cost += ", from cache"
    lines.append(f"\n{cost}")
    return "\n".join(lines)


def _proof_line(prov: dict[str, Any]) -> str:
    text = prov.get("proof")
    if text:
        return str(text[0].upper() + text[1:])
    return "Verified" if prov["verified"] else "Unverified"


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
