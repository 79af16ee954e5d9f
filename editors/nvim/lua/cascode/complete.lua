-- The answer as a completion item, for Neovims without vim.lsp.inline_completion.
--
-- The item replaces a multi-line span (the stub's body) with plain text: its textEdit
-- plus additionalTextEdits. Neovim's built-in LSP completion inserts only the first
-- word of a plain-text textEdit, so the item is shown with vim.fn.complete() and, once
-- chosen, the inserted word is taken back and the item's edits are applied as sent.

local M = {}

local ITEM_KEY = "cascode_item"

local function documentation(item)
  local doc = item.documentation
  if type(doc) == "table" then
    return doc.value or ""
  end
  return type(doc) == "string" and doc or ""
end

--- The word shown and inserted while the menu is open: the answer's first line.
local function word_of(item)
  local text = (item.textEdit and item.textEdit.newText) or item.insertText or item.label
  for line in vim.gsplit(text, "\n", { plain = true }) do
    local trimmed = vim.trim(line)
    if trimmed ~= "" then
      return trimmed
    end
  end
  return item.label
end

local pending = {} -- bufnr -> { client_id, items, row, col }

--- Takes back the word Vim inserted and applies the item's edits, as sent.
local function apply_item(bufnr, client, item, state, row, col)
  if not vim.api.nvim_buf_is_valid(bufnr) then
    return
  end
  if row - 1 == state.row and col >= state.col then
    vim.api.nvim_buf_set_text(bufnr, state.row, state.col, row - 1, col, { "" })
  end
  local edits = { item.textEdit }
  vim.list_extend(edits, item.additionalTextEdits or {})
  -- Ranges are taken before the first edit is applied, as LSP specifies.
  vim.lsp.util.apply_text_edits(edits, bufnr, client.offset_encoding)
  local edit = item.textEdit
  local lines = vim.split(edit.newText, "\n", { plain = true })
  local start = edit.range.start
  local end_row = start.line + #lines - 1
  local end_col = (#lines == 1 and start.character or 0) + #lines[#lines]
  pcall(vim.api.nvim_win_set_cursor, 0, { end_row + 1, end_col })
  if item.command then
    client:exec_cmd(item.command, { bufnr = bufnr })
  end
end

--- On CompleteDone: applies the chosen cascode item, if one was chosen.
local function on_complete_done(bufnr)
  local state = pending[bufnr]
  pending[bufnr] = nil
  if state and state.completeopt then
    vim.o.completeopt = state.completeopt
  end
  local done = vim.v.completed_item
  if not state or type(done) ~= "table" or type(done.user_data) ~= "table" then
    return
  end
  local index = done.user_data[ITEM_KEY]
  local item = index and state.items[index]
  local client = vim.lsp.get_client_by_id(state.client_id)
  if not item or not client then
    return
  end
  local row, col = unpack(vim.api.nvim_win_get_cursor(0))
  -- Edit only once the completion is over: during CompleteDone Vim still owns the
  -- completed word, and an edit of the cursor's own line there is undone or
  -- doubled when insert-mode completion finishes.
  vim.schedule(function()
    apply_item(bufnr, client, item, state, row, col)
  end)
end

--- Asks the cascode server for the completion at the cursor and opens the menu.
---@param bufnr integer|nil
function M.trigger(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and vim.api.nvim_get_current_buf() or bufnr
  local client = vim.lsp.get_clients({ name = "cascode", bufnr = bufnr })[1]
  if not client then
    vim.notify("cascode: the server is not attached to this buffer", vim.log.levels.WARN)
    return
  end
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.context = { triggerKind = 1 }
  local tick = vim.b[bufnr].changedtick
  local row, col = unpack(vim.api.nvim_win_get_cursor(0))
  client:request("textDocument/completion", params, function(err, result)
    if err then
      vim.notify("cascode: " .. tostring(err.message or err), vim.log.levels.WARN)
      return
    end
    if vim.b[bufnr].changedtick ~= tick or vim.api.nvim_get_current_buf() ~= bufnr then
      return -- the user typed on: this answer is for a text that is gone
    end
    local items = result and (result.items or result) or {}
    local entries = {}
    for i, item in ipairs(items) do
      if item.textEdit and item.textEdit.range then
        table.insert(entries, {
          word = word_of(item),
          abbr = item.label,
          menu = "[cascode]",
          info = documentation(item),
          icase = 1,
          dup = 1,
          empty = 1,
          user_data = { [ITEM_KEY] = i },
        })
      end
    end
    if #entries == 0 then
      vim.notify("cascode: no answer here (put the cursor in a function stub)", vim.log.levels.INFO)
      return
    end
    if not vim.api.nvim_get_mode().mode:match("^i") then
      return
    end
    -- Always show the menu (the provenance is beside it) and insert nothing until
    -- the item is chosen: a lone match would otherwise be inserted at once, with
    -- the completion still open. The user's 'completeopt' is back on CompleteDone.
    -- A menu asked for again before the last one closed keeps the user's value.
    local saved = pending[bufnr] and pending[bufnr].completeopt or vim.o.completeopt
    local opts = vim.split(saved, ",", { trimempty = true })
    for _, opt in ipairs({ "menuone", "noinsert" }) do
      if not vim.tbl_contains(opts, opt) then
        table.insert(opts, opt)
      end
    end
    vim.o.completeopt = table.concat(opts, ",")
    pending[bufnr] = {
      client_id = client.id, items = items, row = row - 1, col = col, completeopt = saved,
    }
    vim.fn.complete(col + 1, entries)
  end, bufnr)
end

--- Makes `bufnr` apply chosen cascode items (once per buffer).
---@param bufnr integer
function M.attach(bufnr)
  local group = vim.api.nvim_create_augroup("cascode.complete." .. bufnr, { clear = true })
  vim.api.nvim_create_autocmd("CompleteDone", {
    group = group,
    buffer = bufnr,
    callback = function()
      on_complete_done(bufnr)
    end,
  })
end

return M
