-- add_header.lua: adds a header to each HTTP request going up.
--
-- Holds the request until its header block is complete ("\r\n\r\n"), then
-- puts X-Via-Ferry after the request line. Bodies and the responses pass
-- through. Pipelined requests are each rewritten (a request's body is
-- passed by Content-Length; chunked bodies are passed as they come).

local HEADER = "X-Via-Ferry: 1\r\n"

local function rewrite(s, buf)
  local out = {}
  while true do
    local st = s.state
    if (st.body or 0) > 0 then
      local n = math.min(st.body, #buf)
      out[#out + 1] = buf:sub(1, n)
      st.body = st.body - n
      buf = buf:sub(n + 1)
      if st.body > 0 then return table.concat(out), "" end
    end
    local head_end = buf:find("\r\n\r\n", 1, true)
    if not head_end then return table.concat(out), buf end
    local line_end = buf:find("\r\n", 1, true)
    out[#out + 1] = buf:sub(1, line_end + 1) .. HEADER .. buf:sub(line_end + 2, head_end + 3)
    local len = buf:sub(1, head_end):lower():match("\ncontent%-length:%s*(%d+)")
    st.body = tonumber(len) or 0
    buf = buf:sub(head_end + 4)
  end
end

local MAX_HEAD = 32 * 1024

-- The unfinished part of a header waits in s.state.rest (on_data's nil
-- would hold the whole chunk, and part of it may be done already).
function on_data(s, dir, chunk, eof)
  if dir ~= "up" then return chunk end
  local out, rest = rewrite(s, (s.state.rest or "") .. chunk)
  if eof then return out .. rest end
  if #rest > MAX_HEAD then
    s:send("down", "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n")
    s:close()
    return ""
  end
  s.state.rest = rest
  return out
end
