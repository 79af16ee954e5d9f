import * as vscode from "vscode";
import {
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
  State,
  TransportKind,
} from "vscode-languageclient/node";

import {
  answerAsserts,
  assertsAsTest,
  formatProvenance,
  Provenance,
  StatusParams,
  Tier,
  tierItems,
} from "./provenance";
import { TierStatus } from "./status";

const SECTION = "cascode";

let client: LanguageClient | undefined;
let status: TierStatus | undefined;

function serverOptions(): ServerOptions {
  const config = vscode.workspace.getConfiguration(SECTION);
  const command = config.get<string>("server.path") || "cascode";
  const args = ["serve", ...(config.get<string[]>("server.args") ?? [])];
  return { command, args, transport: TransportKind.stdio };
}

function createClient(): LanguageClient {
  const clientOptions: LanguageClientOptions = {
    documentSelector: [
      { scheme: "file", language: "python" },
      { scheme: "untitled", language: "python" },
    ],
    // Sends workspace/didChangeConfiguration when a `cascode.*` setting changes; the
    // server then pulls the section, so a new tier applies to the next request.
    synchronize: { configurationSection: SECTION },
    outputChannelName: "cascode",
  };
  const c = new LanguageClient("cascode", "cascode", serverOptions(), clientOptions);
  c.onDidChangeState((e) => {
    if (e.newState === State.Stopped) {
      status?.setState("stopped", "the server is not running (cascode: Restart Server)");
    } else if (e.newState === State.Starting) {
      status?.setState("starting");
    }
  });
  return c;
}

async function startClient(): Promise<void> {
  client = createClient();
  try {
    await client.start();
    client.onNotification("cascode/status", (params: StatusParams) => status?.update(params));
  } catch (err) {
    const command = vscode.workspace.getConfiguration(SECTION).get<string>("server.path") || "cascode";
    status?.setState("error", `cannot start \`${command} serve\``);
    void vscode.window.showErrorMessage(
      `cascode: cannot start \`${command} serve\` (${String(err)}). ` +
        "Install cascode or set `cascode.server.path`.",
    );
  }
}

async function stopClient(): Promise<void> {
  const c = client;
  client = undefined;
  if (c && c.state !== State.Stopped) {
    try {
      await c.stop();
    } catch {
      // A server that died already cannot be stopped; there is nothing left to clean.
    }
  }
}

function runningClient(): LanguageClient | undefined {
  if (!client || client.state !== State.Running) {
    void vscode.window.showWarningMessage("cascode: the server is not running.");
    return undefined;
  }
  return client;
}

async function serverCommand<T>(command: string, args: unknown[] = []): Promise<T | undefined> {
  const c = runningClient();
  if (!c) {
    return undefined;
  }
  return (await c.sendRequest(ExecuteCommandRequest.type, { command, arguments: args })) as T;
}

/** The last answer on `uri` if given, else the last answer on any document. */
async function lastAnswer(uri?: vscode.Uri): Promise<Provenance | null> {
  try {
    const args = uri ? [{ uri: uri.toString() }] : [];
    const answer = await serverCommand<Provenance | null>("cascode.lastAnswer", args);
    if (answer) {
      return answer;
    }
  } catch {
    // Fall back to the provenance that came with the last status notification.
  }
  return status?.lastAnswer ?? null;
}

/** Writes the tier where the user keeps it: the workspace if set there, else the user settings. */
async function writeTier(tier: string): Promise<void> {
  const config = vscode.workspace.getConfiguration(SECTION);
  const where = config.inspect<string>("tier");
  const target =
    where?.workspaceFolderValue !== undefined
      ? vscode.ConfigurationTarget.WorkspaceFolder
      : where?.workspaceValue !== undefined
        ? vscode.ConfigurationTarget.Workspace
        : vscode.ConfigurationTarget.Global;
  await config.update("tier", tier, target);
}

async function selectTier(): Promise<void> {
  let tiers: Tier[] | undefined;
  try {
    tiers = await serverCommand<Tier[]>("cascode.listTiers");
  } catch (err) {
    void vscode.window.showErrorMessage(`cascode: cannot list the tiers (${String(err)}).`);
    return;
  }
  if (!tiers || tiers.length === 0) {
    return;
  }
  const picked = await vscode.window.showQuickPick(tierItems(tiers), {
    title: "cascode: choose the tier",
    placeHolder: "The tier decides which models answer and how much testing they must pass",
    matchOnDetail: true,
  });
  if (picked) {
    await writeTier(picked.tier);
    status?.setTier(picked.tier);
  }
}

async function insertAsserts(): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  if (!editor) {
    return;
  }
  const answer = (await lastAnswer(editor.document.uri)) ?? (await lastAnswer());
  const line = editor.selection.active.line;
  const indent = /^\s*/.exec(editor.document.lineAt(line).text)?.[0] ?? "";
  const document = editor.document.getText();
  const asserts = answerAsserts(answer, document);
  const test = assertsAsTest(asserts, indent, answer?.function, document);
  if (!test) {
    const had = (answer?.asserts?.length ?? 0) + (answer?.examples?.length ?? 0) > 0;
    void vscode.window.showInformationMessage(
      had
        ? "cascode: the document already has the last answer's asserts."
        : "cascode: the last answer has no asserts.",
    );
    return;
  }
  // The test goes above the cursor's line, at that line's indentation.
  const text = indent + test.replace(/\n(?=.)/g, "\n" + indent) + "\n";
  await editor.edit((edit) => edit.insert(new vscode.Position(line, 0), text));
}

async function showLastAnswer(): Promise<void> {
  const doc = await vscode.workspace.openTextDocument({
    language: "markdown",
    content: "# cascode: last answer\n\n" + formatProvenance(await lastAnswer()) + "\n",
  });
  await vscode.window.showTextDocument(doc, { preview: true });
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  status = new TierStatus("cascode.selectTier");
  status.setTier(vscode.workspace.getConfiguration(SECTION).get<string>("tier") || null);
  context.subscriptions.push(
    status,
    vscode.commands.registerCommand("cascode.selectTier", selectTier),
    vscode.commands.registerCommand("cascode.restartServer", async () => {
      await stopClient();
      await startClient();
    }),
    vscode.commands.registerCommand("cascode.insertAsserts", insertAsserts),
    vscode.commands.registerCommand("cascode.showLastAnswer", showLastAnswer),
    vscode.workspace.onDidChangeConfiguration(async (e) => {
      if (e.affectsConfiguration(`${SECTION}.server`)) {
        // How the server is started changed: only a restart applies it.
        await stopClient();
        await startClient();
      } else if (e.affectsConfiguration(`${SECTION}.tier`)) {
        status?.setTier(vscode.workspace.getConfiguration(SECTION).get<string>("tier") || null);
      }
    }),
  );
  await startClient();
}

export async function deactivate(): Promise<void> {
  await stopClient();
}
