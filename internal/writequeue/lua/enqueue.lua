local max, n = tonumber(ARGV[1]), #KEYS - 3
local len = tonumber(redis.call('GET', KEYS[3]) or '0')
local t = redis.call('TIME')
local ts = t[1] .. string.format('%06d', tonumber(t[2]))
local old = redis.call('MGET', unpack(KEYS, 4, 3 + n))
local created, pointers, ids, added = {}, {}, {}, 0
for i = 1, n do
	if max > 0 and len >= max then
		ids[i] = ''
	else
		local id = redis.call('XADD', KEYS[1], '*', 'key', ARGV[2 * i], 'value', ARGV[2 * i + 1], 'ts', ts)
		local key = KEYS[3 + i]
		local c = created[key] or (old[i] and string.match(old[i], '^%S+ (%d+)')) or ts
		created[key] = c
		pointers[#pointers + 1] = key
		pointers[#pointers + 1] = id .. ' ' .. c .. ' ' .. ts .. ' ' .. ARGV[2 * i + 1]
		ids[i] = id
		len, added = len + 1, added + 1
	end
end
if added > 0 then
	redis.call('MSET', unpack(pointers))
	redis.call('INCRBY', KEYS[2], added)
	redis.call('INCRBY', KEYS[3], added)
end
return {ts, ids}
