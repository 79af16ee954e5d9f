"""Does the model server give the greedy answers the calibration committed, and does
speculative decoding change them?

    python -m cascode.benchmarks.server_identity [--members qwen-0.5b,qwen-1.5b]
        [--problems 164 | --tasks HumanEval/17,...] [--passes in_process,server,speculative]
        [--speculative qwen-1.5b=embedded:qwen2.5-coder-0.5b-instruct-q4_k_m] [--json OUT]

For each member of the shipped plan and each HumanEval problem (the first
`--problems`), the greedy solution is generated alone, with its whole prompt
evaluated (prompt caches off), in up to three passes (`--passes`): in this process
(the llama.cpp binding); through the machine's model server (`model_server: true`,
llama.cpp's own server built from the same source); and through a model server
started with speculative decoding (`--speculative MEMBER=HOW`: `ngram`, or a draft
model). Each is compared with the greedy solution in the committed calibration cache
(`benchmarks/results/humaneval/samples`), which was generated in one batch with the
problem's greedy test and sampled items, on the machine the plan names; the
speculative pass also with the plain server pass. A difference from the committed
answer where the passes here agree is a near-tie of two tokens that falls the other
way on another CPU or in another batch; a difference between the plain and the
speculative server is what speculation changes. The speculative pass also records
the server's draft counts (tokens drafted and accepted) and the seconds of each pass.

The passes run one after the other (never two model processes at once), each
server stopped after its pass. Results go to `benchmarks/results/server_identity.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

DEFAULT_OUT = Path(__file__).parent / "results" / "server_identity.json"
HUMANEVAL_OUT = Path(__file__).parent / "results" / "humaneval"
PASSES = ("in_process", "server", "speculative")


def _greedy(problem: Any, template: int) -> Any:
    from cascode.engine.prompts import solution_spec

    return solution_spec(problem.task, 1, sampled=False, template=template)


def run(members: list[str], limit: int, passes: tuple[str, ...] = PASSES,
        speculative: dict[str, str] | None = None,
        save: Callable[[dict[str, Any]], None] | None = None,
        tasks: list[str] | None = None) -> dict[str, Any]:
    """The rows per member; `save` gets the rows so far after each problem, so a run
    cut short keeps what it measured."""
    from cascode.engine.backends.llama_cpp import LlamaCppBackend
    from cascode.engine.backends.llama_server import LlamaServerBackend
    from cascode.engine.plans import load_plan

    from .datasets import load_dataset
    from .sampling import SampleCache, resolve_fingerprint

    plan = load_plan(None)
    dataset = load_dataset("humaneval")
    problems = list(dataset.problems)[:limit]
    if tasks:
        known = {p.task_id: p for p in dataset.problems}
        unknown = [t for t in tasks if t not in known]
        if unknown:
            raise SystemExit(f"--tasks: no such HumanEval problem: {', '.join(unknown)}")
        problems = [known[t] for t in tasks]
    template = plan.template or 2
    out: dict[str, Any] = {}
    for name in members:
        member = plan.member(name)
        calibration = dict(plan.calibration or {})
        recorded = dict(calibration.get("models") or {})
        n = int(calibration.get("samples", 10))
        cache = SampleCache(HUMANEVAL_OUT, member, resolve_fingerprint(
            member, HUMANEVAL_OUT, recorded), n, template=template)
        committed: dict[str, str] = {}
        for p in problems:
            samples = cache.get(p)
            if samples is not None:
                committed[p.task_id] = samples.greedy_solution.text
        texts: dict[str, dict[str, str]] = {where: {} for where in PASSES}
        seconds: dict[str, float] = {}
        drafted: dict[str, float] = {}
        for where in passes:
            options = {**dict(member.options), "model_server": True, "prefix_cache": False}
            if where == "speculative":
                if not (speculative or {}).get(name):
                    continue
                options["speculative"] = (speculative or {})[name]
            served = attrs.evolve(member, options=options)
            backend: Any = (LlamaCppBackend.from_member(member) if where == "in_process"
                            else LlamaServerBackend.from_member(served))
            backend.prefix_cache = False
            t0 = time.perf_counter()
            try:
                for i, p in enumerate(problems):
                    [[g]] = backend.sample([_greedy(p, template)])
                    texts[where][p.task_id] = g.text
                    seconds[where] = round(time.perf_counter() - t0, 1)
                    print(f"{name} {where} {i + 1}/{len(problems)}", file=sys.stderr,
                          flush=True)
                    if where == "speculative":
                        drafted = _spec_counts(backend)
                    out[name] = _row(texts, committed, seconds, drafted,
                                     (speculative or {}).get(name))
                    if save is not None:
                        save(out)
            finally:
                backend.close()
                if where != "in_process":
                    from cascode.engine import model_server

                    model_server.stop_server(backend.model_path)
    return out


def _row(texts: dict[str, dict[str, str]], committed: dict[str, str],
         seconds: dict[str, float], drafted: dict[str, float], how: str | None
         ) -> dict[str, Any]:
    """The counts over the problems every pass run so far has answered."""
    done = [w for w in PASSES if texts[w]]
    ids = [t for t in committed if all(t in texts[w] for w in done)]
    ip, sv, sp = texts["in_process"], texts["server"], texts["speculative"]
    row: dict[str, Any] = {"problems": len(ids), "seconds": dict(seconds),
                           "seconds_per_problem": {
                               w: round(seconds[w] / len(texts[w]), 2) for w in done}}
    if sp:
        row["speculative"] = how
        base = sv or ip
        if base:
            row["speculative_equals_plain"] = sum(sp[t] == base[t] for t in ids)
            row["differ_speculative_plain"] = [t for t in ids if sp[t] != base[t]]
        row["speculative_equals_committed"] = sum(sp[t] == committed[t] for t in ids)
        row["drafts"] = drafted
    if ip:
        row["in_process_equals_committed"] = sum(ip[t] == committed[t] for t in ids)
        row["differ_in_process_committed"] = [t for t in ids if ip[t] != committed[t]]
    if sv:
        row["server_equals_committed"] = sum(sv[t] == committed[t] for t in ids)
        row["differ_server_committed"] = [t for t in ids if sv[t] != committed[t]]
    if ip and sv:
        row["server_equals_in_process"] = sum(sv[t] == ip[t] for t in ids)
        row["differ_server_in_process"] = [t for t in ids if sv[t] != ip[t]]
    # Where any two differ, every answer, so the divergence can be looked at.
    differ = sorted({t for k, v in row.items() if k.startswith("differ_") for t in v})
    row["answers_where_they_differ"] = {
        t: {"committed": committed[t], **{w: texts[w][t] for w in done}} for t in differ}
    return row


def margins(path: Path, member_names: list[str] | None = None) -> dict[str, Any]:
    """Where two answers to one greedy prompt differ, how close the model was to a tie
    there: the prompt and the answers' shared opening evaluated in this process, and
    the logits of the two first tokens that differ (the first answer's minus the
    second's, and each token's rank). A near-zero gap is a near-tie that another
    kernel's rounding (a batch, another CPU) can flip; a large one would be a bug."""
    from llama_cpp import Llama

    from cascode.engine.backends.llama_cpp import LlamaCppBackend
    from cascode.engine.plans import load_plan

    from .datasets import load_dataset

    data = json.loads(path.read_text())
    plan = load_plan(None)
    template = plan.template or 2
    problems = {p.task_id: p for p in load_dataset("humaneval").problems}
    found: dict[str, Any] = {}
    for name, row in data["results"].items():
        answers = row.get("answers_where_they_differ") or {}
        if member_names and name not in member_names or not answers:
            continue
        backend = LlamaCppBackend.from_member(plan.member(name))
        try:
            prompts = {t: backend.render(_greedy(problems[t], template)) for t in answers}
            model_path = str(backend.model_path)
        finally:
            backend.close()
        llm = Llama(model_path=model_path, n_ctx=4096, n_batch=512, verbose=False,
                    n_threads=len(os.sched_getaffinity(0)))
        rows = []
        for t, texts in answers.items():
            # Each answer tokenized once, after the prompt as the model saw it.
            prompt = llm.tokenize(prompts[t].encode(), add_bos=False, special=True)
            tokens = {k: llm.tokenize((prompts[t] + v).encode(), add_bos=False, special=True)
                      for k, v in texts.items()}
            for a, b in (("server", "speculative"), ("server", "committed"),
                         ("speculative", "committed")):
                if a not in texts or b not in texts or texts[a] == texts[b]:
                    continue
                ta, tb = tokens[a], tokens[b]
                i = parting(ta, tb)
                if i is None or i < len(prompt):
                    rows.append({"task": t, "pair": f"{a} / {b}",
                                 "note": "one answer is the other's opening"})
                    continue
                logits = logits_after(llm, ta[:i])
                order = sorted(range(len(logits)), key=lambda k: -float(logits[k]))
                rows.append({
                    "task": t, "pair": f"{a} / {b}", "answer_token": i - len(prompt),
                    "gap": round(float(logits[ta[i]]) - float(logits[tb[i]]), 4),
                    "ranks": [order.index(ta[i]) + 1, order.index(tb[i]) + 1],
                    "tokens": [llm.detokenize([ta[i]]).decode(errors="replace"),
                               llm.detokenize([tb[i]]).decode(errors="replace")]})
        del llm
        found[name] = rows
    return found


def parting(ta: list[int], tb: list[int]) -> int | None:
    """The first index where two token sequences differ; None when one is the other's
    opening."""
    i = next((j for j, (x, y) in enumerate(zip(ta, tb, strict=False)) if x != y),
             min(len(ta), len(tb)))
    return i if i < min(len(ta), len(tb)) else None


def logits_after(llm: Any, tokens: list[int]) -> Any:
    """The next-token logits after `tokens`, evaluated from scratch in `llm` (a
    llama_cpp.Llama): a numpy array over the vocabulary."""
    import numpy as np

    llm.reset()
    llm.eval(tokens)
    return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).copy()


def judge(path: Path) -> dict[str, dict[str, int]]:
    """How many of the answers where the passes differ pass HumanEval's hidden tests,
    per pass: whether the differences change pass@1."""
    from cascode.engine.prompts import solution_text
    from cascode.engine.sandbox import create_sandbox
    from cascode.engine.types import Verdict

    from .datasets import load_dataset

    data = json.loads(path.read_text())
    problems = {p.task_id: p for p in load_dataset("humaneval").problems}
    sandbox = create_sandbox(required=True)
    passed: dict[str, dict[str, int]] = {}
    try:
        for name, row in data["results"].items():
            counts: dict[str, int] = {}
            for t, texts in (row.get("answers_where_they_differ") or {}).items():
                p = problems[t]
                for where, text in texts.items():
                    verdict = sandbox.run_program(p.program(solution_text(p.task, text)))
                    counts[where] = counts.get(where, 0) + int(verdict == Verdict.PASSED)
            passed[name] = counts
    finally:
        sandbox.close()
    return passed


def _spec_counts(backend: Any) -> dict[str, float]:
    """The server's draft counts (`/metrics`): tokens drafted and accepted."""
    from cascode.engine.load import parse_metrics

    ep = backend.endpoint()
    _, data = backend._fetch(ep, "/metrics", 10.0)
    m = parse_metrics(data.decode())
    return {"drafted": m.get("llamacpp:spec_decode_num_draft_tokens_total", 0.0),
            "accepted": m.get("llamacpp:spec_decode_num_accepted_tokens_total", 0.0)}


def table(results: dict[str, Any]) -> str:
    from .tables import markdown_table

    def seconds(r: dict[str, Any]) -> str:
        return " / ".join(str(r["seconds"].get(w, "-")) for w in PASSES)

    return markdown_table(
        ["member", "problems", "in-process = committed", "server = committed",
         "server = in-process", "speculative = plain", "speculative = committed",
         "seconds in-process / server / speculative", "drafted tokens accepted"],
        [[name, r["problems"], r.get("in_process_equals_committed"),
          r.get("server_equals_committed"), r.get("server_equals_in_process"),
          r.get("speculative_equals_plain"), r.get("speculative_equals_committed"),
          seconds(r),
          f"{int(r['drafts']['accepted'])} of {int(r['drafts']['drafted'])}"
          if r.get("drafts") else None] for name, r in results.items()])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cascode.benchmarks.server_identity",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", default="qwen-0.5b,qwen-1.5b")
    parser.add_argument("--problems", type=int, default=164)
    parser.add_argument("--passes", default=",".join(PASSES),
                        help="in_process, server, speculative (default all)")
    parser.add_argument("--speculative", action="append", default=[], metavar="MEMBER=HOW",
                        help="the speculative pass of MEMBER: `ngram` or a draft model "
                             "(a path or embedded:NAME); repeatable")
    parser.add_argument("--json", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--tasks", default="",
                        help="only these problems (task ids, comma-separated), e.g. the ones "
                             "an earlier run found different")
    parser.add_argument("--margins", action="store_true",
                        help="no generation: for each pair of answers in --json that differ, "
                             "the logit gap where they part (in this process)")
    parser.add_argument("--merge", action="store_true",
                        help="keep the rows of other members already in --json (a run of "
                             "one member at a time)")
    args = parser.parse_args(argv)
    from cascode.engine.hardware import hardware

    if args.margins:
        data = json.loads(args.json.read_text())
        found = margins(args.json, [m for m in args.members.split(",") if m])
        for name, rows in found.items():
            data["results"][name]["margins"] = rows
            gaps = sorted(abs(r["gap"]) for r in rows if "gap" in r)
            print(f"{name}: {len(gaps)} divergences, |logit gap| "
                  + (f"median {gaps[len(gaps) // 2]}, largest {gaps[-1]}" if gaps else "-"))
        for name, counts in judge(args.json).items():
            if name in found:
                n = len(data["results"][name].get("answers_where_they_differ") or {})
                data["results"][name]["differing_answers_passing"] = {**counts, "of": n}
                print(f"{name}: of the {n} problems where answers differ, passing: "
                      + ", ".join(f"{w} {c}" for w, c in counts.items()))
        args.json.write_text(json.dumps(data, indent=1) + "\n")
        print(f"wrote {args.json}")
        return 0

    passes = tuple(p for p in args.passes.split(",") if p)
    if not passes or set(passes) - set(PASSES):
        parser.error(f"--passes: some of {', '.join(PASSES)}")
    speculative = dict(x.split("=", 1) for x in args.speculative)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    kept: dict[str, Any] = {}
    if args.merge and args.json.exists():
        kept = json.loads(args.json.read_text()).get("results", {})

    def save(results: dict[str, Any]) -> None:
        args.json.write_text(json.dumps({
            "benchmark": "server_identity",
            "machine": hardware(),
            "passes": list(passes), "speculative": speculative,
            "results": {**kept, **results},
        }, indent=1) + "\n")

    results = run([m for m in args.members.split(",") if m], args.problems, passes,
                  speculative, save, [t for t in args.tasks.split(",") if t])
    save(results)
    print(table({**kept, **results}))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
