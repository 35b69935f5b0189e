-- first_line_logger.lua: logs the first line each client sends (an HTTP
-- request line, an SMTP greeting reply, a Redis inline command...) with
-- the session's client and destination, and passes every byte unchanged.
--
-- Bytes are never held for the log: until the line is complete its start
-- is kept in s.state (at most 200 bytes), so the stream is not delayed.

local MAX = 200

function on_connect(s)
  s.state.first = ""
end

function on_data(s, dir, chunk, eof)
  local st = s.state
  if dir == "up" and st.first then
    local line = st.first .. chunk
    local nl = line:find("\r?\n")
    if nl or #line >= MAX or eof then
      line = line:sub(1, (nl or MAX + 1) - 1):sub(1, MAX)
      s:log(string.format("first line from %s to %s: %s", s.client, s.dest, line))
      st.first = nil
    else
      st.first = line
    end
  end
  return chunk
end
