-- ilpfleet Redis store: one account's balance operation, atomically (transitions.go, line by
-- line). Every number is an int64 carried as a canonical decimal string: Lua numbers are
-- doubles and would round above 2^53, so sums are made by Redis itself (HINCRBY on a scratch
-- field, exact and overflow-checked) and comparisons on the strings.
--
-- KEYS[1]  the account's hash: b (committed balance), p (pending), o:<instance> (this
--          instance's open packet changes of b), p:<instance> (this instance's part of p);
--          for 'create', the KV key to create (with ARGV[10]); for 'delif', the KV key to
--          delete if it still has the value ARGV[10] gives ('v'..value, as a guard below)
-- KEYS[2]  the instance's hash: t, the token of its current process (a start-up token while it
--          starts, then its running one), and per lane the sequence number and reply of its
--          last write (redis_lanes.go)
-- KEYS[3…] the KV keys written with the balance, for the settlement ops (settlements.go):
--          'settle' writes KEYS[3]; 'credit' writes KEYS[3] and the entries KEYS[4…]
-- ARGV     op, amount, min ('' = none), max ('' = none), instance, scoped ('1' or '0'), token,
--          lane ('' = a write that may run twice: get, recover), seq, then for 'credit' the
--          value of KEYS[3] and, for each entry, 's'..value (set) or 'd' (delete) ('S', 'D'
--          when guarded), then for each guarded entry the value it must still have ('a':
--          absent, 'v'..value). 'settle' takes settleTo as amount and threshold as min. 'void'
--          settles a write whose reply was lost without applying it.
-- Returns  {code, balance, pending, proposed}; code 0 ok, 1 above maximum, 2 below minimum,
--          3 overflow, 4 invalid amount, 5 already recorded ('credit': KEYS[3] exists;
--          'create': KEYS[1] exists),
--          6 fenced (the token is not the instance's: another process took its name),
--          7 stale (a late copy of a write its lane has gone past), 8 voided, 9 a guarded
--          entry's key changed ('credit').
--          'settle' returns the amount raised as proposed ('0': not due); 'recover' the open
--          change and the reservation it reverted, as '<o> <p>'; 'delif' code 0 and '1' when
--          it deleted, '0' when the key was absent or changed (a refusal code would read as a
--          failed write to the resolver, and a changed key is an answer, not a failure).
local key = KEYS[1]
local op, amt, minv, maxv, inst, scoped = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local token, lane, seq = ARGV[7], ARGV[8], ARGV[9]
local ofield, pfield = 'o:' .. inst, 'p:' .. inst

local function cmp(a, b)
  local na, nb = a:sub(1, 1) == '-', b:sub(1, 1) == '-'
  if na ~= nb then
    if na then return -1 end
    return 1
  end
  local ma, mb = a, b
  if na then ma, mb = a:sub(2), b:sub(2) end
  local r = 0
  if #ma ~= #mb then
    if #ma < #mb then r = -1 else r = 1 end
  elseif ma ~= mb then
    if ma < mb then r = -1 else r = 1 end
  end
  if na then r = -r end
  return r
end

-- add returns a+b, or nil when it leaves the int64 range. Operands below 10^15 in magnitude
-- (at most 15 digits) are added as doubles, exact up to 2^53 > 2*10^15; larger ones by Redis.
local function add(a, b)
  local la, lb = #a, #b
  if a:sub(1, 1) == '-' then la = la - 1 end
  if b:sub(1, 1) == '-' then lb = lb - 1 end
  if la <= 15 and lb <= 15 then
    return string.format('%d', tonumber(a) + tonumber(b))
  end
  redis.call('HSET', key, '_t', a)
  local r = redis.pcall('HINCRBY', key, '_t', b)
  local s = nil
  if type(r) ~= 'table' then s = redis.call('HGET', key, '_t') end
  redis.call('HDEL', key, '_t')
  return s
end

local function neg(a)
  if a == '0' then return '0' end
  if a:sub(1, 1) == '-' then return a:sub(2) end
  return '-' .. a
end

-- sub returns a-b (b > MinInt64), or nil on overflow.
local function sub(a, b) return add(a, neg(b)) end

-- dec returns max(a-b, 0) for a >= 0, b > 0.
local function dec(a, b)
  local r = sub(a, b)
  if r == nil or cmp(r, '0') < 0 then return '0' end
  return r
end

-- own adds d to one of this instance's fields, deleting it when it comes back to zero.
local function own(field, d)
  local v = add(redis.call('HGET', key, field) or '0', d) or '0'
  if v == '0' then redis.call('HDEL', key, field) else redis.call('HSET', key, field, v) end
end

-- holds reports whether KV key k still has the value a guard gives: 'a' absent, 'v'..value.
local function holds(k, was)
  local cur = redis.call('GET', k)
  if was == 'a' then return cur == false end
  return cur == was:sub(2)
end

local function apply()
  if op == 'create' then
    -- CreateKey: KEYS[1] is the KV key, ARGV[10] its value.
    if redis.call('SET', key, ARGV[10], 'NX') then return {0, '0', '0', ''} end
    return {5, '0', '0', ''}
  end

  if op == 'delif' then
    -- DeleteKeyIf: KEYS[1] is the KV key, ARGV[10] the guard of the value it must still have.
    if holds(key, ARGV[10]) then
      redis.call('DEL', key)
      return {0, '0', '0', '1'}
    end
    return {0, '0', '0', '0'}
  end

  local cur = redis.call('HMGET', key, 'b', 'p')
  local b, p = cur[1] or '0', cur[2] or '0'

  if op == 'get' then return {0, b, p, ''} end

  if op == 'recover' then
    -- The instance restarted: its open packet changes and its reservations died with it.
    local o = redis.call('HGET', key, ofield) or '0'
    local mine = redis.call('HGET', key, pfield) or '0'
    local nb = sub(b, o) or b
    local np = p
    if mine ~= '0' then np = dec(p, mine) end
    redis.call('HSET', key, 'b', nb, 'p', np)
    redis.call('HDEL', key, ofield, pfield)
    return {0, nb, np, o .. ' ' .. mine}
  end

  if op == 'set' then
    redis.call('HSET', key, 'b', amt)
    return {0, amt, p, ''}
  end

  if op == 'end' then
    -- A packet ended: its change of b is no longer open.
    own(ofield, neg(amt))
    return {0, b, p, ''}
  end

  if op == 'add' then
    local nb = add(b, amt)
    if nb == nil then return {3, b, p, ''} end
    local avail = sub(nb, p)
    if avail == nil then return {3, b, p, ''} end
    if maxv ~= '' and cmp(nb, maxv) > 0 then return {1, b, p, nb} end
    if minv ~= '' and cmp(avail, minv) < 0 then return {2, b, p, avail} end
    redis.call('HSET', key, 'b', nb)
    if scoped == '1' then own(ofield, amt) end
    return {0, nb, p, ''}
  end

  if op == 'settle' then
    -- SettleDue: raise b to settleTo (amt) if it is below threshold (minv), recording the amount.
    if cmp(b, minv) >= 0 then return {0, b, p, '0'} end
    local raised
    if b == '-9223372036854775808' then
      -- sub cannot negate MinInt64: amt - MinInt64 = (amt + 1) + MaxInt64.
      local a1 = add(amt, '1')
      if a1 ~= nil then raised = add(a1, '9223372036854775807') end
    else
      raised = sub(amt, b)
    end
    if raised == nil then return {3, b, p, ''} end
    redis.call('HSET', key, 'b', amt)
    redis.call('SET', KEYS[3], raised)
    return {0, amt, p, raised}
  end

  if op == 'credit' then
    -- CreditOnce: 'add' without limits, once per KEYS[3], with the entries.
    if redis.call('EXISTS', KEYS[3]) == 1 then return {5, b, p, ''} end
    -- Guarded entries ('S', 'D') hold if their key still has the value given after the
    -- entries, in order ('a': absent, 'v'..value); nothing is written unless all hold.
    local g = #KEYS + 8
    for i = 4, #KEYS do
      local kind = ARGV[i + 7]:sub(1, 1)
      if kind == 'S' or kind == 'D' then
        local was = ARGV[g]
        g = g + 1
        if not holds(KEYS[i], was) then return {9, b, p, ''} end
      end
    end
    local nb = add(b, amt)
    if nb == nil then return {3, b, p, ''} end
    if sub(nb, p) == nil then return {3, b, p, ''} end
    redis.call('HSET', key, 'b', nb)
    redis.call('SET', KEYS[3], ARGV[10])
    for i = 4, #KEYS do
      local v = ARGV[i + 7]
      local kind = v:sub(1, 1)
      if kind == 'd' or kind == 'D' then redis.call('DEL', KEYS[i]) else redis.call('SET', KEYS[i], v:sub(2)) end
    end
    return {0, nb, p, ''}
  end

  if cmp(amt, '0') <= 0 then return {4, b, p, ''} end

  if op == 'reserve' then
    local np = add(p, amt)
    if np == nil then return {3, b, p, ''} end
    local avail = sub(b, np)
    if avail == nil then return {3, b, p, ''} end
    if minv ~= '' and cmp(avail, minv) < 0 then return {2, b, p, avail} end
    redis.call('HSET', key, 'p', np)
    own(pfield, amt)
    return {0, b, np, avail}
  end

  if op == 'commit' then
    local nb = sub(b, amt)
    if nb == nil then return {3, b, p, ''} end
    local np = dec(p, amt)
    redis.call('HSET', key, 'b', nb, 'p', np)
    local mine = redis.call('HGET', key, pfield)
    if mine then own(pfield, neg(sub(mine, dec(mine, amt)))) end
    if scoped == '1' then own(ofield, neg(amt)) end
    return {0, nb, np, ''}
  end

  if op == 'release' then
    local np = dec(p, amt)
    redis.call('HSET', key, 'p', np)
    local mine = redis.call('HGET', key, pfield)
    if mine then own(pfield, neg(sub(mine, dec(mine, amt)))) end
    return {0, b, np, ''}
  end

  return redis.error_reply('ilpfleet store: unknown operation ' .. op)
end

-- Writes are fenced by the process token and, but for the idempotent ones, made once per
-- (lane, seq): a write sent again returns the reply recorded the first time.
if op == 'get' then return apply() end
local st = redis.call('HMGET', KEYS[2], 't', lane)
if st[1] ~= token then return {6, '0', '0', ''} end
if lane == '' then return apply() end
local n = tonumber(seq)
local rec = st[2]
if rec then
  local s, c, rb, rp, rprop = rec:match('^(%d+)|(%d+)|([^|]*)|([^|]*)|(.*)$')
  local last = tonumber(s)
  if last == n then return {tonumber(c), rb, rp, rprop} end
  if last > n then return {7, '0', '0', ''} end
end
local r = {8, '0', '0', ''}
if op ~= 'void' then r = apply() end
redis.call('HSET', KEYS[2], lane, seq .. '|' .. r[1] .. '|' .. r[2] .. '|' .. r[3] .. '|' .. r[4])
return r
