import assert from "node:assert/strict";
import { test } from "node:test";

import {
  answerAsserts,
  assertsAsTest,
  formatProvenance,
  missingAsserts,
  statusText,
  tierItems,
} from "../src/provenance";

test("status text names the state's icon and the tier", () => {
  assert.equal(statusText("ready", "balanced"), "$(beaker) cascode: balanced");
  assert.equal(statusText("loading", null), "$(loading~spin) cascode: ?");
});

test("provenance names member, tier, score, threshold and the asserts", () => {
  const md = formatProvenance({
    member: "qwen2.5-coder-0.5b",
    tier: "fast",
    score: 0.6667,
    threshold: 0.5,
    verified: true,
    asserts: ["assert add(1, 2) == 3", "assert add(0, 0) == 0"],
    tokens: 120,
    seconds: 2.25,
    stages: [{ member: "qwen2.5-coder-0.5b", score: 0.6667, threshold: 0.5 }],
  });
  assert.match(md, /\*\*qwen2\.5-coder-0\.5b\*\* answered on tier \*\*fast\*\* \(verified\)\n\n- passed 2 generated asserts\n/);
  assert.match(md, /score 0\.67 against threshold 0\.50/);
  assert.match(md, /120 tokens, 2\.3 s/);
  assert.match(md, /Passed 2 generated asserts/);
  assert.match(md, /```python\nassert add\(1, 2\) == 3\nassert add\(0, 0\) == 0\n```/);
});

test("an unverified answer says so and a cascade shows its stages", () => {
  const md = formatProvenance({
    member: "1.5b",
    tier: "best",
    verified: false,
    note: "sandbox unavailable",
    stages: [
      { member: "0.5b", score: 0.2, threshold: 0.5 },
      { member: "1.5b", score: null, threshold: null },
    ],
  });
  assert.match(md, /\*\*unverified\*\*/);
  assert.match(md, /sandbox unavailable/);
  assert.match(md, /stages: 0\.5b \(0\.20\/0\.50\) → 1\.5b \(n\/a\/n\/a\)/);
  assert.match(formatProvenance(null), /No answer yet/);
  assert.match(
    formatProvenance({ member: "m", tier: "t", function: "add", verified: true, cached: true }),
    /\*\*m\*\* answered `add` on tier \*\*t\*\* \(verified, from cache\)/,
  );
});

test("the proof line leads and the example lines are listed", () => {
  const md = formatProvenance({
    member: "m",
    tier: "t",
    function: "add",
    verified: false,
    note: "m's answer failed 1 of 2 example line(s)",
    proof: "unverified: m's answer failed 1 of 2 example line(s)",
    examples: [
      { text: "assert add(1, 2) == 3", origin: "docstring", passed: true },
      { text: "assert add(2, 2) == 5", origin: "tests/test_calc.py", passed: false },
    ],
    asserts: [],
  });
  assert.match(md, /\(\*\*unverified\*\*\)\n\n- unverified: m's answer failed 1 of 2 example line\(s\)\n/);
  assert.match(
    md,
    /Your examples:\n\n```python\nassert add\(1, 2\) == 3\nassert add\(2, 2\) == 5 {2}# failed; tests\/test_calc\.py\n```/,
  );
  assert.doesNotMatch(md, /generated assert/);
  assert.match(
    formatProvenance({ member: "m", tier: "t", verified: true, proof: "passed your 3 examples" }),
    /\n- passed your 3 examples\n/,
  );
});

test("insert asserts: the example lines, then the generated asserts, less those the document has", () => {
  const answer = {
    function: "add",
    examples: [
      { text: "assert add(1, 2) == 3", origin: "docstring", passed: true },
      { text: "add(None, 1) raises TypeError", origin: "docstring", passed: true },
      { text: "assert add(0, 0) == 0", origin: "tests/test_calc.py", passed: true },
    ],
    asserts: ["assert add(2, 2) == 4", "assert add(1,2)==3", "assert add(0, 0) == 0", "assert add(5, 5) == 10"],
  };
  const document = [
    "def add(a, b):",
    '    """Sum.\n    >>> add(1, 2)\n    3\n    """',
    "    return a + b",
    "",
    "def test_add():",
    "    assert  add(2,2) == 4",
    "",
  ].join("\n");
  const lines = answerAsserts(answer, document);
  assert.deepEqual(lines, ["assert add(1, 2) == 3", "assert add(0, 0) == 0", "assert add(5, 5) == 10"]);
  // test_add exists: the new test gets the next free name.
  assert.equal(
    assertsAsTest(lines, "", answer.function, document),
    "def test_add_2():\n    assert add(1, 2) == 3\n    assert add(0, 0) == 0\n    assert add(5, 5) == 10\n",
  );
  assert.deepEqual(answerAsserts(answer, document + "assert add(1, 2) == 3\nassert add(0, 0) == 0\nassert add(5, 5) == 10\n"), []);
  assert.deepEqual(answerAsserts(null), []);
  // Older servers send no examples: the generated asserts alone.
  assert.deepEqual(answerAsserts({ asserts: ["assert f(1) == 1"] }), ["assert f(1) == 1"]);
  // A multi-line assert is found whitespace aside, and kept indented as a whole.
  const multi = "assert add(\n    1, 2\n) == 3";
  assert.deepEqual(missingAsserts([multi], "x = 1\nassert add(1, 2) == 3\n"), []);
  assert.equal(assertsAsTest([multi], "", "add"), "def test_add():\n    assert add(\n        1, 2\n    ) == 3\n");
});

test("asserts become a test named after the function they call", () => {
  assert.equal(
    assertsAsTest(["assert is_even(2)", "  assert not is_even(3)  ", ""], "    "),
    "def test_is_even():\n        assert is_even(2)\n        assert not is_even(3)\n",
  );
  assert.equal(assertsAsTest(["assert (1 + 1) == 2"]), "def test_answer():\n    assert (1 + 1) == 2\n");
  assert.equal(assertsAsTest([]), "");
  assert.equal(assertsAsTest(["assert f(1) == 2"], "", "g"), "def test_g():\n    assert f(1) == 2\n");
});

test("tier items put the active tier first and describe the measured cost", () => {
  const items = tierItems([
    { name: "fast", description: "0.5B only", default: true, measured: { "pass@1": 0.41234, seconds: 1.5 } },
    { name: "best", description: "0.5B then 1.5B", active: true, measured: null },
  ]);
  assert.deepEqual(
    items.map((i) => i.tier),
    ["best", "fast"],
  );
  assert.equal(items[0].label, "$(check) best");
  assert.equal(items[0].description, "active");
  assert.equal(items[0].detail, "0.5B then 1.5B · not measured");
  assert.equal(items[1].description, "default");
  assert.equal(items[1].detail, "0.5B only · pass@1 0.412, seconds 1.5");
});

test("the verdict is the label's state: verified, likely with its rate, unverified", () => {
  const base = { member: "m", tier: "balanced", verified: true, proof: "3 of 3 generated asserts" };
  const likely = formatProvenance({
    ...base,
    label: {
      state: "likely",
      precision: 0.308,
      percent: 31,
      text: "likely: answers resting on own tests only were right 31% of the time (4 of 13, realcode validation split, 41 problems)",
    },
  });
  assert.match(likely, /on tier \*\*balanced\*\* \(\*likely, right 31%\*\)\n\n- 3 of 3 generated asserts\n- likely: answers resting on own tests only were right 31% of the time \(4 of 13/);
  const verified = formatProvenance({
    ...base,
    label: { state: "verified", precision: 0.94, percent: 94, text: "verified: answers resting on examples were right 94% of the time (47 of 50, x)" },
  });
  assert.match(verified, /\(verified\)\n\n- 3 of 3 generated asserts\n- verified: answers resting on examples/);
  const unmeasured = formatProvenance({ ...base, label: { state: "likely", precision: null, percent: null } });
  assert.match(unmeasured, /\(\*likely\*\)/);
  const failed = formatProvenance({ ...base, verified: false, label: { state: "unverified", text: "unverified" } });
  assert.match(failed, /\(\*\*unverified\*\*\)/);
  assert.doesNotMatch(failed, /\n- unverified\n/);
});

test("an answer from a cheaper tier says why", () => {
  const load = "server busy: qwen-1.5b 3 running, 2 waiting; fast tier (about 9 s) instead of balanced";
  const md = formatProvenance({ member: "m", tier: "fast", verified: true, load });
  assert.match(md, /on tier \*\*fast\*\*/);
  assert.ok(md.includes(`\n- ${load}`), md);
  assert.doesNotMatch(formatProvenance({ member: "m", tier: "t", verified: true, load: null }), /busy/);
});
