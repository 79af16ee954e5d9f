"""The settings lifecycle: fetch the client's settings, resolve them, and apply them
(plan, tier, sandbox, cache), keeping the previous value of each one that fails. From a
client that is not trusted (TCP), the settings that load or run things are dropped
first (`refuse_remote`)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from lsprotocol import types

from cascode.engine.errors import CascodeError, PlanError
from cascode.engine.host import load_plan_file
from cascode.engine.plans import Plan

from .preload import Preloader
from .settings import (
    SECTION,
    ClientOptions,
    Problem,
    Settings,
    refuse_remote,
    refused_message,
    resolve,
    value_of,
    with_value,
)
from .state import ServerState

log = logging.getLogger(__name__)


class Configuration:
    def __init__(self, state: ServerState, preloader: Preloader) -> None:
        self.state = state
        self.preloader = preloader
        self.init_options: Any = None  # the client's initializationOptions
        self._configured = asyncio.Event()
        self._lock = asyncio.Lock()
        self._sandbox_made = False
        self._refused: list[str] = []  # the keys last refused from a remote client

    async def settled(self) -> None:
        """Return once settings were applied and no change that arrived first is pending."""
        await self._configured.wait()
        async with self._lock:
            pass  # a settings change that arrived first applies to this request

    async def refresh(self, *, initial: bool = False, pushed: Any = None) -> None:
        async with self._lock:
            try:
                raw = await self._fetch(pushed)
                await self._apply(self._allowed(ClientOptions.from_raw(raw)), initial)
            except Exception as e:  # noqa: BLE001 - the server keeps serving
                log.exception("applying settings")
                self.state.show(f"cascode: settings not applied: {e}")
            finally:
                self._configured.set()

    async def _fetch(self, pushed: Any) -> Any:
        ls = self.state.ls
        merged: dict[str, Any] = {}
        init = self.init_options
        if isinstance(init, dict):
            merged.update(ClientOptions.from_raw(init.get(SECTION, init)).values)
        workspace = ls.client_capabilities.workspace
        if workspace is not None and workspace.configuration:
            try:
                result = await asyncio.wait_for(
                    ls.workspace_configuration_async(
                        types.ConfigurationParams(
                            items=[types.ConfigurationItem(section=SECTION)]
                        )
                    ),
                    10,
                )
            except Exception:  # noqa: BLE001 - fall back to what was pushed
                log.warning("workspace/configuration failed", exc_info=True)
            else:
                if result and isinstance(result[0], dict):
                    merged.update(ClientOptions.from_raw(result[0]).values)
                return merged
        if isinstance(pushed, dict):
            merged.update(ClientOptions.from_raw(pushed.get(SECTION, pushed)).values)
        return merged

    def _allowed(self, options: ClientOptions) -> ClientOptions:
        """`options` less what this client may not set; says so once per change."""
        if self.state.client_trusted:
            return options
        options, refused = refuse_remote(options)
        if refused and refused != self._refused:
            self.state.show(refused_message(refused), types.MessageType.Warning)
        self._refused = refused
        return options

    async def _apply(self, options: ClientOptions, initial: bool) -> None:
        state, host = self.state, self.state.host
        old = state.settings
        new, problems = resolve(options, old)
        plan = host.plan
        plan_changed = False
        if plan is None or new.plan_file != old.plan_file:
            loaded, new = await self._load_plan(new, old, problems)
            if loaded is not None:
                plan, plan_changed = loaded, True
        if plan is not None and new.tier and new.tier not in plan.tiers:
            kept = old.tier if (not old.tier or old.tier in plan.tiers) else ""
            problems.append(Problem("tier", new.tier, _no_tier(plan, new.tier), kept))
            new = with_value(new, "tier", kept)
        if not self._sandbox_made or (new.sandbox_layers, new.sandbox_allow_unsafe) != (
            old.sandbox_layers, old.sandbox_allow_unsafe
        ):
            new = await self._make_sandbox(new, old, problems)
        state.settings = new
        host.cache.resize(new.cache_size)
        if plan_changed and plan is not None:
            host.set_plan(plan)
        for problem in problems:
            state.show(problem.message())
        if host.plan is None:
            state.send_status("error", "no plan could be loaded")
            return
        tier_changed = state.tier != (old.tier or host.plan.default_tier)
        enabled = new.enable and not old.enable
        if new.preload and new.enable and (initial or plan_changed or tier_changed or enabled):
            self.preloader.start()
        elif state.status == "loading" and not host.loading:
            state.send_status("ready", f"tier {state.tier}")
        else:
            state.send_status()

    async def _load_plan(
        self, new: Settings, old: Settings, problems: list[Problem]
    ) -> tuple[Plan | None, Settings]:
        try:
            return await asyncio.to_thread(load_plan_file, new.plan_file), new
        except PlanError as e:
            problems.append(Problem("planFile", new.plan_file, str(e), old.plan_file))
            new = with_value(new, "planFile", old.plan_file)
        if self.state.host.plan is not None:
            return None, new
        # Nothing loaded yet: the previous value is the packaged plan.
        try:
            return await asyncio.to_thread(load_plan_file, new.plan_file), new
        except PlanError as e:
            self.state.show(f"cascode: {e}")
            return None, new

    async def _make_sandbox(
        self, new: Settings, old: Settings, problems: list[Problem]
    ) -> Settings:
        try:
            note = await asyncio.to_thread(
                self.state.host.make_sandbox, new.sandbox_layers, new.sandbox_allow_unsafe
            )
        except CascodeError as e:
            for key in ("sandbox.layers", "sandbox.allowUnsafe"):
                if value_of(new, key) != value_of(old, key):
                    problems.append(Problem(key, value_of(new, key), str(e), value_of(old, key)))
                    new = with_value(new, key, value_of(old, key))
            if not self._sandbox_made:
                self.state.show(f"cascode: sandbox: {e}; answers will be unverified")
            self._sandbox_made = True
            return new
        self._sandbox_made = True
        if note:
            self.state.show(
                f"cascode: sandbox unavailable: {note}; answers will be unverified",
                types.MessageType.Warning,
            )
        return new


def _no_tier(plan: Plan, name: str) -> str:
    return f"no tier named {name!r} in {plan.path} (tiers: {', '.join(plan.tiers)})"
