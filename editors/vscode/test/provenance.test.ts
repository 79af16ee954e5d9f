import assert from "node:assert/strict";
import { test } from "node:test";

import { assertsAsTest, formatProvenance, statusText, tierItems } from "../src/provenance";

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
  assert.match(md, /\*\*qwen2\.5-coder-0\.5b\*\* answered on tier \*\*fast\*\* \(verified\)/);
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
