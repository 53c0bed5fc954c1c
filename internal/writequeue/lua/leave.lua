for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
	local f = fields(c)
	if f['name'] == ARGV[2] and f['pending'] == 0 then
		return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
	end
end
return -1
