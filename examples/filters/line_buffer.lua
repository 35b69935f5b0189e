-- line_buffer.lua: line-buffered rewrite of what clients send.
--
-- Forwards only whole lines ("\n"), upper-cased. Without a whole line
-- on_data returns nil: the stage holds the chunk (up to 64 KiB) and calls
-- again with it and what follows. The unfinished end of a chunk that had
-- lines waits in s.state.tail. At the client's end the rest goes as it is.
-- Replies pass unchanged.

function on_data(s, dir, chunk, eof)
  if dir ~= "up" then return chunk end
  local buf = (s.state.tail or "") .. chunk
  if eof then return buf:upper() end
  local last = buf:match(".*()\n")       -- where the last "\n" is
  if not last then return nil end        -- no whole line yet: hold it
  s.state.tail = buf:sub(last + 1)
  return buf:sub(1, last):upper()
end
