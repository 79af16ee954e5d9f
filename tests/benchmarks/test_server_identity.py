"""The greedy-identity benchmark's counting (benchmarks/server_identity.py) and the
Markdown tables the benchmarks share (benchmarks/tables.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cascode.benchmarks import server_identity, windows_bench
from cascode.benchmarks.tables import markdown_table


def _texts(**passes: dict[str, str]) -> dict[str, dict[str, str]]:
    return {w: dict(passes.get(w, {})) for w in server_identity.PASSES}


def test_counts_compare_the_same_problems_in_every_pass() -> None:
    committed = {"p0": "a", "p1": "b", "p2": "c"}
    # The speculative pass has answered two problems so far, one differently.
    texts = _texts(server={"p0": "a", "p1": "B", "p2": "c"},
                   speculative={"p0": "a", "p1": "b"})
    row = server_identity._row(texts, committed, {"server": 30.0, "speculative": 20.0},
                               {"drafted": 10.0, "accepted": 7.0}, "ngram")
    assert row["problems"] == 2  # a run cut short counts what every pass answered
    assert row["server_equals_committed"] == 1
    assert row["differ_server_committed"] == ["p1"]
    assert row["speculative_equals_plain"] == 1
    assert row["differ_speculative_plain"] == ["p1"]
    assert row["speculative_equals_committed"] == 2
    assert row["seconds_per_problem"] == {"server": 10.0, "speculative": 10.0}
    assert "in_process_equals_committed" not in row
    # every answer to a problem where two differ is kept, to find where they part
    assert row["answers_where_they_differ"] == {
        "p1": {"committed": "b", "server": "B", "speculative": "b"}}


def test_a_speculative_pass_alone_is_compared_with_the_committed_answers() -> None:
    texts = _texts(speculative={"p0": "a", "p1": "x"})
    row = server_identity._row(texts, {"p0": "a", "p1": "b"}, {"speculative": 4.0},
                               {}, "ngram")
    assert row["speculative_equals_committed"] == 1
    assert "speculative_equals_plain" not in row


def test_markdown_table_shows_missing_cells_and_refuses_a_ragged_row() -> None:
    text = markdown_table(["a", "b"], [[1, None], ["x", 2.5]])
    assert text.splitlines() == ["| a | b |", "|---|---|", "| 1 | - |", "| x | 2.5 |"]
    with pytest.raises(ValueError, match="3 cells under 2 columns"):
        markdown_table(["a", "b"], [[1, 2, 3]])


@pytest.mark.parametrize("module", [server_identity, windows_bench])
def test_the_committed_results_print_as_a_table(module) -> None:  # type: ignore[no-untyped-def]
    path = Path(module.__file__).parent / "results" / f"{module.__name__.rsplit('.', 1)[1]}.json"
    data = json.loads(path.read_text())
    text = module.table(data["results"] if module is server_identity else data)
    assert text.count("\n") >= 2
    if module is server_identity:
        for name, row in data["results"].items():
            assert f"| {name} | {row['problems']} |" in text
    else:
        assert f"{data['rss_total_mib']} MiB" in text
