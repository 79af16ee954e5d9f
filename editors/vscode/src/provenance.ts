// Plain functions over what the server sends (no `vscode` import), so that they
// are unit-tested with node's test runner outside an editor.

/** One stage of the cascade as the server reports it in an answer's provenance. */
export interface Stage {
  member?: string;
  score?: number | null;
  threshold?: number | null;
  accepted?: boolean;
  [key: string]: unknown;
}

/** One example line the answer was checked against (the user's own assert). */
export interface ExampleLine {
  text: string;
  /** "docstring", or the test file's path relative to the project root. */
  origin?: string;
  passed?: boolean;
}

/** What the answer's label may claim (docs/method.md 8.3): "verified" only on evidence
 * measured right at least 90% of the time; "likely" when its stage's rule was met on
 * weaker or unmeasured evidence; "unverified" otherwise. */
export interface Label {
  state: "verified" | "likely" | "unverified";
  evidence?: string | null;
  right?: number | null;
  of?: number | null;
  precision?: number | null;
  /** The rate in whole percent, as `text` states it. */
  percent?: number | null;
  measuredOn?: string | null;
  /** "likely: answers resting on own tests only were right 31% of the time (4 of 13, ...)" */
  text?: string | null;
}

/** The provenance of an answer (`cascode.lastAnswer`, `cascode/status`'s lastAnswer). */
export interface Provenance {
  id?: string;
  uri?: string;
  function?: string;
  member?: string;
  tier?: string;
  score?: number | null;
  threshold?: number | null;
  verified?: boolean;
  note?: string | null;
  /** Why another tier than the one chosen ran (a busy model server), else null. */
  load?: string | null;
  /** What proved the answer, in one line: "passed your 3 examples", "unverified: ...". */
  proof?: string | null;
  label?: Label | null;
  examples?: ExampleLine[];
  asserts?: string[];
  tokens?: number | null;
  seconds?: number | null;
  stages?: Stage[];
  cached?: boolean;
  accepted?: boolean;
}

/** One entry of `cascode.listTiers`. */
export interface Tier {
  name: string;
  description?: string;
  default?: boolean;
  active?: boolean;
  measured?: Record<string, unknown> | string | null;
}

export type ServerState = "loading" | "ready" | "busy" | "error" | "stopped" | "starting";

/** The `cascode/status` notification. */
export interface StatusParams {
  state: ServerState;
  tier?: string | null;
  message?: string | null;
  lastAnswer?: Provenance | null;
}

const ICONS: Record<ServerState, string> = {
  starting: "$(loading~spin)",
  loading: "$(loading~spin)",
  busy: "$(sync~spin)",
  ready: "$(beaker)",
  error: "$(error)",
  stopped: "$(circle-slash)",
};

/** The status bar text: an icon for the state and the active tier. */
export function statusText(state: ServerState, tier: string | null | undefined): string {
  const icon = ICONS[state] ?? ICONS.ready;
  return `${icon} cascode: ${tier || "?"}`;
}

function num(value: number | null | undefined, digits: number): string {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "n/a";
}

/** Markdown for a tooltip or a document: who answered, how sure, at what cost. */
export function formatProvenance(p: Provenance | null | undefined): string {
  if (!p) {
    return "No answer yet: write a function's signature and docstring to get one.";
  }
  const lines: string[] = [];
  const verdict = verdictWord(p);
  const what = p.function ? ` \`${p.function}\`` : "";
  const cached = p.cached ? ", from cache" : "";
  lines.push(`**${p.member ?? "?"}** answered${what} on tier **${p.tier ?? "?"}** (${verdict}${cached})`);
  lines.push("");
  lines.push(`- ${proofLine(p)}`);
  if (p.label?.text && p.label.state !== "unverified") {
    lines.push(`- ${p.label.text}`);
  }
  lines.push(`- score ${num(p.score, 2)} against threshold ${num(p.threshold, 2)}`);
  lines.push(`- ${p.tokens ?? "n/a"} tokens, ${num(p.seconds, 1)} s`);
  if (p.note) {
    lines.push(`- ${p.note}`);
  }
  if (p.load) {
    lines.push(`- ${p.load}`);
  }
  const stages = p.stages ?? [];
  if (stages.length > 1) {
    const path = stages
      .map((s) => `${s.member ?? "?"} (${num(s.score ?? null, 2)}/${num(s.threshold ?? null, 2)})`)
      .join(" → ");
    lines.push(`- stages: ${path}`);
  }
  const examples = p.examples ?? [];
  if (examples.length > 0) {
    // Which lines failed is told when some passed; otherwise the proof line says why.
    const markFailed = examples.some((e) => e.passed);
    lines.push("");
    lines.push(`Your example${examples.length === 1 ? "" : "s"}:`);
    lines.push("");
    lines.push("```python");
    for (const e of examples) {
      const notes = [];
      if (markFailed && !e.passed) {
        notes.push("failed");
      }
      if (e.origin && e.origin !== "docstring") {
        notes.push(e.origin);
      }
      lines.push(e.text + (notes.length > 0 ? `  # ${notes.join("; ")}` : ""));
    }
    lines.push("```");
  }
  const asserts = p.asserts ?? [];
  if (asserts.length > 0) {
    lines.push("");
    lines.push(`Passed ${asserts.length} generated assert${asserts.length === 1 ? "" : "s"}:`);
    lines.push("");
    lines.push("```python");
    lines.push(...asserts);
    lines.push("```");
  }
  return lines.join("\n");
}

/** The label's state as the tooltip's verdict: verified, *likely*, **unverified**
 * (older servers send no label: verified or not). */
export function verdictWord(p: Provenance): string {
  const state = p.label?.state ?? (p.verified ? "verified" : "unverified");
  if (state === "verified") {
    return "verified";
  }
  if (state === "likely") {
    const rate = p.label?.percent;
    return typeof rate === "number" ? `*likely, right ${rate}%*` : "*likely*";
  }
  return "**unverified**";
}

/** The proof line: what the answer rests on (older servers: verified or not). */
export function proofLine(p: Provenance): string {
  if (p.proof) {
    return p.proof;
  }
  if (p.verified) {
    return `passed ${(p.asserts ?? []).length} generated asserts`;
  }
  return `unverified${p.note ? ": " + p.note : ""}`;
}

const CALLED = /^\s*assert\s+(?:not\s+)?(?:\(\s*)?([A-Za-z_][A-Za-z0-9_]*)\s*\(/;

/** A line (or a multi-line statement) with all whitespace taken out, for comparing. */
function squeeze(text: string): string {
  return text.replace(/\s+/g, "");
}

/**
 * The asserts `document` does not have yet: an assert is there when a line of the
 * document, whitespace aside, is that assert (a multi-line one: when its text,
 * whitespace aside, is in the document). Repeats are dropped too.
 */
export function missingAsserts(asserts: readonly string[], document = ""): string[] {
  const lines = new Set(document.split(/\r?\n/).map(squeeze));
  const whole = squeeze(document);
  const seen = new Set<string>();
  const out: string[] = [];
  for (const a of asserts) {
    const text = a.trim();
    const key = squeeze(text);
    if (!key || seen.has(key)) {
      continue;
    }
    seen.add(key);
    const present = text.includes("\n") ? whole.includes(key) : lines.has(key);
    if (!present) {
      out.push(text);
    }
  }
  return out;
}

/**
 * The lines an answer's test is made of: the user's example lines that are asserts
 * (an expected exception, "call raises Error", is not one), then the generated
 * asserts it passed, leaving out those `document` already has.
 */
export function answerAsserts(p: Provenance | null | undefined, document = ""): string[] {
  if (!p) {
    return [];
  }
  const examples = (p.examples ?? [])
    .map((e) => (e.text ?? "").trim())
    .filter((t) => /^assert\b/.test(t));
  return missingAsserts([...examples, ...(p.asserts ?? [])], document);
}

/**
 * The asserts of an answer as a pytest test function named after the function
 * (given, or the one the first assert calls), its body indented by `indent` plus
 * four spaces; named `test_<fn>_2` (and so on) when `document` already defines
 * `test_<fn>`. Returns "" when there are no asserts.
 */
export function assertsAsTest(asserts: readonly string[], indent = "", fn?: string, document = ""): string {
  const body = asserts.map((a) => a.trim()).filter((a) => a.length > 0);
  if (body.length === 0) {
    return "";
  }
  const match = CALLED.exec(body[0]);
  const base = `test_${fn || (match ? match[1] : "answer")}`;
  let name = base;
  for (let n = 2; new RegExp(`\\bdef\\s+${name}\\s*\\(`).test(document); n++) {
    name = `${base}_${n}`;
  }
  const inner = indent + "    ";
  const lines = body.flatMap((a) => a.split(/\r?\n/).map((line) => inner + line));
  return [`def ${name}():`, ...lines].join("\n") + "\n";
}

export interface TierItem {
  label: string;
  description: string;
  detail: string;
  tier: string;
}

function describeMeasured(measured: Tier["measured"]): string {
  if (!measured) {
    return "not measured";
  }
  if (typeof measured === "string") {
    return measured;
  }
  return Object.entries(measured)
    .map(([k, v]) => `${k} ${typeof v === "number" ? Number(v.toFixed(3)) : String(v)}`)
    .join(", ");
}

/** Quick pick entries for `cascode.listTiers`; the active tier first and marked. */
export function tierItems(tiers: readonly Tier[]): TierItem[] {
  const ordered = [...tiers].sort((a, b) => Number(Boolean(b.active)) - Number(Boolean(a.active)));
  return ordered.map((t) => ({
    label: `${t.active ? "$(check) " : ""}${t.name}`,
    description: [t.active ? "active" : "", t.default ? "default" : ""].filter(Boolean).join(", "),
    detail: [t.description, describeMeasured(t.measured)].filter(Boolean).join(" · "),
    tier: t.name,
  }));
}
