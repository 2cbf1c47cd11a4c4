#!/usr/bin/env bash
# Redis's CPU for the same commits sent two ways: as one Lua script carrying
# every write (the store's design until 2026-12-03: EVALSHA, each write an
# `unpack` + redis.call) and as the store's transaction now (WATCH meta;
# EVAL fence_lua; MULTI; HSETs; EXEC -- fence_lua taken from state/store.c).
# COMMITS commits of WRITES two-field HSETs each over 10000 keys of one
# partition, piped with redis-cli --pipe into a private redis-server; Redis's
# used_cpu_user+sys before and after, ROUNDS alternating rounds.
#   bash bench/commit_cost.sh   (COMMITS=2000 WRITES=60 ROUNDS=3)
set -euo pipefail
cd "$(dirname "$0")/.."
. deploy/lib.sh
sp_init commitcost
port=$(sp_free_port)
sp_redis_start "$port" port
COMMITS=${COMMITS:-2000} WRITES=${WRITES:-60} ROUNDS=${ROUNDS:-3}
cat >"$tmp/old.lua" <<'LUA'
local e = redis.call('HGET', KEYS[1], 'epoch')
if e ~= ARGV[1] then
  return redis.error_reply('FENCED epoch is ' .. tostring(e) .. ', ours ' .. ARGV[1])
end
local s = redis.call('HGET', KEYS[1], 'cseq')
if s and tonumber(s) >= tonumber(ARGV[2]) then return 2 end
redis.call('HSET', KEYS[1], 'cseq', ARGV[2])
local n = tonumber(ARGV[3])
local i = 4
for j = 1, n do
  redis.call('HSET', KEYS[1], 'off:' .. ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i <= #ARGV do
  local c = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + c))
  i = i + c + 1
end
return 1
LUA
old_sha=$(redis-cli -p "$port" script load "$(cat "$tmp/old.lua")")
python3 - "$tmp" "$old_sha" "$COMMITS" "$WRITES" <<'PY'
import re, sys
tmp, old_sha, ncommit, nw = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
src = open('state/store.c').read()
body = re.search(r'static const char fence_lua\[\] =\n(.*?);\n', src, re.S).group(1)
fence = ''.join(eval(x) for x in re.findall(r'"(?:[^"\\]|\\.)*"', body))
def resp(*a):
    a = [x if isinstance(x, bytes) else str(x).encode() for x in a]
    return b'*%d\r\n' % len(a) + b''.join(b'$%d\r\n%s\r\n' % (len(x), x) for x in a)
old, new = bytearray(resp('HSET', '{p1}:meta', 'epoch', '7')), bytearray()
for c in range(1, ncommit + 1):
    users = ['{p1}:u:%d' % ((c * 37 + i * 101) % 10000) for i in range(nw)]
    args = ['EVALSHA', old_sha, 1 + nw, '{p1}:meta'] + users + ['7', c, 1, 'shop.clicks', c * 100]
    for u in users: args += [6, 'HSET', u, 'click', c, 'view', c + 1]
    old += resp(*args)
    new += resp('WATCH', '{p1}:meta') + resp('EVAL', fence, 1, '{p1}:meta', '7', c)
    new += resp('MULTI') + resp('HSET', '{p1}:meta', 'cseq', c, 'off:shop.clicks', c * 100)
    for u in users: new += resp('HSET', u, 'click', c, 'view', c + 1)
    new += resp('EXEC')
open(tmp + '/old.resp', 'wb').write(old)
open(tmp + '/new.resp', 'wb').write(resp('HSET', '{p1}:meta', 'epoch', '7') + new)
PY
cpu() { redis-cli -p "$port" info cpu | awk -F: '/used_cpu_(user|sys):/{s += $2} END{printf "%.3f", s}'; }
echo "commits=$COMMITS writes_per_commit=$WRITES"
for r in $(seq "$ROUNDS"); do
  for way in old new; do
    redis-cli -p "$port" flushall >/dev/null
    a=$(cpu)
    out=$(redis-cli -p "$port" --pipe <"$tmp/$way.resp" 2>&1 | tail -1)
    b=$(cpu)
    case $way in old) name="one Lua script (EVALSHA)";; new) name="WATCH + fence EVAL + MULTI/EXEC";; esac
    echo "round $r: $name: redis cpu $(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.3f", b - a}') s ($out)"
  done
done
