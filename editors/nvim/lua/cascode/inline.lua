-- The ghost text beyond what vim.lsp.inline_completion (Neovim 0.12) does by itself:
-- accepting the first line of an answer, asking for one explicitly (an `Invoked`
-- request, which the server answers also with `cascode.trigger = "manual"`), and
-- showing an answer the user typed along from the cursor.

local M = {}

local METHOD = "textDocument/inlineCompletion"
local INVOKED = 1 -- lsp.InlineCompletionTriggerKind

--- The first line of the ghost text `ghost` and what is left after it. A ghost text that
--- starts with a line break (the rest of a function, asked for at the end of its last
--- written line) gives the break and the line after it.
---@param ghost string
---@return string first, string rest
function M.first_line(ghost)
  local lead = ghost:sub(1, 1) == "\n" and "\n" or ""
  local after = ghost:sub(#lead + 1)
  local line = after:match("^[^\n]*")
  return lead .. line, after:sub(#line + 1)
end

local function text_in(bufnr, range)
  local lines = vim.api.nvim_buf_get_text(
    bufnr, range.start.row, range.start.col, range.end_.row, range.end_.col, {}
  )
  return table.concat(lines, "\n")
end

--- Replaces `range` (0-based rows, byte columns) with `text`; the cursor goes after it.
local function replace(bufnr, range, text)
  local lines = vim.split(text, "\n", { plain = true })
  local row, col = range.start.row, range.start.col
  vim.api.nvim_buf_set_text(bufnr, row, col, range.end_.row, range.end_.col, lines)
  local last = #lines == 1 and col + #lines[1] or #lines[#lines]
  local win = vim.fn.bufwinid(bufnr)
  if win ~= -1 then
    vim.api.nvim_win_set_cursor(win, { row + #lines, last })
  end
end

local function run_command(bufnr, item)
  if item.command then
    local client = vim.lsp.get_client_by_id(item.client_id)
    if client then
      client:exec_cmd(item.command, { bufnr = bufnr })
    end
  end
end

--- Applies the first line of `item` (a vim.lsp.inline_completion.Item): the part of its
--- text that is not in the buffer yet, up to its next line break, at the end of its range.
--- The rest stays an answer the server shows again (typing along, no new run). When
--- nothing but whitespace would be left, or the item's text does not extend what its
--- range holds, the whole item is applied and its command (cascode.accepted) runs.
local function accept_first_line(bufnr, item)
  local text = item.insert_text
  if type(text) ~= "string" then -- a snippet: only as a whole
    vim.snippet.expand(text.value)
    run_command(bufnr, item)
    return
  end
  local range = item.range
  if not range then
    local row, col = unpack(vim.api.nvim_win_get_cursor(0))
    range = { start = { row = row - 1, col = col }, end_ = { row = row - 1, col = col } }
  end
  local held = text_in(bufnr, range)
  if vim.startswith(text, held) then
    local first, rest = M.first_line(text:sub(#held + 1))
    if rest:match("%S") then
      replace(bufnr, { start = range.end_, end_ = range.end_ }, first)
      return
    end
  end
  replace(bufnr, range, text)
  run_command(bufnr, item)
end

--- Accepts the first line of the ghost text in `bufnr`; false when none is shown.
---@param bufnr integer
---@return boolean
function M.accept_line(bufnr)
  return vim.lsp.inline_completion.get({
    bufnr = bufnr,
    on_accept = function(item)
      accept_first_line(bufnr, item)
    end,
  })
end

--- vim.lsp.inline_completion's state for `bufnr`, which can send an `Invoked` request.
--- Neovim has no public call for that (its requests are all `Automatic`), so this reads
--- a private table; nil where a Neovim lacks it.
local function completor(bufnr)
  local ok, capability = pcall(require, "vim.lsp._capability")
  local class = ok and type(capability) == "table" and type(capability.all) == "table"
    and capability.all.inline_completion
  local c = type(class) == "table" and type(class.active) == "table" and class.active[bufnr]
  if type(c) == "table" and type(c.request) == "function" then
    return c
  end
  return nil
end

--- Whether this Neovim lets the plugin ask for ghost text explicitly.
---@param bufnr integer|nil
function M.can_trigger(bufnr)
  if bufnr then
    return completor(bufnr) ~= nil
  end
  local ok, capability = pcall(require, "vim.lsp._capability")
  return ok and type(capability.all) == "table" and capability.all.inline_completion ~= nil
end

--- Sends an explicit (`Invoked`) inline completion request for the cursor in `bufnr`;
--- false when this Neovim cannot.
---@param bufnr integer
---@return boolean
function M.trigger(bufnr)
  local c = completor(bufnr)
  if not c then
    return false
  end
  c:request(INVOKED)
  return true
end

--- An answer the user typed along comes back with its range widened over what was typed.
--- Neovim draws the ghost text from the range's start: over lines typed since, that puts
--- the rest above them. The same item from the cursor on (the typed part taken off its
--- text) is drawn where it goes and inserts the same text.
local function from_cursor(bufnr, client, item)
  local rng = item.range
  local win = vim.fn.bufwinid(bufnr)
  if type(item.insertText) ~= "string" or type(rng) ~= "table" or win == -1 then
    return
  end
  local row, col = unpack(vim.api.nvim_win_get_cursor(win))
  row = row - 1
  if rng.start.line >= row or rng["end"].line ~= row then
    return -- on the cursor's line alone Neovim's own drawing skips what was typed
  end
  local enc = client.offset_encoding
  local function byte(pos)
    local line = vim.api.nvim_buf_get_lines(bufnr, pos.line, pos.line + 1, false)[1] or ""
    return vim.str_byteindex(line, enc, pos.character, false)
  end
  if byte(rng["end"]) ~= col then
    return
  end
  local typed = text_in(bufnr, {
    start = { row = rng.start.line, col = byte(rng.start) },
    end_ = { row = row, col = col },
  })
  if not vim.startswith(item.insertText, typed) then
    return
  end
  item.insertText = item.insertText:sub(#typed + 1)
  item.range = { start = rng["end"], ["end"] = rng["end"] }
end

--- Makes `client`'s inline completion answers show from the cursor (see from_cursor).
--- vim.lsp.inline_completion hands each answer straight to its own handler, so the
--- plugin wraps this client's `request` (only for textDocument/inlineCompletion).
---@param client vim.lsp.Client
function M.attach(client)
  if client._cascode_inline then
    return
  end
  client._cascode_inline = true
  local request = client.request
  client.request = function(self, method, params, handler, bufnr)
    if method == METHOD and handler then
      local handle = handler
      handler = function(err, result, ctx)
        if type(result) == "table" and ctx and ctx.bufnr then
          for _, item in ipairs(result.items or result) do
            from_cursor(ctx.bufnr, self, item)
          end
        end
        return handle(err, result, ctx)
      end
    end
    return request(self, method, params, handler, bufnr)
  end
end

return M
