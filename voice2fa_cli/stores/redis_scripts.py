"""The Lua scripts of the Redis store: every check-and-update runs on the server, atomically.

Each script touches only keys of one number (they share the hash tag `{+1555…}`), or one
global key, so the store works on Redis Cluster. Each starts with a `#!lua` line, so Redis
refuses a writing script before it runs when the server is out of memory (never half a
script's effects). Time is the server's (`TIME`), unless a test
passes its own clock, and never runs backwards: each number keeps a high-water mark, so a clock
stepped back cannot lengthen a code's life.

Keys of a number N under the prefix P (`voice2fa:` or `voice2fa:sandbox:`), where S is `` for
the CLI's sessions and `:<service sid>` for a serve service's:
  P{N}S:h     hash: `s:<id>` → the session as JSON, `newest` → id, `seq`, `fseq`, `hw`
  P{N}S:fail  sorted set of wrong codes (score: time), for the lockout across sessions
  P{N}:calls  sorted set of calls placed (score: time), for the per-number send limit (all services)
and, for all numbers: P{recent}:z and P{recent}:seq (the listing, in the server's order),
P{calls} (calls in the last hour), P{calls:<service>} (a service's), Pid:<session id> (its
number and service), voice2fa:meta (the key's fingerprint and the schema).

A session's `mac` (redis_keys.Layout.session_mac) is written by SIGN right after CREATE; no
script changes a field it covers. Records are stored as the caller sealed them (with their MAC)
and never rewritten here.
"""

from __future__ import annotations

# Shared by every script: the clock, the session codec and the lockout rule.
_PRELUDE = """
local OPEN = {calling = true, delivered = true}

-- The server's time (or a test's), and the number's highest time seen so far. A clock that
-- reads more than a second behind that mark was set back: the number's codes end (their age can
-- no longer be told). `advance` moves the mark forward.
local function clock(h, given, advance)
  local now
  if given ~= '' then
    now = tonumber(given)
  else
    local t = redis.call('TIME')
    now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  end
  local hw = tonumber(redis.call('HGET', h, 'hw') or '0')
  if advance and now > hw then
    redis.call('HSET', h, 'hw', string.format('%.6f', now))
  end
  return now, hw
end

local SLACK = 1.0  -- seconds of backward jitter tolerated (a failover to a replica, say)

local function clock_back(s, now, hw)
  return now < s.created_at - SLACK or now < hw - SLACK or hw >= s.expires_at
end

-- Times travel as strings: cjson keeps only 14 significant digits of a number.
local TIMES = {'created_at', 'expires_at', 'closed_at'}

local function decode(raw)
  local s = cjson.decode(raw)
  for _, k in ipairs(TIMES) do
    if s[k] ~= '' then s[k] = tonumber(s[k]) end
  end
  return s
end

local function encode(s)
  local copy = {}
  for k, v in pairs(s) do copy[k] = v end
  for _, k in ipairs(TIMES) do
    if s[k] ~= '' then copy[k] = string.format('%.6f', s[k]) end
  end
  return cjson.encode(copy)
end

local function load(h, id)
  if not id then return nil end
  local raw = redis.call('HGET', h, 's:' .. id)
  if not raw then return nil end
  return decode(raw)
end

local function save(h, s)
  redis.call('HSET', h, 's:' .. s.id, encode(s))
end

-- NUMBER_FAILURE_LIMIT failures within FAILURE_WINDOW lock the number for LOCK_SECONDS from
-- the failure that reached the limit.
local function lock_end(f, now, limit, window, lock)
  local rows = redis.call('ZRANGEBYSCORE', f, '(' .. string.format('%.6f', now - window - lock), '+inf', 'WITHSCORES')
  local ts = {}
  for i = 2, #rows, 2 do ts[#ts + 1] = tonumber(rows[i]) end
  for i = limit, #ts do
    if ts[i] - ts[i - limit + 1] <= window then
      local untl = ts[i] + lock
      if untl > now then return untl end
    end
  end
  return nil
end

local function num(x) return string.format('%.6f', x) end

-- Expiry is relative to `now` (a test's clock may be far from the server's).
local function keep_until(key, now, at)
  local ms = math.max(1, math.floor((at - now) * 1000))
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, ms) end
end
"""

# KEYS: h. ARGV: now, id, number, digest (hex), ttl, max_attempts, call_sid, call_status,
# sandbox (0/1), retain, service, version. Supersedes the number's open sessions (of this hash:
# this service); returns the new one as JSON, its MAC still to be signed.
CREATE = "#!lua\n" + _PRELUDE + """
local h = KEYS[1]
local now = clock(h, ARGV[1], false)
redis.call('HSET', h, 'hw', string.format('%.6f', now))  -- the new code lives its whole TTL by this clock
local retain = tonumber(ARGV[10])
local all = redis.call('HGETALL', h)
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 2) == 's:' then
    local s = decode(all[i + 1])
    if s.expires_at + retain < now then
      redis.call('HDEL', h, all[i])
    elseif OPEN[s.state] then
      s.state = 'superseded'
      s.closed_at = now
      save(h, s)
    end
  end
end
local seq = redis.call('HINCRBY', h, 'seq', 1)
local s = {
  id = ARGV[2], number = ARGV[3], digest = ARGV[4], created_at = now,
  expires_at = now + tonumber(ARGV[5]), attempts = 0, max_attempts = tonumber(ARGV[6]),
  state = 'calling', call_sid = ARGV[7], call_status = ARGV[8], sandbox = tonumber(ARGV[9]),
  seq = seq, closed_at = '', service = ARGV[11], v = tonumber(ARGV[12]), mac = '',
}
save(h, s)
redis.call('HSET', h, 'newest', s.id)
keep_until(h, now, s.expires_at + retain)
return encode(s)
"""

# KEYS: h. ARGV: id, mac. The new session's MAC, once (a signed session is never re-signed).
SIGN = "#!lua\n" + _PRELUDE + """
local s = load(KEYS[1], ARGV[1])
if not s or s.mac ~= '' then return 0 end
s.mac = ARGV[2]
save(KEYS[1], s)
return 1
"""

# KEYS: h, fail, calls. ARGV: now, member, sends per number, send window, limit, window, lock.
# The number's lock and its send limit, and the call counted, in one step. Returns
# {'ok', now} | {'locked', until} | {'number', count, retry_at}.
RESERVE_NUMBER = "#!lua\n" + _PRELUDE + """
local h, f, c = KEYS[1], KEYS[2], KEYS[3]
local now = clock(h, ARGV[1], true)
local untl = lock_end(f, now, tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]))
if untl then return {'locked', num(untl)} end
local sends, window = tonumber(ARGV[3]), tonumber(ARGV[4])
local recent = redis.call('ZRANGEBYSCORE', c, '(' .. num(now - window), '+inf', 'WITHSCORES')
local count = #recent / 2
if count >= sends then
  return {'number', tostring(count), num(tonumber(recent[(count - sends) * 2 + 2]) + window)}
end
redis.call('ZADD', c, num(now), ARGV[2])
redis.call('ZREMRANGEBYSCORE', c, '-inf', num(now - window))
keep_until(c, now, now + window)
return {'ok', num(now)}
"""

# KEYS: calls (all numbers). ARGV: now, member, max per hour, hour.
# Returns {'ok'} | {'hour', count, retry_at}.
RESERVE_HOUR = """#!lua
local c = KEYS[1]
local now, limit, hour = tonumber(ARGV[1]), tonumber(ARGV[3]), tonumber(ARGV[4])
local recent = redis.call('ZRANGEBYSCORE', c, '(' .. string.format('%.6f', now - hour), '+inf', 'WITHSCORES')
local count = #recent / 2
if count >= limit then
  return {'hour', tostring(count), string.format('%.6f', tonumber(recent[(count - limit) * 2 + 2]) + hour)}
end
redis.call('ZADD', c, string.format('%.6f', now), ARGV[2])
redis.call('ZREMRANGEBYSCORE', c, '-inf', string.format('%.6f', now - hour))
redis.call('PEXPIRE', c, math.floor(hour * 1000))
return {'ok'}
"""

# KEYS: h, fail. ARGV: now, session id ('' = the newest), the id the digest was made for,
# digest (hex), limit, window, lock.
# Returns {kind, session JSON or '', attempts left, lock end or '', now}; kind is one of retry,
# locked, none, closed, expired, clock-back, verified, wrong.
_CHECK_BODY = """
local h, f = KEYS[1], KEYS[2]
local now, hw = clock(h, ARGV[1], true)
local id = ARGV[2]
if id == '' then id = redis.call('HGET', h, 'newest') or '' end
if id ~= ARGV[3] then return {'retry', '', 0, ''} end
local s = load(h, id ~= '' and id or nil)
local untl = lock_end(f, now, tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]))
local function out(kind, left)
  return {kind, s and encode(s) or '', left or 0, untl and num(untl) or '', num(now)}
end
if untl then return out('locked') end
if not s then return out('none') end
if not OPEN[s.state] then return out('closed') end
if now >= s.expires_at then return out('expired') end
if clock_back(s, now, hw) then return out('clock-back') end
if s.digest == ARGV[4] then
  s.state = 'verified'
  s.closed_at = now
  save(h, s)
  return out('verified', math.max(0, s.max_attempts - s.attempts))
end
s.attempts = s.attempts + 1
local left = math.max(0, s.max_attempts - s.attempts)
if left == 0 then
  s.state = 'locked'
  s.closed_at = now
end
save(h, s)
local n = redis.call('HINCRBY', h, 'fseq', 1)
redis.call('ZADD', f, num(now), num(now) .. ':' .. n)
keep_until(f, now, now + tonumber(ARGV[6]) + tonumber(ARGV[7]))
return out('wrong', left)
"""
CHECK = "#!lua\n" + _PRELUDE + _CHECK_BODY

# KEYS: a pending record's key, then CHECK's (h, fail) of its number. ARGV: now, number, the
# session id the digest was made for, digest (hex), limit, window, lock.
# A check by `To` in one round trip (standalone Redis: the keys are in different slots): the
# live pending record (the same life test as GET_RECORD's caller, on the same clock) and, when
# it names that session of that number, CHECK on it, atomically. Returns {'gone'} (no live
# pending record), {'retry', record} (it names another session or number: the caller checks the
# usual way), or CHECK's answer followed by the record.
CHECK_PENDING = "#!lua\n" + _PRELUDE + "local function check(KEYS, ARGV)\n" + _CHECK_BODY + """end
local raw = redis.call('GET', KEYS[1])
if not raw then return {'gone'} end
local env = cjson.decode(raw)
local e = env.expires_at
if e ~= nil and e ~= cjson.null then
  local now = tonumber(ARGV[1])
  if not now then
    local t = redis.call('TIME')
    now = tonumber(t[1]) + tonumber(t[2]) / 1e6
  end
  if tonumber(e) <= now then return {'gone'} end
end
local body = env.body
if type(body) ~= 'table' or body.status ~= 'pending' then return {'gone'} end
if body.to ~= ARGV[2] or body.session ~= ARGV[3] or ARGV[3] == '' then return {'retry', raw} end
local r = check({KEYS[2], KEYS[3]}, {ARGV[1], ARGV[3], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]})
return {r[1], r[2], r[3], r[4], r[5], raw}
"""

# KEYS: h. ARGV: id, state ('' = unchanged), call_status ('' = unchanged), now.
RECORD = "#!lua\n" + _PRELUDE + """
local h = KEYS[1]
local s = load(h, ARGV[1])
if not s then return 0 end
if ARGV[2] ~= '' and OPEN[s.state] then
  s.state = ARGV[2]
  if not OPEN[ARGV[2]] then s.closed_at = clock(h, ARGV[4], true) end
end
if ARGV[3] ~= '' then s.call_status = ARGV[3] end
save(h, s)
return 1
"""

# KEYS: h, fail. ARGV: now, limit, window, lock. Read only: {newest JSON or '', lock end or ''}.
PEEK = "#!lua flags=no-writes\n" + _PRELUDE + """
local h, f = KEYS[1], KEYS[2]
local now = clock(h, ARGV[1], false)
local s = load(h, redis.call('HGET', h, 'newest'))
local untl = lock_end(f, now, tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
return {s and encode(s) or '', untl and num(untl) or ''}
"""

# KEYS: h. ARGV: now. Drops the number's expired sessions; returns how many.
PURGE = "#!lua\n" + _PRELUDE + """
local h = KEYS[1]
local now = clock(h, ARGV[1], false)
local removed = 0
local all = redis.call('HGETALL', h)
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 2) == 's:' then
    local s = decode(all[i + 1])
    if s.expires_at <= now then
      redis.call('HDEL', h, all[i])
      removed = removed + 1
    end
  end
end
return removed
"""

# KEYS: the listing index (sorted set), its counter. ARGV: member, how many to keep.
# Sessions are listed in the order the server indexed them, whatever the clocks say.
INDEX = """#!lua
local n = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[1], n, ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[2]) - 1)
return n
"""

# KEYS: the record's key, its kind's index (sorted set). ARGV: id, the record (JSON with its
# expires_at), only_new ('1' or ''), its PX ('' for none), its end of life ('' for none), now.
# With only_new, a live record under the key is left alone (returns 0). Returns 1 when stored.
PUT_RECORD = """#!lua
if ARGV[3] == '1' then
  local old = redis.call('GET', KEYS[1])
  if old then
    local e = cjson.decode(old).expires_at
    local now = tonumber(ARGV[6])
    if not now then
      local t = redis.call('TIME')
      now = tonumber(t[1]) + tonumber(t[2]) / 1e6
    end
    if e == nil or e == cjson.null or tonumber(e) > now then return 0 end
  end
end
if ARGV[4] == '' then
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[4])
end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
"""

# KEYS: the record's key. The stored record and the server's time (seconds, microseconds), in
# one round trip; nil when there is no record. The caller tells whether it is still live.
GET_RECORD = """#!lua flags=no-writes
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
local t = redis.call('TIME')
return {raw, t[1], t[2]}
"""

# KEYS: the record's key, its kind's index. ARGV: id, the record (JSON with its expires_at), the
# rev the live record must have (no live record: 0), its PX, now ('' for the server's time).
# Returns 1 when stored, 0 when the live record's rev differs.
SWAP_RECORD = """#!lua
local old = redis.call('GET', KEYS[1])
local rev = 0
if old then
  local env = cjson.decode(old)
  local e = env.expires_at
  local now = tonumber(ARGV[5])
  if not now then
    local t = redis.call('TIME')
    now = tonumber(t[1]) + tonumber(t[2]) / 1e6
  end
  if e == nil or e == cjson.null or tonumber(e) > now then
    rev = tonumber(env.body.rev) or 0
  end
end
if rev ~= tonumber(ARGV[3]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[4])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
"""
