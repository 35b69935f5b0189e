-- redis_readonly.lua: a read-only Redis, whatever the server allows.
--
-- Parses the RESP commands clients send (arrays of bulk strings, as
-- redis-cli and client libraries send them, and inline commands). A write
-- command is not forwarded: the client gets Redis's own replica answer
-- instead, injected into the reply stream at once. Reads pass. In a
-- pipeline that mixes reads and writes, the answers to writes can arrive
-- before the server's replies to earlier reads: fine for redis-cli and
-- for one command at a time, not for a client that pipelines both.

local READONLY = "-READONLY You can't write against a read only replica.\r\n"

local WRITES = {}
for w in ([[set setnx setex psetex mset msetnx append del unlink incr incrby
  incrbyfloat decr decrby getset getdel getex expire expireat pexpire pexpireat
  persist rename renamenx move copy restore sort lpush rpush lpushx rpushx lpop
  rpop lset lrem ltrim linsert lmove blmove rpoplpush brpoplpush blpop brpop
  lmpop blmpop sadd srem spop smove sinterstore sunionstore sdiffstore zadd
  zincrby zrem zpopmin zpopmax bzpopmin bzpopmax zmpop bzmpop zremrangebyrank
  zremrangebyscore zremrangebylex zunionstore zinterstore zdiffstore zrangestore
  hset hsetnx hmset hdel hincrby hincrbyfloat pfadd pfmerge setrange setbit
  bitop bitfield xadd xdel xtrim xgroup xack xclaim xautoclaim xsetid geoadd
  georadius georadiusbymember geosearchstore flushdb flushall swapdb eval
  evalsha evalsha_ro fcall function script publish spublish migrate]]):gmatch("%S+") do
  WRITES[w] = true
end

-- One command at pos: its name (lower case) and the position after it,
-- or nil if it is not all there yet. Raises on what is not RESP.
local function parse(buf, pos)
  if buf:sub(pos, pos) ~= "*" then                    -- inline command
    local e = buf:find("\r?\n", pos)
    if not e then return nil end
    local line = buf:sub(pos, e - 1)
    local nl = buf:find("\n", e, true)
    return (line:match("^%s*(%S*)") or ""):lower(), nl + 1
  end
  local e = buf:find("\r\n", pos, true)
  if not e then return nil end
  local n = tonumber(buf:sub(pos + 1, e - 1))
  if not n then error("bad RESP array header") end
  pos = e + 2
  local name
  for i = 1, n do
    if buf:sub(pos, pos) == "" then return nil end
    if buf:sub(pos, pos) ~= "$" then error("bad RESP bulk string") end
    e = buf:find("\r\n", pos, true)
    if not e then return nil end
    local len = tonumber(buf:sub(pos + 1, e - 1))
    if not len then error("bad RESP bulk length") end
    if #buf < e + 2 + len + 1 then return nil end
    if i == 1 then name = buf:sub(e + 2, e + 1 + len):lower() end
    pos = e + 2 + len + 2
  end
  return name or "", pos
end

-- Whole commands are judged; the unfinished end of a chunk waits in
-- s.state.tail, and a chunk without a whole command is held (nil).
function on_data(s, dir, chunk, eof)
  if dir ~= "up" then return chunk end
  local buf = (s.state.tail or "") .. chunk
  local out, pos = {}, 1
  while pos <= #buf do
    local name, after = parse(buf, pos)
    if not name then break end
    if WRITES[name] then
      s:send("down", READONLY)
      s:log("refused " .. name)
    else
      out[#out + 1] = buf:sub(pos, after - 1)
    end
    pos = after
  end
  if pos == 1 and #buf > 0 and not eof then return nil end
  s.state.tail = buf:sub(pos)            -- at eof an unfinished command is dropped
  return table.concat(out)
end
