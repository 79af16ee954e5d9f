-- cascode for Neovim (>= 0.11): starts `cascode serve` through vim.lsp.config /
-- vim.lsp.enable, shows its answers as inline completion (ghost text, Neovim 0.12's
-- vim.lsp.inline_completion) or as a completion item (older versions), and offers
-- :CascodeTier, :CascodeLastAnswer, :CascodeInsertAsserts and a status line component.
-- Keys (insert mode): accept the ghost text, accept its first line, ask explicitly.

local complete = require("cascode.complete")
local inline = require("cascode.inline")
local provenance = require("cascode.provenance")

local M = {}

local NAME = "cascode"

---@class cascode.Options
local defaults = {
  --- The command that runs the language server.
  cmd = { "cascode", "serve" },
  filetypes = { "python" },
  root_markers = { "pyproject.toml", "setup.py", "setup.cfg", ".git" },
  --- The `cascode` settings section sent to the server (keys as in VS Code without the
  --- `cascode.` prefix), e.g. { tier = "fast", planFile = "~/plans/mine.yaml" }.
  --- completionRequests = "explicit": the plugin sends textDocument/completion only from
  --- keymaps.complete, so each one is the user asking. If a completion plugin (nvim-cmp,
  --- blink.cmp) also asks cascode as you type, set it to "answered".
  settings = { completionRequests = "explicit" },
  --- true: ghost text (needs vim.lsp.inline_completion, Neovim 0.12); false: only the
  --- completion item (keymaps.complete); nil: ghost text where available.
  inline = nil,
  keymaps = {
    --- Insert-mode key that accepts the ghost text (falls through when there is none).
    accept = "<Tab>",
    --- Insert-mode key that accepts the first line of the ghost text (at the end of a
    --- written line: the line break and the next line); the rest stays shown.
    accept_line = "<M-l>",
    --- Insert-mode key that asks for an answer at the cursor (an explicit request: the
    --- one way to get an answer with settings.trigger = "manual").
    trigger = "<M-\\>",
    --- Insert-mode key that asks for the answer as a completion item (a menu entry whose
    --- documentation is the provenance); works with and without ghost text.
    complete = "<C-Space>",
  },
  --- Called as on_attach(client, bufnr) after the plugin's own set-up.
  on_attach = nil,
}

M.options = vim.deepcopy(defaults)

--- The last `cascode/status` the server sent.
M.status = { state = "stopped", tier = nil, message = nil, lastAnswer = nil }

local function clients(bufnr)
  return vim.lsp.get_clients({ name = NAME, bufnr = bufnr })
end

local function first_client()
  return clients(0)[1] or clients()[1]
end

local function on_status(_, params)
  if type(params) ~= "table" then
    return
  end
  M.status = {
    state = params.state or M.status.state,
    tier = (params.tier ~= vim.NIL and params.tier) or M.status.tier,
    message = params.message ~= vim.NIL and params.message or nil,
    lastAnswer = (params.lastAnswer ~= vim.NIL and params.lastAnswer) or M.status.lastAnswer,
  }
  if M.status.state == "error" and M.status.message then
    vim.notify(M.status.message, vim.log.levels.ERROR)
  end
  vim.api.nvim_exec_autocmds("User", { pattern = "CascodeStatus", modeline = false })
  vim.cmd.redrawstatus({ bang = true })
end

--- Whether answers are shown as ghost text.
function M.uses_inline()
  if M.options.inline == false then
    return false
  end
  return vim.lsp.inline_completion ~= nil
end

--- Accepts the first line of the ghost text; false when none is shown.
---@param bufnr integer|nil
function M.accept_line(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  return M.uses_inline() and inline.accept_line(bufnr)
end

--- Asks for an answer at the cursor, explicitly: ghost text where this Neovim lets the
--- plugin ask for it, else the completion item.
---@param bufnr integer|nil
function M.trigger(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  if not (M.uses_inline() and inline.trigger(bufnr)) then
    complete.trigger(bufnr)
  end
end

local function set_keymaps(bufnr)
  local keys = M.options.keymaps or {}
  if M.uses_inline() then
    vim.lsp.inline_completion.enable(true, { bufnr = bufnr })
    -- A key that finds no ghost text does what it does without the plugin.
    local function accepting(key, accept, desc)
      vim.keymap.set("i", key, function()
        if not accept() then
          return vim.keycode(key)
        end
      end, { buffer = bufnr, expr = true, desc = desc })
    end
    if keys.accept then
      accepting(keys.accept, function()
        return vim.lsp.inline_completion.get({ bufnr = bufnr })
      end, "cascode: accept the ghost text")
    end
    if keys.accept_line then
      accepting(keys.accept_line, function()
        return inline.accept_line(bufnr)
      end, "cascode: accept the first line of the ghost text")
    end
  end
  complete.attach(bufnr)
  if keys.complete then
    vim.keymap.set("i", keys.complete, function()
      complete.trigger(bufnr)
    end, { buffer = bufnr, desc = "cascode: ask for the answer as a completion item" })
  end
  if keys.trigger then
    vim.keymap.set("i", keys.trigger, function()
      M.trigger(bufnr)
    end, { buffer = bufnr, desc = "cascode: ask for an answer at the cursor" })
  end
end

local function on_attach(client, bufnr)
  if M.uses_inline() then
    inline.attach(client)
  end
  set_keymaps(bufnr)
  if M.options.on_attach then
    M.options.on_attach(client, bufnr)
  end
end

local function on_exit()
  M.status = vim.tbl_extend("force", M.status, { state = "stopped" })
  vim.schedule(function()
    vim.cmd.redrawstatus({ bang = true })
  end)
end

--- Runs a server command; returns its result, or nil and an error message.
---@param command string
---@param arguments table|nil
---@param timeout_ms integer|nil
function M.execute(command, arguments, timeout_ms)
  local client = first_client()
  if not client then
    return nil, "cascode: the server is not running"
  end
  local response, err = client:request_sync(
    "workspace/executeCommand",
    { command = command, arguments = arguments or {} },
    timeout_ms or 3000,
    0
  )
  if not response then
    return nil, "cascode: " .. command .. ": " .. tostring(err)
  end
  if response.err then
    return nil, "cascode: " .. command .. ": " .. tostring(response.err.message or response.err)
  end
  if response.result == vim.NIL then
    return nil
  end
  return response.result
end

--- The tiers of the plan in force (`cascode.listTiers`), or {} when the server is not up.
function M.list_tiers()
  local tiers = M.execute("cascode.listTiers")
  return type(tiers) == "table" and tiers or {}
end

local function tier_names(arglead)
  local names = {}
  for _, t in ipairs(M.list_tiers()) do
    if vim.startswith(t.name, arglead or "") then
      table.insert(names, t.name)
    end
  end
  return names
end

--- Makes `name` the tier: updates each client's settings and notifies the server, which
--- pulls the section again; the next request uses the tier. Also kept for new clients.
---@param name string
function M.set_tier(name)
  M.options.settings = vim.tbl_extend("force", M.options.settings or {}, { tier = name })
  vim.lsp.config(NAME, { settings = { cascode = { tier = name } } })
  for _, client in ipairs(clients()) do
    client.settings = vim.tbl_deep_extend("force", client.settings or {}, {
      cascode = { tier = name },
    })
    client:notify("workspace/didChangeConfiguration", { settings = client.settings })
  end
end

local function choose_tier()
  local tiers = M.list_tiers()
  if #tiers == 0 then
    vim.notify("cascode: no tiers (is the server running?)", vim.log.levels.WARN)
    return
  end
  vim.ui.select(tiers, {
    prompt = "cascode tier",
    format_item = function(t)
      local marks = (t.active and " (active)" or "") .. (t.default and " (default)" or "")
      return t.name .. marks .. (t.description and (": " .. t.description) or "")
    end,
  }, function(choice)
    if choice then
      M.set_tier(choice.name)
    end
  end)
end

--- The last answer's provenance: on the current buffer, else any, else from the status.
function M.last_answer()
  local answer = M.execute("cascode.lastAnswer", { { uri = vim.uri_from_bufnr(0) } })
  if type(answer) ~= "table" then
    answer = M.execute("cascode.lastAnswer")
  end
  if type(answer) ~= "table" then
    answer = M.status.lastAnswer
  end
  return answer
end

--- Shows the last answer's provenance in a floating window; returns its lines.
function M.show_last_answer()
  local lines = provenance.format(M.last_answer())
  vim.lsp.util.open_floating_preview(lines, "markdown", { border = "rounded", focus_id = NAME })
  return lines
end

--- Inserts the last answer's example lines and asserts (those the buffer lacks) as a
--- test function above the cursor's line.
function M.insert_asserts()
  local answer = M.last_answer() or {}
  local row = vim.api.nvim_win_get_cursor(0)[1]
  local indent = vim.api.nvim_get_current_line():match("^%s*")
  local document = vim.api.nvim_buf_get_lines(0, 0, -1, false)
  local asserts = provenance.answer_asserts(answer, document)
  local lines = provenance.asserts_as_test(asserts, indent, answer["function"], document)
  if #lines == 0 then
    local had = (type(answer.asserts) == "table" and #answer.asserts > 0)
      or (type(answer.examples) == "table" and #answer.examples > 0)
    vim.notify(
      had and "cascode: the document already has the last answer's asserts"
        or "cascode: the last answer has no asserts",
      vim.log.levels.INFO
    )
    return
  end
  table.insert(lines, "")
  vim.api.nvim_buf_set_lines(0, row - 1, row - 1, false, lines)
end

--- Status line component: "cascode: <tier>", with the state when not ready; "" when no
--- cascode server was started. E.g. vim.o.statusline = "%f %= %{v:lua.require'cascode'.statusline()}"
function M.statusline()
  if M.status.state == "stopped" and #clients() == 0 then
    return ""
  end
  local status = vim.tbl_extend("force", {}, M.status)
  if not status.tier or status.tier == "" then
    status.tier = (M.options.settings or {}).tier
  end
  return provenance.statusline(status)
end

local function create_commands()
  vim.api.nvim_create_user_command("CascodeTier", function(a)
    if a.args == "" then
      choose_tier()
    else
      M.set_tier(a.args)
    end
  end, {
    nargs = "?",
    desc = "cascode: switch the tier (no argument: choose from a list)",
    complete = function(arglead)
      return tier_names(arglead)
    end,
  })
  vim.api.nvim_create_user_command("CascodeLastAnswer", function()
    M.show_last_answer()
  end, { desc = "cascode: show the last answer's provenance" })
  vim.api.nvim_create_user_command("CascodeInsertAsserts", function()
    M.insert_asserts()
  end, { desc = "cascode: insert the last answer's asserts as a test" })
end

--- Asks for the answer at the cursor as a completion item (insert mode).
function M.complete()
  complete.trigger(0)
end

--- Configures and enables the `cascode` language server.
---@param opts cascode.Options|nil
function M.setup(opts)
  if vim.fn.has("nvim-0.11") == 0 then
    vim.notify("cascode needs Neovim 0.11 or later", vim.log.levels.ERROR)
    return
  end
  M.options = vim.tbl_deep_extend("force", vim.deepcopy(defaults), opts or {})
  vim.lsp.config(NAME, {
    cmd = M.options.cmd,
    filetypes = M.options.filetypes,
    root_markers = M.options.root_markers,
    -- Answered to the server's workspace/configuration pull (section "cascode").
    settings = { cascode = vim.deepcopy(M.options.settings) },
    handlers = { ["cascode/status"] = on_status },
    on_attach = on_attach,
    on_exit = on_exit,
  })
  M.status.state = "starting"
  create_commands()
  vim.lsp.enable(NAME)
end

return M
