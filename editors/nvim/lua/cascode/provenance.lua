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
  local verdict = p.verified and "verified" or "**unverified**"
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
  table.insert(
    lines,
    string.format("- score %s against threshold %s", num(p.score, 2), num(p.threshold, 2))
  )
  local tokens = type(p.tokens) == "number" and tostring(p.tokens) or "n/a"
  table.insert(lines, string.format("- %s tokens, %s s", tokens, num(p.seconds, 1)))
  if type(p.note) == "string" and p.note ~= "" then
    table.insert(lines, "- " .. p.note)
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

--- The asserts as a pytest test function (lines), indented by `indent`; {} when none.
---@param asserts string[]
---@param indent string
---@param fn string|nil the answered function's name
---@return string[]
function M.asserts_as_test(asserts, indent, fn)
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
  local lines = { indent .. "def test_" .. name .. "():" }
  for _, a in ipairs(body) do
    table.insert(lines, indent .. "    " .. a)
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
