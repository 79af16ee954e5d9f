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
  local cmd = cascode.options.cmd
  if type(cmd) == "table" and vim.fn.executable(cmd[1]) == 1 then
    health.ok("server command: " .. table.concat(cmd, " "))
  elseif type(cmd) == "table" then
    health.error(cmd[1] .. " is not executable: pip install 'cascode[server,models]' or set cmd")
  end
  health.info("status: " .. vim.inspect(cascode.status.state) .. " " .. (cascode.status.message or ""))
end

return M
