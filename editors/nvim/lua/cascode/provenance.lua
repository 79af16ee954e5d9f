-- Plain functions over what the server sends: the provenance of an answer as
-- Markdown lines, its asserts as a test, the status line text.

local M = {}

local function num(value, digits)
  if type(value) == "number" then
    return string.format("%." .. digits .. "f", value)
  end
  return "n/a"
end

--- Markdown lines for an answer's provenance (`cascode.lastAnswer`).
---@param p table|nil
---@return string[]
function M.format(p)
  if type(p) ~= "table" then
    return { "No answer yet: write a function's signature and docstring to get one." }
  end
  local lines = {}
  local verdict = M.verdict(p)
  if p.cached then
    verdict = verdict .. ", from cache"
  end
  local what = (type(p["function"]) == "string" and p["function"] ~= "")
      and (" `" .. p["function"] .. "`")
    or ""
  table.insert(
    lines,
    string.format(
      "**%s** answered%s on tier **%s** (%s)",
      p.member or "?",
      what,
      p.tier or "?",
      verdict
    )
  )
  table.insert(lines, "")
  table.insert(lines, "- " .. M.proof(p))
  local label = type(p.label) == "table" and p.label or nil
  if label and type(label.text) == "string" and label.state ~= "unverified" then
    table.insert(lines, "- " .. label.text)
  end
  table.insert(
    lines,
    string.format("- score %s against threshold %s", num(p.score, 2), num(p.threshold, 2))
  )
  local tokens = type(p.tokens) == "number" and tostring(p.tokens) or "n/a"
  table.insert(lines, string.format("- %s tokens, %s s", tokens, num(p.seconds, 1)))
  if type(p.note) == "string" and p.note ~= "" then
    table.insert(lines, "- " .. p.note)
  end
  if type(p.load) == "string" and p.load ~= "" then
    table.insert(lines, "- " .. p.load)
  end
  local stages = type(p.stages) == "table" and p.stages or {}
  if #stages > 1 then
    local path = {}
    for _, s in ipairs(stages) do
      table.insert(
        path,
        string.format("%s (%s/%s)", s.member or "?", num(s.score, 2), num(s.threshold, 2))
      )
    end
    table.insert(lines, "- stages: " .. table.concat(path, " -> "))
  end
  local examples = type(p.examples) == "table" and p.examples or {}
  if #examples > 0 then
    -- Which lines failed is told when some passed; otherwise the proof line says why.
    local mark_failed = false
    for _, e in ipairs(examples) do
      mark_failed = mark_failed or e.passed == true
    end
    table.insert(lines, "")
    table.insert(lines, #examples == 1 and "Your example:" or "Your examples:")
    table.insert(lines, "")
    table.insert(lines, "```python")
    for _, e in ipairs(examples) do
      local notes = {}
      if mark_failed and e.passed ~= true then
        table.insert(notes, "failed")
      end
      if type(e.origin) == "string" and e.origin ~= "docstring" then
        table.insert(notes, e.origin)
      end
      local text = tostring(e.text or "")
      if #notes > 0 then
        text = text .. "  # " .. table.concat(notes, "; ")
      end
      vim.list_extend(lines, vim.split(text, "\n", { plain = true }))
    end
    table.insert(lines, "```")
  end
  local asserts = type(p.asserts) == "table" and p.asserts or {}
  if #asserts > 0 then
    table.insert(lines, "")
    table.insert(
      lines,
      string.format("Passed %d generated assert%s:", #asserts, #asserts == 1 and "" or "s")
    )
    table.insert(lines, "")
    table.insert(lines, "```python")
    vim.list_extend(lines, asserts)
    table.insert(lines, "```")
  end
  return lines
end

--- The label's state as the float's verdict: verified, *likely*, **unverified**
--- (docs/method.md 8.3; older servers send no label: verified or not).
---@param p table
---@return string
function M.verdict(p)
  local label = type(p.label) == "table" and p.label or nil
  local state = label and label.state or (p.verified and "verified" or "unverified")
  if state == "verified" then
    return "verified"
  end
  if state == "likely" then
    if label and type(label.percent) == "number" then
      return string.format("*likely, right %d%%*", label.percent)
    end
    return "*likely*"
  end
  return "**unverified**"
end

--- What proved the answer, in one line (older servers: verified or not).
---@param p table
---@return string
function M.proof(p)
  if type(p.proof) == "string" and p.proof ~= "" then
    return p.proof
  end
  if p.verified then
    local n = type(p.asserts) == "table" and #p.asserts or 0
    return string.format("passed %d generated asserts", n)
  end
  if type(p.note) == "string" and p.note ~= "" then
    return "unverified: " .. p.note
  end
  return "unverified"
end

local function squeeze(text)
  return (text:gsub("%s+", ""))
end

--- The asserts `document` (a list of lines) does not have yet: an assert is there when a
--- line, whitespace aside, is that assert (a multi-line one: when its text, whitespace
--- aside, is in the document). Repeats are dropped too.
---@param asserts string[]
---@param document string[]|nil
---@return string[]
function M.missing_asserts(asserts, document)
  local lines, whole = {}, {}
  for _, line in ipairs(document or {}) do
    local key = squeeze(line)
    lines[key] = true
    table.insert(whole, key)
  end
  local all = table.concat(whole)
  local seen, out = {}, {}
  for _, a in ipairs(asserts or {}) do
    local text = vim.trim(tostring(a))
    local key = squeeze(text)
    if key ~= "" and not seen[key] then
      seen[key] = true
      local present
      if text:find("\n", 1, true) then
        present = all:find(key, 1, true) ~= nil
      else
        present = lines[key] == true
      end
      if not present then
        table.insert(out, text)
      end
    end
  end
  return out
end

--- The lines an answer's test is made of: the user's example lines that are asserts
--- (an expected exception, "call raises Error", is not one), then the generated asserts
--- it passed, leaving out those `document` (a list of lines) already has.
---@param p table|nil the answer's provenance
---@param document string[]|nil
---@return string[]
function M.answer_asserts(p, document)
  if type(p) ~= "table" then
    return {}
  end
  local all = {}
  for _, e in ipairs(type(p.examples) == "table" and p.examples or {}) do
    local text = vim.trim(tostring(e.text or ""))
    if text:match("^assert[%s%(]") then
      table.insert(all, text)
    end
  end
  vim.list_extend(all, type(p.asserts) == "table" and p.asserts or {})
  return M.missing_asserts(all, document)
end

--- The asserts as a pytest test function (lines), indented by `indent`; {} when none.
--- Named `test_<fn>_2` (and so on) when `document` (a list of lines) defines `test_<fn>`.
---@param asserts string[]
---@param indent string
---@param fn string|nil the answered function's name
---@param document string[]|nil
---@return string[]
function M.asserts_as_test(asserts, indent, fn, document)
  local body = {}
  for _, a in ipairs(asserts or {}) do
    local line = vim.trim(a)
    if line ~= "" then
      table.insert(body, line)
    end
  end
  if #body == 0 then
    return {}
  end
  local name = fn
  if type(name) ~= "string" or name == "" then
    name = body[1]:match("^assert%s+not%s+%(?%s*([%a_][%w_]*)%s*%(")
      or body[1]:match("^assert%s+%(?%s*([%a_][%w_]*)%s*%(")
      or "answer"
  end
  local defined = {}
  for _, line in ipairs(document or {}) do
    local existing = line:match("^%s*def%s+([%w_]+)%s*%(")
    if existing then
      defined[existing] = true
    end
  end
  local base = "test_" .. name
  local test = base
  local n = 2
  while defined[test] do
    test = base .. "_" .. n
    n = n + 1
  end
  local lines = { indent .. "def " .. test .. "():" }
  for _, a in ipairs(body) do
    for _, line in ipairs(vim.split(a, "\n", { plain = true })) do
      table.insert(lines, indent .. "    " .. line)
    end
  end
  return lines
end

--- The status line text for a `cascode/status` state.
---@param status table {state, tier, message}
---@return string
function M.statusline(status)
  local tier = (status.tier and status.tier ~= "") and status.tier or "?"
  local state = status.state or "starting"
  if state == "ready" then
    return "cascode: " .. tier
  end
  return string.format("cascode: %s (%s)", tier, state)
end

return M
