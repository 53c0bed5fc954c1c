local group, nids, nkeys = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local rejected = redis.call('EXISTS', KEYS[3]) == 1
local acked = 0
for i = 4, 3 + nids, 1000 do
	local j = math.min(i + 999, 3 + nids)
	acked = acked + redis.call('XACK', KEYS[1], group, unpack(ARGV, i, j))
	if rejected then
		redis.call('HDEL', KEYS[3], unpack(ARGV, i, j))
	end
end
if acked > 0 then
	redis.call('INCRBY', KEYS[2], acked)
	redis.call('DECRBY', KEYS[4], acked)
end
trim(KEYS[1], group, KEYS[4])
for first = 1, nkeys, 1000 do
	local last = math.min(first + 999, nkeys)
	local pointers = redis.call('MGET', unpack(KEYS, 4 + first, 4 + last))
	local applied = {}
	for i = first, last do
		local id = ARGV[3 + nids + i]
		local p = pointers[i - first + 1]
		if p and string.sub(p, 1, #id + 1) == id .. ' ' then
			applied[#applied + 1] = KEYS[4 + i]
		end
	end
	if #applied > 0 then
		redis.call('DEL', unpack(applied))
	end
end
for i = 5 + nkeys, #KEYS, 1000 do
	redis.call('DEL', unpack(KEYS, i, math.min(i + 999, #KEYS)))
end
return acked
