if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
	return 0
end
local fields = {'id', ARGV[2], 'reason', ARGV[3], 'attempts', redis.call('HGET', KEYS[3], ARGV[2]) or '0'}
for i = 4, #ARGV do
	fields[#fields + 1] = ARGV[i]
end
redis.call('XADD', KEYS[2], '*', unpack(fields))
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
redis.call('DECR', KEYS[5])
local p = redis.call('GET', KEYS[4])
if p and string.sub(p, 1, #ARGV[2] + 1) == ARGV[2] .. ' ' then
	redis.call('DEL', KEYS[4])
end
trim(KEYS[1], ARGV[1], KEYS[5])
return 1
