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
  const verdict = p.verified ? "verified" : "**unverified**";
  const what = p.function ? ` \`${p.function}\`` : "";
  const cached = p.cached ? ", from cache" : "";
  lines.push(`**${p.member ?? "?"}** answered${what} on tier **${p.tier ?? "?"}** (${verdict}${cached})`);
  lines.push("");
  lines.push(`- score ${num(p.score, 2)} against threshold ${num(p.threshold, 2)}`);
  lines.push(`- ${p.tokens ?? "n/a"} tokens, ${num(p.seconds, 1)} s`);
  if (p.note) {
    lines.push(`- ${p.note}`);
  }
  const stages = p.stages ?? [];
  if (stages.length > 1) {
    const path = stages
      .map((s) => `${s.member ?? "?"} (${num(s.score ?? null, 2)}/${num(s.threshold ?? null, 2)})`)
      .join(" → ");
    lines.push(`- stages: ${path}`);
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

const CALLED = /^\s*assert\s+(?:not\s+)?(?:\(\s*)?([A-Za-z_][A-Za-z0-9_]*)\s*\(/;

/**
 * The asserts of an answer as a pytest test function named after the function
 * (given, or the one the first assert calls), its body indented by `indent` plus
 * four spaces. Returns "" when there are no asserts.
 */
export function assertsAsTest(asserts: readonly string[], indent = "", fn?: string): string {
  const body = asserts.map((a) => a.trim()).filter((a) => a.length > 0);
  if (body.length === 0) {
    return "";
  }
  const match = CALLED.exec(body[0]);
  const name = fn || (match ? match[1] : "answer");
  const inner = indent + "    ";
  return [`def test_${name}():`, ...body.map((a) => inner + a)].join("\n") + "\n";
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
