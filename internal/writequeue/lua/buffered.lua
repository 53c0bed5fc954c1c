local b = redis.call('GET', KEYS[1])
local id, created = string.match(b or '', '^(%S+) (%d+)$')
if not id then
	return false
end
local e = redis.call('XRANGE', KEYS[2], id, id)
if #e == 0 then
	return false
end
return {id, created, e[1][2]}
