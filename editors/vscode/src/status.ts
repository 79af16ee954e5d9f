import * as vscode from "vscode";

import { formatProvenance, Provenance, ServerState, StatusParams, statusText } from "./provenance";

/**
 * The status bar item: the active tier and the server's state; its tooltip is the
 * last answer's provenance; a click opens the tier quick pick.
 */
export class TierStatus implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;
  private state: ServerState = "starting";
  private tier: string | null = null;
  private message: string | null = null;
  lastAnswer: Provenance | null = null;

  constructor(selectTierCommand: string) {
    this.item = vscode.window.createStatusBarItem("cascode.tier", vscode.StatusBarAlignment.Right, 100);
    this.item.name = "cascode tier";
    this.item.command = selectTierCommand;
    this.render();
    this.item.show();
  }

  /** Applies a `cascode/status` notification. */
  update(params: StatusParams): void {
    this.state = params.state ?? this.state;
    if (params.tier) {
      this.tier = params.tier;
    }
    this.message = params.message ?? null;
    if (params.lastAnswer) {
      this.lastAnswer = params.lastAnswer;
    }
    this.render();
  }

  setState(state: ServerState, message: string | null = null): void {
    this.state = state;
    this.message = message;
    this.render();
  }

  setTier(tier: string | null): void {
    if (tier) {
      this.tier = tier;
      this.render();
    }
  }

  private render(): void {
    this.item.text = statusText(this.state, this.tier);
    const tooltip = new vscode.MarkdownString(undefined, true);
    if (this.message) {
      tooltip.appendMarkdown(`${this.state}: ${this.message}\n\n---\n\n`);
    }
    tooltip.appendMarkdown(formatProvenance(this.lastAnswer));
    tooltip.appendMarkdown("\n\n---\n\nClick to choose the tier.");
    this.item.tooltip = tooltip;
    this.item.backgroundColor =
      this.state === "error" ? new vscode.ThemeColor("statusBarItem.errorBackground") : undefined;
  }

  dispose(): void {
    this.item.dispose();
  }
}
