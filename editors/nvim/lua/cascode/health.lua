-- :checkhealth cascode

local M = {}

function M.check()
  local health = vim.health
  health.start("cascode")
  if vim.fn.has("nvim-0.11") == 1 then
    health.ok("Neovim " .. tostring(vim.version()))
  else
    health.error("Neovim 0.11 or later is needed (vim.lsp.config / vim.lsp.enable)")
  end
  if vim.lsp.inline_completion then
    health.ok("inline completion (ghost text) is available")
  else
    health.info("no vim.lsp.inline_completion (Neovim < 0.12): answers come as completion items")
  end
  local cascode = require("cascode")
  local keys = cascode.options.keymaps or {}
  if cascode.uses_inline() then
    if require("cascode.inline").can_trigger() then
      health.ok("explicit requests (keymaps.trigger): ghost text")
    else
      health.warn("this Neovim lets the plugin ask for ghost text only as you type:"
        .. " keymaps.trigger opens the completion menu instead")
    end
  end
  local mapped = {}
  for _, name in ipairs({ "accept", "accept_line", "trigger", "complete" }) do
    table.insert(mapped, name .. " = " .. (keys[name] and keys[name] or "off"))
  end
  health.info("insert-mode keys: " .. table.concat(mapped, ", "))
  if (cascode.options.settings or {}).trigger == "manual" then
    health.info("settings.trigger = \"manual\": answers only when asked ("
      .. (keys.trigger or "no keymaps.trigger: call require('cascode').trigger()") .. ")")
  end
  local cmd = cascode.options.cmd
  if type(cmd) == "table" and vim.fn.executable(cmd[1]) == 1 then
    health.ok("server command: " .. table.concat(cmd, " "))
  elseif type(cmd) == "table" then
    health.error(cmd[1] .. " is not executable: pip install 'cascode[server,models]' or set cmd")
  end
  health.info("status: " .. vim.inspect(cascode.status.state) .. " " .. (cascode.status.message or ""))
end

return M
